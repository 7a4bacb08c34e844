"""Kernel matrices cached on disk, keyed by the data and the kernel's parameters.

A grid search over parameters that do not change the kernel (``alpha``, the
training time ``t``, ...) refits on the same folds many times; with a
``memory`` (a :class:`joblib.Memory` or a folder, as for ``Pipeline``) each
fold's kernel is computed once and loaded from disk afterwards.
:func:`cached_kernel` is the one entry point used by the estimators'
``memory`` parameter. Three rules hold whatever the ``memory``:

* A kernel from the cache is never writable (a read-only memory map of the
  stored file, or a read-only array), so a consumer that works in place
  copies it first and a stored file is never modified, even when the user's
  ``joblib.Memory`` maps files with ``mmap_mode="r+"`` or ``"w+"``.
* The cache is a folder of pickles, and loading a pickle runs code: whoever
  can write the folder can run code as the user. A folder path that another
  user could write is refused (:func:`folder_risk`); a
  :class:`joblib.Memory` on such a folder is used with a warning, as the
  user's explicit choice.
* The cache only saves time: a folder that cannot be written, or an entry
  that cannot be read (truncated, garbage), gives a warning, and the kernel
  is computed (and the broken entry rewritten).
"""

import os
import stat
import warnings

import numpy as np
from joblib import Memory
from sklearn.utils.validation import check_memory

from ._array_api import get_namespace, is_numpy_namespace
from ._conv import (
    ConvKernelSpec,
    as_images,
    compute_kernels,
    finish,
    place_images,
)
from .kernels import KernelSpec, budget_bytes, nngp_kernel, nngp_ntk_kernels, ntk_kernel

__all__ = ["cached_conv_kernel", "cached_kernel", "folder_risk"]

# Arguments that change how the kernel is computed but not its value; they are
# left out of the cache key.
_NOT_IN_KEY = ["working_memory", "n_jobs", "device"]

# The folders joblib makes under its store location for ``_compute_kernel``
# (and ``_compute_conv_kernel``).
_FUNCTION_FOLDERS = ("sknetk", "_cache", "_compute_kernel")
_CONV_FOLDER = "_compute_conv_kernel"


# -- who can write the cache ---------------------------------------------------
def _private_group(gid):
    """Whether group ``gid`` is the current user's private group.

    Debian-like systems give each user a group of their own and a umask of
    ``002``, so the user's folders are writable by that group, which has the
    user's name and no other member.
    """
    if gid != os.getegid():
        return False
    try:
        import grp
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    return group.gr_name == user and set(group.gr_mem) <= {user}


def _folder_risk_of(path, st, inside):
    """Why another user could add or replace files in folder ``path``, or None.

    ``inside``: ``path`` is the cache folder or a folder in it, where a
    sticky bit does not help (others could still add entries). An ancestor
    with the sticky bit (``/tmp``) is safe: others cannot rename or replace
    what is ours in it.
    """
    if st.st_uid not in (os.geteuid(), 0):
        return f"{path} belongs to another user (uid {st.st_uid})"
    if not inside and st.st_mode & stat.S_ISVTX:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if st.st_mode & stat.S_IWOTH:
        return f"{path} is writable by every user (mode {mode:#o})"
    if st.st_mode & stat.S_IWGRP and not _private_group(st.st_gid):
        return f"{path} is writable by the users of group {st.st_gid} (mode {mode:#o})"
    return None


def _prefixes(path):
    """``path`` and its ancestors, the root first."""
    chain = [path]
    while os.path.dirname(chain[-1]) != chain[-1]:
        chain.append(os.path.dirname(chain[-1]))
    return chain[::-1]


