"""Eigenvalue spectrum of a network kernel and the learning speed it implies.

Under gradient flow on the squared loss the infinitely wide network fits the
component of the targets along the kernel's ``i``-th eigenvector at rate
``eta * lambda_i / N``: the residual along it decays as
``exp(-eta * lambda_i * t / N)`` (``N`` = number of training rows times
outputs, as in :mod:`sknetk.dynamics`). A spectrum that falls off fast means
that only a few directions (for smooth inputs, the low frequencies) are
learnt in any reasonable time, the "spectral bias" of wide networks; Fourier
features (:class:`~sknetk.fourier.FourierFeatures`) slow that falloff down.
"""

import math

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import Bunch
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ._array_api import get_namespace, is_numpy_namespace
from ._base import densify
from ._linalg import check_count, check_nonnegative, check_positive, symmetric_eigh
from ._params import validated
from .kernels import nngp_kernel, ntk_kernel

__all__ = ["kernel_spectrum", "falloff_index"]

NORMALIZATIONS = ("top", "trace", "n_samples", None)


@validated(
    ["kernel"],
    doc=False,
    extra={
        "normalize": [StrOptions(set(NORMALIZATIONS) - {None}), None],
        "return_eigenvectors": ["boolean"],
    },
)
def kernel_spectrum(
    X,
    *,
    transformer=None,
    kernel="ntk",
    normalize="top",
    learning_rate=1.0,
    ridge=0.0,
    n_targets=1,
    return_eigenvectors=False,
    **kernel_params,
):
    """Compute the kernel's eigenvalues and each eigendirection's learning time.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Training inputs (NumPy, or any array-API array such as CuPy). Sparse
        input (or a transformer's sparse output, e.g. ``OneHotEncoder``'s)
        is densified, up to ``sknetk._base.SPARSE_DENSIFY_MAX_ENTRIES``
        entries.
    transformer : transformer, default=None
        Applied to ``X`` first (e.g. :class:`~sknetk.fourier.FourierFeatures`):
        used as is when already fitted, else a clone is fitted on ``X``.
    kernel : {"ntk", "nngp"}, default="ntk"
        Which kernel: every layer trained, or the readout only.
    normalize : {"top", "trace", "n_samples"} or None, default="top"
        How the returned ``eigenvalues`` are scaled: divided by the largest
        (the first is 1), by their sum (they sum to 1, a distribution of
        "energy"), or by ``n_samples`` (estimates of the eigenvalues of the
        kernel's integral operator under the data distribution); ``None``
        keeps the eigenvalues of the ``n x n`` kernel matrix.
    learning_rate : float, default=1.0
        Gradient-descent learning rate ``eta`` of the convergence times.
    ridge : float, default=0.0
        Ridge added to the kernel in the flow (see :mod:`sknetk.dynamics`);
        it shifts every rate by ``eta * ridge / N``.
    n_targets : int, default=1
        Number of outputs trained together (``N = n_samples * n_targets``).
    return_eigenvectors : bool, default=False
        Also return the eigenvectors.
    **kernel_params
        Passed to :func:`~sknetk.kernels.ntk_kernel` /
        :func:`~sknetk.kernels.nngp_kernel` (``depth``, ``activation``,
        ``weight_std``, ``bias_std``, ...). ``frozen_layers`` selects the NTK
        of a network whose first layers are not trained.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``eigenvalues``: array of shape (n_samples,), descending and
        normalised as requested; rounding-level negative eigenvalues of the
        positive semi-definite kernel are set to zero.
        ``convergence_times``: array of shape (n_samples,), the gradient-flow
        time ``N / (eta * (lambda_i + ridge))`` after which the residual along
        eigenvector ``i`` has shrunk by a factor ``e`` (``inf`` for a zero
        rate), from the unnormalised eigenvalues.
        ``scale``: the number the eigenvalues were divided by.
        ``eigenvectors`` (if requested): array of shape (n_samples,
        n_samples), column ``i`` for ``eigenvalues[i]``.

    See Also
    --------
    falloff_index : Where the spectrum drops below a fraction of its top.
    sknetk.dynamics.gradient_flow_predict : The predictions along the flow.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.fourier import FourierFeatures
    >>> from sknetk.spectrum import kernel_spectrum, falloff_index
    >>> x = np.linspace(0, 1, 100)[:, None]
    >>> raw = kernel_spectrum(x, depth=2, bias_std=0.1)
    >>> float(raw.eigenvalues[0]), raw.eigenvalues.shape
    (1.0, (100,))
    >>> ff = kernel_spectrum(x, depth=2, transformer=FourierFeatures(
    ...     128, scale=3.0, random_state=0))
    >>> bool(falloff_index(ff.eigenvalues) > falloff_index(raw.eigenvalues))
    True
    >>> bool(np.all(np.diff(raw.convergence_times) >= 0))
    True
    """
    learning_rate = check_positive(learning_rate, "learning_rate")
    ridge = check_nonnegative(ridge, "ridge")
    n_targets = check_count(n_targets, "n_targets")

    if transformer is not None:
        try:
            check_is_fitted(transformer)
            X = transformer.transform(X)
        except NotFittedError:
            X = clone(transformer).fit_transform(X)

    if sp.issparse(X):  # e.g. a OneHotEncoder: the kernels need dense rows
        X = densify(X)

    if kernel == "nngp" and kernel_params.get("frozen_layers"):
        raise ValueError('frozen_layers applies to kernel="ntk" only.')
    K = (ntk_kernel if kernel == "ntk" else nngp_kernel)(X, **kernel_params)

    xp = get_namespace(K)
    n = K.shape[0]
    if return_eigenvectors:
        evals, evecs = symmetric_eigh(xp, K)
        evecs = xp.flip(evecs, axis=1)
    else:
        evals = symmetric_eigh(xp, K, eigenvectors=False)
    evals = xp.flip(evals, axis=0)
    evals = xp.where(evals > 0, evals, xp.zeros_like(evals))

    rate = learning_rate * (evals + ridge) / (n * n_targets)
    positive = rate > 0
    times = xp.where(
        positive,
        1.0 / xp.where(positive, rate, xp.ones_like(rate)),
        xp.full_like(rate, math.inf),
    )

    if normalize is None or n == 0:
        scale = 1.0
    elif normalize == "top":
        scale = float(evals[0])
    elif normalize == "trace":
        scale = float(xp.sum(evals))
    else:
        scale = float(n)
    if not scale > 0:
        scale = 1.0  # an all-zero kernel: nothing to normalise
    result = Bunch(eigenvalues=evals / scale, convergence_times=times, scale=scale)
    if return_eigenvectors:
        result.eigenvectors = evecs
    return result


