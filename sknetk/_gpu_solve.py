"""Kernel ridge solves on the GPU (CuPy / cuSOLVER), with honest failure.

CuPy's ``cupy.linalg.cholesky`` returns NaNs silently for a matrix that is not
positive definite unless told otherwise; here the factorisation status
(``devInfo``) is always read back and a failed factorisation raises
:class:`numpy.linalg.LinAlgError`, so that callers can fall back (eigh) with a
warning instead of returning NaN.

:func:`cholesky_solve_inplace` factorises ``K + alpha I`` in place (cuSOLVER
``potrf``/``potrs``), so a fit needs one n x n matrix of GPU memory, not two.
"""

import warnings

import numpy as np

from .exceptions import IllConditionedKernelWarning


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


def add_to_diagonal(K, value):
    """``K[i, i] += value`` in place, for a square C-contiguous CuPy matrix."""
    n = K.shape[0]
    if value:
        diag = K.reshape(-1)[:: n + 1]
        diag += value
    return K


def cholesky_solve_inplace(K, Y):
    """Solve ``K X = Y`` for symmetric positive definite ``K`` on the GPU.

    ``K`` (square, C-contiguous CuPy array) is overwritten by its Cholesky
    factor; ``Y`` is not modified.

    Raises
    ------
    numpy.linalg.LinAlgError
        If the factorisation fails (``K`` not numerically positive definite)
        or the solution is not finite.
    """
    import cupy
    from cupy.cuda import device as cuda_device

    n = K.shape[0]
    if K.ndim != 2 or K.shape[1] != n or not K.flags.c_contiguous:
        raise ValueError("K must be a square C-contiguous matrix.")
    one_d = Y.ndim == 1
    B = cupy.array(Y.reshape(n, -1), dtype=K.dtype, order="F", copy=True)
    if n == 0:
        return B[:, 0] if one_d else B
    buffer_size, potrf, potrs, lower = _cusolver_functions(K.dtype)
    handle = cuda_device.get_cusolver_handle()
    info = cupy.zeros(1, dtype=np.int32)
    # K is symmetric, so its row-major buffer is also the column-major K.
    lwork = buffer_size(handle, lower, n, K.data.ptr, n)
    work = cupy.empty(max(int(lwork), 1), dtype=K.dtype)
    potrf(handle, lower, n, K.data.ptr, n, work.data.ptr, lwork, info.data.ptr)
    status = int(info.get()[0])
    if status != 0:
        raise np.linalg.LinAlgError(
            f"Cholesky factorisation failed on the GPU (cuSOLVER info={status}): "
            "the kernel matrix is not numerically positive definite."
        )
    del work
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

    Eigenvalues of ``K + alpha I`` below ``n * eps * max`` are treated as zero
    (a pseudo-inverse), so duplicated rows with ``alpha = 0`` give a finite,
    minimum-norm solution. Works on any array namespace with ``linalg.eigh``.
    """
    from ._array_api import get_namespace

    xp = get_namespace(K)
    n = K.shape[0]
    w, V = xp.linalg.eigh(K)
    w = w + alpha
    eps = float(np.finfo(np.float64 if K.dtype == xp.float64 else np.float32).eps)
    cutoff = max(n, 1) * eps * float(xp.max(xp.abs(w))) if n else 0.0
    keep = w > cutoff
    inv = xp.where(keep, 1.0 / xp.where(keep, w, xp.ones_like(w)), xp.zeros_like(w))
    Y2 = Y if Y.ndim == 2 else Y[:, None]
    X = V @ (inv[:, None] * (V.T @ Y2))
    return X if Y.ndim == 2 else X[:, 0]


def solve_ridge_gpu(make_kernel, Y, alpha):
    """Solve ``(K + alpha I) X = Y`` on the GPU, falling back to eigh with a warning.

    Parameters
    ----------
    make_kernel : callable
        ``make_kernel() -> K``, a fresh CuPy kernel matrix (called again only
        if the in-place Cholesky fails, since that destroys ``K``).
    Y : cupy.ndarray of shape (n,) or (n, k)
        Right-hand side.
    alpha : float
        Ridge added to the diagonal.

    Returns
    -------
    X : cupy.ndarray
        The solution, finite.
    """
    import cupy

    K = make_kernel()
    add_to_diagonal(K, alpha)
    try:
        return cholesky_solve_inplace(K, Y)
    except np.linalg.LinAlgError as exc:
        warnings.warn(
            f"{exc} Falling back to an eigendecomposition (pseudo-inverse); "
            "consider a larger alpha.",
            IllConditionedKernelWarning,
            stacklevel=3,
        )
    del K
    cupy.get_default_memory_pool().free_all_blocks()
    X = eigh_solve(make_kernel(), Y, alpha)
    if not bool(cupy.isfinite(X).all()):  # pragma: no cover - defensive
        raise np.linalg.LinAlgError("The eigendecomposition fallback was not finite.")
    return X