def folder_risk(folder, inner=()):
    """Why a cache in ``folder`` could be written by another user, or None.

    A cache is a folder of pickles, and loading a pickle runs code, so a user
    who can add or replace a file in the cache can run code as whoever loads
    it. Every existing folder from the root down to ``folder``, and the
    ``inner`` folders that exist, must belong to the current user or to root
    and must not be writable by other users: not world-writable, and
    group-writable only by the user's private group. Ancestors of ``folder``
    may be shared if they have the sticky bit (as ``/tmp`` has). A symbolic
    link on the way must belong to the user or to root too. POSIX only: on
    other systems (Windows) nothing is checked.

    Parameters
    ----------
    folder : str or os.PathLike
        The cache folder. It need not exist: its existing ancestors are
        checked.
    inner : sequence of str, default=()
        Folders in the cache (absolute, or relative to ``folder``), checked
        like ``folder`` where they exist.

    Returns
    -------
    reason : str or None
        What makes the folder unsafe, e.g. ``"/tmp/cache is writable by
        every user (mode 0o777)"``; ``None`` when no other user can write it
        (and always on systems other than POSIX).

    Examples
    --------
    >>> import os, tempfile
    >>> from sknetk._cache import folder_risk
    >>> folder = tempfile.mkdtemp()  # private: mode 0o700
    >>> print(folder_risk(folder))
    None
    >>> os.chmod(folder, 0o777)
    >>> os.name != "posix" or "writable by every user" in folder_risk(folder)
    True
    >>> os.rmdir(folder)
    """
    if os.name != "posix":
        return None
    literal = os.path.abspath(os.fspath(folder))
    for path in _prefixes(literal):
        # a link another user owns in a shared folder can be re-pointed
        try:
            st = os.lstat(path)
        except OSError:
            break
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (os.geteuid(), 0):
            return f"{path} is a symbolic link of another user (uid {st.st_uid})"
    real = os.path.realpath(literal)
    chain = _prefixes(real)
    below = [os.path.join(real, os.fspath(path)) for path in inner]
    for i, path in enumerate(chain + below):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if i < len(chain):
                break  # the rest of the chain is yet to be created
            continue
        except OSError:
            continue  # using it fails with its own error
        if not stat.S_ISDIR(st.st_mode):
            continue  # a file in the way: the caller reports it
        reason = _folder_risk_of(path, st, inside=i >= len(chain) - 1)
        if reason is not None:
            return reason
    return None


def _store_folders(memory):
    """The folders joblib fills for :func:`_compute_kernel` in ``memory``."""
    store = getattr(getattr(memory, "store_backend", None), "location", None)
    if not isinstance(store, str):
        return []
    return [
        os.path.join(store, *_FUNCTION_FOLDERS[:k])
        for k in range(len(_FUNCTION_FOLDERS) + 1)
    ] + [os.path.join(store, *_FUNCTION_FOLDERS[:2], _CONV_FOLDER)]


def _trust_message(memory, reason):
    return (
        f"memory={memory!r}: {reason}. The cache is a folder of pickles, and "
        "loading a pickle runs code: another user who can write the folder "
        "could run code as you. Use a folder that only you can write, such "
        "as one made by tempfile.mkdtemp()"
    )


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def _warn_unwritable(memory, exc=None):
    why = f" ({_first_line(exc)})" if exc is not None else ""
    warnings.warn(
        f"memory={memory!r}: the kernel could not be stored in the cache "
        f"folder{why}; it is computed without caching.",
        UserWarning,
        stacklevel=4,
    )


def _folder_memory(memory):
    """A :class:`joblib.Memory` on the folder path ``memory``, or None.

    Raises ``ValueError`` for a folder that another user could write, a path
    that is not a folder and one that cannot be created. Missing folders are
    created private (mode ``0o700``). A folder that exists but cannot be
    written gives a warning and ``None``: the kernel is then computed.
    """
    folder = os.path.abspath(os.fspath(memory))
    reason = folder_risk(folder)
    if reason is not None:
        raise ValueError(_trust_message(memory, reason) + ".")
    missing = [path for path in _prefixes(folder) if not os.path.lexists(path)]
    for path in missing:
        try:
            os.mkdir(path, mode=0o700)
        except FileExistsError:
            pass  # made meanwhile: judged below
        except OSError as exc:
            raise ValueError(
                f"memory={memory!r}: cannot create the cache folder "
                f"{path} ({_first_line(exc)})."
            ) from exc
    if not os.path.isdir(folder):
        raise ValueError(
            f"memory={memory!r} must be a folder, or a path where one can be "
            "created, but a file is in the way."
        )
    try:
        cache = Memory(os.fspath(memory), verbose=0)
    except OSError as exc:
        reason = folder_risk(folder)
        if reason is not None:
            raise ValueError(_trust_message(memory, reason) + ".") from exc
        _warn_unwritable(memory, exc)
        return None
    reason = folder_risk(folder, _store_folders(cache))
    if reason is not None:
        raise ValueError(_trust_message(memory, reason) + ".")
    return cache


