"""Exact leave-one-out decision values and the calibrated probabilities built on them.

Kernel ridge regression has closed-form leave-one-out (LOO) predictions: with
``G = (K + alpha I)^-1`` and dual coefficients ``c = G y``, the LOO residual of
row ``i`` is ``c_i / G_ii`` (the identity behind ``RidgeCV``). They come from
one factorisation of the training kernel, which the classifiers then use to
calibrate their decision values into probabilities without any held-out data:

- :func:`loo_predictions`: the LOO predictions for every ridge from one
  eigendecomposition (``O(n^2)`` per ridge; model selection uses it).
- :func:`loo_decision_values`: the LOO predictions of one fitted model, from a
  Cholesky factorisation (``n^3 / 3`` plus the triangular inverse) when the
  model is trained to convergence, from an eigendecomposition for a finite
  training time ``t`` (the linear-smoother form ``(y_i - f_i) / (1 - S_ii)``,
  exact for the ridge).
- :class:`TemperatureCalibration`: the softmax of ``a * s`` over the
  one-vs-all decision values ``s`` (the sigmoid of ``a * s`` for two
  classes), with the slope ``a > 0`` fitted by weighted maximum likelihood on
  the LOO decision values. One common increasing map keeps the predicted class
  the one with the largest decision value, so ``predict`` and
  ``predict_proba`` always agree.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from ._array_api import device as array_device
from ._array_api import get_namespace, is_numpy_namespace, to_numpy
from ._linalg import (
    EPS,
    add_to_diagonal,
    cho_solve_inplace,
    cho_solve_xp,
    cholesky_inplace,
    fortran_working_copy,
    inverse_diagonal_inplace,
    inverse_filter,
    scale_rows_and_columns,
    solve_triangular,
    spectral_cutoff,
)
from .dynamics import kernel_eigh

__all__ = [
    "TemperatureCalibration",
    "fit_temperature",
    "loo_decision_values",
    "loo_from_factor",
    "loo_predictions",
]


def loo_predictions(evals, U, z, Y, ridge, K=None, positive=None, U2=None):
    """Exact leave-one-out predictions of kernel ridge regression.

    Parameters
    ----------
    evals, U : arrays
        ``kernel_eigh(K, w)`` with ``U = diag(sqrt(w)) V`` (``U = V`` without
        weights).
    z : array of shape (n, n_targets)
        ``U.T @ Y``.
    Y : array of shape (n, n_targets)
        Targets.
    ridge : float
        Ridge ``alpha >= 0``.
    K : array of shape (n, n), default=None
        The kernel; needed only when some weights are zero.
    positive : array of bool of shape (n,), default=None
        ``w > 0``; None means all weights are positive.
    U2 : array of shape (n, n), default=None
        ``U * U``, to share between ridges (computed when None).

    Returns
    -------
    loo : array of shape (n, n_targets)
        Row ``i`` is the prediction at ``x_i`` of the model fitted without
        row ``i``. A zero-weight row does not influence the fit, so its
        prediction is the full model's.
    dual_coef : array of shape (n, n_targets)
        Dual coefficients of the full fit, ``U diag(1 / a) U^T Y``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._calibration import loo_predictions
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> evals, V = np.linalg.eigh(K)
    >>> Y = np.array([[1.0], [3.0]])
    >>> loo, _ = loo_predictions(evals, V, V.T @ Y, Y, 1.0)
    >>> # without row 0: c = 3 / (2 + 1) = 1, prediction K[0, 1] * c = 1
    >>> round(float(loo[0, 0]), 12)
    1.0
    """
    xp = get_namespace(evals, U)
    a = evals + ridge
    cutoff = spectral_cutoff(xp, a)
    g, keep = inverse_filter(xp, a)
    c = U @ (g[:, None] * z)
    if U2 is None:
        U2 = U * U
    d = U2 @ g  # diag(U diag(g) U^T)
    if bool(xp.all(keep)):
        safe = d > 0
        residual = c / xp.where(safe, d, xp.ones_like(d))[:, None]
    else:
        # A ridge below rounding level: the coefficients are the
        # pseudo-inverse's (as the solver's), but the null directions cannot
        # be dropped from the leave-one-out identity for the rows that have
        # a component there (one of two duplicate rows, say): their c_i and
        # G_ii are then dominated by those directions, whose ratio is the
        # limit ridge -> 0 of the exact residual (y_i minus the twin's
        # target). Flooring the null directions' shift at the cutoff keeps
        # it (an all-zero kernel, cutoff 0: the residual is y_i, as the
        # model predicts 0). Other rows have no component there in exact
        # arithmetic; their rounding-level components would be amplified,
        # so they keep the pseudo-inverse's ratio.
        dropped = xp.astype(~keep, a.dtype)
        p = U2 @ dropped  # squared norm of each row's null component
        q = U @ (dropped[:, None] * z)
        norm = xp.sum(U2, axis=1)
        involved = p > math.sqrt(EPS) * norm
        d = xp.where(involved, cutoff * d + p, d)
        c_loo = xp.where(involved[:, None], cutoff * c + q, c)
        safe = d > 0
        residual = c_loo / xp.where(safe, d, xp.ones_like(d))[:, None]
    loo = Y - residual
    if positive is not None and not bool(xp.all(positive)):
        full = K @ c
        loo = xp.where(positive[:, None], loo, full)
    return loo, c


def _removed_share(sample_weight, n):
    """Share of each row's weight that one left-out observation removes.

    A weight counts observations: leaving one out removes one unit of a
    weight above 1 (an integer weight is then exactly a repeated row, whose
    copies are left out one at a time) and the whole of a smaller one.
    """
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    return np.where(w > 0, np.minimum(w, 1.0) / np.where(w > 0, w, 1.0), 1.0)


def _loo_cholesky(K, Y, ridge, sample_weight):
    """Ridge LOO from ``chol(W^1/2 K W^1/2 + ridge I)``, or None if it fails.

    On NumPy through LAPACK on one Fortran-ordered working copy of ``K``
    (blocked ``potrf``, ``potrs``, ``trtri``, all in place; ``K`` itself is
    not modified); on other namespaces (CuPy on a GPU) through their Cholesky
    and triangular solves, so a kernel on the device is factorised there.
    The result is NumPy.
    """
    if not ridge > 0:
        return None
    xp = get_namespace(K)
    if not is_numpy_namespace(xp):
        return _loo_cholesky_xp(xp, K, Y, ridge, sample_weight)
    F = fortran_working_copy(K)
    if sample_weight is not None:
        scale_rows_and_columns(F, np.sqrt(np.asarray(sample_weight, dtype=np.float64)))
    add_to_diagonal(F, ridge)
    if cholesky_inplace(F) != 0:
        return None
    return loo_from_factor(F, Y, ridge, sample_weight, kernel_rows=K)


def loo_from_factor(factor, Y, ridge, sample_weight=None, scaled=None, *, kernel_rows):
    """Exact ridge LOO predictions from a Cholesky factor, or None.

    The factor is consumed: its lower triangle is inverted in place
    (:func:`~sknetk._linalg.inverse_diagonal_inplace`), so no other
    ``n x n`` array is made.

    Parameters
    ----------
    factor : ndarray of shape (n, n), float64, Fortran-ordered, writeable
        Lower triangle: the Cholesky factor ``L`` of
        ``A = W^1/2 K W^1/2 + ridge I`` (``W = diag(sample_weight)``); the
        strict upper triangle is never read.
    Y : ndarray of shape (n, n_targets)
        Targets.
    ridge : float
        The ridge (None is returned unless it is > 0: the identity behind
        these values divides by it).
    sample_weight : ndarray of shape (n,), default=None
        Non-negative weights.
    scaled : ndarray of shape (n, n_targets), default=None
        ``A^-1 W^1/2 Y`` when already solved (the exact solver's
        :attr:`~sknetk._solver.CholeskySolve.scaled`); computed when None.
    kernel_rows : array of shape (n, n) or callable
        The unweighted kernel ``K`` (its rows of zero weight are read), or
        ``kernel_rows(mask) -> K[mask]``; used only when some weight is 0.

    Returns
    -------
    loo : ndarray of shape (n, n_targets) or None
        As :func:`loo_decision_values`; None when the factor is numerically
        singular (a pivot below ``sqrt(eps)`` times the largest) or its
        inverse is not finite: the eigendecomposition path handles those.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.linalg import cholesky
    >>> from sknetk._calibration import loo_from_factor
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> L = np.asfortranarray(cholesky(K + np.eye(2), lower=True))
    >>> loo = loo_from_factor(L, np.array([[1.0], [3.0]]), 1.0, kernel_rows=K)
    >>> np.round(loo.ravel(), 12).tolist()
    [1.0, 0.333333333333]
    """
    Y = np.asarray(Y, dtype=np.float64)
    n = factor.shape[0]
    root = None if sample_weight is None else np.sqrt(sample_weight)
    pivots = np.abs(np.diagonal(factor))
    if not ridge > 0 or n == 0 or not np.isfinite(pivots).all():
        return None
    if pivots.min() <= math.sqrt(EPS) * pivots.max():
        return None  # numerically singular: the eigen path handles it
    if scaled is None:
        rhs = Y if root is None else root[:, None] * Y
        scaled = cho_solve_inplace(factor, np.array(rhs, dtype=np.float64, order="F"))
    g_diag = inverse_diagonal_inplace(factor)  # diag(A^-1); L is gone after it
    if g_diag is None or not np.isfinite(g_diag).all():
        return None
    root = np.ones(n) if root is None else root
    fitted_zero_rows = None
    zero = root == 0
    if zero.any():
        rows = kernel_rows(zero) if callable(kernel_rows) else kernel_rows[zero]
        fitted_zero_rows = np.asarray(rows) @ (root[:, None] * scaled)
    return _loo_from(Y, scaled, g_diag, root, ridge, sample_weight, fitted_zero_rows)


def _loo_cholesky_xp(xp, K, Y, ridge, sample_weight):
    """:func:`_loo_cholesky` on any namespace with ``linalg.cholesky``."""
    n = K.shape[0]
    root = np.ones(n) if sample_weight is None else np.sqrt(sample_weight)
    r = xp.asarray(root, dtype=K.dtype, device=array_device(K))
    A = add_to_diagonal(r[:, None] * K * r[None, :], ridge)
    try:
        L = xp.linalg.cholesky(A)
    except Exception:  # noqa: BLE001 - each namespace raises its own error
        return None
    del A
    diag = to_numpy(xp.linalg.diagonal(L))
    if not np.all(np.isfinite(diag)) or np.min(np.abs(diag)) <= math.sqrt(EPS) * np.max(
        diag
    ):
        return None
    eye = xp.eye(n, dtype=K.dtype, device=array_device(K))
    Linv = solve_triangular(xp, L, eye, lower=True)
    g_diag = to_numpy(xp.sum(Linv * Linv, axis=0))
    del Linv, eye
    Yd = xp.asarray(np.asarray(Y), dtype=K.dtype, device=array_device(K))
    c_dev = cho_solve_xp(xp, L, r[:, None] * Yd)
    c_tilde = to_numpy(c_dev)
    fitted_zero_rows = None
    if not (root > 0).all():
        fitted_zero_rows = to_numpy(K @ (r[:, None] * c_dev))[root == 0]
    return _loo_from(Y, c_tilde, g_diag, root, ridge, sample_weight, fitted_zero_rows)


def _loo_from(Y, c_tilde, g_diag, root, ridge, sample_weight, fitted_zero_rows):
    """LOO predictions from ``c~ = (K_w + ridge I)^-1 W^1/2 Y`` and ``diag``.

    ``y_i - f_i = ridge c~_i / sqrt(w_i)`` and the hat matrix's diagonal is
    ``1 - ridge G_ii``; removing the share ``s_i`` of the row's weight
    divides the residual by ``1 - s_i (1 - ridge G_ii)`` (``s_i = 1``:
    ``c_i / (w_i G_ii)``). Zero-weight rows take ``fitted_zero_rows``.
    """
    Y = np.asarray(Y, dtype=np.float64)
    positive = root > 0
    loo = np.empty_like(Y)
    share = _removed_share(sample_weight, len(root))[positive, None]
    hat = 1.0 - ridge * g_diag[positive, None]
    residual = ridge * c_tilde[positive] / root[positive, None]
    loo[positive] = Y[positive] - residual / np.maximum(1.0 - share * hat, EPS)
    if fitted_zero_rows is not None:
        loo[~positive] = fitted_zero_rows
    return loo


def loo_decision_values(K, Y, ridge, sample_weight=None, t=None):
    """Leave-one-out predictions of one kernel ridge (or gradient-flow) model.

    Parameters
    ----------
    K : array of shape (n, n)
        Training kernel (not modified): NumPy, or an array of another
        namespace (CuPy), which the Cholesky path factorises where it lives.
    Y : ndarray of shape (n, n_targets)
        Training targets.
    ridge : float
        The ridge ``alpha_`` added to the diagonal (>= 0).
    sample_weight : ndarray of shape (n,), default=None
        Non-negative weights of the fit.
    t : float, default=None
        Finite training time of the gradient flow (the estimators' ``t``: the
        loss is the weighted mean over the ``N = sum(w) * n_targets`` training
        values); None: trained to convergence (the ridge).

    Returns
    -------
    loo : ndarray of shape (n, n_targets)
        The prediction at ``x_i`` of the model fitted without one observation
        of row ``i`` (weights count observations: a weight above 1 loses one
        unit, a smaller one all of it, so an integer weight is a repeated
        row): exact for the ridge (``t=None``); for a finite ``t``, the
        linear-smoother form ``y_i - (y_i - f_i) / (1 - s_i S_ii)``, with
        ``S`` the map from the targets to the fitted values and ``s_i`` the
        share of the weight removed (exact for the ridge). A zero-weight row
        gets the full model's prediction.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._calibration import loo_decision_values
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> loo = loo_decision_values(K, np.array([[1.0], [3.0]]), 1.0)
    >>> np.round(loo.ravel(), 12).tolist()
    [1.0, 0.333333333333]
    """
    Y = np.asarray(Y, dtype=np.float64)
    if t is None:
        loo = _loo_cholesky(K, Y, float(ridge), sample_weight)
        if loo is not None:
            return loo
    K = to_numpy(K)  # the eigen paths run on the host
    evals, V = kernel_eigh(K, sample_weight)
    root = None if sample_weight is None else np.sqrt(sample_weight)
    U = V if root is None else root[:, None] * V
    z = U.T @ Y
    positive = None if sample_weight is None else sample_weight > 0
    if t is None:
        return loo_predictions(evals, U, z, Y, float(ridge), K, positive)[0]
    # Gradient flow for time t: dual coefficients U h(a) U^T Y with
    # h(a) = (1 - exp(-a t / N)) / a, a = evals + ridge; fitted values S Y
    # with S_ii = sum_k V_ik^2 evals_k h_k.
    total = Y.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    rate = float(t) / max(total * Y.shape[1], EPS)
    a = evals + float(ridge)
    positive_a = a > spectral_cutoff(np, a)
    h = np.where(positive_a, -np.expm1(-a * rate) / np.where(positive_a, a, 1.0), rate)
    c = U @ (h[:, None] * z)
    fitted = K @ c
    s_diag = (V * V) @ (np.clip(evals, 0.0, None) * h)
    share = _removed_share(sample_weight, K.shape[0])
    one_minus = np.clip(1.0 - share * s_diag, math.sqrt(EPS), None)
    loo = Y - (Y - fitted) / one_minus[:, None]
    if positive is not None and not positive.all():
        loo[~positive] = fitted[~positive]
    return loo


def _codes(Y):
    """Class index of each row of one-vs-all ``+-1`` targets (one column: binary)."""
    if Y.shape[1] == 1:
        return (Y[:, 0] > 0).astype(np.intp)
    return np.argmax(Y, axis=1)


def _logits(decision, slope):
    decision = np.asarray(decision, dtype=np.float64)
    if decision.ndim == 1 or decision.shape[1] == 1:
        s = decision.reshape(-1)
        half = 0.5 * slope * s
        return np.stack([-half, half], axis=1)
    return slope * decision


@dataclass(frozen=True)
class TemperatureCalibration:
    """Probabilities ``softmax(slope * s)`` of one-vs-all decision values ``s``.

    With two classes (one decision value ``s`` for the second class) the
    probability of the second class is ``sigmoid(slope * s)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._calibration import TemperatureCalibration
    >>> cal = TemperatureCalibration(slope=2.0)
    >>> np.round(cal.predict_proba(np.array([0.0, 1.0])), 3).tolist()
    [[0.5, 0.5], [0.119, 0.881]]
    """

    slope: float

    def predict_log_proba(self, decision):
        """Log-probabilities, shape (n_samples, n_classes)."""
        return log_softmax(_logits(decision, self.slope), axis=1)

    def predict_proba(self, decision):
        """Probabilities, shape (n_samples, n_classes); rows sum to one."""
        proba = np.exp(self.predict_log_proba(decision))
        return proba / np.sum(proba, axis=1, keepdims=True)


def fit_temperature(decision, Y, sample_weight=None):
    """Fit :class:`TemperatureCalibration` by weighted maximum likelihood.

    Parameters
    ----------
    decision : ndarray of shape (n_samples,) or (n_samples, n_columns)
        Held-out (leave-one-out) decision values.
    Y : ndarray of shape (n_samples, n_columns)
        The one-vs-all ``+-1`` targets (one column for two classes).
    sample_weight : ndarray of shape (n_samples,), default=None
        Weights of the log-likelihood.

    Returns
    -------
    calibration : TemperatureCalibration
        The slope minimising the (convex) weighted log loss; floored at a
        small positive value so that the class order is always kept.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._calibration import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> s = rng.standard_normal(2000)
    >>> y = np.where(rng.random(2000) < 1 / (1 + np.exp(-3 * s)), 1.0, -1.0)
    >>> round(fit_temperature(s, y[:, None]).slope, 0)
    3.0
    """
    decision = np.asarray(decision, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(decision.shape[0], -1)
    codes = _codes(Y)
    w = np.ones(len(codes)) if sample_weight is None else np.asarray(sample_weight)
    keep = w > 0
    decision, codes, w = decision[keep], codes[keep], w[keep]
    spread = float(np.std(decision)) if decision.size else 0.0
    scale = 1.0 / spread if spread > 0 else 1.0
    floor = 1e-6 * scale
    if not np.isfinite(decision).all() or decision.size == 0 or w.sum() <= 0:
        return TemperatureCalibration(slope=scale)
    rows = np.arange(len(codes))

    def loss(slope):
        logp = log_softmax(_logits(decision, slope), axis=1)
        return -float(np.dot(w, logp[rows, codes])) / float(w.sum())

    result = minimize_scalar(
        loss,
        bounds=(floor, 1e3 * scale),
        method="bounded",
        options={"xatol": 1e-6 * scale},
    )
    slope = float(result.x) if np.isfinite(result.x) else scale
    return TemperatureCalibration(slope=max(slope, floor))
