"""Nystrom kernel ridge regression solved by preconditioned conjugate gradient.

This is the large-scale solver of sknetk, in the style of FALKON (Rudi,
Carratino and Rosasco, 2017). ``m`` training rows are drawn uniformly as
*centres* and the ridge problem is restricted to functions
``f(x) = sum_j b_j K(x, c_j)``:

.. math::

    \\min_b \\; \\|K_{nm} b - y\\|_W^2 + \\alpha\\, b^\\top K_{mm} b,

where ``K_nm = K(X, centres)``, ``K_mm = K(centres, centres)`` and ``W`` holds
the sample weights. It is the same ridge convention as scikit-learn's
``KernelRidge``: with every training row as a centre the predictions are
exactly those of ``KernelRidge(alpha)``. Its normal equations

.. math::

    (K_{nm}^\\top W K_{nm} + \\alpha K_{mm})\\, b = K_{nm}^\\top W y

are solved by conjugate gradient with the FALKON preconditioner built from
the centres' Cholesky factor, so that a few tens of iterations suffice
whatever the conditioning of the kernel.

Memory is planned against ``working_memory`` (MiB): ``K_nm`` is never stored
whole unless it fits half of that budget; otherwise the rows are streamed in
blocks of ``K(X_block, centres)``. See ``docs/scaling.rst`` and
:func:`nystrom_fit` for the three strategies ("cache", "gram", "stream").

All the arithmetic is written against the array namespace of the input, so
the same code runs on NumPy (including ``np.memmap`` larger than memory),
``array_api_strict`` and CuPy; dask arrays are handed to :mod:`sknetk._dask`.
"""

import functools
import math
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._array_api import device as _device
from ._array_api import get_namespace, is_cupy_namespace, is_dask, is_numpy_namespace
from ._dask import DaskRowOperator, dask_kernel_matvec, n_dask_workers
from ._linalg import (
    add_to_diagonal,
    check_count,
    check_nonnegative,
    solve_triangular,
    times_upper,
)
from .kernels import budget_bytes, nngp_kernel, ntk_kernel

__all__ = [
    "STRATEGIES",
    "kernel_block_function",
    "nystrom_fit",
    "nystrom_predict",
    "sample_centers",
]

#: Values of the ``strategy`` parameter of :func:`nystrom_fit`.
STRATEGIES = ("auto", "cache", "gram", "stream")

# Fraction of the budget one block of kernel rows may take: the block and its
# weighted copy live together (1/2), the kernel function's own tiles take the
# other half (see ``kernel_block_function``).
_BLOCK_FRACTION = 0.25
# Fraction of the budget a cached ``K_nm`` may take.
_CACHE_FRACTION = 0.5
# The ridge is floored at this multiple of ``(n_eff / m) * jitter``: directions
# that K_mm cannot see (duplicate or all-zero centres) carry only rounding
# noise of size ``eps * K``, which the preconditioner magnifies by
# ``1 / jitter``; a ridge well above the jitter keeps that noise out of the
# solution. It is ``~1e3 * n * eps`` times the mean diagonal (2e-10 of it per
# thousand rows), far below any ridge that changes a fit.
_ALPHA_FLOOR = 100.0
# Cost model of strategy="auto": the time of one pass of kernel blocks over
# K_nm, per entry, in flops of matrix product on the same device. Measured
# with the NTK (depth 3, ReLU): on a 2-core CPU a kernel entry costs about as
# much as 2e4 flops of BLAS (120 ns vs 6 Gflop/s); on an H200 with the fused
# CUDA kernel about 2e3 (45 ps vs 44 Tflop/s of float64 GEMM).
_CPU_FLOPS_PER_PASS = 2e4
_GPU_FLOPS_PER_PASS = 2e3
# CG iterations assumed by that model (the FALKON preconditioner typically
# needs 5 to 20 for tol=1e-6).
_TYPICAL_ITERATIONS = 10
# Largest relative jitter tried on the centres' kernel before giving up.
_MAX_JITTER = 1e-2


