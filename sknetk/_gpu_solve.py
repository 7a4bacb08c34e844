"""Kernel ridge solves on the GPU (CuPy / cuSOLVER), with honest failure.

CuPy's ``cupy.linalg.cholesky`` returns NaNs silently for a matrix that is not
positive definite unless told otherwise; here the factorisation status
(``devInfo``) is always read back, and the factor is judged by the CPU
solver's rule (:func:`sknetk._solver.solve_kernel_ridge`): a failed
factorisation, or an estimated reciprocal condition number below ``n * eps``
(singular to working precision; Hager/Higham 1-norm estimation with the
factor, since cuSOLVER has no ``pocon``), raises
:class:`numpy.linalg.LinAlgError`, so that :func:`solve_ridge_gpu` falls back
to the same pseudo-inverse as the CPU, with the same warning, instead of
returning NaN or a solution dominated by rounding.

:func:`cholesky_solve_inplace` factorises ``K + alpha I`` in place (cuSOLVER
``potrf``/``potrs``), so a fit needs one n x n matrix of GPU memory, not two.

Every function here also runs on other array namespaces (``array_api_strict``
in the CPU test suite) through ``xp.linalg``: only the in-place cuSOLVER calls
are CuPy specific.
"""

import numpy as np

from ._array_api import get_namespace, is_cupy_namespace
from ._linalg import (
    add_to_diagonal,
    check_finite_kernel,
    check_sample_weight,
    cho_solve_xp,
    norm1_xp,
    pinv_solve,
    reciprocal_condition,
    scale_rows_and_columns,
)
from ._solver import rcond_threshold, singular_reason, warn_fallback


def _cusolver_functions(dtype):
    from cupy_backends.cuda.libs import cusolver

    t = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}[np.dtype(dtype)]
    return (
        getattr(cusolver, t + "potrf_bufferSize"),
        getattr(cusolver, t + "potrf"),
        getattr(cusolver, t + "potrs"),
        cusolver.CUBLAS_FILL_MODE_LOWER
        if hasattr(cusolver, "CUBLAS_FILL_MODE_LOWER")
        else _lower_fill_mode(),
    )


def _lower_fill_mode():
    from cupy_backends.cuda.libs import cublas

    return cublas.CUBLAS_FILL_MODE_LOWER


def _check_factor(xp, status, pivots, n, solve=None, anorm=None):
    """Raise ``LinAlgError`` unless the Cholesky factor is usable.

    ``status`` is LAPACK's ``info`` (0: success), ``pivots`` the factor's
    diagonal ``L_jj``, ``solve(B)`` solves with the factored matrix and
    ``anorm`` is its 1-norm. The rule is the CPU solver's: a failed
    factorisation, a non-finite pivot, or an estimated reciprocal condition
    number (Hager/Higham, :func:`sknetk._linalg.reciprocal_condition`, the
    method of LAPACK ``pocon``, which CuPy lacks) below ``n * eps``.
    """
    if status != 0:
        raise np.linalg.LinAlgError(
            f"Cholesky factorisation failed (info={status}): the kernel matrix "
            "K + alpha*I is not positive definite."
        )
    if not bool(xp.all(xp.isfinite(pivots))):
        raise np.linalg.LinAlgError(
            "Cholesky factorisation gave non-finite values: the kernel matrix "
            "K + alpha*I is not positive definite."
        )
    rcond = reciprocal_condition(xp, solve, anorm, n)
    if rcond < rcond_threshold(n):
        raise np.linalg.LinAlgError(
            f"The kernel matrix K + alpha*I is {singular_reason(rcond, n)}."
        )


def _cholesky_solve_xp(xp, K, Y):
    """:func:`cholesky_solve_inplace` for namespaces other than CuPy."""
    n = K.shape[0]
    one_d = Y.ndim == 1
    B = xp.reshape(xp.astype(Y, K.dtype), (n, -1))
    if n == 0:
        return B[:, 0] if one_d else B
    anorm = norm1_xp(xp, K)
    try:
        L = xp.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        L = None
    if L is None:
        _check_factor(xp, 1, None, n)

    def solve(R):
        return cho_solve_xp(xp, L, R)

    _check_factor(xp, 0, xp.linalg.diagonal(L), n, solve, anorm)
    X = solve(B)
    if not bool(xp.all(xp.isfinite(X))):
        raise np.linalg.LinAlgError(
            "The Cholesky solve is not finite: the kernel matrix K + alpha*I "
            "is numerically singular."
        )
    return X[:, 0] if one_d else X