# -- reading and writing -------------------------------------------------------
def _read_only(K):
    """``K``, or a read-only view of it: a cached kernel is never written."""
    if isinstance(K, np.ndarray) and K.flags.writeable:
        K = K.view()
        K.flags.writeable = False
    return K


def _expected_shape(args):
    X, Y, _, spec, all_depths = args[:5]
    shape = (X.shape[0], X.shape[0] if Y is None else Y.shape[0])
    return (spec.depth,) + shape if all_depths else shape


def _plain_cached_call(memory, display, args, function=None):
    """``_compute_kernel(*args)`` through a plain local :class:`joblib.Memory`.

    Hits are read as read-only memory maps (a 1600 x 1600 kernel: 0.65 ms
    instead of 4.5 ms, measured on the development VM; the pages come from
    the OS's file cache), whatever ``mmap_mode`` the user's ``Memory`` has:
    joblib takes the mode from the ``Memory`` object, so equivalent ones on
    the same folder are made, one that maps (reads) and one that does not
    (computes and stores without reading the file back, so that a store
    that fails still returns the kernel). Compressed files cannot be mapped
    and are loaded as arrays. Only joblib's public ``MemorizedFunc`` methods
    are used, at the price of hashing the arguments twice per call
    (O(n_samples * n_features), against the O(n^3) solve that follows).
    """
    function = _compute_kernel if function is None else function
    options = dict(
        backend="local",
        compress=memory.compress,
        verbose=getattr(memory, "_verbose", 0),
        backend_options=dict(memory.backend_options or {}),
    )

    def cached(mmap_mode):
        return Memory(memory.location, mmap_mode=mmap_mode, **options).cache(
            function, ignore=_NOT_IN_KEY
        )

    try:
        reader = cached(None if memory.compress else "r")
        hit = reader.check_call_in_cache(*args)
    except OSError as exc:  # the function's folder cannot be made
        _warn_unwritable(display, exc)
        return function(*args)
    if hit:
        entry = reader.call_and_shelve(*args)  # the entry, not loaded yet
        try:
            K = entry.get()
            if not (
                isinstance(K, np.ndarray)
                and K.dtype == np.float64
                and K.shape == _expected_shape(args)
            ):
                raise ValueError(
                    f"not a float64 array of shape {_expected_shape(args)}"
                )
        except Exception as exc:  # truncated file, garbage, wrong object
            folder = os.path.join(
                reader.store_backend.location,
                reader.func_id,
                getattr(entry, "args_id", ""),
            )
            warnings.warn(
                f"memory={display!r}: the cached kernel in {folder} could not "
                f"be read ({_first_line(exc)}); it is computed again and the "
                "entry rewritten.",
                UserWarning,
                stacklevel=3,
            )
        else:
            return _read_only(K)
    # computed and stored (atomically: written aside, then renamed), and not
    # read back, so that a store that fails still returns the kernel
    K, _ = cached(None).call(*args)
    try:
        stored = reader.check_call_in_cache(*args)
    except OSError:
        stored = False
    if not stored:
        _warn_unwritable(display)
    return _read_only(K)


def _cached_call(memory, display, args, function=None):
    """``function(*args)`` (default ``_compute_kernel``), from or into the
    cache ``memory``."""
    function = _compute_kernel if function is None else function
    if (
        type(memory) is Memory
        and memory.location is not None
        and memory.backend == "local"
    ):
        return _plain_cached_call(memory, display, args, function)
    # A Memory subclass, another backend or another object with ``cache``:
    # used as it is, and what it returns is made read-only.
    cached = memory.cache(function, ignore=_NOT_IN_KEY)
    try:
        K = cached(*args)
    except KeyError as exc:  # joblib, mapping an entry it could not store
        _warn_unwritable(display, exc)
        K = function(*args)
    return _read_only(K)


