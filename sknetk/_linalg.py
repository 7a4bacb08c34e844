"""Dense factorisations that stay safe at large ``n`` on multithreaded OpenBLAS.

The stock NumPy/SciPy wheels carry OpenBLAS 0.3.30/0.3.31, whose own
multithreaded ``potrf`` (the factorisation behind ``scipy.linalg.cho_factor``,
``numpy.linalg.cholesky`` and ``scipy.linalg.lapack.dpotrf``) crashes the
process with a segmentation fault at ``n = 16,000`` on AVX-512 machines
(SkylakeX kernels) with two threads, depending on memory layout and thread
timing; ``n = 8,000`` works. Since the crash is inside OpenBLAS's recursive
``potrf`` driver, :func:`cholesky_inplace` never hands it a matrix larger than
``block`` (4,096): it runs the textbook right-looking blocked Cholesky itself,

* ``potrf`` on each diagonal block of at most ``block`` rows,
* ``trsm`` for the panel below it,
* ``syrk`` for the trailing update,

all in place on the Fortran-ordered working matrix (``lda = n``), through the
BLAS/LAPACK function pointers SciPy exports in ``scipy.linalg.cython_blas`` and
``scipy.linalg.cython_lapack`` (the f2py wrappers of ``scipy.linalg.blas``
would copy every non-contiguous sub-block). The level-3 BLAS calls are the
ones OpenBLAS's ``potrf`` makes internally, so the speed is the same (see
``benchmarks/bench_cholesky.py``), and the factor equals LAPACK's to rounding.

The symmetric eigendecompositions (``syevr``/``syevd``: the solver's
fallback, leave-one-out, finite-``t`` dynamics) are reference LAPACK on top of
the BLAS, not OpenBLAS's own drivers; their large BLAS calls at ``n = 16,000``
(``syr2k``, ``symv``, ``gemm``) and ``dsytrd``/``syevr`` themselves (several
minutes each) ran without a crash in the same configuration, so they keep all
threads.

:func:`pocon` and :func:`reciprocal_condition` estimate ``1 / cond_1`` from a
Cholesky factor: LAPACK ``pocon`` on NumPy, and the same Hager/Higham 1-norm
estimator written against the array API for the other namespaces.

The small helpers that the solvers, the Nystrom preconditioner, the dynamics
and model selection share live here too, one of each, on any array namespace:
the spectral cut-off ``n * eps * max|a|`` and the filters built on it (the
pseudo-inverse and the gradient-flow filters, with the weighted eigenbasis
they act in), a triangular solve, adding to the diagonal, a blocked finite
check and the 1-norm, the upper-triangular product ``A @ U``, and the argument
checks of the numerical functions (non-negative numbers, counts, sample
weights, finite kernels), so that each error message is written once.
"""

import ctypes
import functools
import math
from numbers import Integral, Real

import numpy as np
from scipy.linalg import cython_blas, cython_lapack

from ._array_api import device, get_namespace, is_cupy_namespace, is_numpy_namespace

__all__ = [
    "BLOCK",
    "EPS",
    "FINITE_CHECK_ENTRIES",
    "add_to_diagonal",
    "all_finite",
    "as_float64",
    "check_count",
    "check_finite_kernel",
    "check_nonnegative",
    "check_positive",
    "check_sample_weight",
    "cholesky_inplace",
    "cho_solve_inplace",
    "cho_solve_xp",
    "eigen_basis",
    "flow_filters",
    "fortran_working_copy",
    "inverse_diagonal_inplace",
    "inverse_filter",
    "norm1_symmetric",
    "norm1_upper",
    "norm1_xp",
    "pinv_solve",
    "pocon",
    "reciprocal_condition",
    "scale_rows_and_columns",
    "solve_triangular",
    "spectral_cutoff",
    "symmetric_eigh",
    "times_upper",
]

#: float64 machine epsilon: the unit of every rounding-level threshold here.
EPS = float(np.finfo(np.float64).eps)

#: Most entries of one block's temporary in the blocked checks of a large
#: matrix (:func:`all_finite`, :func:`norm1_xp`): no second ``n x n`` array.
FINITE_CHECK_ENTRIES = 2**22

#: Largest matrix handed to one LAPACK ``potrf`` call.
BLOCK = 4096