def cholesky_solve_inplace(K, Y):
    """Solve ``K X = Y`` for symmetric positive definite ``K`` on the GPU.

    ``K`` (square, C-contiguous CuPy array) is overwritten by its Cholesky
    factor; ``Y`` is not modified.

    On other array namespaces ``K`` is left as it is (``xp.linalg``).

    Raises
    ------
    numpy.linalg.LinAlgError
        If the factorisation fails (``K`` not numerically positive definite),
        its estimated reciprocal condition number is below ``n * eps`` (the
        CPU solver's rule) or the solution is not finite.
    """
    xp = get_namespace(K, Y)
    n = K.shape[0]
    if K.ndim != 2 or K.shape[1] != n:
        raise ValueError("K must be a square matrix.")
    if not is_cupy_namespace(xp):
        return _cholesky_solve_xp(xp, K, Y)

    import cupy
    from cupy.cuda import device as cuda_device

    if not K.flags.c_contiguous:
        raise ValueError("K must be a square C-contiguous matrix.")
    one_d = Y.ndim == 1
    B = cupy.array(Y.reshape(n, -1), dtype=K.dtype, order="F", copy=True)
    if n == 0:
        return B[:, 0] if one_d else B
    buffer_size, potrf, potrs, lower = _cusolver_functions(K.dtype)
    handle = cuda_device.get_cusolver_handle()
    info = cupy.zeros(1, dtype=np.int32)
    anorm = norm1_xp(xp, K)
    # K is symmetric, so its row-major buffer is also the column-major K.
    lwork = buffer_size(handle, lower, n, K.data.ptr, n)
    work = cupy.empty(max(int(lwork), 1), dtype=K.dtype)
    potrf(handle, lower, n, K.data.ptr, n, work.data.ptr, lwork, info.data.ptr)
    del work

    def solve(R):
        """``(K + alpha I)^-1 R`` with the factor (cuSOLVER potrs)."""
        X = cupy.array(R, dtype=K.dtype, order="F", copy=True)
        potrs(handle, lower, n, X.shape[1], K.data.ptr, n, X.data.ptr, n, info.data.ptr)
        return X

    # The factor's diagonal is the same in either storage order.
    status = int(info.get()[0])
    _check_factor(xp, status, K.diagonal(), n, solve, anorm)
    potrs(handle, lower, n, B.shape[1], K.data.ptr, n, B.data.ptr, n, info.data.ptr)
    status = int(info.get()[0])
    if status != 0 or not bool(cupy.isfinite(B).all()):
        raise np.linalg.LinAlgError(
            f"Cholesky solve failed on the GPU (cuSOLVER info={status})."
        )
    B = cupy.ascontiguousarray(B)
    return B[:, 0] if one_d else B


def eigh_solve(K, Y, alpha):
    """Solve ``(K + alpha I) X = Y`` by eigendecomposition, dropping null directions.

    The CPU solver's pseudo-inverse: eigenvalues of ``K + alpha I`` of
    magnitude below ``n * eps * max|eigenvalue|`` are treated as zero, so
    duplicated rows with ``alpha = 0`` give a finite, minimum-norm solution.
    Works on any array namespace with ``linalg.eigh``.
    """
    xp = get_namespace(K, Y)
    w, V = xp.linalg.eigh(K)
    Y2 = Y if Y.ndim == 2 else Y[:, None]
    X = pinv_solve(xp, w + alpha, V, xp.astype(Y2, V.dtype))
    return X if Y.ndim == 2 else X[:, 0]


def solve_ridge_gpu(make_kernel, Y, alpha, sample_weight=None):
    """Solve ``(K + alpha I) X = Y`` on the GPU, falling back to eigh with a warning.

    With ``sample_weight`` ``w`` it solves the weighted problem as the CPU
    solver (:func:`sknetk._solver.solve_kernel_ridge`) does:
    ``X = S (S K S + alpha I)^-1 S Y`` with ``S = diag(sqrt(w))``, the kernel
    weighted in place.

    Parameters
    ----------
    make_kernel : callable
        ``make_kernel() -> K``, a fresh CuPy kernel matrix (called again only
        if the in-place Cholesky fails, since that destroys ``K``).
    Y : cupy.ndarray of shape (n,) or (n, k)
        Right-hand side.
    alpha : float
        Ridge added to the diagonal.
    sample_weight : cupy.ndarray of shape (n,), default=None
        Non-negative, finite weights.

    Returns
    -------
    X : cupy.ndarray
        The solution, finite.

    Raises
    ------
    ValueError
        If the kernel holds NaN or infinity (as the CPU solver), or the
        weights are invalid.

    Warns
    -----
    IllConditionedKernelWarning
        When the Cholesky factor is unusable by the CPU solver's rule; the
        pseudo-inverse of :func:`eigh_solve` is then returned.
    """
    K = make_kernel()
    xp = get_namespace(K, Y)
    on_gpu = is_cupy_namespace(xp)
    w = check_sample_weight(xp, sample_weight, K.shape[0])
    root = None if w is None else xp.sqrt(w)

    def weighted(K):
        check_finite_kernel(xp, K)
        return K if root is None else scale_rows_and_columns(K, root)

    def scaled(A):
        if root is None:
            return A
        return A * (root if A.ndim == 1 else root[:, None])

    Y = scaled(Y)
    K = add_to_diagonal(weighted(K), alpha)
    try:
        return scaled(cholesky_solve_inplace(K, Y))
    except np.linalg.LinAlgError as exc:
        warn_fallback(str(exc))
    del K
    if on_gpu:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    X = eigh_solve(weighted(make_kernel()), Y, alpha)
    if not bool(xp.all(xp.isfinite(X))):  # pragma: no cover - defensive
        raise np.linalg.LinAlgError("The eigendecomposition fallback was not finite.")
    return scaled(X)
