"""Training dynamics and predictive uncertainty of infinitely wide networks.

An infinitely wide network trained by gradient descent on the squared loss
evolves as a linear model in its parameters (Lee et al., 2019), so its whole
training trajectory follows from one eigendecomposition of the training
kernel. With ``A = K + ridge * I = V diag(a) V^T`` and ``N = y.size`` (training
rows times outputs, neural-tangents divides the loss by it), the mean
prediction of the infinite ensemble after gradient-flow time ``t`` with
learning rate ``eta`` is::

    mean(t) = K_* V diag((1 - exp(-a * eta * t / N)) / a) V^T y

and ``t = inf`` gives kernel ridge regression, ``K_* A^{-1} y``. The same
decomposition gives the ensemble's covariance (the network's random
initialisation is a Gaussian process with the NNGP kernel) and the Bayesian
NNGP posterior. See ``docs/dynamics.rst`` for the derivations.

Every function here is pure and written against the array namespace of its
inputs (NumPy, CuPy, ``array_api_strict``), in float64. Conventions follow
neural-tangents' ``predict.gradient_descent_mse_ensemble`` and
``predict.gp_inference``; :func:`diag_reg_to_ridge` converts its relative
``diag_reg`` to the absolute ``ridge`` used here.
"""

import math

import numpy as np

from ._array_api import get_namespace, is_numpy_namespace
from ._linalg import (
    as_float64,
    check_count,
    check_nonnegative,
    check_positive,
    check_sample_weight,
    eigen_basis,
    flow_filters,
    symmetric_eigh,
)

__all__ = [
    "diag_reg_to_ridge",
    "kernel_eigh",
    "gradient_flow_dual_coef",
    "gradient_flow_predict",
    "gradient_flow_train_predict",
    "gp_posterior",
    "ensemble_covariance",
]


# ---------------------------------------------------------------------------
# Input handling (the shared checks live in sknetk._linalg)
# ---------------------------------------------------------------------------
def _check_square(K, name):
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {K.shape}.")


def _check_times(t):
    """Return ``(times, is_scalar)``: a 1-D float NumPy array of times >= 0."""
    times = np.asarray(t, dtype=np.float64)
    if times.ndim > 1:
        raise ValueError(
            f"t must be a number or a 1-D sequence, got shape {times.shape}."
        )
    scalar = times.ndim == 0
    times = times.reshape(-1)
    if times.size == 0:
        raise ValueError("t must hold at least one time, got an empty sequence.")
    if np.any(np.isnan(times)) or np.any(times < 0):
        raise ValueError(f"t must hold times >= 0 (inf allowed), got {t!r}.")
    return times, scalar


def _check_y(xp, y, n):
    y = as_float64(xp, y)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(
            f"y must have shape ({n},) or ({n}, n_targets), got {tuple(y.shape)}."
        )
    return y


def _flow(xp, evals, y, t, ridge, learning_rate):
    """Checked ``(y, is_scalar, filters, a, keep)`` of the gradient-flow means.

    ``N = y.size`` (neural-tangents' normalisation of the loss); see
    :func:`sknetk._linalg.flow_filters` for ``filters``, ``a`` and ``keep``.
    """
    y = _check_y(xp, y, evals.shape[0])
    times, scalar = _check_times(t)
    filters, a, keep = flow_filters(
        xp,
        evals,
        times,
        check_nonnegative(ridge, "ridge"),
        check_positive(learning_rate, "learning_rate"),
        max(math.prod(y.shape), 1),
    )
    return y, scalar, filters, a, keep


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------
def diag_reg_to_ridge(K_train_train, diag_reg, *, absolute_scale=False):
    """Absolute ridge ``lambda_eff`` from neural-tangents' ``diag_reg``.

    neural-tangents adds ``diag_reg * trace(K) / n`` to the diagonal of the
    training kernel (``diag_reg_absolute_scale=False``, its default), which
    makes ``diag_reg`` independent of the kernel's overall scale; with
    ``absolute_scale=True`` it adds ``diag_reg`` itself.

    Parameters
    ----------
    K_train_train : array of shape (n_train, n_train)
        Training kernel.
    diag_reg : float
        The neural-tangents ``diag_reg`` (>= 0).
    absolute_scale : bool, default=False
        The neural-tangents ``diag_reg_absolute_scale``.

    Returns
    -------
    ridge : float
        The value to add to the kernel's diagonal, as taken by the ``ridge``
        parameter of the other functions of this module (and equal to the
        ``alpha`` of :class:`sklearn.kernel_ridge.KernelRidge`).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.dynamics import diag_reg_to_ridge
    >>> K = np.array([[1.0, 0.5], [0.5, 3.0]])
    >>> diag_reg_to_ridge(K, 0.5)  # 0.5 * trace(K) / 2
    1.0
    >>> diag_reg_to_ridge(K, 0.5, absolute_scale=True)
    0.5
    """
    diag_reg = check_nonnegative(diag_reg, "diag_reg")
    if absolute_scale:
        return diag_reg
    xp = get_namespace(K_train_train)
    K = as_float64(xp, K_train_train)
    _check_square(K, "K_train_train")
    n = K.shape[0]
    if n == 0:
        return 0.0
    diagonal = np.diagonal(K) if is_numpy_namespace(xp) else xp.linalg.diagonal(K)
    return diag_reg * float(xp.sum(diagonal)) / n