# ---------------------------------------------------------------------------
# Kernel functions and centres
# ---------------------------------------------------------------------------
def kernel_block_function(
    kernel="ntk", *, working_memory=None, n_jobs=-1, dtype=None, **kernel_params
):
    """A picklable ``kernel_fn(A, B=None)`` with fixed architecture parameters.

    The tiles of each kernel block get half of ``working_memory``; the solver
    sizes the blocks themselves from the other half.

    Parameters
    ----------
    kernel : {"ntk", "nngp"}, default="ntk"
        Which kernel of :mod:`sknetk.kernels`.
    working_memory : float, default=None
        The solver's budget in MiB (``None``: scikit-learn's
        ``working_memory``).
    n_jobs : int, default=-1
        Threads over tiles inside one block (NumPy input).
    dtype : {None, "float64", "float32"}, default=None
        Compute precision of the kernel (``None`` means float64).
    **kernel_params : dict
        ``depth``, ``activation``, ``activation_params``, ``weight_std``,
        ``bias_std``, ``parameterization``, ``width``.

    Returns
    -------
    kernel_fn : functools.partial
        ``kernel_fn(A, B)`` is ``K(A, B)``; ``kernel_fn(A)`` is ``K(A, A)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._nystrom import kernel_block_function
    >>> from sknetk.kernels import ntk_kernel
    >>> X = np.random.default_rng(0).normal(size=(5, 3))
    >>> kernel_fn = kernel_block_function("ntk", depth=2)
    >>> bool(np.allclose(kernel_fn(X, X[:2]), ntk_kernel(X, X[:2], depth=2)))
    True
    """
    functions = {"ntk": ntk_kernel, "nngp": nngp_kernel}
    if kernel not in functions:
        raise ValueError(f"kernel must be 'ntk' or 'nngp', got {kernel!r}.")
    budget = budget_bytes(working_memory)
    return functools.partial(
        functions[kernel],
        working_memory=budget / 2 / 2**20,
        n_jobs=n_jobs,
        dtype=dtype,
        **kernel_params,
    )


def sample_centers(X, n_centers, random_state=None):
    """Draw ``n_centers`` rows of ``X`` uniformly, without replacement.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        NumPy (memmaps included), any array-API array, or a dask array.
    n_centers : int
        Number of centres; all rows (in order) when ``n_centers >= n_samples``.
    random_state : int, RandomState instance or None, default=None
        Seed of the draw (``sklearn.utils.check_random_state``).

    Returns
    -------
    centers : array of shape (min(n_centers, n_samples), n_features)
        In the namespace of ``X`` (NumPy for a dask array).
    indices : ndarray of shape (min(n_centers, n_samples),)
        The sorted row indices of the centres.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._nystrom import sample_centers
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> centers, idx = sample_centers(X, 3, random_state=0)
    >>> centers.shape, bool(np.all(centers == X[idx]))
    ((3, 2), True)
    """
    n = X.shape[0]
    n_centers = check_count(n_centers, "n_centers")
    if n_centers >= n:
        idx = np.arange(n)
    else:
        rng = check_random_state(random_state)
        idx = np.sort(rng.choice(n, size=n_centers, replace=False))
    if is_dask(X):
        return np.asarray(X[idx].compute()), idx
    xp = get_namespace(X)
    if is_numpy_namespace(xp):
        return np.array(X[idx], copy=True), idx  # also reads a memmap's rows
    return xp.take(X, xp.asarray(idx, device=_device(X)), axis=0), idx


