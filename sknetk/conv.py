"""Closed-form NNGP and NTK kernels of infinitely wide convolutional networks.

The network is ``depth`` blocks of ``Conv(filter_shape, padding, stride 1)
-> activation``, optionally followed by average pooling after chosen blocks,
then a readout (``"flatten"``, or ``"gap"``: global average pooling) and a
``Dense(1)`` layer; every layer has weights of standard deviation
``weight_std`` and biases of ``bias_std``. The kernels are the
infinite-width (infinitely many channels) limits that neural-tangents'
``stax`` computes for ::

    stax.serial(*[stax.Conv(width, filter_shape, (1, 1), padding, W_std, b_std),
                  Act] * depth,            # + stax.AvgPool(window, window)
                Readout,                   # stax.Flatten() | stax.GlobalAvgPool()
                stax.Dense(1, W_std, b_std))

(CNN-GP and CNTK: Novak et al. 2019, Arora et al. 2019). Inputs are images:
NHWC arrays ``(n, H, W, C)``, or flattened images, one per row, with
``image_shape=(H, W, C)``, so that scikit-learn data such as ``load_digits``
work unchanged.

Every pair of images carries the covariances of all its pixel pairs. With
the Flatten readout and no pooling only the ``P = H W`` diagonal pixel pairs
matter (O(P) work per kernel entry); GAP and pooling need all ``P^2`` of them
(O(P^2)), computed in tiles of many image pairs at once within
``working_memory``. See ``docs/conv.rst``.
"""

from ._array_api import get_namespace, is_cupy_namespace
from ._conv import (
    ConvKernelSpec,
    compute_kernels,
    finish,
    pairs_per_tile,
    place_images,
    self_path,
)
from ._params import CONV_NETWORK, PADDINGS, READOUTS, validated
from .kernels import budget_bytes

__all__ = [
    "ConvKernelSpec",
    "PADDINGS",
    "READOUTS",
    "nngp_diag",
    "nngp_kernel",
    "nngp_ntk_kernels",
    "ntk_diag",
    "ntk_kernel",
]


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------
#: Where and how the convolutional kernel functions run.
_RUN = ("all_depths", "working_memory", "n_jobs", "dtype", "device")
_DIAG_RUN = ("all_depths", "dtype", "working_memory", "device")
#: The parameters of the kernel functions, in their docstrings' order.
_KERNEL_NAMES = ("image_shape",) + CONV_NETWORK + _RUN
_DIAG_NAMES = ("image_shape",) + CONV_NETWORK + _DIAG_RUN


def _pick(arguments, names):
    """``{name: arguments[name]}`` of a public function's ``**params``."""
    return {name: arguments[name] for name in names}


def conv_spec_of(arguments, ntk=True):
    """The :class:`ConvKernelSpec` of a public function's network keywords
    (its ``**params``)."""
    return ConvKernelSpec.from_params(ntk=ntk, **_pick(arguments, CONV_NETWORK))


def conv_spec_kernels(
    X,
    Y,
    spec,
    want,
    *,
    image_shape=None,
    all_depths=False,
    working_memory=None,
    n_jobs=-1,
    dtype=None,
    device="auto",
):
    """``{name: K_name(X, Y)}`` for ``name`` in ``want`` of the network
    ``spec``: the kernel functions' work behind their validation."""
    X, Y, back = place_images(device, dtype, image_shape, X, Y)
    budget = budget_bytes(working_memory)
    if is_cupy_namespace(get_namespace(X)):  # the fused CUDA kernels
        from ._conv_cuda import conv_kernels_cupy

        out = conv_kernels_cupy(X, Y, spec, want, all_depths, budget, n_jobs)
    else:
        out = compute_kernels(X, Y, spec, want, all_depths, budget, n_jobs)
    return {name: back(finish(out[name], all_depths)) for name in want}


def conv_spec_diagonal(
    X,
    spec,
    which,
    *,
    image_shape=None,
    all_depths=False,
    dtype=None,
    working_memory=None,
    device="auto",
):
    """The diagonal ``K_which(x, x)`` of the network ``spec``, one image at a
    time: the diagonal functions' work behind their validation."""
    X, _, back = place_images(device, dtype, image_shape, X, None)
    xp = get_namespace(X)
    if is_cupy_namespace(xp):  # the fused CUDA kernels
        from ._conv_cuda import conv_diagonals_cupy

        budget = budget_bytes(working_memory)
        d = conv_diagonals_cupy(X, spec, (which,), all_depths, budget)[which]
        return back(d if all_depths else d[0])
    H, W = X.shape[1], X.shape[2]
    spec.map_shapes(H, W)
    itemsize = 4 if X.dtype == xp.float32 else 8
    pairs = pairs_per_tile(spec, H, W, itemsize, budget_bytes(working_memory), 1)
    _, diag = self_path(xp, X, spec, which == "ntk", all_depths, pairs)
    blocks = diag[which]
    return back(xp.stack(blocks) if all_depths else blocks[0])


