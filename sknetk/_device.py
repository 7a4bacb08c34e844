"""Choosing where the work runs: ``device="auto" | "cpu" | "gpu"``.

CuPy is imported lazily, only by :func:`cupy_or_error` and :func:`gpu_available`;
importing sknetk never touches a GPU.
"""

import functools

DEVICES = ("auto", "cpu", "gpu")

#: ``device="auto"`` moves NumPy input to the GPU only when the kernel matrix has
#: at least this many entries (n_samples_X * n_samples_Y); below it, transfers
#: and kernel launches cost more than the CPU computation.
AUTO_GPU_MIN_ENTRIES = 4_000_000

_INSTALL_HINT = 'Install the GPU extra with: pip install "sknetk[gpu]"'


class GPUUnavailableError(RuntimeError):
    """``device="gpu"`` was requested but CuPy or a CUDA device is missing."""


@functools.lru_cache(maxsize=1)
def _probe_cupy():
    """Return ``(cupy_module_or_None, reason)`` without raising."""
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        return None, f"CuPy is not installed ({exc}). {_INSTALL_HINT}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return None, f"CuPy is installed but no CUDA device is usable ({exc})."
    if n < 1:  # pragma: no cover - depends on the machine
        return None, "CuPy is installed but no CUDA device was found."
    return cupy, ""


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return _probe_cupy()[0] is not None


def cupy_or_error():
    """Return the ``cupy`` module, or raise :class:`GPUUnavailableError` saying why."""
    cupy, reason = _probe_cupy()
    if cupy is None:
        raise GPUUnavailableError(
            f'device="gpu" needs CuPy and a CUDA device: {reason}'
        )
    return cupy


def check_device(device):
    """Validate the ``device`` parameter value."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}.")
    return device


def use_gpu(device, n_entries, is_cupy_input=False):
    """Decide whether to compute on the GPU.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        The user's choice.
    n_entries : int
        Size of the kernel matrix to compute (rows times columns).
    is_cupy_input : bool
        True when the input already lives on the GPU (CuPy array).

    Returns
    -------
    bool
        ``"gpu"`` always (raising if impossible); ``"cpu"`` never (CuPy input is
        then copied to the host); ``"auto"`` for CuPy input, or for NumPy input
        when a GPU is available and ``n_entries >= AUTO_GPU_MIN_ENTRIES``.
    """
    check_device(device)
    if device == "gpu":
        cupy_or_error()
        return True
    if device == "cpu":
        return False
    if is_cupy_input:
        return True
    return n_entries >= AUTO_GPU_MIN_ENTRIES and gpu_available()