# ---------------------------------------------------------------------------
# Linear algebra helpers
# ---------------------------------------------------------------------------
def _safe_cholesky(xp, A, what):
    """Lower Cholesky factor of ``A + jitter * I``, growing the jitter on failure.

    The first jitter is ``10 * m * eps`` times the mean diagonal (the size of
    the rounding errors of a computed kernel matrix); it grows tenfold on each
    failure up to ``1e-2`` times the mean diagonal. Returns ``(L, jitter)``.
    """
    m = A.shape[0]
    eps = float(xp.finfo(A.dtype).eps)
    scale = float(xp.sum(xp.linalg.diagonal(A))) / m
    if not math.isfinite(scale):
        raise ValueError(f"The {what} contains NaN or infinity.")
    if scale <= 0.0:
        scale = 1.0
    rel = 10.0 * m * eps
    while True:
        jitter = rel * scale
        try:
            L = xp.linalg.cholesky(add_to_diagonal(A, jitter, copy=True))
            if bool(xp.all(xp.isfinite(L))):  # CuPy returns NaN, no error
                return L, jitter
        except np.linalg.LinAlgError:
            pass
        if rel >= _MAX_JITTER:
            raise np.linalg.LinAlgError(
                f"Cholesky factorisation of the {what} failed even with a jitter "
                f"of {jitter:.3g}; the kernel is not positive semi-definite."
            )
        rel *= 10.0


class _Preconditioner:
    """FALKON's preconditioner ``B`` with ``B^T (K_nm^T W K_nm + alpha K_mm) B ~ I``.

    With ``K_mm + jitter I = L L^T`` (lower Cholesky), and the Nystrom
    approximation ``K_nm^T W K_nm ~ (n_eff / m) K_mm^2`` (each centre stands
    for ``n_eff / m`` rows, ``n_eff = sum(w)``), the normal matrix is

    ``H ~ (n_eff / m) L L^T L L^T + alpha L L^T
    = L [(n_eff / m) L^T L + alpha I] L^T = L R R^T L^T``

    where ``R`` is the lower Cholesky factor of ``(n_eff / m) L^T L + alpha I``.
    Hence ``B = L^{-T} R^{-T}`` gives ``B^T H B ~ I``, and ``B^T K_mm B =
    R^{-1} R^{-T}`` exactly (up to the jitter), so the ridge term costs two
    triangular solves and ``K_mm`` need not be kept. This is Rudi et al.'s
    ``B = T^{-1} A^{-1} / sqrt(n)`` with ``T = L^T`` and ``A = R^T``, written
    for an absolute ridge ``alpha`` (their ``lambda * n``).
    """

    def __init__(self, xp, K_mm, n_eff, alpha):
        m = K_mm.shape[0]
        self.xp = xp
        self._B = None
        self.L, self.jitter = _safe_cholesky(xp, K_mm, "centres' kernel K_mm")
        self.alpha = max(alpha, _ALPHA_FLOOR * (n_eff / m) * self.jitter)
        inner = self.L.T @ self.L
        inner *= n_eff / m
        self.R, _ = _safe_cholesky(
            xp,
            add_to_diagonal(inner, self.alpha),
            "preconditioner's inner matrix",
        )

    def explicit(self):
        """``B`` as a dense upper-triangular matrix (``L^{-T}`` and ``R^{-T}``
        are both upper triangular), computed once."""
        if self._B is None:
            m = self.L.shape[0]
            eye = self.xp.eye(m, dtype=self.L.dtype, device=_device(self.L))
            self._B = self.apply(eye)
        return self._B

    def apply(self, v):
        """``B v = L^{-T} R^{-T} v`` (from CG space to coefficients)."""
        w = solve_triangular(self.xp, self.R, v, transpose=True)
        return solve_triangular(self.xp, self.L, w, transpose=True)

    def apply_t(self, u):
        """``B^T u = R^{-1} L^{-1} u`` (from coefficient space to CG space)."""
        w = solve_triangular(self.xp, self.L, u)
        return solve_triangular(self.xp, self.R, w)

    def ridge(self, v):
        """``B^T K_mm B v = R^{-1} R^{-T} v``."""
        w = solve_triangular(self.xp, self.R, v, transpose=True)
        return solve_triangular(self.xp, self.R, w)