def kernel_eigh(K_train_train, sample_weight=None):
    """Eigendecomposition of the (weighted) training kernel, to reuse.

    Every function of this module accepts its result as ``eigh=`` and then
    skips its own O(n^3) decomposition: one call serves any number of times,
    ridges and test sets.

    Parameters
    ----------
    K_train_train : array of shape (n_train, n_train)
        Symmetric training kernel.
    sample_weight : array of shape (n_train,), default=None
        Non-negative sample weights; the decomposed matrix is then
        ``diag(sqrt(w)) K diag(sqrt(w))``. Pass the same weights to the
        function that receives ``eigh``.

    Returns
    -------
    evals : array of shape (n_train,)
        Eigenvalues, ascending, without any ridge.
    evecs : array of shape (n_train, n_train)
        Orthonormal eigenvectors in columns.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.dynamics import kernel_eigh
    >>> evals, evecs = kernel_eigh(np.array([[2.0, 1.0], [1.0, 2.0]]))
    >>> evals
    array([1., 3.])
    """
    xp = get_namespace(K_train_train)
    K = as_float64(xp, K_train_train)
    _check_square(K, "K_train_train")
    w = check_sample_weight(xp, sample_weight, K.shape[0])
    if w is not None:
        sw = xp.sqrt(w)
        K = sw[:, None] * K * sw[None, :]
    return symmetric_eigh(xp, K)


def _decomposition(K_train_train, sample_weight, eigh):
    """``(xp, evals, U)`` with ``U = diag(sqrt(w)) V``: ``T = U g(a) U^T``."""
    if eigh is None:
        if K_train_train is None:
            raise ValueError("Pass K_train_train or its eigh=(evals, evecs).")
        eigh = kernel_eigh(K_train_train, sample_weight)
    return eigen_basis(eigh, sample_weight)


def _filtered(xp, M, filters, z):
    """Stack ``M @ (g * z)`` over the rows ``g`` of ``filters``."""
    rows = []
    for i in range(filters.shape[0]):
        g = filters[i, :]
        rows.append(M @ (g * z if z.ndim == 1 else g[:, None] * z))
    return xp.stack(rows, axis=0)


def _finish_times(out, scalar):
    return out[0, ...] if scalar else out


