"""Dask back end of the large-scale solver: row blocks as tasks on a cluster.

The inputs are dask arrays chunked by rows (any number of row chunks, one
chunk over the features). Each row chunk becomes a task that computes its
block of ``K(X_chunk, centres)`` where the chunk lives, and only ``m x t``
(or ``m x m``) partial results travel back, summed by a tree of tasks. The
work runs on the cluster of the current ``distributed.Client`` (or on dask's
default local scheduler when there is none); the small ``m x m`` algebra of
the conjugate gradient stays in the calling process.

Chunks of CuPy arrays (GPU workers) are computed with CuPy: the centres and
vectors are moved to the chunk's device inside the task, and the reductions
come back to the host as NumPy.

Dask is imported only when these functions run: install the extra with
``pip install "sknetk[dask]"`` (``dask[array]`` and ``distributed``).
"""

import operator

import numpy as np

from ._array_api import device, get_namespace, is_numpy_namespace, to_numpy
from ._linalg import times_upper

__all__ = [
    "DaskRowOperator",
    "dask_kernel_matvec",
    "dask_knm_gram",
    "dask_knm_normal",
    "dask_knm_rhs",
    "n_dask_workers",
]

_INSTALL_HINT = 'Install the dask extra with: pip install "sknetk[dask]"'


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            f"Dask input needs dask[array] ({exc}). {_INSTALL_HINT}"
        ) from exc
    return dask, da


