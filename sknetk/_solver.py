"""Exact kernel ridge solve with honest numerics: Cholesky, else eigendecomposition.

:func:`solve_kernel_ridge` returns the dual coefficients ``c`` of

.. math:: (K + \\alpha I)\\, c = y

(with sample weights, the weighted problem of scikit-learn's ``KernelRidge``),
in float64 whatever the input precision. It tries a Cholesky factorisation;
when that fails, its estimated condition number exceeds ``1 / (n * eps)``
(LAPACK ``pocon``) or it gives non-finite values, it warns
with :class:`~sknetk.exceptions.IllConditionedKernelWarning` and falls back to
an eigendecomposition that treats the eigenvalues below a relative tolerance
as zero (the minimum-norm least-squares solution). It never returns NaN or
infinity: a non-finite kernel is refused with a ``ValueError``.

The function is pure (no estimator state) and written against an array
namespace: NumPy goes through LAPACK (SciPy) with a single ``n x n`` working
copy; other namespaces (CuPy, ``array_api_strict``) use ``xp.linalg``.
"""

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from ._array_api import get_namespace, is_numpy_namespace
from ._linalg import (
    EPS,
    add_to_diagonal,
    as_float64,
    check_finite_kernel,
    check_nonnegative,
    check_sample_weight,
    cho_solve_inplace,
    cho_solve_xp,
    cholesky_inplace,
    fortran_working_copy,
    norm1_symmetric,
    norm1_upper,
    norm1_xp,
    pinv_solve,
    pocon,
    reciprocal_condition,
    scale_rows_and_columns,
)
from ._params import ALPHA_SCALES
from .exceptions import IllConditionedKernelWarning

__all__ = [
    "solve_kernel_ridge",
    "cholesky_solve",
    "CholeskySolve",
    "effective_alpha",
    "ALPHA_SCALES",
    "blas_matmul",
    "rcond_threshold",
    "singular_reason",
    "warn_fallback",
]


def blas_matmul(A, B):
    """``A @ B`` for NumPy float64 arrays, through SciPy's BLAS.

    NumPy's and SciPy's wheels each carry their own OpenBLAS, whose idle
    threads keep spinning for a while after a call. A multi-threaded NumPy
    product just before the Cholesky factorisation (SciPy's LAPACK) leaves
    the two thread pools competing for the cores: on the 2-core development
    VM a 1600 x 1600 ``potrf`` took 43 ms right after a NumPy product instead
    of 22 ms. Products that alternate with :func:`solve_kernel_ridge` (the
    prediction of a cached kernel in a grid search) go through SciPy's BLAS
    here, so that one pool serves both. Other inputs fall back to ``A @ B``.

    Parameters
    ----------
    A : ndarray of shape (m, n)
    B : ndarray of shape (n,) or (n, k)

    Returns
    -------
    ndarray of shape (m,) or (m, k)
        Equal to ``A @ B`` up to rounding.
    """
    if (
        isinstance(A, np.ndarray)
        and isinstance(B, np.ndarray)
        and A.ndim == 2
        and B.ndim in (1, 2)
        and A.shape[1] == B.shape[0]
        and A.dtype == np.float64
        and B.dtype == np.float64
        and A.flags.c_contiguous
        and min(A.shape) > 0
        and B.size > 0
    ):
        B2 = np.asfortranarray(B.reshape(B.shape[0], -1))
        out = blas.dgemm(1.0, A.T, B2, trans_a=True)
        return out[:, 0] if B.ndim == 1 else np.ascontiguousarray(out)
    return A @ B


def effective_alpha(alpha, alpha_scale, kernel_diag=None, sample_weight=None):
    """The ridge actually added to the kernel's diagonal.

    Parameters
    ----------
    alpha : float
        The user's ``alpha`` (>= 0).
    alpha_scale : {"absolute", "mean_diag"}
        ``"absolute"`` returns ``alpha`` unchanged, as in ``KernelRidge``.
        ``"mean_diag"`` returns ``alpha * mean(diag(K))``, which is
        neural-tangents' ``diag_reg`` with its default ``trace(K) / n``
        scaling; the mean is weighted by ``sample_weight`` when given, so that
        an integer weight is the same as repeating the row.
    kernel_diag : array of shape (n_samples,), default=None
        Diagonal of the training kernel; required for ``"mean_diag"``.
    sample_weight : array of shape (n_samples,), default=None
        Non-negative weights, not all zero.

    Returns
    -------
    alpha_eff : float
        The effective ridge.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._solver import effective_alpha
    >>> effective_alpha(0.1, "absolute")
    0.1
    >>> effective_alpha(0.1, "mean_diag", np.array([1.0, 3.0]))
    0.2
    """
    alpha = float(alpha)
    if alpha_scale == "absolute":
        return alpha
    if alpha_scale != "mean_diag":
        raise ValueError(
            f"alpha_scale must be one of {ALPHA_SCALES}, got {alpha_scale!r}."
        )
    if kernel_diag is None:
        raise ValueError('alpha_scale="mean_diag" needs the kernel diagonal.')
    xp = get_namespace(kernel_diag, sample_weight)
    diag = xp.astype(xp.asarray(kernel_diag), xp.float64)
    if sample_weight is None:
        mean = xp.mean(diag) if diag.shape[0] else 0.0
    else:
        sw = xp.astype(xp.asarray(sample_weight), xp.float64)
        mean = xp.sum(sw * diag) / xp.sum(sw)
    return alpha * float(mean)