# ---------------------------------------------------------------------------
# Means
# ---------------------------------------------------------------------------
def gradient_flow_dual_coef(
    K_train_train,
    y,
    t=math.inf,
    ridge=0.0,
    learning_rate=1.0,
    *,
    sample_weight=None,
    eigh=None,
):
    """Dual coefficients of the infinite network after gradient-flow time ``t``.

    The mean prediction at any input ``x`` is ``K(x, X_train) @ dual_coef``,
    so the returned coefficients plug into any kernel-regression predictor.

    Parameters
    ----------
    K_train_train : array of shape (n_train, n_train)
        Training kernel (NTK for the whole network, NNGP for training the
        readout only). May be None when ``eigh`` is given.
    y : array of shape (n_train,) or (n_train, n_targets)
        Targets.
    t : float or 1-D sequence of float, default=inf
        Gradient-flow time(s) >= 0; ``inf`` gives kernel ridge regression.
    ridge : float, default=0.0
        Absolute ridge ``lambda_eff`` added to the kernel's diagonal (see
        :func:`diag_reg_to_ridge`).
    learning_rate : float, default=1.0
        Learning rate ``eta``; only the product ``eta * t`` matters.
    sample_weight : array of shape (n_train,), default=None
        Non-negative weights of the training loss ``sum_i w_i r_i^2 / (2N)``.
        ``t = inf`` then equals weighted kernel ridge regression.
    eigh : tuple (evals, evecs), default=None
        Result of ``kernel_eigh(K_train_train, sample_weight)``, to reuse.

    Returns
    -------
    dual_coef : array of shape y.shape, or (n_times,) + y.shape
        ``U diag(g_t(a)) U^T y`` with ``U = diag(sqrt(w)) V``; a leading time
        axis when ``t`` is a sequence.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.dynamics import gradient_flow_dual_coef
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> y = np.array([1.0, -1.0])
    >>> bool(np.allclose(gradient_flow_dual_coef(K, y), np.linalg.solve(K, y)))
    True
    >>> gradient_flow_dual_coef(K, y, t=[0.0, 1.0]).shape
    (2, 2)
    """
    xp, evals, U = _decomposition(K_train_train, sample_weight, eigh)
    y, scalar, filters, _, _ = _flow(xp, evals, y, t, ridge, learning_rate)
    return _finish_times(_filtered(xp, U, filters, U.T @ y), scalar)


def gradient_flow_predict(
    K_train_train,
    K_test_train,
    y,
    t=math.inf,
    ridge=0.0,
    learning_rate=1.0,
    *,
    sample_weight=None,
    eigh=None,
):
    """Mean prediction of the infinite ensemble after gradient-flow time ``t``.

    The network starts from a zero-mean random initialisation and is trained
    on the mean squared error ``||f(X) - y||^2 / (2N)``, ``N = y.size``, by
    gradient flow with learning rate ``eta``, the ridge added to the kernel
    as in neural-tangents' ``gradient_descent_mse_ensemble``::

        mean(t) = K_* V diag((1 - exp(-a * eta * t / N)) / a) V^T y

    where ``K + ridge * I = V diag(a) V^T``. ``t = inf`` gives
    ``K_* (K + ridge * I)^{-1} y``. Many times cost one eigendecomposition.

    Parameters
    ----------
    K_train_train : array of shape (n_train, n_train)
        Training kernel; None when ``eigh`` is given.
    K_test_train : array of shape (n_test, n_train)
        Kernel between test and training rows.
    y : array of shape (n_train,) or (n_train, n_targets)
        Targets.
    t : float or 1-D sequence of float, default=inf
        Gradient-flow time(s) >= 0.
    ridge : float, default=0.0
        Absolute ridge (see :func:`diag_reg_to_ridge`).
    learning_rate : float, default=1.0
        Learning rate ``eta``.
    sample_weight : array of shape (n_train,), default=None
        Weights of the training loss (see :func:`gradient_flow_dual_coef`).
    eigh : tuple (evals, evecs), default=None
        Result of :func:`kernel_eigh` with the same ``sample_weight``.

    Returns
    -------
    mean : array of shape (n_test,) + y.shape[1:], or with a leading time axis
        Mean predictions; a leading axis of length ``len(t)`` when ``t`` is
        a sequence.

    See Also
    --------
    gradient_flow_train_predict : The training outputs' trajectory.
    ensemble_covariance : The covariance around this mean.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import ntk_kernel
    >>> from sknetk.dynamics import gradient_flow_predict
    >>> rng = np.random.default_rng(0)
    >>> X, X_test = rng.normal(size=(20, 3)), rng.normal(size=(5, 3))
    >>> y = np.sin(X[:, 0])
    >>> means = gradient_flow_predict(ntk_kernel(X), ntk_kernel(X_test, X), y,
    ...                               t=[1.0, 100.0, np.inf], ridge=1e-3)
    >>> means.shape
    (3, 5)
    """
    xp, evals, U = _decomposition(K_train_train, sample_weight, eigh)
    Ks = as_float64(xp, K_test_train)
    if Ks.ndim != 2 or Ks.shape[1] != U.shape[0]:
        raise ValueError(
            f"K_test_train must have shape (n_test, {U.shape[0]}), got "
            f"{tuple(Ks.shape)}."
        )
    y, scalar, filters, _, _ = _flow(xp, evals, y, t, ridge, learning_rate)
    return _finish_times(_filtered(xp, Ks @ U, filters, U.T @ y), scalar)


