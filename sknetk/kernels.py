"""Closed-form NNGP and NTK kernels of infinitely wide fully connected networks.

The network is ``depth`` blocks of ``Dense -> activation`` followed by a linear
readout ``Dense(1)``; every Dense layer has weights of standard deviation
``weight_std`` and biases of standard deviation ``bias_std``. The kernels are
exactly the infinite-width limits that neural-tangents' ``stax`` computes for
``stax.serial(*[Dense(w, W_std, b_std, parameterization), Act()] * depth,
Dense(1, W_std, b_std, parameterization))``.

The recursion starts from ``Sigma = <x, x'> / d`` and ``Theta = 0``; a Dense
layer maps ``Sigma <- W^2 Sigma + b^2`` and adds its own parameters'
contribution to ``Theta``; an activation maps ``Sigma <- E[phi(u) phi(v)]`` and
``Theta <- Theta * E[phi'(u) phi'(v)]``. See ``docs/kernels.rst``.

All work is done in tiles whose temporaries fit a memory budget
(``working_memory``, in MiB, defaulting to scikit-learn's
``working_memory`` configuration), in parallel threads over tiles.
"""

import math
import warnings
from numbers import Real

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn import get_config
from threadpoolctl import threadpool_limits

from ._array_api import device as _device_of
from ._array_api import get_namespace, is_cupy_namespace, is_numpy_namespace, to_numpy
from ._cuda import compute_kernels_cupy
from ._device import check_device, cupy_or_error, use_gpu
from ._params import ACTIVATION_NAMES, NETWORK, validated
from ._progress import progress
from ._recursion import (
    PARAMETERIZATIONS,  # noqa: F401 (the estimators import it here)
    KernelSpec,
    checked_diagonals,
)

# under their former names: tests patch _tile_recursion here and import
# _variance_path from here
from ._recursion import tile_recursion as _tile_recursion
from ._recursion import variance_path as _variance_path  # noqa: F401
from ._solver import blas_matmul

__all__ = [
    "ntk_kernel",
    "nngp_kernel",
    "nngp_ntk_kernels",
    "ntk_diag",
    "nngp_diag",
    "kernel_matvec",
    "KernelSpec",
    "ACTIVATION_NAMES",
]

# Upper bound on the entries of one tile: 256 x 256 float64 temporaries stay
# within the L2 cache of a typical core, which keeps the ~15 elementwise passes
# per layer out of main memory.
_MAX_TILE_SIDE = 256
# Number of tile-sized float arrays alive at once while one tile is processed.
_TEMPORARIES_PER_ENTRY = 12


# ---------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------
def _check_input(X, name, xp, dtype):
    """Validate a 2-D finite real array and return it in the compute dtype."""
    if is_numpy_namespace(xp):
        from sklearn.utils import check_array

        X = check_array(
            X,
            dtype=[np.float64, np.float32],
            ensure_all_finite=True,
            input_name=name,
            ensure_min_samples=0,
        )
        return np.asarray(X, dtype=dtype)
    if getattr(X, "ndim", None) != 2:
        raise ValueError(
            f"Expected a 2-D array for {name}, got shape {getattr(X, 'shape', None)}."
        )
    if not xp.isdtype(X.dtype, ("real floating", "integral")):
        raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}.")
    X = xp.astype(X, dtype)
    if not bool(xp.all(xp.isfinite(X))):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return X


def _compute_dtype(xp, dtype):
    if dtype is None or dtype in ("float64", np.float64) or dtype is xp.float64:
        return xp.float64
    if dtype in ("float32", np.float32) or dtype is xp.float32:
        return xp.float32
    raise ValueError(f"dtype must be None, 'float64' or 'float32', got {dtype!r}.")


def _prepare(X, Y, xp, dtype):
    X = _check_input(X, "X", xp, dtype)
    if Y is not None:
        Y = _check_input(Y, "Y", xp, dtype)
        if Y.shape[1] != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features but Y has {Y.shape[1]}; they must match."
            )
    if X.shape[1] == 0:
        raise ValueError("X has 0 features; at least one is required.")
    X = _zero_underflowing_rows(X, "X", xp)
    if Y is not None:
        Y = _zero_underflowing_rows(Y, "Y", xp)
    return X, Y