def _conjugate_gradient(xp, apply_M, c, *, tol, max_iter, verbose=0):
    """Conjugate gradient on ``M x = c`` for all columns of ``c`` together.

    Each column has its own step sizes; a column stops moving once its
    relative residual ``||r|| / ||c||`` is at most ``tol`` (an all-zero column
    is solved by zero). Returns ``(x, n_iter, residuals)`` where ``residuals``
    lists the largest relative residual before each iteration and at the end.
    """
    x = xp.zeros_like(c)
    r = c
    p = r
    rr = xp.sum(r * r, axis=0)
    norm0 = xp.sqrt(rr)
    denom = xp.where(norm0 > 0, norm0, xp.ones_like(norm0))
    residuals = []
    n_iter = 0
    while True:
        rel = xp.sqrt(rr) / denom
        worst = float(xp.max(rel))
        residuals.append(worst)
        if verbose > 1:
            print(f"[nystrom] CG iteration {n_iter:4d}: relative residual {worst:.3e}")
        if worst <= tol or n_iter >= max_iter:
            break
        Mp = apply_M(p)
        pMp = xp.sum(p * Mp, axis=0)
        active = (rel > tol) & (pMp > 0)
        step = xp.where(active, rr / xp.where(active, pMp, 1.0), 0.0)
        x = x + step * p
        r = r - step * Mp
        rr_new = xp.sum(r * r, axis=0)
        ratio = xp.where(active & (rr > 0), rr_new / xp.where(rr > 0, rr, 1.0), 0.0)
        p = r + ratio * p
        rr = rr_new
        n_iter += 1
    return x, n_iter, residuals


# ---------------------------------------------------------------------------
# Row-block operators: K_nm^T W y and K_nm^T W K_nm v
# ---------------------------------------------------------------------------
def _row_ranges(n, rows):
    return [(i0, min(i0 + rows, n)) for i0 in range(0, n, rows)]


def _as_block(xp, A, dtype):
    """A row block of ``X``/``y``/``w`` as an array of the compute namespace."""
    if is_numpy_namespace(xp):
        return np.asarray(A, dtype=dtype)
    return xp.astype(A, dtype) if A.dtype != dtype else A


class _LocalRowOperator:
    """The products with ``K_nm`` for an in-memory (or memory-mapped) ``X``.

    ``strategy`` is one of ``"cache"`` (the blocks of ``K_nm`` are kept),
    ``"gram"`` (one pass accumulates the preconditioned Gram matrix
    ``(K_nm B)^T W (K_nm B)``, m x m) or ``"stream"`` (each product recomputes
    the blocks).

    The Gram matrix is formed in the preconditioned basis on purpose: the
    plain ``K_nm^T W K_nm`` carries rounding errors of ``eps * ||K||^2`` in
    every direction, which ``B`` (of norm up to ``1 / jitter``) magnifies
    past the identity for ill-conditioned kernels and makes CG diverge,
    whereas ``K_nm B`` holds well-scaled Nystrom features.
    """

    def __init__(self, X, centers, kernel_fn, sample_weight, rows, strategy, dtype):
        self.X, self.centers, self.kernel_fn = X, centers, kernel_fn
        self.xp = get_namespace(centers)
        self.w = sample_weight
        self.ranges = _row_ranges(X.shape[0], rows)
        self.strategy = strategy
        self.dtype = dtype
        self.blocks = None
        self.gram = None

    def _kernel(self, i0, i1):
        Xb = _as_block(self.xp, self.X[i0:i1, ...], self.dtype)
        return self.kernel_fn(Xb, self.centers)

    def _weighted(self, A, i0, i1, power=1.0):
        """Rows ``i0:i1`` of ``W^power A`` for a block ``A`` of those rows."""
        if self.w is None:
            return A
        w = self.w[i0:i1, None]
        return (w if power == 1.0 else self.xp.sqrt(w)) * A

    def rhs(self, y, precond):
        """``K_nm^T W y``; also fills the cache or the preconditioned Gram."""
        xp = self.xp
        out = None
        blocks = [] if self.strategy == "cache" else None
        B = precond.explicit() if self.strategy == "gram" else None
        for i0, i1 in self.ranges:
            K = self._kernel(i0, i1)
            part = K.T @ self._weighted(
                _as_block(xp, y[i0:i1, ...], self.dtype), i0, i1
            )
            if out is None:
                out = part
            else:
                out += part
            if blocks is not None:
                blocks.append(K)
            if B is not None:
                F = self._weighted(times_upper(xp, K, B), i0, i1, power=0.5)
                g = F.T @ F
                if self.gram is None:
                    self.gram = g
                else:
                    self.gram += g
                del F, g
        self.blocks = blocks
        return out

    def apply(self, v, precond):
        """``B^T K_nm^T W K_nm B v``."""
        if self.strategy == "gram":
            return self.gram @ v
        Bv = precond.apply(v)
        out = None
        for k, (i0, i1) in enumerate(self.ranges):
            K = self.blocks[k] if self.blocks is not None else self._kernel(i0, i1)
            part = K.T @ self._weighted(K @ Bv, i0, i1)
            out = part if out is None else out + part
        return precond.apply_t(out)