def gradient_flow_train_predict(
    K_train_train, y, t=math.inf, ridge=0.0, learning_rate=1.0, *, eigh=None
):
    """Mean outputs on the training rows along the gradient flow.

    This is neural-tangents' training trajectory (``fx_train``), in which the
    training outputs evolve under the regularised kernel ``A = K + ridge I``::

        mean_train(t) = V diag(1 - exp(-a * eta * t / N)) V^T y

    so they reach ``y`` at ``t = inf`` whatever the ridge. (Evaluating
    :func:`gradient_flow_predict` at the training rows instead gives
    ``K V diag(g_t(a)) V^T y``, which differs by ``ridge * V diag(g_t(a)) V^T y``.)

    Parameters
    ----------
    K_train_train : array of shape (n_train, n_train)
        Training kernel; None when ``eigh`` is given.
    y : array of shape (n_train,) or (n_train, n_targets)
        Targets.
    t : float or 1-D sequence of float, default=inf
        Gradient-flow time(s) >= 0.
    ridge : float, default=0.0
        Absolute ridge.
    learning_rate : float, default=1.0
        Learning rate ``eta``.
    eigh : tuple (evals, evecs), default=None
        Result of ``kernel_eigh(K_train_train)`` (unweighted).

    Returns
    -------
    mean_train : array of shape y.shape, or (n_times,) + y.shape
        Training-set means.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.dynamics import gradient_flow_train_predict
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> gradient_flow_train_predict(K, np.array([1.0, 2.0]), t=[0.0, np.inf])
    array([[0., 0.],
           [1., 2.]])
    """
    xp, evals, U = _decomposition(K_train_train, None, eigh)
    y, scalar, filters, a, keep = _flow(xp, evals, y, t, ridge, learning_rate)
    a_kept = xp.where(keep, a, xp.zeros_like(a))
    z = U.T @ y
    rows = []
    for i in range(filters.shape[0]):
        h = filters[i, :] * a_kept  # 1 - exp(-a s), and 0 on the null directions
        rows.append(U @ (h * z if y.ndim == 1 else h[:, None] * z))
    return _finish_times(xp.stack(rows, axis=0), scalar)


# ---------------------------------------------------------------------------
# Covariances
# ---------------------------------------------------------------------------
def _check_test_test(xp, K_test_test, m):
    Kss = as_float64(xp, K_test_test)
    if Kss.shape not in ((m, m), (m,)):
        raise ValueError(
            f"K_test_test must have shape ({m}, {m}) (covariance) or ({m},) "
            f"(variances only), got {tuple(Kss.shape)}."
        )
    return Kss


def _check_cross(xp, K, name, m, n):
    K = as_float64(xp, K)
    if K.shape != (m, n):
        raise ValueError(f"{name} must have shape ({m}, {n}), got {tuple(K.shape)}.")
    return K


