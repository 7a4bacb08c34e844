"""Choosing where the work runs: ``device="auto" | "cpu" | "gpu"``.

CuPy is imported lazily, only by :func:`probe_cupy` (through
:func:`cupy_or_error`, :func:`gpu_available` and :func:`predict_device` when
asked for ``"gpu"``); importing sknetk never touches a GPU. A CuPy that fails
to import, whatever the error, counts as missing, so ``"auto"`` then computes
on the CPU.
"""

import functools
import warnings

DEVICES = ("auto", "cpu", "gpu")

#: ``device="auto"`` moves NumPy input to the GPU only when the kernel matrix has
#: at least this many entries (n_samples_X * n_samples_Y); below it, transfers
#: and kernel launches cost more than the CPU computation.
AUTO_GPU_MIN_ENTRIES = 4_000_000

_INSTALL_HINT = 'Install the GPU extra with: pip install "sknetk[gpu]"'
_DEVICE_HINT = (
    "Check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, or use "
    'device="cpu".'
)


class GPUUnavailableError(RuntimeError):
    """``device="gpu"`` was requested but CuPy or a CUDA device is missing."""


@functools.lru_cache(maxsize=1)
def probe_cupy():
    """Return ``(cupy_module_or_None, reason)`` without raising (cached).

    ``reason`` says why CuPy is unusable (empty when it is usable); the CLI's
    GPU report and the test suite's ``gpu`` marker show it.
    """
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        return None, f"CuPy is not installed ({exc}). {_INSTALL_HINT}"
    except Exception as exc:  # pragma: no cover - depends on the machine
        # A broken installation (CUDA libraries missing or of the wrong
        # version) may fail with any error: "auto" must still run on the CPU.
        return None, (
            f"CuPy is installed but fails to import ({type(exc).__name__}: "
            f"{exc}). Reinstall it for your CUDA version: {_INSTALL_HINT}"
        )
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return None, (
            f"CuPy is installed but no CUDA device is usable ({exc}). {_DEVICE_HINT}"
        )
    if n < 1:  # pragma: no cover - depends on the machine
        return None, f"CuPy is installed but no CUDA device was found. {_DEVICE_HINT}"
    return cupy, ""


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return probe_cupy()[0] is not None


def cupy_or_error():
    """Return the ``cupy`` module, or raise :class:`GPUUnavailableError` saying why."""
    cupy, reason = probe_cupy()
    if cupy is None:
        raise GPUUnavailableError(
            f'device="gpu" needs CuPy and a CUDA device: {reason}'
        )
    return cupy


def check_device(device):
    """Validate the ``device`` parameter value."""
    if not isinstance(device, str) or device not in DEVICES:
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


def predict_device(device):
    """The ``device`` a fitted model predicts with, so that it predicts anywhere.

    A model fitted with ``device="gpu"`` keeps that value, but its fitted
    attributes are NumPy arrays: loaded on a machine where CuPy or a CUDA
    device is missing, it predicts on the CPU, with a ``UserWarning`` saying
    so, instead of raising :class:`GPUUnavailableError`. Other values, and
    ``"gpu"`` where a GPU is usable, are returned unchanged.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        The estimator's ``device`` parameter.

    Returns
    -------
    device : {"auto", "cpu", "gpu"}
        ``"cpu"`` in place of an unusable ``"gpu"``.

    Examples
    --------
    >>> from sknetk._device import predict_device
    >>> predict_device("auto"), predict_device("cpu")
    ('auto', 'cpu')
    """
    check_device(device)
    if device != "gpu":
        return device
    cupy, reason = probe_cupy()
    if cupy is not None:  # pragma: no cover - depends on the machine
        return device
    warnings.warn(
        f'This model has device="gpu" but no GPU is usable here: {reason} '
        'Predicting on the CPU instead (set device="cpu" to silence this '
        "warning); the fitted attributes are NumPy arrays, so the predictions "
        "are the same up to rounding.",
        UserWarning,
        stacklevel=4,
    )
    return "cpu"