def solve_kernel_ridge(K, y, alpha, sample_weight=None, *, overwrite_K=False):
    """Dual coefficients of kernel ridge regression, ``(K + alpha I)^-1 y``.

    With ``sample_weight`` ``w``, solves the weighted problem as
    scikit-learn's ``KernelRidge`` does: ``c = S (S K S + alpha I)^-1 S y``
    with ``S = diag(sqrt(w))``. A zero weight removes its sample (its dual
    coefficient is zero and the others are those of the fit without it) as
    long as ``alpha > 0``.

    Parameters
    ----------
    K : array of shape (n_samples, n_samples)
        Symmetric positive semi-definite kernel matrix (any real dtype; the
        solve is in float64).
    y : array of shape (n_samples,) or (n_samples, n_targets)
        Targets.
    alpha : float
        Ridge added to the diagonal (>= 0).
    sample_weight : array of shape (n_samples,), default=None
        Non-negative, finite weights.
    overwrite_K : bool, default=False
        Allow the NumPy path to work in ``K``'s memory (when ``K`` is a
        float64 contiguous array), saving one ``n x n`` copy. ``K`` is then
        left in an unspecified state.

    Returns
    -------
    dual_coef : array of shape (n_samples,) or (n_samples, n_targets)
        Same shape as ``y``, float64, same array namespace as ``K``; always
        finite.

    Raises
    ------
    ValueError
        If ``K`` or ``y`` holds NaN or infinity, or the shapes do not match.

    Warns
    -----
    IllConditionedKernelWarning
        When Cholesky fails, or the estimated reciprocal condition number
        ``1 / (||A||_1 ||A^-1||_1)`` of ``A = S K S + alpha I`` (LAPACK
        ``pocon`` on the factor; on other namespaces the same Hager/Higham
        estimator written against the array API) is below ``n * eps``
        (:func:`rcond_threshold`): the solution would then carry no
        guaranteed digit. The eigendecomposition fallback then zeroes the
        eigenvalues below ``n * eps * max|eigenvalue|``.

    Notes
    -----
    On NumPy the factorisation is a blocked Cholesky whose LAPACK ``potrf``
    calls never exceed 4,096 rows, with ``trsm``/``syrk`` for the panels and
    trailing updates, in place on the one working copy
    (:func:`sknetk._linalg.cholesky_inplace`): OpenBLAS 0.3.30/0.3.31's own
    multithreaded ``potrf`` crashes the process at ``n = 16,000`` on AVX-512
    machines. The condition estimate costs two to five triangular solves
    (``O(n^2)``). See the "Scaling" page of the user guide.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._solver import solve_kernel_ridge
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> solve_kernel_ridge(K, np.array([1.0, 0.0]), alpha=1.0)
    array([ 0.375, -0.125])

    A singular system (two identical rows, no ridge) warns and returns the
    minimum-norm solution instead of NaN:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     c = solve_kernel_ridge(np.ones((2, 2)), np.array([1.0, 1.0]), 0.0)
    >>> c, caught[0].category.__name__
    (array([0.5, 0.5]), 'IllConditionedKernelWarning')
    """
    xp = get_namespace(K, y, sample_weight)
    if is_numpy_namespace(xp):
        return cholesky_solve(K, y, alpha, sample_weight, overwrite_K=overwrite_K).dual
    alpha = _check_problem(K, y, alpha)
    return _solve_xp(xp, K, y, alpha, sample_weight)


def _check_problem(K, y, alpha):
    """``alpha`` as a float, after the checks of ``alpha`` and the shapes."""
    alpha = check_nonnegative(alpha, "alpha")
    n = K.shape[0]
    if K.ndim != 2 or K.shape[1] != n:
        raise ValueError(f"K must be a square matrix, got shape {tuple(K.shape)}.")
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows but K has {n}; they must match.")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got {y.ndim} dimensions.")
    return alpha