def gp_posterior(
    K_train_train,
    K_test_train,
    K_test_test,
    y=None,
    ridge=0.0,
    *,
    sample_weight=None,
    eigh=None,
):
    """Gaussian-process posterior of the network's prior (e.g. the NNGP).

    The infinitely wide random network is a Gaussian process with the NNGP
    kernel; conditioning it on noisy observations (noise variance ``ridge``)
    gives neural-tangents' ``gp_inference(get="nngp")``::

        mean = K_* A^{-1} y,   cov = K_** - K_* A^{-1} K_*^T,   A = K + ridge I

    Parameters
    ----------
    K_train_train : array of shape (n_train, n_train)
        Prior kernel on the training rows; None when ``eigh`` is given.
    K_test_train : array of shape (n_test, n_train)
        Prior kernel between test and training rows.
    K_test_test : array of shape (n_test, n_test) or (n_test,)
        Prior covariance of the test rows, or only its diagonal (then only
        the posterior variances are computed, in O(n_test * n_train^2)).
    y : array of shape (n_train,) or (n_train, n_targets), default=None
        Targets; None skips the mean.
    ridge : float, default=0.0
        Observation-noise variance (absolute, see :func:`diag_reg_to_ridge`).
    sample_weight : array of shape (n_train,), default=None
        Non-negative weights; the noise variance of row ``i`` is
        ``ridge / w_i`` (zero weight: the row is ignored).
    eigh : tuple (evals, evecs), default=None
        Result of :func:`kernel_eigh` with the same ``sample_weight``.

    Returns
    -------
    mean : array of shape (n_test,) + y.shape[1:], or None
        Posterior mean (None when ``y`` is None).
    cov : array of shape (n_test, n_test) or (n_test,)
        Posterior covariance (shared by every output), or variances when
        ``K_test_test`` is 1-D. Observation noise is not included. Entries
        may be slightly negative from rounding where the posterior is
        (nearly) certain.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import nngp_kernel
    >>> from sknetk.dynamics import gp_posterior
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> K = nngp_kernel(X)
    >>> mean, var = gp_posterior(K, K, np.diag(K), y=np.array([1.0, 2.0, 3.0]))
    >>> np.round(mean, 6), bool(np.all(np.abs(var) < 1e-10))
    (array([1., 2., 3.]), True)
    """
    xp, evals, U = _decomposition(K_train_train, sample_weight, eigh)
    n = U.shape[0]
    Ks = as_float64(xp, K_test_train)
    if Ks.ndim != 2 or Ks.shape[1] != n:
        raise ValueError(
            f"K_test_train must have shape (n_test, {n}), got {tuple(Ks.shape)}."
        )
    Kss = _check_test_test(xp, K_test_test, Ks.shape[0])
    ridge = check_nonnegative(ridge, "ridge")
    filters, _, _ = flow_filters(xp, evals, [math.inf], ridge, 1.0, 1)
    g = filters[0, ...]
    KsU = Ks @ U
    mean = None
    if y is not None:
        y = _check_y(xp, y, n)
        mean = _filtered(xp, KsU, filters, U.T @ y)[0, ...]
    if Kss.ndim == 1:
        cov = Kss - xp.sum(KsU * KsU * g[None, :], axis=1)
    else:
        cov = Kss - (KsU * g[None, :]) @ KsU.T
    return mean, cov