def falloff_index(eigenvalues, rtol=1e-3):
    """Number of eigenvalues at or above ``rtol`` times the largest one.

    For a descending spectrum it is the index where the spectrum first drops
    below ``rtol * eigenvalues[0]``: the number of directions learnt within
    ``1 / rtol`` times the fastest direction's convergence time. A slower
    falloff gives a larger index.

    Parameters
    ----------
    eigenvalues : array-like of shape (n,)
        Eigenvalues (any normalisation).
    rtol : float, default=1e-3
        Threshold relative to the largest eigenvalue.

    Returns
    -------
    index : int
        ``sum(eigenvalues >= rtol * max(eigenvalues))``.

    Examples
    --------
    >>> from sknetk.spectrum import falloff_index
    >>> falloff_index([1.0, 0.1, 0.01, 0.001, 1e-4])
    4
    """
    xp = get_namespace(eigenvalues)
    if is_numpy_namespace(xp):
        eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if eigenvalues.ndim != 1:
        raise ValueError(
            "eigenvalues must be a 1-D array (one spectrum), got shape "
            f"{tuple(eigenvalues.shape)}."
        )
    rtol = check_nonnegative(rtol, "rtol")
    if eigenvalues.shape[0] == 0:
        return 0
    if not bool(xp.all(xp.isfinite(eigenvalues))):
        raise ValueError("eigenvalues contain NaN or infinity.")
    top = xp.max(eigenvalues)
    return int(xp.sum(xp.astype(eigenvalues >= rtol * top, xp.int64)))