def _checked(xp, K, y, sample_weight):
    """``(sample_weight, y)`` in float64, checked, with ``K`` finite."""
    sw = check_sample_weight(xp, sample_weight, K.shape[0])
    y = as_float64(xp, y)
    if not bool(xp.all(xp.isfinite(y))):
        raise ValueError("y contains NaN or infinity.")
    check_finite_kernel(xp, K)
    return sw, y


def warn_fallback(reason, stacklevel=3):
    """Warn that ``K + alpha I`` is solved by eigendecomposition: ``reason``
    (a sentence) and the pseudo-inverse rule that follows.

    The one :class:`~sknetk.exceptions.IllConditionedKernelWarning` of the
    exact solvers, CPU and GPU.
    """
    warnings.warn(
        f"{reason} Solving it by eigendecomposition instead, treating "
        "eigenvalues below n * eps * max|eigenvalue| as zero (minimum-norm "
        "least-squares solution). Increase alpha, or use "
        "alpha_scale='mean_diag', to get a well-posed problem.",
        IllConditionedKernelWarning,
        stacklevel=stacklevel + 1,
    )


def _warn_fallback(reason):
    warn_fallback(f"The regularised kernel matrix K + alpha*I is {reason}.")


def rcond_threshold(n):
    """Smallest acceptable estimated reciprocal condition number: ``n * eps``.

    The forward error of a Cholesky solve is bounded by about
    ``n * eps * cond(A)`` relative to the solution (Higham, *Accuracy and
    Stability of Numerical Algorithms*, ch. 10), so below this threshold the
    bound exceeds 1: not one digit of the dual coefficients is guaranteed, and
    the huge components along nearly null directions cancel on the training
    rows but not elsewhere (wild predictions). The fallback's eigenvalue
    cut-off (``n * eps * max|eigenvalue|``) is the same level.
    """
    return max(n, 1) * EPS


def singular_reason(rcond, n):
    """Why a factor with estimated reciprocal condition ``rcond`` is refused."""
    return (
        f"singular to working precision (estimated reciprocal condition number "
        f"{rcond:.2g} below n * eps = {rcond_threshold(n):.2g})"
    )


# ---------------------------------------------------------------------------
# NumPy: LAPACK on one working copy
# ---------------------------------------------------------------------------
class CholeskySolve(NamedTuple):
    """What :func:`cholesky_solve` returns.

    Attributes
    ----------
    dual : ndarray
        The dual coefficients (same shape as ``y``), as
        :func:`solve_kernel_ridge` returns them.
    factor : ndarray of shape (n, n) or None
        Fortran-ordered; its lower triangle holds the Cholesky factor ``L`` of
        ``A = W^1/2 K W^1/2 + alpha I`` and its strict upper triangle ``A``.
        None when the solve fell back to the eigendecomposition.
    scaled : ndarray of shape (n, n_targets) or None
        ``A^-1 W^1/2 y``, so that ``dual = W^1/2 scaled`` (None with
        ``factor``).
    """

    dual: Any
    factor: Any
    scaled: Any