def ensemble_covariance(
    K_train_train,
    K_test_train,
    K_test_test,
    *,
    ntk_train_train=None,
    ntk_test_train=None,
    t=math.inf,
    ridge=0.0,
    learning_rate=1.0,
    n_targets=1,
    sample_weight=None,
    eigh=None,
):
    """Covariance of the infinite ensemble of trained networks at time ``t``.

    At initialisation the outputs are a centred Gaussian process with the
    NNGP kernel ``K``; gradient flow is linear in them (Lee et al., 2019), so
    after time ``t`` the test outputs stay Gaussian with::

        P   = Theta_* T(t),   T(t) = V diag((1 - exp(-a eta t / N)) / a) V^T
        cov = K_** - P K_*^T - K_* P^T + P K P^T

    where ``Theta + ridge I = V diag(a) V^T`` is the regularised NTK on the
    training rows and ``N = n_train * n_targets``. At ``t = inf`` this is
    neural-tangents' ``gp_inference(get="ntk")`` covariance. Without
    ``ntk_*`` (``Theta = K``) it is the ensemble obtained by training the
    readout layer only; ``t = 0`` gives the prior ``K_**``.

    Parameters
    ----------
    K_train_train : array of shape (n_train, n_train)
        NNGP kernel on the training rows.
    K_test_train : array of shape (n_test, n_train)
        NNGP kernel between test and training rows.
    K_test_test : array of shape (n_test, n_test) or (n_test,)
        NNGP kernel on the test rows, or its diagonal (then only variances
        are computed).
    ntk_train_train, ntk_test_train : arrays, default=None
        The NTK on the same blocks; None trains the readout only
        (``Theta = K``). ``ntk_train_train`` may be None when ``eigh`` is
        given.
    t : float or 1-D sequence of float, default=inf
        Gradient-flow time(s) >= 0.
    ridge : float, default=0.0
        Absolute ridge added to the NTK (see :func:`diag_reg_to_ridge`).
    learning_rate : float, default=1.0
        Learning rate ``eta``.
    n_targets : int, default=1
        Number of outputs trained together; the time scale divides by
        ``N = n_train * n_targets`` as neural-tangents does. The covariance
        is the same for every output.
    sample_weight : array of shape (n_train,), default=None
        Weights of the training loss (``Theta`` then becomes
        ``W^{1/2} Theta W^{1/2}`` in ``T``; see :func:`gradient_flow_dual_coef`).
    eigh : tuple (evals, evecs), default=None
        :func:`kernel_eigh` of the trained kernel (``ntk_train_train``, or
        ``K_train_train`` when no NTK is given) with the same weights.

    Returns
    -------
    cov : array
        ``(n_test, n_test)``, or ``(n_test,)`` variances when ``K_test_test``
        is 1-D; a leading time axis when ``t`` is a sequence. Observation
        noise is not included.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import nngp_ntk_kernels
    >>> from sknetk.dynamics import ensemble_covariance
    >>> rng = np.random.default_rng(0)
    >>> X, X_test = rng.normal(size=(10, 3)), rng.normal(size=(4, 3))
    >>> K, Theta = nngp_ntk_kernels(X)
    >>> Ks, Thetas = nngp_ntk_kernels(X_test, X)
    >>> Kss, _ = nngp_ntk_kernels(X_test)
    >>> var = ensemble_covariance(K, Ks, np.diag(Kss), ntk_train_train=Theta,
    ...                           ntk_test_train=Thetas, t=[0.0, np.inf])
    >>> bool(np.allclose(var[0], np.diag(Kss))), bool(np.all(var[1] < var[0]))
    (True, True)
    """
    if ntk_test_train is None and ntk_train_train is not None:
        raise ValueError("Pass ntk_test_train together with ntk_train_train.")
    trained = ntk_train_train if ntk_test_train is not None else K_train_train
    xp, evals, U = _decomposition(trained, sample_weight, eigh)
    n = U.shape[0]
    K = as_float64(xp, K_train_train)
    if K.shape != (n, n):
        raise ValueError(f"K_train_train must have shape ({n}, {n}), got {K.shape}.")
    Ks = as_float64(xp, K_test_train)
    if Ks.ndim != 2 or Ks.shape[1] != n:
        raise ValueError(
            f"K_test_train must have shape (n_test, {n}), got {tuple(Ks.shape)}."
        )
    m = Ks.shape[0]
    Kss = _check_test_test(xp, K_test_test, m)
    Ths = (
        Ks
        if ntk_test_train is None
        else _check_cross(xp, ntk_test_train, "ntk_test_train", m, n)
    )
    n_targets = check_count(n_targets, "n_targets")
    times, scalar = _check_times(t)
    filters, _, _ = flow_filters(
        xp,
        evals,
        times,
        check_nonnegative(ridge, "ridge"),
        check_positive(learning_rate, "learning_rate"),
        max(n * n_targets, 1),
    )
    ThsU = Ths @ U  # Theta_* in the eigenbasis
    KsU = Ks @ U
    KUU = U.T @ (K @ U)  # the NNGP in the NTK's eigenbasis
    out = []
    for i in range(filters.shape[0]):
        g = filters[i, :]
        PV = ThsU * g[None, :]  # P = PV U^T
        if Kss.ndim == 1:
            cross = xp.sum(PV * KsU, axis=1)
            quad = xp.sum((PV @ KUU) * PV, axis=1)
            out.append(Kss - 2.0 * cross + quad)
        else:
            cross = PV @ KsU.T
            out.append(Kss - cross - cross.T + (PV @ KUU) @ PV.T)
    return _finish_times(xp.stack(out, axis=0), scalar)