def _client():
    """The current ``distributed.Client``, or None."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - depends on the machine
        return None
    try:
        return default_client()
    except ValueError:  # no client started
        return None


def n_dask_workers():
    """Number of workers of the current ``distributed.Client`` (1 without one).

    Returns
    -------
    n_workers : int
        At least 1.

    Examples
    --------
    >>> from sknetk._dask import n_dask_workers
    >>> n_dask_workers() >= 1
    True
    """
    client = _client()
    if client is None:
        return 1
    return max(1, len(client.scheduler_info().get("workers", {})))


def _constant(a):
    """A large constant shipped once: scattered to the workers, else delayed."""
    dask, _ = _dask()
    client = _client()
    if client is not None:
        return client.scatter(a, broadcast=True, hash=False)
    return dask.delayed(a, pure=True)


def _by_rows(X, row_chunks=None):
    """``X`` as a dask array with one chunk over its columns."""
    _, da = _dask()
    if not isinstance(X, da.Array):
        chunks = (row_chunks,) + tuple(-1 for _ in X.shape[1:])
        return da.from_array(X, chunks=chunks if row_chunks is not None else "auto")
    if X.ndim > 1 and X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if row_chunks is not None and X.chunks[0] != tuple(row_chunks):
        X = X.rechunk({0: row_chunks})
    return X


def _row_blocks(A):
    """The delayed row blocks of a dask array with one column chunk."""
    blocks = A.to_delayed()
    return list(blocks[:, 0]) if A.ndim == 2 else list(blocks)


def _tree_sum(parts):
    """Pairwise sum of delayed arrays (a tree of depth log2(len(parts)))."""
    dask, _ = _dask()
    add = dask.delayed(operator.add, pure=True)
    while len(parts) > 1:
        parts = [
            add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


# ---------------------------------------------------------------------------
# Tasks (module-level, so that process workers can unpickle them)
# ---------------------------------------------------------------------------
def _like(a, X):
    """``a`` (NumPy) in the namespace and device of the chunk ``X``."""
    xp = get_namespace(X)
    if a is None or is_numpy_namespace(xp):
        return a
    return xp.asarray(a, device=device(X))


def _weighted(A, w):
    return A if w is None else w[:, None] * A


def _task_kernel(Xb, C, kernel_fn):
    return kernel_fn(Xb, _like(C, Xb))


def _task_rhs(Xb, yb, wb, C, kernel_fn, B):
    """``(K_b^T W_b y_b, F_b^T W_b F_b or None)``, ``F_b = K_b B``, for one block."""
    K = kernel_fn(Xb, _like(C, Xb))
    w = _like(wb, Xb)
    yb = _like(np.asarray(to_numpy(yb), dtype=K.dtype), Xb)
    rhs = to_numpy(K.T @ _weighted(yb, w))
    if B is None:
        return rhs, None
    F = times_upper(get_namespace(K), K, _like(B, Xb))
    if w is not None:
        F = get_namespace(F).sqrt(w)[:, None] * F
    return rhs, to_numpy(F.T @ F)


def _task_rhs_cached(K, yb, wb):
    yb = _like(np.asarray(to_numpy(yb), dtype=K.dtype), K)
    return to_numpy(K.T @ _weighted(yb, _like(wb, K)))


def _task_normal(Xb, wb, C, v, kernel_fn):
    K = kernel_fn(Xb, _like(C, Xb))
    return _task_normal_cached(K, wb, v)


def _task_normal_cached(K, wb, v):
    return to_numpy(K.T @ _weighted(K @ _like(v, K), _like(wb, K)))


def _task_matvec(Xb, C, V, kernel_fn):
    return kernel_fn(Xb, _like(C, Xb)) @ _like(V, Xb)


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------
def dask_kernel_matvec(X, Y, V, kernel_fn):
    """Lazy ``K(X, Y) @ V`` for a dask array ``X`` chunked by rows.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Rows; each row chunk becomes one task.
    Y : ndarray of shape (m, n_features)
        Columns of the kernel (e.g. Nystrom centres), shipped once.
    V : ndarray of shape (m,) or (m, n_targets)
        Vectors to multiply.
    kernel_fn : callable
        ``kernel_fn(A, B)``, picklable (see
        :func:`sknetk._nystrom.kernel_block_function`).

    Returns
    -------
    KV : dask array of shape (n_samples,) or (n_samples, n_targets)
        With ``X``'s row chunks; nothing is computed until asked.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sknetk._dask import dask_kernel_matvec
    >>> from sknetk._nystrom import kernel_block_function
    >>> from sknetk.kernels import ntk_kernel
    >>> rng = np.random.default_rng(0)
    >>> X, Y, v = rng.normal(size=(30, 3)), rng.normal(size=(4, 3)), np.ones(4)
    >>> KV = dask_kernel_matvec(da.from_array(X, chunks=(10, 3)), Y, v,
    ...                         kernel_block_function())
    >>> KV.chunks
    ((10, 10, 10),)
    >>> bool(np.allclose(KV.compute(scheduler="sync"), ntk_kernel(X, Y) @ v))
    True
    """
    X = _by_rows(X)
    V = to_numpy(V)
    dtype = np.result_type(V.dtype, np.float32)
    if V.ndim == 1:
        chunks, drop = (X.chunks[0],), 1
    else:
        chunks, drop = (X.chunks[0], (V.shape[1],)), None
    xp_meta = get_namespace(X._meta)
    meta = xp_meta.empty((0,) * len(chunks), dtype=dtype)
    return X.map_blocks(
        _task_matvec,
        _constant(to_numpy(Y)),
        _constant(V),
        kernel_fn,
        chunks=chunks,
        drop_axis=drop,
        dtype=dtype,
        meta=meta,
    )


def dask_knm_rhs(X, y, centers, kernel_fn, sample_weight=None):
    """``K_nm^T W y`` as a tree of dask tasks over the row chunks of ``X``.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Rows, chunked by rows.
    y : array of shape (n_samples,) or (n_samples, n_targets)
        Targets (NumPy or dask; rechunked like ``X``).
    centers : ndarray of shape (m, n_features)
        The centres.
    kernel_fn : callable
        ``kernel_fn(A, B)``.
    sample_weight : array of shape (n_samples,), default=None
        Row weights ``W``.

    Returns
    -------
    rhs : ndarray of shape (m,) or (m, n_targets)

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sknetk._dask import dask_knm_rhs
    >>> from sknetk._nystrom import kernel_block_function
    >>> from sknetk.kernels import ntk_kernel
    >>> rng = np.random.default_rng(0)
    >>> X, C, y = rng.normal(size=(30, 3)), rng.normal(size=(4, 3)), np.ones(30)
    >>> rhs = dask_knm_rhs(da.from_array(X, chunks=(7, 3)), y, C,
    ...                    kernel_block_function())
    >>> bool(np.allclose(rhs, ntk_kernel(X, C).T @ y))
    True
    """
    op = DaskRowOperator(X, centers, kernel_fn, sample_weight, "stream")
    y2 = y if y.ndim == 2 else y[:, None]
    out = op.knm_rhs(y2)
    return out if y.ndim == 2 else out[:, 0]


def dask_knm_normal(X, v, centers, kernel_fn, sample_weight=None):
    """``K_nm^T W K_nm v`` as a tree of dask tasks over the row chunks of ``X``.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Rows, chunked by rows.
    v : ndarray of shape (m,) or (m, n_targets)
        Vectors in coefficient space.
    centers : ndarray of shape (m, n_features)
        The centres.
    kernel_fn : callable
        ``kernel_fn(A, B)``.
    sample_weight : array of shape (n_samples,), default=None
        Row weights ``W``.

    Returns
    -------
    Hv : ndarray of the shape of ``v``

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sknetk._dask import dask_knm_normal
    >>> from sknetk._nystrom import kernel_block_function
    >>> from sknetk.kernels import ntk_kernel
    >>> rng = np.random.default_rng(0)
    >>> X, C, v = rng.normal(size=(30, 3)), rng.normal(size=(4, 3)), np.ones(4)
    >>> Hv = dask_knm_normal(da.from_array(X, chunks=(7, 3)), v, C,
    ...                      kernel_block_function())
    >>> K = ntk_kernel(X, C)
    >>> bool(np.allclose(Hv, K.T @ (K @ v)))
    True
    """
    op = DaskRowOperator(X, centers, kernel_fn, sample_weight, "stream")
    v2 = v if v.ndim == 2 else v[:, None]
    out = op.knm_normal(v2)
    return out if v.ndim == 2 else out[:, 0]


def dask_knm_gram(X, centers, kernel_fn, sample_weight=None, upper=None):
    """``(K_nm U)^T W (K_nm U)`` (m x m) from one pass of dask tasks over the rows.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Rows, chunked by rows.
    centers : ndarray of shape (m, n_features)
        The centres.
    kernel_fn : callable
        ``kernel_fn(A, B)``.
    sample_weight : array of shape (n_samples,), default=None
        Row weights ``W``.
    upper : ndarray of shape (m, m), default=None
        An upper-triangular ``U`` (the solver passes its preconditioner);
        ``None`` means the identity, i.e. ``K_nm^T W K_nm``.

    Returns
    -------
    G : ndarray of shape (m, m)

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sknetk._dask import dask_knm_gram
    >>> from sknetk._nystrom import kernel_block_function
    >>> from sknetk.kernels import ntk_kernel
    >>> rng = np.random.default_rng(0)
    >>> X, C = rng.normal(size=(30, 3)), rng.normal(size=(4, 3))
    >>> G = dask_knm_gram(da.from_array(X, chunks=(7, 3)), C,
    ...                   kernel_block_function())
    >>> K = ntk_kernel(X, C)
    >>> bool(np.allclose(G, K.T @ K))
    True
    """
    op = DaskRowOperator(X, centers, kernel_fn, sample_weight, "gram")
    if upper is None:
        upper = np.eye(len(centers))
    op.knm_rhs(np.zeros((X.shape[0], 1)), upper=upper)
    return op.gram


class DaskRowOperator:
    """Products with ``K_nm`` for a dask ``X``, as tasks on the current cluster.

    The interface of :class:`sknetk._nystrom._LocalRowOperator`: :meth:`rhs`
    returns ``K_nm^T W y`` (and prepares the strategy), :meth:`apply` returns
    ``B^T K_nm^T W K_nm B v`` for the preconditioner ``B``; the lower-level
    :meth:`knm_rhs` and :meth:`knm_normal` give the plain products. All take
    and return NumPy arrays.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features)
        Rows, chunked by rows (a NumPy array is wrapped with automatic
        chunks).
    centers : ndarray of shape (m, n_features)
        The centres, scattered once to every worker.
    kernel_fn : callable
        Picklable ``kernel_fn(A, B)``.
    sample_weight : array of shape (n_samples,) or None
        Row weights (NumPy or dask).
    strategy : {"cache", "gram", "stream"}
        ``"cache"`` persists the blocks of ``K_nm`` in the workers' memory
        (spread over the cluster); ``"gram"`` sums the preconditioned
        ``(K_b B)^T W_b (K_b B)`` over the blocks once and then works on the
        ``m x m`` result locally; ``"stream"`` recomputes the blocks in every
        product.
    """

    def __init__(self, X, centers, kernel_fn, sample_weight, strategy):
        self.X = _by_rows(X)
        self.row_chunks = self.X.chunks[0]
        self.blocks_X = _row_blocks(self.X)
        self.kernel_fn = kernel_fn
        self.C = _constant(to_numpy(centers))
        if sample_weight is None:
            self.blocks_w = [None] * len(self.blocks_X)
        else:
            w = _by_rows(sample_weight, self.row_chunks)
            self.blocks_w = _row_blocks(w)
        if strategy not in ("cache", "gram", "stream"):
            raise ValueError(
                f"strategy must be 'cache', 'gram' or 'stream', got {strategy!r}."
            )
        self.strategy = strategy
        self.blocks_K = None
        self.gram = None

    def knm_rhs(self, y, upper=None):
        """``K_nm^T W y`` for ``y`` of shape (n_samples, n_targets).

        With ``strategy="cache"`` it also persists the kernel blocks; with
        ``"gram"``, ``upper`` (an upper-triangular ``U``, m x m) is required
        and ``gram`` becomes ``(K_nm U)^T W (K_nm U)``.
        """
        dask, _ = _dask()
        yb = _row_blocks(_by_rows(y, self.row_chunks))
        if self.strategy == "cache":
            task = dask.delayed(_task_kernel, pure=True)
            blocks = [task(Xb, self.C, self.kernel_fn) for Xb in self.blocks_X]
            self.blocks_K = list(dask.persist(*blocks))
            task = dask.delayed(_task_rhs_cached, pure=True)
            parts = [task(K, b, w) for K, b, w in zip(self.blocks_K, yb, self.blocks_w)]
            return dask.compute(_tree_sum(parts))[0]
        U = None
        if self.strategy == "gram":
            U = _constant(to_numpy(upper))
        task = dask.delayed(_task_rhs, pure=True, nout=2)
        pairs = [
            task(Xb, b, w, self.C, self.kernel_fn, U)
            for Xb, b, w in zip(self.blocks_X, yb, self.blocks_w)
        ]
        first = dask.delayed(_first, pure=True)
        rhs = _tree_sum([first(p) for p in pairs])
        if U is None:
            return dask.compute(rhs)[0]
        second = dask.delayed(_second, pure=True)
        rhs, self.gram = dask.compute(rhs, _tree_sum([second(p) for p in pairs]))
        return rhs

    def knm_normal(self, v):
        """``K_nm^T W K_nm v`` for ``v`` of shape (m, n_targets)."""
        dask, _ = _dask()
        vd = dask.delayed(to_numpy(v), pure=True)
        if self.blocks_K is not None:
            task = dask.delayed(_task_normal_cached, pure=True)
            parts = [task(K, w, vd) for K, w in zip(self.blocks_K, self.blocks_w)]
        else:
            task = dask.delayed(_task_normal, pure=True)
            parts = [
                task(Xb, w, self.C, vd, self.kernel_fn)
                for Xb, w in zip(self.blocks_X, self.blocks_w)
            ]
        return dask.compute(_tree_sum(parts))[0]

    # -- the interface of sknetk._nystrom._LocalRowOperator ------------------
    def rhs(self, y, precond):
        """``K_nm^T W y``; prepares the cache or the preconditioned Gram."""
        upper = precond.explicit() if self.strategy == "gram" else None
        return self.knm_rhs(y, upper=upper)

    def apply(self, v, precond):
        """``B^T K_nm^T W K_nm B v`` (NumPy in and out)."""
        if self.strategy == "gram":
            return self.gram @ v
        return precond.apply_t(self.knm_normal(precond.apply(v)))