def _check_cache(memory):
    """``memory`` as an object with ``cache``, or None for no caching."""
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        return _folder_memory(memory)
    memory = check_memory(memory)
    if (
        isinstance(memory, Memory)
        and memory.backend == "local"
        and isinstance(memory.location, (str, os.PathLike))
    ):
        reason = folder_risk(memory.location, _store_folders(memory))
        if reason is not None:
            warnings.warn(
                _trust_message(memory, reason)
                + " (a folder path would be refused; this joblib.Memory is "
                "used because it was passed explicitly).",
                UserWarning,
                stacklevel=3,
            )
    if isinstance(memory, Memory) and memory.location is None:
        return None
    return memory


def _compute_kernel(X, Y, kernel, spec, all_depths, working_memory, n_jobs, device):
    """The function whose results are cached (its arguments are the key).

    It calls the public kernel function of ``kernel`` (the tests count the
    computations through these names), with the keywords of ``spec``.
    """
    run = dict(all_depths=all_depths, working_memory=working_memory, n_jobs=n_jobs)
    if kernel == "nngp":
        return nngp_kernel(X, Y, **spec.params(), **run, device=device)
    if spec.frozen_layers:
        return nngp_ntk_kernels(X, Y, **spec.params(), **run, device=device)[1]
    return ntk_kernel(X, Y, **spec.params(), **run, device=device)


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
    spec=None,
    **kernel_params,
):
    """``K(X, Y)``, computed once per distinct data and parameters.

    Parameters
    ----------
    memory : None, str, os.PathLike or joblib.Memory
        Where kernels are cached: a folder path, a :class:`joblib.Memory`
        (or another object with its ``cache`` method), or ``None`` (no
        caching: the kernel is computed on every call). The cache is a
        folder of pickles, and loading a pickle runs code: a folder path
        that another user could write is refused with ``ValueError`` (see
        :func:`folder_risk`), and a missing folder is created private (mode
        ``0o700``); a :class:`joblib.Memory` on such a folder is used with a
        warning. A path that is a file or cannot be created raises
        ``ValueError``; a folder that cannot be written, or an entry that
        cannot be read, gives a warning and the kernel is computed.
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
    spec : KernelSpec, default=None
        The network, for callers that have built it (then no
        ``kernel_params``); taken as ``spec.for_kernel(kernel)``.
    **kernel_params
        ``depth``, ``activation``, ``activation_params``, ``weight_std``,
        ``bias_std``, ``parameterization``, ``width`` and ``frozen_layers``
        (``kernel="ntk"`` only), as in
        :func:`~sknetk.kernels.nngp_ntk_kernels`.

    Returns
    -------
    K : ndarray of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.
        With a cache it is read-only, whatever the ``mmap_mode`` of a
        :class:`joblib.Memory` (copy it before writing to it): loaded from
        a folder, it is a memory map of the stored file, which is never
        modified.

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
    >>> with TemporaryDirectory() as folder:  # private: mode 0o700
    ...     K1 = cached_kernel(folder, X, depth=2)  # computed and stored
    ...     K2 = cached_kernel(folder, X, depth=2)  # loaded from the folder
    >>> bool(np.array_equal(K1, K2)), bool(np.allclose(K1, ntk_kernel(X, depth=2)))
    (True, True)
    >>> K2.flags.writeable
    False
    """
    if kernel not in ("ntk", "nngp"):
        raise ValueError(f"kernel must be 'ntk' or 'nngp', got {kernel!r}.")
    if spec is None:
        spec = KernelSpec.from_params(**kernel_params, ntk=kernel == "ntk")
        spec = spec.for_kernel(kernel, strict=True)
    elif kernel_params:
        raise TypeError(f"cached_kernel takes spec or {sorted(kernel_params)}.")
    spec = spec.for_kernel(kernel)  # one entry per NNGP
    cache = _check_cache(memory)
    args = (X, Y, kernel, spec, bool(all_depths), working_memory, n_jobs, device)
    if cache is None or not is_numpy_namespace(get_namespace(X, Y)):
        return _compute_kernel(*args)
    X = np.ascontiguousarray(X, dtype=np.float64)
    if Y is not None:
        Y = np.ascontiguousarray(Y, dtype=np.float64)
    return _cached_call(cache, memory, (X, Y) + args[2:])