@validated(("X", "Y") + _KERNEL_NAMES, "conv", signature=True)
def nngp_ntk_kernels(X, Y=None, **params):
    """Convolutional NNGP and NTK together, from one pass of the recursion.

    Parameters
    ----------
    {params}

    Returns
    -------
    nngp, ntk : arrays of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.

    See Also
    --------
    ntk_kernel, nngp_kernel : One kernel at a time.
    sknetk.kernels.nngp_ntk_kernels : The fully connected network's kernels.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.conv import nngp_ntk_kernels
    >>> X = np.random.default_rng(0).normal(size=(4, 6, 6, 3))
    >>> nngp, ntk = nngp_ntk_kernels(X, depth=2, readout="gap")
    >>> nngp.shape, bool(np.all(ntk >= nngp))
    ((4, 4), True)
    """
    spec = conv_spec_of(params)
    out = conv_spec_kernels(
        X, Y, spec, ("nngp", "ntk"), **_pick(params, ("image_shape",) + _RUN)
    )
    return out["nngp"], out["ntk"]


@validated(("X", "Y") + _KERNEL_NAMES, "conv", signature=True)
def ntk_kernel(X, Y=None, **params):
    """Neural Tangent Kernel of an infinitely wide convolutional network (CNTK).

    An infinitely wide CNN trained by gradient descent on squared loss
    predicts exactly as kernel regression with this kernel.

    Parameters
    ----------
    {params}

    Returns
    -------
    K : array of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.

    See Also
    --------
    nngp_kernel : The NNGP (CNN-GP) kernel.
    ntk_diag : The diagonal ``K(x, x)`` alone.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sknetk.conv import ntk_kernel
    >>> X = load_digits().data[:5] / 16  # 8x8 images, one per row
    >>> K = ntk_kernel(X, image_shape=(8, 8, 1), depth=2, readout="gap")
    >>> K.shape, bool(np.allclose(K, K.T))
    ((5, 5), True)
    """
    spec = conv_spec_of(params)
    run = _pick(params, ("image_shape",) + _RUN)
    return conv_spec_kernels(X, Y, spec, ("ntk",), **run)["ntk"]


@validated(("X", "Y") + _KERNEL_NAMES, "conv", signature=True)
def nngp_kernel(X, Y=None, **params):
    """NNGP kernel (CNN-GP) of an infinitely wide convolutional network.

    The output covariance of the random network: the NTK of the same network
    when only the readout layer is trained.

    Parameters
    ----------
    {params}

    Returns
    -------
    K : array of shape (n_samples_X, n_samples_Y)
        Or ``(depth, n_samples_X, n_samples_Y)`` with ``all_depths=True``.

    See Also
    --------
    ntk_kernel : The convolutional Neural Tangent Kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.conv import nngp_kernel
    >>> X = np.ones((1, 5, 5, 1))
    >>> K = nngp_kernel(X, depth=1, activation="identity", readout="flatten")
    >>> # zero padding: 9 inner pixels see 9/9 of their patch, 12 edge
    >>> # pixels 6/9 and 4 corners 4/9; Flatten averages the 25 of them
    >>> float(np.round(K[0, 0], 4)), round((9 + 12 * 6 / 9 + 4 * 4 / 9) / 25, 4)
    (0.7511, 0.7511)
    """
    spec = conv_spec_of(params, ntk=False)
    run = _pick(params, ("image_shape",) + _RUN)
    return conv_spec_kernels(X, Y, spec, ("nngp",), **run)["nngp"]


@validated(("X",) + _DIAG_NAMES, "conv_diag", signature=True)
def ntk_diag(X, **params):
    """Diagonal ``NTK(x, x)`` of each image, without the kernel matrix.

    One image at a time: O(P) work per image with Flatten and no pooling,
    O(P^2) otherwise.

    Parameters
    ----------
    {params}

    Returns
    -------
    diag : array of shape (n_samples,) or (depth, n_samples)
        The diagonal of :func:`ntk_kernel` of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.conv import ntk_diag, ntk_kernel
    >>> X = np.random.default_rng(0).normal(size=(3, 4, 4, 2))
    >>> bool(np.allclose(ntk_diag(X, depth=2), np.diag(ntk_kernel(X, depth=2))))
    True
    """
    spec = conv_spec_of(params)
    run = _pick(params, ("image_shape",) + _DIAG_RUN)
    return conv_spec_diagonal(X, spec, "ntk", **run)


@validated(("X",) + _DIAG_NAMES, "conv_diag", signature=True)
def nngp_diag(X, **params):
    """Diagonal ``NNGP(x, x)``: the output variance of each image.

    Parameters
    ----------
    {params}

    Returns
    -------
    diag : array of shape (n_samples,) or (depth, n_samples)
        The diagonal of :func:`nngp_kernel` of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.conv import nngp_diag
    >>> # all-zero images: every pre-activation is the bias, variance 0.25;
    >>> # ReLU halves it, and the readout adds the bias again
    >>> nngp_diag(np.zeros((2, 4, 4, 1)), depth=1, bias_std=0.5)
    array([0.375, 0.375])
    """
    spec = conv_spec_of(params, ntk=False)
    run = _pick(params, ("image_shape",) + _DIAG_RUN)
    return conv_spec_diagonal(X, spec, "nngp", **run)
