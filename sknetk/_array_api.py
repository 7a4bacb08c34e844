"""Array-namespace helpers: one code path for NumPy, CuPy and array-API libraries.

CuPy is never imported here at module level; the namespace of an array is
found from the array itself (``array_api_compat``), so importing sknetk never
touches a GPU.
"""

import sys

import numpy as np

try:  # the stand-alone package, when installed
    import array_api_compat as _compat
except ImportError:  # pragma: no cover - scikit-learn vendors a copy
    from sklearn.externals import array_api_compat as _compat


def get_namespace(*arrays):
    """Return the array-API namespace shared by ``arrays`` (NumPy for lists).

    NumPy arrays give the ``numpy`` module itself.

    Non-array inputs (lists, pandas frames, ``None``) are ignored; if no array
    remains, NumPy's namespace is returned.
    """
    arrays = [a for a in arrays if a is not None and _is_array(a)]
    if not arrays:
        return np
    xp = _compat.array_namespace(*arrays)
    # NumPy >= 2 implements the standard's names itself; using it directly
    # keeps ``out=`` fast paths and avoids a wrapper layer.
    return np if _compat.is_numpy_namespace(xp) else xp


def _is_array(a):
    return _compat.is_array_api_obj(a) and not isinstance(a, (list, tuple))


def is_numpy_namespace(xp):
    """True when ``xp`` is NumPy (or array_api_compat's NumPy wrapper)."""
    return _compat.is_numpy_namespace(xp)


def is_cupy_namespace(xp):
    """True when ``xp`` is CuPy (or array_api_compat's CuPy wrapper)."""
    return _compat.is_cupy_namespace(xp)


def is_dask(X):
    """True for a dask array, without importing dask when it is not in use."""
    if "dask.array" not in sys.modules:
        return False
    return isinstance(X, sys.modules["dask.array"].Array)


def device(x):
    """The device an array lives on (``"cpu"`` for NumPy)."""
    return _compat.device(x)


def to_numpy(x):
    """Copy an array of any supported namespace to a NumPy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    xp = get_namespace(x)
    if is_cupy_namespace(xp):
        return x.get()
    return np.asarray(x)