# Columns per slab when reading a large matrix (norms), so that temporaries
# stay small.
_SLAB_ENTRIES = 2**22

_P = ctypes.c_void_p


@functools.cache
def _function(module, name, n_args, restype=None):
    """A ctypes callable for the Fortran-ABI routine ``name`` SciPy exports
    (``restype``: the ctypes type of a function's result, None for a
    subroutine)."""
    capsule = module.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    # ctypes releases the GIL around the call, as SciPy's wrappers do.
    return ctypes.CFUNCTYPE(restype, *([_P] * n_args))(address)


def _int(value):
    return ctypes.byref(ctypes.c_int(int(value)))


def _dbl(value):
    return ctypes.byref(ctypes.c_double(float(value)))


def _char(value):
    return ctypes.c_char_p(value.encode())


def _at(A, i, j):
    """Address of ``A[i, j]`` in a Fortran-ordered float64 array."""
    return _P(A.ctypes.data + (i + j * A.shape[0]) * 8)


def _check_fortran(A, name="A", writeable=True):
    if not (
        isinstance(A, np.ndarray)
        and A.dtype == np.float64
        and A.ndim == 2
        and A.shape[0] == A.shape[1]
        and A.flags.f_contiguous
        and (A.flags.writeable or not writeable)
    ):
        what = "writeable square" if writeable else "square"
        raise ValueError(f"{name} must be a {what} Fortran-ordered float64 array.")


def cholesky_inplace(A, block=None):
    """Lower Cholesky factor of ``A``, in place, by blocks of at most ``block``.

    Parameters
    ----------
    A : ndarray of shape (n, n), float64, Fortran-ordered, writeable
        Symmetric matrix; only its lower triangle is read. On return the lower
        triangle holds ``L`` (``A = L L^T``); the strict upper triangle is not
        touched, so it still holds the matrix.
    block : int, default=None
        Order of the diagonal blocks factorised by one LAPACK ``potrf``;
        None means :data:`BLOCK` (4,096).

    Returns
    -------
    info : int
        LAPACK's convention: 0 on success, ``k > 0`` when the leading minor of
        order ``k`` is not positive definite (the factorisation stopped there;
        the lower triangle is then partly overwritten).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import cholesky_inplace
    >>> A = np.asfortranarray([[4.0, 2.0], [2.0, 5.0]])
    >>> cholesky_inplace(A)
    0
    >>> np.tril(A)
    array([[2., 0.],
           [1., 2.]])
    """
    _check_fortran(A)
    block = BLOCK if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be a positive integer, got {block}.")
    n = A.shape[0]
    potrf = _function(cython_lapack, "dpotrf", 5)
    trsm = _function(cython_blas, "dtrsm", 11)
    syrk = _function(cython_blas, "dsyrk", 10)
    info = ctypes.c_int(0)
    lower, lda = _char("L"), _int(n)
    for j in range(0, n, block):
        jb = min(block, n - j)
        potrf(lower, _int(jb), _at(A, j, j), lda, ctypes.byref(info))
        if info.value != 0:
            return j + info.value
        rest = n - j - jb
        if rest == 0:
            break
        # Panel: A21 <- A21 L11^-T.
        trsm(
            _char("R"),
            lower,
            _char("T"),
            _char("N"),
            _int(rest),
            _int(jb),
            _dbl(1.0),
            _at(A, j, j),
            lda,
            _at(A, j + jb, j),
            lda,
        )
        # Trailing update (lower triangle only): A22 <- A22 - A21 A21^T.
        syrk(
            lower,
            _char("N"),
            _int(rest),
            _int(jb),
            _dbl(-1.0),
            _at(A, j + jb, j),
            lda,
            _dbl(1.0),
            _at(A, j + jb, j + jb),
            lda,
        )
    return 0