def cholesky_solve(K, y, alpha, sample_weight=None, *, overwrite_K=False):
    """:func:`solve_kernel_ridge` on NumPy, also returning the factor it used.

    The same checks, warnings and results as :func:`solve_kernel_ridge`
    (which calls it), for callers that reuse the Cholesky factor after the
    solve (the leave-one-out values of :mod:`sknetk._calibration`).

    Returns
    -------
    result : CholeskySolve
        ``dual``, and the ``factor`` with ``scaled`` (None after the
        eigendecomposition fallback).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._solver import cholesky_solve
    >>> out = cholesky_solve(np.array([[2.0, 1.0], [1.0, 2.0]]), np.ones(2), 1.0)
    >>> out.dual, np.tril(out.factor) @ np.tril(out.factor).T
    (array([0.25, 0.25]), array([[3., 1.],
           [1., 3.]]))
    """
    K = np.asarray(K)
    y = np.asarray(y)
    alpha = _check_problem(K, y, alpha)
    n = K.shape[0]
    sw = check_sample_weight(np, sample_weight, n)
    y = as_float64(np, y)
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinity.")
    if n == 0:
        check_finite_kernel(np, K)
        return CholeskySolve(np.zeros_like(y), None, None)
    ravel = y.ndim == 1
    b = y.reshape(n, -1)

    # Work on a Fortran-ordered symmetric matrix F (K, or K's transpose, when
    # allowed; else a copy, by memcpy for a C-ordered K). The factorisation
    # writes only the lower triangle of F; the strict upper triangle keeps
    # the matrix, so the fallback needs no second n x n copy.
    F = fortran_working_copy(K, overwrite=overwrite_K)
    intact = not np.may_share_memory(F, K)  # K itself can still be checked
    idx = np.arange(n)
    if sw is not None:
        # Before the weights scale it (a finite entry times a large weight
        # may overflow): the finiteness check of K itself.
        check_finite_kernel(np, F.T)
        root = np.sqrt(sw)
        F = scale_rows_and_columns(F, root)
        b = b * root[:, None]
    kernel_diag = None if intact or sw is not None or not alpha else F[idx, idx].copy()
    F = add_to_diagonal(F, alpha)
    diag = F[idx, idx].copy()
    # The 1-norm for pocon, in a pass that is also the finiteness check
    # (dlange/dlansy propagate NaN and infinity). When K is still intact or
    # was checked already, only the upper triangle and diagonal of F are read
    # (half a pass): a non-finite entry below the diagonal cannot give a
    # finite factor (it reaches the pivot of its row, L_ii^2 = A_ii - sum of
    # L_ik^2), so it ends on the failure path below, which checks K itself
    # before any fallback.
    checked_below = sw is not None
    if intact or checked_below:
        anorm = norm1_upper(F)
    else:
        anorm = norm1_symmetric(F)
        checked_below = True
    if not math.isfinite(anorm) and sw is None:
        if intact:
            check_finite_kernel(np, K)
        else:
            if kernel_diag is not None:
                F[idx, idx] = kernel_diag
            check_finite_kernel(np, F.T)
            F[idx, idx] = diag
        # (only the sum overflowed: pocon then finds the matrix singular)

    # Blocked in-place Cholesky (never one LAPACK potrf on more than 4096
    # rows: OpenBLAS's multithreaded potrf crashes at n = 16,000), then
    # LAPACK pocon's condition estimate on the factor.
    info = cholesky_inplace(F)
    x = None
    if info != 0 or not np.isfinite(F[idx, idx]).all():
        reason = "not positive definite"
    else:
        rcond = pocon(F, anorm)
        if rcond < rcond_threshold(n):
            reason = singular_reason(rcond, n)
        else:
            x = cho_solve_inplace(F, np.array(b, dtype=np.float64, order="F"))
            if not np.isfinite(x).all():
                x = None
                reason = "numerically singular (the Cholesky solve is not finite)"
    if x is None and not checked_below:
        check_finite_kernel(np, K)  # a NaN or infinity below the diagonal
    factor = scaled = None
    if x is None:
        _warn_fallback(reason)
        # The strict upper triangle still holds the matrix; restore its
        # diagonal and decompose the upper triangle.
        F[idx, idx] = diag
        w, Q = linalg.eigh(F, lower=False, overwrite_a=True, check_finite=False)
        x = pinv_solve(np, w, Q, b)
        x = np.ascontiguousarray(x)
    else:
        factor, scaled = F, x
        x = np.array(x, order="C")
    if sw is not None:
        x *= np.sqrt(sw)[:, None]
    return CholeskySolve(x.ravel() if ravel else x, factor, scaled)


# ---------------------------------------------------------------------------
# Other namespaces (CuPy, array_api_strict): xp.linalg
# ---------------------------------------------------------------------------
def _solve_xp(xp, K, y, alpha, sample_weight):
    n = K.shape[0]
    sw, y = _checked(xp, K, y, sample_weight)
    A = xp.astype(K, xp.float64, copy=True)
    if n == 0:
        return xp.zeros_like(y)
    ravel = y.ndim == 1
    b = xp.reshape(y, (n, -1))
    if sw is not None:
        root = xp.sqrt(sw)
        A = scale_rows_and_columns(A, root)
        b = b * root[:, None]
    A = add_to_diagonal(A, alpha)

    anorm = norm1_xp(xp, A)
    x = None
    try:
        L = xp.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        L = None
    reason = "not positive definite"
    if L is not None and bool(xp.all(xp.isfinite(xp.linalg.diagonal(L)))):

        def solve(B):
            return cho_solve_xp(xp, L, B)

        rcond = reciprocal_condition(xp, solve, anorm, n)
        if rcond < rcond_threshold(n):
            reason = singular_reason(rcond, n)
        else:
            x = solve(b)
            if not bool(xp.all(xp.isfinite(x))):
                x = None
                reason = "numerically singular (the Cholesky solve is not finite)"
    if x is None:
        _warn_fallback(reason)
        w, Q = xp.linalg.eigh(A)
        x = pinv_solve(xp, w, Q, b)
    if sw is not None:
        x = x * xp.sqrt(sw)[:, None]
    return xp.reshape(x, (n,)) if ravel else x