def _choose_strategy(strategy, n, m, itemsize, budget, on_gpu=False, max_iter=100):
    """Resolve ``strategy="auto"`` (see :func:`nystrom_fit`).

    ``K_nm`` is cached when it fits ``_CACHE_FRACTION`` of the budget.
    Otherwise the cost of one pass of ``"gram"`` (kernel blocks plus, per
    entry of ``K_nm``, ``3 m`` flops of BLAS on the CPU (``trmm`` and a
    matrix product) or ``4 m`` on the GPU) is compared, in units of kernel
    passes, with the ``1 + n_iter`` kernel passes of ``"stream"`` for a
    typical ``n_iter``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy != "auto":
        return strategy
    if n * m * itemsize <= _CACHE_FRACTION * budget:
        return "cache"
    flops_per_pass = _GPU_FLOPS_PER_PASS if on_gpu else _CPU_FLOPS_PER_PASS
    gram_passes = 1 + (3 if not on_gpu else 4) * m / flops_per_pass
    stream_passes = 1 + min(max_iter, _TYPICAL_ITERATIONS)
    return "gram" if gram_passes <= stream_passes else "stream"


# ---------------------------------------------------------------------------
# Public solver
# ---------------------------------------------------------------------------
def nystrom_fit(
    X,
    y,
    *,
    kernel_fn,
    n_centers,
    alpha=1.0,
    max_iter=100,
    tol=1e-6,
    random_state=None,
    working_memory=None,
    sample_weight=None,
    strategy="auto",
    verbose=0,
):
    """Fit Nystrom kernel ridge regression with FALKON-preconditioned CG.

    Solves ``min_b ||K_nm b - y||_W^2 + alpha * b^T K_mm b`` over the
    coefficients ``b`` of ``m = n_centers`` centres drawn uniformly from the
    rows of ``X``; the model predicts ``K(x, centres) @ b``. With
    ``n_centers >= n_samples`` this is exact kernel ridge regression
    (``KernelRidge(alpha)``'s predictions).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Training rows, already validated: a NumPy array or ``np.memmap``
        (read block by block, so it may exceed memory), an array-API array
        (CuPy, ``array_api_strict``), or a dask array chunked by rows (the
        row-block work then runs as dask tasks, see :mod:`sknetk._dask`).
    y : array of shape (n_samples,) or (n_samples, n_targets)
        Targets.
    kernel_fn : callable
        ``kernel_fn(A, B=None)`` returns ``K(A, B)`` (``K(A, A)`` when ``B`` is
        None; only its lower triangle is read) in the namespace of ``A``; see
        :func:`kernel_block_function`. Must be picklable for dask process
        workers.
    n_centers : int
        Number of Nystrom centres ``m``. Cost: ``O(m^2)`` memory for the
        preconditioner, ``O(m^3)`` time for its factorisations, ``O(n m)``
        per CG iteration.
    alpha : float, default=1.0
        Ridge (>= 0), as in ``KernelRidge``.
    max_iter : int, default=100
        Largest number of CG iterations.
    tol : float, default=1e-6
        CG stops when every target's residual of the preconditioned normal
        equations is at most ``tol`` times its initial value.
    random_state : int, RandomState instance or None, default=None
        Seed of the centres' draw.
    working_memory : float, default=None
        Budget in MiB for the row blocks and the cached ``K_nm`` (``None``:
        ``sklearn.get_config()["working_memory"]``). The ``m x m`` factors of
        the preconditioner (and the Gram matrix of ``strategy="gram"``) are
        outside it.
    sample_weight : array of shape (n_samples,), default=None
        Non-negative weights of the squared errors (``KernelRidge``'s
        convention).
    strategy : {"auto", "cache", "gram", "stream"}, default="auto"
        How the products with ``K_nm`` are formed. ``"cache"`` keeps ``K_nm``
        (``n m`` floats) and each iteration is two matrix-vector products.
        ``"gram"`` streams the blocks once to accumulate the preconditioned
        Gram matrix ``(K_nm B)^T W (K_nm B)`` (``m^2`` floats, ``3 n m^2``
        flops), after which the iterations never touch ``X`` again.
        ``"stream"`` recomputes the blocks at every iteration (one block in
        memory; ``1 + n_iter`` kernel passes over ``X``). ``"auto"`` caches
        when ``K_nm`` fits half of ``working_memory``; otherwise it picks
        ``"gram"`` or ``"stream"`` by a cost model: on the CPU, where a
        kernel entry costs as much as ~2e4 flops of matrix product,
        ``"gram"`` up to ``m ~ 7e4``; on the GPU (fused kernel, ~2e3 flops
        per entry) ``"gram"`` up to ``m = 5000`` and ``"stream"`` beyond.
    verbose : int, default=0
        1 prints the strategy and the result; 2 also each CG iteration.

    Returns
    -------
    centers : array of shape (m, n_features)
        The centres, in the namespace of ``X`` (NumPy for dask input).
    coef : array of shape (m,) or (m, n_targets)
        Coefficients ``b`` (same number of dimensions as ``y``).
    n_iter : int
        CG iterations run.
    info : dict
        ``strategy``, ``n_centers``, ``block_rows``, ``jitter`` (added to
        ``K_mm``'s diagonal), ``alpha`` (the ridge used: ``alpha``, floored at
        ``100 * (n_eff / m) * jitter``), ``residuals`` (largest relative
        residual before each iteration and at the end), ``converged``.

    See Also
    --------
    nystrom_predict : predictions of the fitted model.

    Notes
    -----
    Conjugate gradient runs on ``B^T H B beta = B^T K_nm^T W y`` with
    ``H = K_nm^T W K_nm + alpha K_mm`` and FALKON's preconditioner
    ``B = L^{-T} R^{-T}``, where ``L L^T = K_mm + jitter I`` and ``R R^T =
    (n_eff / m) L^T L + alpha I``, ``n_eff = sum(w)``. It makes ``B^T H B``
    close to the identity because ``K_nm^T W K_nm ~ (n_eff / m) K_mm^2``
    when the centres are a uniform sample; with every row as a centre the
    approximation is exact and CG converges in one or two iterations.

    Degenerate data (duplicate or all-zero rows) make ``K_mm`` singular: the
    jitter keeps its factorisation finite, and the ridge is floored at
    ``100 * (n_eff / m) * jitter`` (about ``1e3 * n * eps`` times the mean
    diagonal) so that the directions ``K_mm`` cannot see, which hold only
    rounding noise magnified by the preconditioner, stay out of the
    solution. With ``alpha > 0`` the result then matches ``KernelRidge``
    to ~1e-10 even on such data; with ``alpha = 0`` it is finite and
    accurate to ~1e-5 where exact interpolation is singular.

    References
    ----------
    .. [1] A. Rudi, L. Carratino, L. Rosasco, "FALKON: An Optimal Large Scale
       Kernel Method", NeurIPS 2017.
    .. [2] G. Meanti, L. Carratino, L. Rosasco, A. Rudi, "Kernel methods
       through the roof: handling billions of points efficiently",
       NeurIPS 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._nystrom import kernel_block_function, nystrom_fit
    >>> from sknetk._nystrom import nystrom_predict
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4))
    >>> y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=300)
    >>> kernel_fn = kernel_block_function("ntk", depth=2)
    >>> centers, coef, n_iter, info = nystrom_fit(
    ...     X, y, kernel_fn=kernel_fn, n_centers=50, alpha=0.1, random_state=0)
    >>> centers.shape, coef.shape, info["converged"]
    ((50, 4), (50,), True)
    >>> pred = nystrom_predict(X, centers, coef, kernel_fn)
    >>> bool(np.mean((pred - y) ** 2) < np.var(y))
    True
    """
    alpha = check_nonnegative(alpha, "alpha")
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}.")
    if not isinstance(tol, Real) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}.")
    if getattr(X, "ndim", None) != 2:
        raise ValueError(f"X must be 2-D, got shape {getattr(X, 'shape', None)}.")
    n = X.shape[0]
    if n == 0:
        raise ValueError("X has no rows; at least one is required.")
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows but X has {n}; they must match.")
    budget = budget_bytes(working_memory)

    centers, _ = sample_centers(X, n_centers, random_state)
    m = centers.shape[0]
    K_mm = kernel_fn(centers)
    xp = get_namespace(K_mm)
    dtype = K_mm.dtype
    itemsize = 4 if dtype == xp.float32 else 8

    dask_input = is_dask(X) or is_dask(y) or is_dask(sample_weight)
    if not dask_input:
        y = _to_namespace(xp, y, dtype, centers)
        if sample_weight is not None:
            sample_weight = _to_namespace(xp, sample_weight, dtype, centers)
    n_eff = _check_weights(sample_weight, n)

    one_d = y.ndim == 1
    if one_d:
        y = y[:, None]
    rows = max(1, int(_BLOCK_FRACTION * budget / (m * itemsize)))
    if dask_input:
        # The cached blocks are spread over the workers' memory.
        strategy = _choose_strategy(
            strategy, n, m, itemsize, budget * n_dask_workers(), max_iter=max_iter
        )
        op = DaskRowOperator(X, centers, kernel_fn, sample_weight, strategy)
        rows = max(op.row_chunks)
    else:
        strategy = _choose_strategy(
            strategy,
            n,
            m,
            itemsize,
            budget,
            on_gpu=is_cupy_namespace(xp),
            max_iter=max_iter,
        )
        op = _LocalRowOperator(
            X, centers, kernel_fn, sample_weight, rows, strategy, dtype
        )
    if verbose:
        print(
            f"[nystrom] n={n}, m={m}, strategy={strategy!r}, block rows={rows}, "
            f"K_nm {n * m * itemsize / 2**20:.1f} MiB vs budget "
            f"{budget / 2**20:.1f} MiB"
        )

    precond = _Preconditioner(xp, K_mm, n_eff, float(alpha))
    del K_mm
    alpha = precond.alpha
    c = precond.apply_t(_from_operator(xp, op.rhs(y, precond), centers))

    def apply_M(v):
        data = _from_operator(xp, op.apply(v, precond), centers)
        return data + alpha * precond.ridge(v)

    beta, n_iter, residuals = _conjugate_gradient(
        xp, apply_M, c, tol=float(tol), max_iter=int(max_iter), verbose=verbose
    )
    coef = precond.apply(beta)
    converged = residuals[-1] <= tol
    if not bool(xp.all(xp.isfinite(coef))):  # pragma: no cover - defensive
        raise FloatingPointError("The Nystrom solver produced non-finite values.")
    if not converged and tol > 0:
        warnings.warn(
            f"Nystrom CG did not reach tol={tol:g} in {max_iter} iterations "
            f"(relative residual {residuals[-1]:.3g}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    if verbose:
        print(
            f"[nystrom] CG: {n_iter} iterations, relative residual "
            f"{residuals[-1]:.3e}, jitter {precond.jitter:.3g}"
        )
    if one_d:
        coef = coef[:, 0]
    info = {
        "strategy": strategy,
        "n_centers": m,
        "block_rows": rows,
        "jitter": precond.jitter,
        "alpha": alpha,
        "residuals": residuals,
        "converged": bool(converged),
    }
    return centers, coef, n_iter, info


def nystrom_predict(X, centers, coef, kernel_fn, working_memory=None):
    """Predictions ``K(X, centers) @ coef``, streamed in blocks of rows.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        NumPy array or memmap (read block by block), array-API array, or a
        dask array chunked by rows (a dask array is then returned).
    centers : array of shape (m, n_features)
        From :func:`nystrom_fit`.
    coef : array of shape (m,) or (m, n_targets)
        From :func:`nystrom_fit`.
    kernel_fn : callable
        The same kernel function as in the fit.
    working_memory : float, default=None
        Budget in MiB; one block of ``K(X_block, centers)`` takes at most a
        quarter of it.

    Returns
    -------
    pred : array of shape (n_samples,) or (n_samples, n_targets)
        In the namespace of ``centers`` (a dask array for dask input).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._nystrom import kernel_block_function, nystrom_predict
    >>> from sknetk.kernels import ntk_kernel
    >>> rng = np.random.default_rng(0)
    >>> X, C, b = rng.normal(size=(40, 3)), rng.normal(size=(5, 3)), np.ones(5)
    >>> pred = nystrom_predict(X, C, b, kernel_block_function(), working_memory=0.01)
    >>> bool(np.allclose(pred, ntk_kernel(X, C) @ b))
    True
    """
    if is_dask(X):
        return dask_kernel_matvec(X, centers, coef, kernel_fn)
    xp = get_namespace(centers, coef)
    budget = budget_bytes(working_memory)
    m = centers.shape[0]
    dtype = coef.dtype
    itemsize = 4 if dtype == xp.float32 else 8
    rows = max(1, int(_BLOCK_FRACTION * budget / (m * itemsize)))
    pieces = [
        kernel_fn(_as_block(xp, X[i0:i1, ...], centers.dtype), centers) @ coef
        for i0, i1 in _row_ranges(X.shape[0], rows)
    ]
    if not pieces:
        return xp.zeros(
            (0,) + tuple(coef.shape[1:]), dtype=dtype, device=_device(centers)
        )
    return pieces[0] if len(pieces) == 1 else xp.concat(pieces, axis=0)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
def _to_namespace(xp, a, dtype, like):
    """``a`` as an array of ``xp`` in ``dtype`` on the device of ``like``."""
    if is_numpy_namespace(xp):
        if isinstance(a, np.ndarray) and a.dtype == dtype:
            return a
        return np.asarray(a, dtype=dtype)
    if get_namespace(a) is not xp and isinstance(a, np.ndarray):
        return xp.asarray(a, dtype=dtype, device=_device(like))
    return xp.astype(xp.asarray(a), dtype)


def _check_weights(sample_weight, n):
    """Validate non-negative weights; return their sum (``n`` when absent)."""
    if sample_weight is None:
        return float(n)
    if sample_weight.shape != (n,):
        raise ValueError(
            f"sample_weight must have shape ({n},), got {sample_weight.shape}."
        )
    xp = get_namespace(sample_weight)
    if is_dask(sample_weight):
        lo = float(sample_weight.min().compute())
        total = float(sample_weight.sum().compute())
    else:
        lo, total = float(xp.min(sample_weight)), float(xp.sum(sample_weight))
    if not math.isfinite(total) or lo < 0:
        raise ValueError("sample_weight must be finite and non-negative.")
    return total if total > 0 else float(n)


def _from_operator(xp, a, like):
    """Move an operator's result (NumPy for dask) into the namespace ``xp``."""
    if get_namespace(a) is xp:
        return a
    return xp.asarray(a, device=_device(like))