def cho_solve_inplace(L, B):
    """Solve ``L L^T X = B`` in place in ``B`` (two ``trsm`` calls).

    ``L`` is the Fortran-ordered result of :func:`cholesky_inplace` (its
    lower triangle is read); ``B`` a writeable Fortran-ordered float64 array
    of shape ``(n, k)``. The same routine as LAPACK ``potrs``, called
    directly so that no copy of ``L`` is made.
    """
    n = L.shape[0]
    if not (
        isinstance(B, np.ndarray)
        and B.dtype == np.float64
        and B.ndim == 2
        and B.shape[0] == n
        and B.flags.f_contiguous
        and B.flags.writeable
    ):
        raise ValueError("B must be a writeable Fortran-ordered float64 (n, k) array.")
    if n == 0 or B.shape[1] == 0:
        return B
    trsm = _function(cython_blas, "dtrsm", 11)
    args = (_char("L"), _char("L"))
    for trans in ("N", "T"):
        trsm(
            *args,
            _char(trans),
            _char("N"),
            _int(n),
            _int(B.shape[1]),
            _dbl(1.0),
            _at(L, 0, 0),
            _int(n),
            _P(B.ctypes.data),
            _int(n),
        )
    return B


def fortran_working_copy(K, *, overwrite=False):
    """The symmetric ``K`` as a Fortran-ordered float64 matrix to factorise.

    With ``overwrite=True``, ``K`` itself (Fortran-ordered float64) or its
    transpose (C-ordered float64), when writeable: no copy. Otherwise a new
    array. A C-ordered ``K`` is copied through its transpose, which is
    Fortran-ordered already: a plain ``memcpy`` (about four times faster than
    the transposing copy ``np.array(K, order="F")``), equal to ``K`` because
    ``K`` is symmetric. So the lower triangle of the result is ``K``'s upper
    triangle (transposed) for a C-ordered ``K``; for a kernel symmetric only
    to rounding, the two differ in the last bits.

    Parameters
    ----------
    K : array-like of shape (n, n)
        Symmetric matrix, any real dtype.
    overwrite : bool, default=False
        Allow the result to share ``K``'s memory.

    Returns
    -------
    F : ndarray of shape (n, n), float64, Fortran-ordered, writeable

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import fortran_working_copy
    >>> K = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> F = fortran_working_copy(K)
    >>> bool(F.flags.f_contiguous), bool(np.shares_memory(F, K)), F.tolist()
    (True, False, [[2.0, 1.0], [1.0, 3.0]])
    >>> bool(np.shares_memory(fortran_working_copy(K, overwrite=True), K))
    True
    """
    K = np.asarray(K)
    if overwrite and K.dtype == np.float64 and K.flags.writeable:
        if K.flags.f_contiguous:
            return K
        if K.flags.c_contiguous:
            return K.T
    if K.flags.c_contiguous and not K.flags.f_contiguous:
        return np.array(K.T, dtype=np.float64, order="F")
    return np.array(K, dtype=np.float64, order="F")