def _zero_underflowing_rows(X, name, xp):
    """``X`` with rows whose mean square underflows made exact zero rows.

    The kernels are computed from ``<x, y> / d`` and ``|x|^2 / d``. Where the
    latter is below the smallest normal number of the dtype (a root-mean-
    square below about ``1.5e-154`` in float64, ``1.1e-19`` in float32) it is
    zero or has lost its precision, while the cross products with other rows
    may not have: the symmetric and the cross paths would then disagree, and
    both would be wrong relative to the entry's size. Such a row is replaced
    by the zero row it is indistinguishable from at this precision (an
    absolute error below ``1.5e-154 |y|`` per entry), with a warning.
    """
    if X.shape[0] == 0:
        return X
    smallest = float(xp.finfo(X.dtype).smallest_normal)
    n, d = X.shape
    # In blocks of 32768 entries, so that a memmap is read, not loaded.
    step = max(1, 32768 // d)
    blocks = []
    for start in range(0, n, step):
        B = X[start : min(start + step, n), :]
        q = xp.sum(B * B, axis=1) / d
        blocks.append((q < smallest) & xp.any(B != 0, axis=1))
    under = blocks[0] if len(blocks) == 1 else xp.concat(blocks)
    if not bool(xp.any(under)):
        return X
    n_under = int(xp.sum(xp.astype(under, xp.int64)))
    warnings.warn(
        f"{n_under} row(s) of {name} have a mean square below the smallest "
        f"normal {'float64' if X.dtype == xp.float64 else 'float32'} number "
        "(root-mean-square below about "
        f"{smallest**0.5:.2g}); they are treated as zero rows."
        " Scale the features (e.g. StandardScaler) to keep them apart.",
        UserWarning,
        stacklevel=4,
    )
    return xp.where(under[:, None], xp.zeros_like(X), X)


# ---------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------
def budget_bytes(working_memory):
    """``working_memory`` (MiB; ``None``: scikit-learn's setting) in bytes, checked."""
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    if (
        isinstance(working_memory, bool)
        or not isinstance(working_memory, Real)
        or not working_memory > 0
    ):
        raise ValueError(
            f"working_memory must be a positive number of MiB, got {working_memory!r}."
        )
    return float(working_memory) * 2**20


def _tile_side(budget, n_threads, itemsize, n_outputs):
    """Side of a square tile whose temporaries fit ``budget`` over all threads."""
    per_entry = (_TEMPORARIES_PER_ENTRY + n_outputs) * itemsize * n_threads
    side = int(math.sqrt(budget / per_entry))
    return max(1, min(_MAX_TILE_SIDE, side))


def _tiles(n1, n2, side, symmetric):
    out = []
    for i0 in range(0, n1, side):
        for j0 in range(i0 if symmetric else 0, n2, side):
            out.append((i0, min(i0 + side, n1), j0, min(j0 + side, n2)))
    return out


def _n_threads(xp, n_jobs, n_tiles):
    if not is_numpy_namespace(xp):
        return 1  # device libraries parallelise inside each operation
    return max(1, min(effective_n_jobs(n_jobs), n_tiles))


def _compute_kernels(X, Y, spec, want, all_depths, working_memory, n_jobs, verbose=0):
    """Fill the requested kernel matrices of ``(X, Y)`` tile by tile.

    ``want`` is a subset of ``{"nngp", "ntk"}``. Returns a dict of arrays of
    shape ``(n_depths, n1, n2)``.
    """
    xp = get_namespace(X)
    symmetric = Y is None
    Yv = X if symmetric else Y
    n1, n2, d = X.shape[0], Yv.shape[0], X.shape[1]
    n_depths = spec.depth if all_depths else 1
    want_ntk = "ntk" in want
    # The variance paths and the exact correlation-one diagonals of the rows
    # and of the columns (O(n) work): they are checked for overflow, written
    # on the diagonal of K(X, X), and bound every entry by Cauchy-Schwarz.
    path_x, diag_x = checked_diagonals(xp, X, "X", spec, want_ntk, all_depths)
    path_y, diag_y = (
        (path_x, diag_x)
        if symmetric
        else checked_diagonals(xp, Yv, "Y", spec, want_ntk, all_depths)
    )
    roots_x = {name: [xp.sqrt(v) for v in blocks] for name, blocks in diag_x.items()}
    roots_y = (
        roots_x
        if symmetric
        else {name: [xp.sqrt(v) for v in blocks] for name, blocks in diag_y.items()}
    )
    if is_cupy_namespace(xp):
        return compute_kernels_cupy(
            X,
            Y,
            spec,
            want,
            all_depths,
            budget_bytes(working_memory),
            roots=(roots_x, roots_y),
        )
    q0 = xp.sum(X * X, axis=1) / d if symmetric else None
    # K(x, x) from the exact correlation-one recursion (the diagonal
    # functions'), written on the diagonal.
    exact_diag = diag_x if symmetric else None
    out = {
        name: xp.empty((n_depths, n1, n2), dtype=X.dtype, device=_device_of(X))
        for name in want
    }
    budget = budget_bytes(working_memory)
    itemsize = 4 if X.dtype == xp.float32 else 8
    n_out = n_depths * len(want)
    threads = _n_threads(xp, n_jobs, max(n1, n2))
    side = _tile_side(budget, threads, itemsize, n_out)
    tiles = _tiles(n1, n2, side, symmetric)
    threads = _n_threads(xp, n_jobs, len(tiles))
    scale = 1.0 / d

    def work(i0, i1, j0, j1):
        sigma = (X[i0:i1, :] @ Yv[j0:j1, :].T) * scale
        if symmetric and i0 == j0:
            # GEMM on a diagonal tile is not bitwise symmetric: make it so, and
            # put <x, x> / d of the variance path on the diagonal, so that the
            # diagonal follows the exact correlation-one recursion.
            sigma = (sigma + sigma.T) * 0.5
            sigma = _set_diagonal(xp, sigma, q0[i0:i1])
        qa = (
            [q[i0:i1] for q in path_x[0]],
            {name: [r[i0:i1] for r in v] for name, v in roots_x.items()},
        )
        qb = (
            [q[j0:j1] for q in path_y[0]],
            {name: [r[j0:j1] for r in v] for name, v in roots_y.items()},
        )
        views = {name: target[:, i0:i1, j0:j1] for name, target in out.items()}
        nngps, ntks = _tile_recursion(
            xp, sigma, qa, qb, spec, want_ntk, all_depths, d, out=views
        )
        for name, blocks in (("nngp", nngps), ("ntk", ntks)):
            if name not in out:
                continue
            target = out[name]
            for k, block in enumerate(blocks):
                if symmetric and i0 == j0:
                    block = _set_diagonal(xp, block, exact_diag[name][k][i0:i1])
                # the compiled tile kernel wrote in place (views of out)
                if not (xp is np and np.may_share_memory(block, target)):
                    target[k, i0:i1, j0:j1] = block
                if symmetric and j0 != i0:
                    target[k, j0:j1, i0:i1] = block.T

    n_tiles = len(tiles)
    tiles = progress(tiles, desc=f"kernel tiles ({n1} x {n2})", verbose=verbose)
    if threads == 1 or n_tiles == 1:
        for tile in tiles:
            work(*tile)
    else:
        # The tile GEMMs are small: one BLAS thread each, our threads over tiles.
        with threadpool_limits(limits=1, user_api="blas"):
            Parallel(n_jobs=threads, backend="threading")(
                delayed(work)(*tile) for tile in tiles
            )
    return out


def _set_diagonal(xp, A, values):
    """``A`` with its diagonal replaced by ``values`` (square ``A``)."""
    if xp is np:
        np.fill_diagonal(A, values)
        return A
    n = A.shape[0]
    eye = xp.eye(n, dtype=xp.bool, device=_device_of(A))
    return xp.where(eye, values[None, :], A)


# ---------------------------------------------------------------------------
# Where the work runs
# ---------------------------------------------------------------------------
def _place(device, dtype, *arrays):
    """Validate ``arrays`` and move them to where the work runs.

    Returns ``(arrays, back)``: the validated arrays in the compute dtype and
    namespace (``None`` entries stay ``None``) and a function that returns a
    result to the input's namespace ("outputs mirror inputs": NumPy in gives
    NumPy out, CuPy in gives CuPy out).
    """
    check_device(device)
    xp_in = get_namespace(*arrays)
    cupy_in = is_cupy_namespace(xp_in)
    X, Y = arrays[0], arrays[1]
    n1 = _n_rows(X)
    n2 = n1 if Y is None else _n_rows(Y)
    gpu = use_gpu(device, n1 * n2, is_cupy_input=cupy_in)
    if gpu and not cupy_in and not is_numpy_namespace(xp_in):
        if device == "gpu":
            raise ValueError(
                'device="gpu" takes NumPy or CuPy input, got arrays of '
                f"{xp_in.__name__}."
            )
        gpu = False  # "auto": other array libraries compute where they live
    X, Y = _prepare(X, Y, xp_in, _compute_dtype(xp_in, dtype))
    rest = list(arrays[2:])
    if gpu and not cupy_in:
        cupy = cupy_or_error()
        moved = [None if a is None else cupy.asarray(a) for a in (X, Y, *rest)]
        return moved, cupy.asnumpy
    if cupy_in and not gpu:  # device="cpu" with CuPy input
        import cupy

        moved = [None if a is None else to_numpy(a) for a in (X, Y, *rest)]
        return moved, cupy.asarray
    return [X, Y, *rest], (lambda a: a)


def _n_rows(A):
    shape = getattr(A, "shape", None)
    if shape is None:
        return len(A)
    return shape[0] if len(shape) else 0


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------
#: Where and how the fully connected kernel functions run.
_RUN = ("all_depths", "working_memory", "n_jobs", "dtype", "device", "verbose")
_DIAG_RUN = ("all_depths", "dtype", "device")
_MATVEC_RUN = ("working_memory", "n_jobs", "dtype", "device", "verbose")


def _pick(arguments, names):
    """``{name: arguments[name]}``: a public function's keywords (its
    ``**params``, see :func:`sknetk._params.validated`) for ``names``."""
    return {name: arguments[name] for name in names}


def spec_of(arguments, ntk=True):
    """The :class:`KernelSpec` of a public function's network keywords.

    ``arguments`` are the function's ``**params`` (its validated
    keywords); ``ntk=False`` (NNGP only) does not require ``width`` in the
    ``"standard"`` parameterization.
    """
    return KernelSpec.from_params(ntk=ntk, **_pick(arguments, NETWORK))


def _finish(arr, all_depths):
    return arr if all_depths else arr[0, ...]


def spec_kernels(
    X,
    Y,
    spec,
    want,
    *,
    all_depths=False,
    working_memory=None,
    n_jobs=-1,
    dtype=None,
    device="auto",
    verbose=0,
):
    """``{name: K_name(X, Y)}`` for ``name`` in ``want`` of the network ``spec``.

    The kernel functions' work behind their validation: the inputs are
    placed (:func:`_place`), the kernels computed tile by tile in one pass
    of the recursion, and returned in the input's namespace.
    """
    (X, Y), back = _place(device, dtype, X, Y)
    out = _compute_kernels(
        X, Y, spec, want, all_depths, working_memory, n_jobs, verbose
    )
    return {name: back(_finish(out[name], all_depths)) for name in want}


@validated(("X", "Y") + NETWORK + _RUN, signature=True)
def nngp_ntk_kernels(X, Y=None, **params):
    """NNGP and NTK kernels together, from one pass of the recursion.

    Parameters
    ----------
    {params}

    Returns
    -------
    nngp, ntk : arrays of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.
        Same array namespace as ``X``.

    See Also
    --------
    ntk_kernel, nngp_kernel : One kernel at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import nngp_ntk_kernels
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> nngp, ntk = nngp_ntk_kernels(X, depth=2)
    >>> nngp.shape, ntk.shape
    ((3, 3), (3, 3))
    >>> bool(np.all(ntk >= nngp))
    True
    """
    spec = spec_of(params)
    out = spec_kernels(X, Y, spec, ("nngp", "ntk"), **_pick(params, _RUN))
    return out["nngp"], out["ntk"]


@validated(("X", "Y") + NETWORK + _RUN, signature=True)
def ntk_kernel(X, Y=None, **params):
    """Neural Tangent Kernel of an infinitely wide fully connected network.

    The NTK governs gradient-descent training of the network's parameters:
    an infinitely wide network trained on squared loss predicts exactly as
    kernel regression with this kernel.

    Parameters
    ----------
    {params}

    Returns
    -------
    K : array of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.

    See Also
    --------
    nngp_kernel : The NNGP kernel (training the readout only).
    ntk_diag : The diagonal ``K(x, x)`` alone, in O(n).

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import ntk_kernel
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> K = ntk_kernel(X, depth=1, weight_std=1.0, bias_std=0.0)
    >>> np.round(K, 4)
    array([[0.5   , 0.0796],
           [0.0796, 0.5   ]])
    """
    spec = spec_of(params)
    return spec_kernels(X, Y, spec, ("ntk",), **_pick(params, _RUN))["ntk"]


@validated(("X", "Y") + NETWORK + _RUN, signature=True)
def nngp_kernel(X, Y=None, **params):
    """NNGP kernel: the output covariance of an infinitely wide random network.

    It is also the NTK of the same network when only the readout layer is
    trained, and the prior covariance of the network's Gaussian process.

    Parameters
    ----------
    {params}

    Returns
    -------
    K : array of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.

    See Also
    --------
    ntk_kernel : The Neural Tangent Kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import nngp_kernel
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> np.round(nngp_kernel(X, depth=1), 4)
    array([[0.25  , 0.0796],
           [0.0796, 0.25  ]])
    """
    spec = spec_of(params, ntk=False)
    return spec_kernels(X, Y, spec, ("nngp",), **_pick(params, _RUN))["nngp"]


def spec_diagonal(X, spec, which, *, all_depths=False, dtype=None, device="auto"):
    """The diagonal ``K_which(x, x)`` of the network ``spec`` (``which``:
    ``"ntk"`` or ``"nngp"``), the diagonal functions' work."""
    check_device(device)
    if device == "auto":  # O(n) work: where the input lives
        xp = get_namespace(X)
        X, _ = _prepare(X, None, xp, _compute_dtype(xp, dtype))
        back = _same
    else:
        (X, _), back = _place(device, dtype, X, None)
        xp = get_namespace(X)
    _, diag = checked_diagonals(xp, X, "X", spec, which == "ntk", all_depths)
    blocks = diag[which]
    return back(xp.stack(blocks) if all_depths else blocks[0])


def _same(a):
    return a


@validated(("X",) + NETWORK + _DIAG_RUN, "diag", signature=True)
def ntk_diag(X, **params):
    """Diagonal ``NTK(x, x)`` of each row, in O(n_samples * depth).

    Computed from the exact correlation-one recursion, without forming the
    kernel matrix.

    Parameters
    ----------
    {params}

    Returns
    -------
    diag : array of shape (n_samples,) or (depth, n_samples)
        The diagonal of ``ntk_kernel(X)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import ntk_diag
    >>> ntk_diag(np.array([[1.0, 0.0], [0.0, 2.0]]), depth=1)
    array([0.5, 2. ])
    """
    spec = spec_of(params)
    return spec_diagonal(X, spec, "ntk", **_pick(params, _DIAG_RUN))


@validated(("X",) + NETWORK + _DIAG_RUN, "diag", signature=True)
def nngp_diag(X, **params):
    """Diagonal ``NNGP(x, x)``: the output variance of each row.

    Parameters
    ----------
    {params}

    Returns
    -------
    diag : array of shape (n_samples,) or (depth, n_samples)
        The diagonal of ``nngp_kernel(X)``: the prior variance of the
        network's Gaussian process at each row.

    See Also
    --------
    ntk_diag : The NTK's diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import nngp_diag, nngp_kernel
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> nngp_diag(X, depth=1)
    array([0.25, 1.  ])
    >>> bool(np.allclose(nngp_diag(X, depth=1), np.diag(nngp_kernel(X, depth=1))))
    True
    """
    spec = spec_of(params, ntk=False)
    return spec_diagonal(X, spec, "nngp", **_pick(params, _DIAG_RUN))


@validated(("kernel",) + NETWORK + _MATVEC_RUN, signature=True)
def kernel_matvec(X, Y, V, **params):
    """Product ``K(X, Y) @ V`` without forming ``K(X, Y)`` at once.

    Rows of ``X`` are processed in blocks whose kernel rows fit within
    ``working_memory``, so predicting on millions of rows against a few
    thousand training rows uses bounded memory.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        Rows for which the product is wanted (e.g. test points).
    Y : array-like of shape (n_samples_Y, n_features)
        Columns of the kernel (e.g. training points).
    V : array-like of shape (n_samples_Y,) or (n_samples_Y, n_targets)
        The vectors to multiply.
    {params}

    Returns
    -------
    KV : array of shape (n_samples_X,) or (n_samples_X, n_targets)
        ``K(X, Y) @ V``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.kernels import kernel_matvec, ntk_kernel
    >>> rng = np.random.default_rng(0)
    >>> X, Y, v = rng.normal(size=(50, 3)), rng.normal(size=(20, 3)), np.ones(20)
    >>> bool(np.allclose(kernel_matvec(X, Y, v, working_memory=0.01),
    ...                  ntk_kernel(X, Y) @ v))
    True
    """
    kernel = params["kernel"]
    spec = spec_of(params, ntk=kernel == "ntk")
    if Y is None:
        raise ValueError("kernel_matvec needs Y (the kernel's columns).")
    return spec_matvec(X, Y, V, spec, kernel, **_pick(params, _MATVEC_RUN))


def spec_matvec(
    X,
    Y,
    V,
    spec,
    kernel,
    *,
    working_memory=None,
    n_jobs=-1,
    dtype=None,
    device="auto",
    verbose=0,
):
    """``K_kernel(X, Y) @ V`` of the network ``spec``, in row blocks of ``X``
    (the work of :func:`kernel_matvec` behind its validation)."""
    xp_v = get_namespace(V)
    if is_numpy_namespace(xp_v):
        V = np.asarray(V)
    (X, Y, V), back = _place(device, dtype, X, Y, V)
    xp = get_namespace(X)
    V = xp.astype(V, X.dtype)
    if V.ndim not in (1, 2) or V.shape[0] != Y.shape[0]:
        raise ValueError(
            f"V must have shape ({Y.shape[0]},) or ({Y.shape[0]}, k) to match "
            f"the {Y.shape[0]} rows of Y, got {tuple(V.shape)}."
        )
    if not bool(xp.all(xp.isfinite(V))):
        raise ValueError("V contains NaN or infinity.")
    return back(_blocked_matvec(X, Y, V, spec, kernel, working_memory, n_jobs, verbose))


def _row_block(n_rows_y, budget, itemsize):
    """Rows of X per block so that one block of kernel rows uses half the budget."""
    return max(1, int(budget / 2 / (max(n_rows_y, 1) * itemsize)))


def _blocked_matvec(X, Y, V, spec, kernel, working_memory, n_jobs, verbose=0):
    xp = get_namespace(X)
    budget = budget_bytes(working_memory)
    itemsize = 4 if X.dtype == xp.float32 else 8
    rows = _row_block(Y.shape[0], budget, itemsize)
    pieces = []
    n = X.shape[0]
    starts = progress(
        range(0, n, rows), desc=f"kernel rows ({n} x {Y.shape[0]})", verbose=verbose
    )
    for i0 in starts:
        block = _compute_kernels(
            X[i0 : min(i0 + rows, n), :],
            Y,
            spec,
            (kernel,),
            False,
            budget / 2 / 2**20,
            n_jobs,
        )[kernel][0, ...]
        # NumPy float64 goes through SciPy's BLAS, the library of the
        # Cholesky solve that follows in a grid search (see blas_matmul).
        pieces.append(blas_matmul(block, V) if is_numpy_namespace(xp) else block @ V)
    if not pieces:
        shape = (0,) + tuple(V.shape[1:])
        return xp.zeros(shape, dtype=X.dtype, device=_device_of(X))
    return xp.concat(pieces, axis=0)
