"""Kernel matrices cached on disk, keyed by the data and the kernel's parameters.

A grid search over parameters that do not change the kernel (``alpha``, the
training time ``t``, ...) refits on the same folds many times; with a
``memory`` (a :class:`joblib.Memory` or a folder, as for ``Pipeline``) each
fold's kernel is computed once and loaded from disk afterwards.
:func:`cached_kernel` is the one entry point used by the estimators'
``memory`` parameter.
"""

import numpy as np
from joblib import Memory
from sklearn.utils.validation import check_memory

from ._array_api import get_namespace, is_numpy_namespace
from .kernels import KernelSpec, nngp_kernel, nngp_ntk_kernels, ntk_kernel

__all__ = ["cached_kernel"]

# Arguments that change how the kernel is computed but not its value; they are
# left out of the cache key.
_NOT_IN_KEY = ["working_memory", "n_jobs", "device"]


def _cached(memory, function):
    """``memory.cache(function)``, loading arrays as read-only memory maps.

    With a plain local joblib cache a hit then costs an ``mmap`` instead of
    reading the whole matrix into a new buffer (a 1600 x 1600 kernel: 0.65 ms
    instead of 4.5 ms, measured on the development VM); the pages come from
    the OS's file cache. joblib reads ``mmap_mode`` from the ``Memory``
    object only, so an equivalent one on the same folder is made. A cache
    that compresses its files (which cannot be mapped), that asks for its own
    ``mmap_mode``, or that is not a local :class:`joblib.Memory` is used as
    it is.
    """
    if (
        type(memory) is Memory
        and memory.location is not None
        and memory.mmap_mode is None
        and not memory.compress
        and memory.backend == "local"
    ):
        memory = Memory(
            memory.location,
            mmap_mode="r",
            verbose=getattr(memory, "_verbose", 0),
            backend_options=memory.backend_options,
        )
    return memory.cache(function, ignore=_NOT_IN_KEY)


def _compute_kernel(X, Y, kernel, spec, all_depths, working_memory, n_jobs, device):
    """The function whose results are cached (its arguments are the key)."""
    params = dict(
        depth=spec.depth,
        activation=spec.activation,
        activation_params=dict(spec.activation_params),
        weight_std=spec.weight_std,
        bias_std=spec.bias_std,
        parameterization=spec.parameterization,
        width=spec.width,
        all_depths=all_depths,
        working_memory=working_memory,
        n_jobs=n_jobs,
        device=device,
    )
    if kernel == "nngp":
        return nngp_kernel(X, Y, **params)
    if spec.frozen_layers:
        return nngp_ntk_kernels(X, Y, frozen_layers=spec.frozen_layers, **params)[1]
    return ntk_kernel(X, Y, **params)


def cached_kernel(
    memory,
    X,
    Y=None,
    *,
    kernel="ntk",
    all_depths=False,
    working_memory=None,
    n_jobs=-1,
    device="auto",
    **kernel_params,
):
    """``K(X, Y)``, computed once per distinct data and parameters.

    Parameters
    ----------
    memory : None, str or joblib.Memory
        Where kernels are cached: a folder path, a :class:`joblib.Memory`,
        or ``None`` (no caching: the kernel is computed on every call).
    X : array-like of shape (n_samples_X, n_features)
        Rows of the kernel.
    Y : array-like of shape (n_samples_Y, n_features), default=None
        Columns; ``None`` means ``K(X, X)``.
    kernel : {"ntk", "nngp"}, default="ntk"
        Which kernel.
    all_depths : bool, default=False
        Return the kernels of every depth ``1..depth`` stacked (one pass).
    working_memory : float, default=None
        Memory budget in MiB of the tiled computation.
    n_jobs : int, default=-1
        Threads over kernel tiles.
    device : {"auto", "cpu", "gpu"}, default="auto"
        Where the kernel is computed. These three are as in
        :func:`~sknetk.kernels.ntk_kernel`; they do not change the kernel's
        value, so they are not part of the cache key.
    **kernel_params
        ``depth``, ``activation``, ``activation_params``, ``weight_std``,
        ``bias_std``, ``parameterization``, ``width`` and ``frozen_layers``
        (``kernel="ntk"`` only), as in
        :func:`~sknetk.kernels.nngp_ntk_kernels`.

    Returns
    -------
    K : ndarray of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.
        When loaded from a folder cache, a read-only memory map of the
        stored file (copy it before writing to it).

    Notes
    -----
    The key is the content of ``X`` and ``Y`` (as float64; joblib hashes the
    array bytes, in O(n_samples * n_features)) and the validated kernel
    parameters, so an unused parameter left at its default and the same
    value passed explicitly share one entry. Only NumPy input is cached;
    other array libraries (CuPy) bypass the cache, since their arrays would
    have to be copied to the host to be hashed and stored.

    Examples
    --------
    >>> import numpy as np
    >>> from tempfile import TemporaryDirectory
    >>> from sknetk._cache import cached_kernel
    >>> from sknetk.kernels import ntk_kernel
    >>> X = np.random.default_rng(0).normal(size=(20, 3))
    >>> with TemporaryDirectory() as folder:
    ...     K1 = cached_kernel(folder, X, depth=2)  # computed and stored
    ...     K2 = cached_kernel(folder, X, depth=2)  # loaded from the folder
    >>> bool(np.array_equal(K1, K2)), bool(np.allclose(K1, ntk_kernel(X, depth=2)))
    (True, True)
    """
    if kernel not in ("ntk", "nngp"):
        raise ValueError(f"kernel must be 'ntk' or 'nngp', got {kernel!r}.")
    spec = KernelSpec.from_params(**kernel_params)
    if kernel == "nngp" and spec.frozen_layers:
        raise ValueError('frozen_layers applies to kernel="ntk" only.')
    memory = check_memory(memory)
    xp = get_namespace(X, Y)
    if is_numpy_namespace(xp):
        X = np.ascontiguousarray(X, dtype=np.float64)
        if Y is not None:
            Y = np.ascontiguousarray(Y, dtype=np.float64)
        function = _cached(memory, _compute_kernel)
    else:
        function = _compute_kernel
    return function(X, Y, kernel, spec, bool(all_depths), working_memory, n_jobs,
                    device)