def norm1_symmetric(A):
    """1-norm (largest absolute column sum) of the symmetric matrix ``A``.

    One pass over every entry with no temporary: LAPACK ``dlange`` for a
    Fortran- or C-ordered float64 ``A`` (for a C-ordered one, on its
    transpose, whose 1-norm is ``A``'s by symmetry), NumPy by column slabs
    otherwise. A NaN anywhere in ``A`` gives NaN and an infinite entry
    infinity (``dlange`` propagates NaN), so a finite result also proves
    that every entry is finite: the exact solver's one pass for its
    condition estimate and its finiteness check.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import norm1_symmetric
    >>> A = np.asfortranarray([[2.0, -1.0], [-1.0, 2.0]])
    >>> norm1_symmetric(A)
    3.0
    >>> A[0, 1] = np.nan
    >>> norm1_symmetric(A)
    nan
    """
    n = A.shape[0]
    if n == 0:
        return 0.0
    if isinstance(A, np.ndarray) and A.dtype == np.float64 and A.ndim == 2:
        F = A if A.flags.f_contiguous else A.T if A.flags.c_contiguous else None
        if F is not None:
            return _lange_1(F)
    cols = max(1, _SLAB_ENTRIES // n)
    # (np.max propagates NaN, where Python's max would not)
    return float(
        np.max(
            [np.abs(A[:, j : j + cols]).sum(axis=0).max() for j in range(0, n, cols)]
        )
    )


def norm1_upper(F):
    """1-norm of the symmetric matrix held in the upper triangle of ``F``.

    LAPACK ``dlansy('1', 'U')``: only the diagonal and the strict upper
    triangle of the Fortran-ordered float64 ``F`` are read (half the entries
    of :func:`norm1_symmetric`), so the strict lower triangle may hold
    anything. A NaN or infinity among the entries read gives NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import norm1_upper
    >>> F = np.asfortranarray([[2.0, -1.0], [np.nan, 2.0]])
    >>> norm1_upper(F)
    3.0
    """
    _check_fortran(F, "F", writeable=False)
    n = F.shape[0]
    if n == 0:
        return 0.0
    lansy = _function(cython_lapack, "dlansy", 6, ctypes.c_double)
    work = np.empty(n)
    return float(
        lansy(
            _char("1"), _char("U"), _int(n), _at(F, 0, 0), _int(n), _P(work.ctypes.data)
        )
    )


def _lange_1(F):
    """LAPACK ``dlange('1')`` of the Fortran-ordered float64 ``F``."""
    m, k = F.shape
    lange = _function(cython_lapack, "dlange", 6, ctypes.c_double)
    work = np.empty(1)  # (read only for the infinity norm)
    return float(
        lange(_char("1"), _int(m), _int(k), _at(F, 0, 0), _int(m), _P(work.ctypes.data))
    )


def inverse_diagonal_inplace(L):
    """Diagonal of ``A^-1`` from the Cholesky factor ``L`` of ``A = L L^T``, in place.

    LAPACK ``trtri`` overwrites the lower triangle of ``L`` with ``L^-1``;
    since ``A^-1 = L^-T L^-1``, ``(A^-1)_jj`` is the sum of the squares of
    column ``j`` of ``L^-1``, read below the diagonal only, in slabs of
    columns (the strict upper triangle is never read, so it may hold other
    data, such as the matrix the factor came from). The only temporary is one
    slab. ``O(n^3 / 3)`` flops, a third of an explicit inverse.

    Parameters
    ----------
    L : ndarray of shape (n, n), float64, Fortran-ordered, writeable
        Lower triangle: the factor (:func:`cholesky_inplace`). On return it
        holds ``L^-1``; the strict upper triangle is not touched.

    Returns
    -------
    diag : ndarray of shape (n,) or None
        ``diag(A^-1)``; None when ``L`` has a zero on its diagonal
        (``trtri``'s ``info > 0``), the lower triangle then being unspecified.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import cholesky_inplace, inverse_diagonal_inplace
    >>> A = np.array([[4.0, 2.0], [2.0, 5.0]])
    >>> F = np.asfortranarray(A)
    >>> cholesky_inplace(F)
    0
    >>> d = inverse_diagonal_inplace(F)
    >>> bool(np.allclose(d, np.diag(np.linalg.inv(A))))
    True
    """
    _check_fortran(L)
    n = L.shape[0]
    if n == 0:
        return np.zeros(0)
    info = ctypes.c_int(0)
    _function(cython_lapack, "dtrtri", 6)(
        _char("L"), _char("N"), _int(n), _at(L, 0, 0), _int(n), ctypes.byref(info)
    )
    if info.value != 0:
        return None
    diag = np.empty(n)
    cols = max(1, min(n, _SLAB_ENTRIES // (8 * n)))
    for j in range(0, n, cols):
        stop = min(j + cols, n)
        # Rows j..stop-1 of the slab are its diagonal block: keep its lower
        # triangle only. The rows below are all below the diagonal.
        top = np.tril(L[j:stop, j:stop])
        below = L[stop:, j:stop]
        diag[j:stop] = np.einsum("ij,ij->j", top, top) + np.einsum(
            "ij,ij->j", below, below
        )
    return diag


def pocon(L, anorm):
    """LAPACK ``dpocon``: estimate of ``1 / (||A||_1 ||A^-1||_1)`` from ``L``.

    ``L`` is the Fortran-ordered factor of :func:`cholesky_inplace` (lower
    triangle), ``anorm`` the 1-norm of ``A`` before the factorisation.
    """
    n = L.shape[0]
    if n == 0:
        return 1.0
    if not anorm > 0:
        return 0.0
    rcond = ctypes.c_double(0.0)
    info = ctypes.c_int(0)
    work = np.empty(3 * n)
    iwork = np.empty(n, dtype=np.intc)
    _function(cython_lapack, "dpocon", 9)(
        _char("L"),
        _int(n),
        _at(L, 0, 0),
        _int(n),
        _dbl(anorm),
        ctypes.byref(rcond),
        _P(work.ctypes.data),
        _P(iwork.ctypes.data),
        ctypes.byref(info),
    )
    return float(rcond.value) if info.value == 0 else 0.0


def reciprocal_condition(xp, solve, anorm, n, max_iter=5):
    """Hager/Higham estimate of ``1 / (||A||_1 ||A^-1||_1)`` on any namespace.

    The method of LAPACK's ``pocon`` (``lacn2``, Hager's algorithm as refined
    by Higham), written against the array API for namespaces without
    ``pocon`` (CuPy, ``array_api_strict``): a few solves with the symmetric
    positive definite ``A`` (``solve(B)``, two triangular solves with its
    Cholesky factor; ``A^-T = A^-1``) climb to a column of ``A^-1`` whose
    1-norm is almost always the largest, and Higham's alternating vector
    guards against the method's blind spots. ``||A^-1||_1`` is estimated from
    below, so the result is an upper bound of the reciprocal condition number
    up to rounding.

    Parameters
    ----------
    xp : array namespace
    solve : callable
        ``solve(B) -> A^-1 B`` for an ``(n, 1)`` float64 array of ``xp``.
    anorm : float
        ``||A||_1``.
    n : int
        Order of ``A``.
    max_iter : int, default=5
        Most iterations (LAPACK's ``lacn2`` uses 5).

    Returns
    -------
    rcond : float
        In ``[0, 1]``; 0 when a solve is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import reciprocal_condition
    >>> A = np.diag([4.0, 1.0, 0.01])
    >>> float(reciprocal_condition(np, lambda b: np.linalg.solve(A, b), 4.0, 3))
    0.0025
    """
    if n == 0:
        return 1.0
    if not anorm > 0:
        return 0.0

    def solve_norm(b):
        x = solve(b)
        norm = float(xp.sum(xp.abs(x)))
        if not math.isfinite(norm):
            raise _NotFinite
        return x, norm

    def sign(v):
        return xp.where(v >= 0, xp.asarray(1.0), xp.asarray(-1.0))

    try:
        est = _hager(xp, solve_norm, sign, solve, n, max_iter)
    except _NotFinite:
        return 0.0
    if not est > 0:
        return 0.0
    return min(1.0, 1.0 / (anorm * est))


class _NotFinite(Exception):
    pass


def _hager(xp, solve_norm, sign, solve, n, max_iter):
    """The iterations of :func:`reciprocal_condition`: ``||A^-1||_1`` from below."""
    x, est = solve_norm(xp.full((n, 1), 1.0 / n, dtype=xp.float64))
    for k in range(max_iter if n > 1 else 0):
        s = sign(x)
        z = solve(s)
        zmax = float(xp.max(xp.abs(z)))
        # Hager's stopping test: no column of A^-1 beats the current one.
        if k > 0 and not zmax > float(xp.sum(z * x)):
            break
        j = int(xp.argmax(xp.abs(xp.reshape(z, (n,)))))
        e = xp.reshape(
            xp.where(xp.arange(n) == j, xp.asarray(1.0), xp.asarray(0.0)), (n, 1)
        )
        x, new = solve_norm(e)
        if not new > est or bool(xp.all(sign(x) == s)):
            est = max(est, new)
            break
        est = new
    if n > 1:
        i = xp.arange(n, dtype=xp.float64)
        alt = (1.0 + i / (n - 1)) * sign(xp.where(i % 2 == 0, i, -i - 1.0))
        _, extra = solve_norm(xp.reshape(alt, (n, 1)))
        est = max(est, 2.0 * extra / (3.0 * n))
    return est


# ---------------------------------------------------------------------------
# Small shared helpers, on any array namespace
# ---------------------------------------------------------------------------
def spectral_cutoff(xp, a):
    """``n * eps * max|a|`` for the ``n`` eigenvalues ``a`` (0.0 when empty).

    Eigenvalues at or below it (in magnitude or signed, as the caller needs)
    are numerically zero: the rounding of an eigendecomposition of an
    ``n x n`` matrix is about ``n * eps`` times its largest eigenvalue. The
    solver's pseudo-inverse, the leave-one-out and cross-validation filters
    and the gradient-flow filters all use this level, which is also the
    solver's condition threshold (:func:`sknetk._solver.rcond_threshold`).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import EPS, spectral_cutoff
    >>> spectral_cutoff(np, np.array([2.0, -4.0, 1e-20])) == 3 * EPS * 4.0
    True
    """
    n = a.shape[0]
    if n == 0:
        return 0.0
    return float(n * EPS * float(xp.max(xp.abs(a))))


def inverse_filter(xp, a, keep=None):
    """``(g, keep)``: ``g = 1 / a`` where ``keep``, else 0 (no division by 0).

    ``keep`` defaults to ``a > spectral_cutoff(xp, a)``: the pseudo-inverse of
    a positive semi-definite spectrum, whose numerically null (or negative by
    rounding) eigenvalues are dropped.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import inverse_filter
    >>> g, keep = inverse_filter(np, np.array([4.0, 0.5, 1e-30, -1e-20]))
    >>> g.tolist(), keep.tolist()
    ([0.25, 2.0, 0.0, 0.0], [True, True, False, False])
    """
    if keep is None:
        keep = a > spectral_cutoff(xp, a)
    safe = xp.where(keep, a, xp.ones_like(a))
    return xp.where(keep, 1.0 / safe, xp.zeros_like(a)), keep


def pinv_solve(xp, w, Q, b):
    """``Q diag(1 / w) Q^T b`` with the eigenvalues ``|w| <= n eps max|w|`` dropped.

    The minimum-norm least-squares solution of ``A x = b`` for the
    eigendecomposition ``A = Q diag(w) Q^T`` (the solvers' fallback).
    """
    keep = xp.abs(w) > spectral_cutoff(xp, w)
    inv, _ = inverse_filter(xp, w, keep)
    return Q @ (inv[:, None] * (Q.T @ b))


def flow_filters(xp, evals, times, ridge, learning_rate, n_total):
    """``g_t(a) = (1 - exp(-a * eta * t / N)) / a`` for every time, stacked.

    The spectral filters of gradient flow on the squared loss for the
    eigenvalues ``evals`` of the (weighted) training kernel, shifted by the
    ridge: ``a = evals + ridge``, ``eta = learning_rate``, ``N = n_total``.
    ``t = inf`` gives the pseudo-inverse ``1 / a`` (:func:`inverse_filter`).
    Directions whose ``a`` is at or below :func:`spectral_cutoff` (numerically
    zero, or negative by rounding) are left out (``g = 0``): their kernel
    columns are zero up to rounding, so they carry no signal, and keeping
    them would let rounding noise grow linearly with ``t``.

    Used by :mod:`sknetk.dynamics` and by the estimators' finite-time fits
    and uncertainties, with the eigenbasis of :func:`eigen_basis`.

    Returns
    -------
    filters : array of shape (n_times, n)
    a : array of shape (n,)
        The shifted eigenvalues.
    keep : bool array of shape (n,)
        The directions kept.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import flow_filters
    >>> g, a, keep = flow_filters(np, np.array([0.0, 2.0]), [0.0, np.inf], 0.0, 1.0, 1)
    >>> g.tolist(), keep.tolist()
    ([[0.0, 0.0], [0.0, 0.5]], [False, True])
    """
    a = evals + ridge
    inverse, keep = inverse_filter(xp, a)
    a_safe = xp.where(keep, a, xp.ones_like(a))
    zeros = xp.zeros_like(a)
    rows = []
    for t in times:
        if math.isinf(t):
            rows.append(inverse)
        else:
            s = learning_rate * float(t) / n_total
            rows.append(xp.where(keep, -xp.expm1(-a_safe * s) / a_safe, zeros))
    return xp.stack(rows, axis=0), a, keep


def symmetric_eigh(xp, K, *, eigenvectors=True):
    """Eigendecomposition of ``(K + K^T) / 2``: ``(evals, evecs)`` or ``evals``.

    ``eigh`` reads one triangle only, and kernels computed in separate tiles
    may differ from their transpose in the last bit: the symmetric part is
    decomposed. Eigenvalues ascending.
    """
    K = (K + K.T) * 0.5
    if eigenvectors:
        return xp.linalg.eigh(K)
    return xp.linalg.eigvalsh(K)


def eigen_basis(eigh, sample_weight=None):
    """``(xp, evals, U)`` with ``U = diag(sqrt(w)) V`` for ``eigh = (evals, V)``.

    ``eigh`` is the eigendecomposition of the weighted training kernel
    ``W^1/2 K W^1/2 = V diag(evals) V^T`` (``W = diag(sample_weight)``, the
    identity when None); every spectral function of the training kernel is
    then ``U g(evals + ridge) U^T`` (see :func:`flow_filters`). Both arrays
    are returned in float64; shapes and weights are checked.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import eigen_basis
    >>> xp, evals, U = eigen_basis((np.ones(2), np.eye(2)), np.array([4.0, 1.0]))
    >>> U.tolist()
    [[2.0, 0.0], [0.0, 1.0]]
    """
    evals, evecs = eigh
    xp = get_namespace(evals, evecs)
    evals = as_float64(xp, evals)
    evecs = as_float64(xp, evecs)
    n = evals.shape[0]
    if evecs.shape != (n, n):
        raise ValueError(
            f"eigh must be (evals, evecs) of shapes (n,), (n, n); got "
            f"{tuple(evals.shape)} and {tuple(evecs.shape)}."
        )
    w = check_sample_weight(xp, sample_weight, n)
    U = evecs if w is None else xp.sqrt(w)[:, None] * evecs
    return xp, evals, U


def solve_triangular(xp, T, B, *, lower=True, transpose=False):
    """Solve ``T X = B`` (or ``T^T X = B``) for a triangular ``T``.

    SciPy on NumPy, cupyx on CuPy; the array API has no triangular solve, so
    other namespaces get a general solve (exact enough: it is used on
    Cholesky factors of small or well-conditioned matrices).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import solve_triangular
    >>> L = np.array([[2.0, 0.0], [1.0, 1.0]])
    >>> solve_triangular(np, L, np.array([2.0, 3.0])).tolist()
    [1.0, 2.0]
    >>> solve_triangular(np, L, np.array([3.0, 1.0]), transpose=True).tolist()
    [1.0, 1.0]
    """
    trans = "T" if transpose else "N"
    if is_numpy_namespace(xp):
        from scipy.linalg import solve_triangular as scipy_solve

        return scipy_solve(T, B, lower=lower, trans=trans, check_finite=False)
    if is_cupy_namespace(xp):  # pragma: no cover - needs a GPU
        from cupyx.scipy.linalg import solve_triangular as cupy_solve

        return cupy_solve(T, B, lower=lower, trans=trans)
    return xp.linalg.solve(xp.linalg.matrix_transpose(T) if transpose else T, B)


def cho_solve_xp(xp, L, B):
    """Solve ``L L^T X = B`` for a lower Cholesky factor ``L``, on any namespace."""
    z = solve_triangular(xp, L, B, lower=True)
    return solve_triangular(xp, xp.linalg.matrix_transpose(L), z, lower=False)


def add_to_diagonal(A, value, *, copy=False):
    """``A + value * I`` for a square ``A``; use the returned array.

    In place on NumPy and CuPy arrays (on a copy with ``copy=True``); other
    namespaces, which may not allow writing through an index, get a new
    array. ``value=0`` returns ``A`` itself (or its copy).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import add_to_diagonal
    >>> add_to_diagonal(np.ones((2, 2)), 1.0).tolist()
    [[2.0, 1.0], [1.0, 2.0]]
    """
    xp = get_namespace(A)
    n = A.shape[0]
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        if copy:
            A = A.copy()
        if value:
            idx = xp.arange(n)
            A[idx, idx] += value
        return A
    if not value:
        return xp.asarray(A, copy=True) if copy else A
    return A + value * xp.eye(n, dtype=A.dtype, device=device(A))


def scale_rows_and_columns(A, s):
    """``diag(s) A diag(s)`` for a square ``A``; use the returned array.

    In place on NumPy and CuPy arrays (no second ``n x n`` matrix); other
    namespaces get a new array. The weighted kernel ``W^1/2 K W^1/2`` of the
    exact solvers (``s = sqrt(w)``).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import scale_rows_and_columns
    >>> scale_rows_and_columns(np.ones((2, 2)), np.array([1.0, 2.0])).tolist()
    [[1.0, 2.0], [2.0, 4.0]]
    """
    xp = get_namespace(A, s)
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        A *= s[:, None]
        A *= s[None, :]
        return A
    return A * s[:, None] * s[None, :]


def _row_blocks(A):
    """Row slices of ``A`` with at most ``FINITE_CHECK_ENTRIES`` entries each."""
    n = A.shape[0]
    width = A.shape[1] if A.ndim > 1 else 1
    rows = max(1, FINITE_CHECK_ENTRIES // max(width, 1))
    # (slice stops within the axis: the array API leaves others unspecified)
    return (A[i : min(i + rows, n), ...] for i in range(0, n, rows))


def all_finite(xp, A):
    """True when ``A`` holds no NaN or infinity, checked in row blocks.

    Each block's boolean temporary has at most ``FINITE_CHECK_ENTRIES``
    entries, so no second ``n x n`` array is made. NumPy stops at the first
    bad block; on a device the blocks' verdicts stay there and are read back
    once.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import all_finite
    >>> all_finite(np, np.eye(3)), all_finite(np, np.array([[1.0, np.nan]]))
    (True, False)
    """
    if is_numpy_namespace(xp):
        return all(np.isfinite(block).all() for block in _row_blocks(A))
    verdicts = [xp.all(xp.isfinite(block)) for block in _row_blocks(A)]
    return not verdicts or bool(xp.all(xp.stack(verdicts)))


def norm1_xp(xp, A):
    """1-norm of the symmetric ``A`` on any namespace, read in row blocks.

    The largest absolute row sum (equal to the column sum by symmetry); each
    block's temporary has at most ``FINITE_CHECK_ENTRIES`` entries, so no
    second ``n x n`` array is made on the device.
    """
    sums = [xp.max(xp.sum(xp.abs(block), axis=1)) for block in _row_blocks(A)]
    return float(xp.max(xp.stack(sums))) if sums else 0.0


def times_upper(xp, A, U):
    """``A @ U`` for an upper-triangular ``U``, in place on ``A`` when possible.

    On NumPy (C-ordered float ``A``) this is BLAS ``trmm``: half the flops of
    a matrix product and no second block in memory. ``A`` is overwritten.
    """
    if (
        is_numpy_namespace(xp)
        and A.dtype in (np.float64, np.float32)
        and A.dtype == U.dtype
        and A.flags.c_contiguous
        and A.flags.writeable
        and U.flags.c_contiguous
    ):
        from scipy.linalg import blas

        trmm = blas.dtrmm if A.dtype == np.float64 else blas.strmm
        # (A U)^T = U^T A^T: the transposes are Fortran-ordered views
        out = trmm(1.0, U.T, A.T, side=0, trans_a=0, lower=1, overwrite_b=1)
        if np.shares_memory(out, A):
            return A
        return out.T  # pragma: no cover - BLAS made a copy
    return A @ U


# ---------------------------------------------------------------------------
# Argument checks of the numerical functions (one message each)
# ---------------------------------------------------------------------------
def as_float64(xp, a):
    """``a`` as a float64 array of namespace ``xp`` (no copy when it is one)."""
    if is_numpy_namespace(xp):
        return np.asarray(a, dtype=np.float64)
    return xp.astype(a, xp.float64)


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def check_nonnegative(value, name):
    """``value`` as a float, or a ``ValueError`` naming ``name`` unless it is a
    finite real number >= 0 (a ridge, ``alpha``, a tolerance).

    Examples
    --------
    >>> from sknetk._linalg import check_nonnegative
    >>> check_nonnegative(1, "ridge")
    1.0
    """
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def check_positive(value, name):
    """``value`` as a float, or a ``ValueError`` naming ``name`` unless it is a
    finite real number > 0 (a learning rate)."""
    if not _is_real(value) or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def check_count(value, name):
    """``value`` as an int, or a ``ValueError`` naming ``name`` unless it is an
    integer >= 1 (a number of targets, of centres)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(value)


def check_sample_weight(xp, sample_weight, n):
    """Float64 weights of shape ``(n,)``, finite and non-negative, or None.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk._linalg import check_sample_weight
    >>> check_sample_weight(np, [1, 2], 2)
    array([1., 2.])
    """
    if sample_weight is None:
        return None
    w = as_float64(xp, sample_weight)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {tuple(w.shape)}.")
    if not bool(xp.all(xp.isfinite(w))) or bool(xp.any(w < 0)):
        raise ValueError("sample_weight must be finite and non-negative.")
    return w


def check_finite_kernel(xp, K):
    """Refuse a kernel matrix holding NaN or infinity (blocked check)."""
    if not all_finite(xp, K):
        raise ValueError(
            "The kernel matrix contains NaN or infinity (are the inputs too "
            "large in magnitude for float64?). Scale the features (e.g. "
            "StandardScaler) first."
        )