def _compute_conv_kernel(
    X, Y, kernel, spec, all_depths, working_memory, n_jobs, device
):
    """The convolutional kernel whose results are cached (arguments: the key).

    ``X`` and ``Y`` are NHWC image arrays and ``spec`` a
    :class:`~sknetk.conv.ConvKernelSpec`.
    """
    X, Y, back = place_images(device, None, None, X, Y)
    budget = budget_bytes(working_memory)
    out = compute_kernels(X, Y, spec, (kernel,), all_depths, budget, n_jobs)
    return back(finish(out[kernel], all_depths))


def cached_conv_kernel(
    memory,
    X,
    Y=None,
    *,
    kernel="ntk",
    image_shape=None,
    all_depths=False,
    working_memory=None,
    n_jobs=-1,
    device="auto",
    **kernel_params,
):
    """Convolutional ``K(X, Y)``, computed once per distinct data and parameters.

    The cache rules of :func:`cached_kernel` (read-only results, private
    folders, warnings on unwritable folders or unreadable entries) hold.

    Parameters
    ----------
    memory : None, str, os.PathLike or joblib.Memory
        Where kernels are cached, as for :func:`cached_kernel`.
    X : array-like of shape (n_samples_X, H, W, C) or (n_samples_X, H*W*C)
        Images, or flattened images with ``image_shape``.
    Y : array-like, default=None
        Second set of images; ``None`` means ``K(X, X)``.
    kernel : {"ntk", "nngp"}, default="ntk"
        Which kernel.
    image_shape : tuple of int, default=None
        As in :func:`sknetk.conv.ntk_kernel`.
    all_depths : bool, default=False
        Return the kernels of every depth ``1..depth`` stacked (one pass).
    working_memory : float, default=None
        Memory budget in MiB of the tiled computation (not in the key).
    n_jobs : int, default=-1
        Threads over tiles (not in the key).
    device : {"auto", "cpu", "gpu"}, default="auto"
        Where the kernel is computed (not in the key).
    **kernel_params
        The network, as in :func:`sknetk.conv.nngp_ntk_kernels`.

    Returns
    -------
    K : ndarray of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``;
        read-only when cached.

    Examples
    --------
    >>> import numpy as np
    >>> from tempfile import TemporaryDirectory
    >>> from sknetk._cache import cached_conv_kernel
    >>> X = np.random.default_rng(0).normal(size=(5, 16))
    >>> with TemporaryDirectory() as folder:
    ...     K1 = cached_conv_kernel(folder, X, image_shape=(4, 4), depth=2)
    ...     K2 = cached_conv_kernel(folder, X, image_shape=(4, 4), depth=2)
    >>> bool(np.array_equal(K1, K2)), K2.flags.writeable
    (True, False)
    """
    if kernel not in ("ntk", "nngp"):
        raise ValueError(f"kernel must be 'ntk' or 'nngp', got {kernel!r}.")
    spec = ConvKernelSpec.from_params(ntk=kernel == "ntk", **kernel_params)
    cache = _check_cache(memory)
    xp = get_namespace(X, Y)
    numpy_in = is_numpy_namespace(xp)
    if numpy_in:
        X, Y = (
            None if A is None else np.ascontiguousarray(A, dtype=np.float64)
            for A in (X, Y)
        )
    X = as_images(xp, X, image_shape, "X")
    Y = None if Y is None else as_images(xp, Y, image_shape, "Y")
    args = (X, Y, kernel, spec, bool(all_depths), working_memory, n_jobs, device)
    if cache is None or not numpy_in:
        return _compute_conv_kernel(*args)
    return _cached_call(cache, memory, args, _compute_conv_kernel)
