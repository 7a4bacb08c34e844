"""sknetk: infinite-width neural network kernels for scikit-learn.

The closed-form NTK and NNGP kernels of infinitely wide fully connected
networks (:mod:`sknetk.kernels`) and convolutional networks
(:mod:`sknetk.conv`), kernel ridge estimators built on them
(:class:`NTKRegressor`, :class:`NTKClassifier`, :class:`CNTKRegressor`,
:class:`CNTKClassifier` and their cross-validated variants), the kernels as
Gaussian-process kernels (:mod:`sknetk.gaussian_process`), the empirical NTK
of trained networks (:mod:`sknetk.empirical`) and Fourier features
(:class:`FourierFeatures`), on CPU with NumPy and on NVIDIA GPUs with CuPy.
"""

from . import conv, dynamics, empirical, exceptions, gaussian_process, kernels, spectrum
from ._classification import NTKClassifier
from ._conv_estimators import (
    CNTKClassifier,
    CNTKClassifierCV,
    CNTKRegressor,
    CNTKRegressorCV,
)
from ._cv import NTKClassifierCV, NTKRegressorCV
from ._regression import NTKRegressor
from .fourier import FourierFeatures
from .kernels import nngp_diag, nngp_kernel, nngp_ntk_kernels, ntk_diag, ntk_kernel

__version__ = "0.1.0.dev0"

__all__ = [
    "NTKRegressor",
    "NTKClassifier",
    "FourierFeatures",
    "NTKRegressorCV",
    "NTKClassifierCV",
    "CNTKRegressor",
    "CNTKClassifier",
    "CNTKRegressorCV",
    "CNTKClassifierCV",
    "conv",
    "dynamics",
    "spectrum",
    "kernels",
    "exceptions",
    "gaussian_process",
    "empirical",
    "ntk_kernel",
    "nngp_kernel",
    "nngp_ntk_kernels",
    "ntk_diag",
    "nngp_diag",
    "__version__",
]
