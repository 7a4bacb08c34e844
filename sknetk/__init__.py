"""sknetk: infinite-width neural network kernels for scikit-learn."""

from . import kernels
from .kernels import nngp_diag, nngp_kernel, nngp_ntk_kernels, ntk_diag, ntk_kernel

__version__ = "0.1.0.dev0"

__all__ = [
    "kernels",
    "ntk_kernel",
    "nngp_kernel",
    "nngp_ntk_kernels",
    "ntk_diag",
    "nngp_diag",
    "__version__",
]
