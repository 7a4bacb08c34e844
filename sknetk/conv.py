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

from ._array_api import get_namespace
from ._conv import (
    PADDINGS,
    READOUTS,
    ConvKernelSpec,
    compute_kernels,
    finish,
    pairs_per_tile,
    place_images,
    self_path,
)
from .kernels import ACTIVATION_NAMES, budget_bytes

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
_PARAMS_DOC = """    image_shape : tuple of int, default=None
        ``(H, W, C)`` (or ``(H, W)``: one channel) of the images when ``X``
        holds flattened images, one per row in NHWC order (``X.reshape(n,
        -1)`` of an NHWC array); ignored for image arrays ``(n, H, W, C)``
        (then it must match) and ``(n, H, W)`` (one channel). ``None`` with
        flattened rows: square single-channel images (the number of features
        must be a perfect square, as for ``load_digits`` and MNIST).
    depth : int, default=3
        Number of ``Conv -> activation`` blocks.
    activation : str, default="relu"
        One of ``{activations}``.
    activation_params : dict, default=None
        Parameters of the activation, as in
        :func:`sknetk.kernels.ntk_kernel`.
    weight_std : float, default=1.0
        Standard deviation of the weights of every Conv and of the Dense
        readout (``W_std``).
    bias_std : float or None, default=0.0
        Standard deviation of the biases (``b_std``); ``None``: no bias
        parameter (differs from ``0.0`` only in ``"standard"``).
    parameterization : {{"ntk", "standard"}}, default="ntk"
        As in neural-tangents.
    width : int, default=None
        Channels of the hidden layers; only the ``"standard"`` NTK depends on
        it, and needs it.
    filter_shape : int or tuple of int, default=(3, 3)
        ``(fh, fw)`` of every Conv (stride 1).
    padding : {{"SAME", "CIRCULAR", "VALID"}}, default="SAME"
        Border of the Conv: zero padding (the map keeps its size), periodic
        padding, or none (the map shrinks by ``f - 1``).
    pool_after : sequence of int, default=()
        0-based indices of the blocks followed by
        ``AvgPool(pool_window, strides=pool_window, "VALID")``.
    pool_window : int or tuple of int, default=(2, 2)
        ``(ph, pw)`` of those poolings.
    readout : {{"gap", "flatten"}}, default="gap"
        ``"gap"``: global average pooling, the mean of the last feature map
        over its pixels (all ``P^2`` pixel pairs enter the kernel, O(P^2)
        work per entry); ``"flatten"``: the flattened map (only the ``P``
        diagonal pixel pairs, O(P) without pooling)."""

_ALL_DEPTHS_DOC = """    all_depths : bool, default=False
        If True, return the kernels of the networks with ``1, ..., depth``
        blocks (each with its pooling), stacked along a new first axis, from
        one pass."""

_RUN_DOC = """    working_memory : float, default=None
        Memory budget in MiB for the temporaries of the tiles of image pairs
        (``sklearn.get_config()["working_memory"]`` by default).
    n_jobs : int, default=-1
        Threads over tiles (NumPy only); ``-1`` uses every core.
    dtype : {{None, "float64", "float32"}}, default=None
        Compute dtype (``None``: float64).
    device : {{"auto", "cpu", "gpu"}}, default="auto"
        ``"auto"`` computes where the input lives (NumPy on the CPU, CuPy on
        its GPU); ``"gpu"`` moves NumPy input to CuPy; ``"cpu"`` moves CuPy
        input to NumPy. Outputs mirror inputs."""

_DIAG_RUN_DOC = """    dtype : {{None, "float64", "float32"}}, default=None
        Compute dtype (``None``: float64).
    working_memory : float, default=None
        Memory budget in MiB (chunks of images).
    device : {{"auto", "cpu", "gpu"}}, default="auto"
        As for :func:`ntk_kernel`."""


def _spec(kw, ntk=True):
    return ConvKernelSpec.from_params(ntk=ntk, **kw)


def nngp_ntk_kernels(
    X,
    Y=None,
    *,
    image_shape=None,
    depth=3,
    activation="relu",
    activation_params=None,
    weight_std=1.0,
    bias_std=0.0,
    parameterization="ntk",
    width=None,
    filter_shape=(3, 3),
    padding="SAME",
    pool_after=(),
    pool_window=(2, 2),
    readout="gap",
    all_depths=False,
    working_memory=None,
    n_jobs=-1,
    dtype=None,
    device="auto",
):
    """Convolutional NNGP and NTK together, from one pass of the recursion.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, H, W, C) or (n_samples_X, H*W*C)
        Images, or flattened images (see ``image_shape``).
    Y : array-like of the same image shape, default=None
        Second set of images; ``None`` computes ``K(X, X)`` (exactly
        symmetric; only one triangle of image pairs is computed).
    {params}
    {all_depths}
    {run}

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
    kw = dict(
        depth=depth,
        activation=activation,
        activation_params=activation_params,
        weight_std=weight_std,
        bias_std=bias_std,
        parameterization=parameterization,
        width=width,
        filter_shape=filter_shape,
        padding=padding,
        pool_after=pool_after,
        pool_window=pool_window,
        readout=readout,
    )
    spec = _spec(kw)
    X, Y, back = place_images(device, dtype, image_shape, X, Y)
    budget = budget_bytes(working_memory)
    out = compute_kernels(X, Y, spec, ("nngp", "ntk"), all_depths, budget, n_jobs)
    return (
        back(finish(out["nngp"], all_depths)),
        back(finish(out["ntk"], all_depths)),
    )


def ntk_kernel(
    X,
    Y=None,
    *,
    image_shape=None,
    depth=3,
    activation="relu",
    activation_params=None,
    weight_std=1.0,
    bias_std=0.0,
    parameterization="ntk",
    width=None,
    filter_shape=(3, 3),
    padding="SAME",
    pool_after=(),
    pool_window=(2, 2),
    readout="gap",
    all_depths=False,
    working_memory=None,
    n_jobs=-1,
    dtype=None,
    device="auto",
):
    """Neural Tangent Kernel of an infinitely wide convolutional network (CNTK).

    An infinitely wide CNN trained by gradient descent on squared loss
    predicts exactly as kernel regression with this kernel.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, H, W, C) or (n_samples_X, H*W*C)
        Images, or flattened images (see ``image_shape``).
    Y : array-like of the same image shape, default=None
        Second set of images; ``None`` computes ``K(X, X)``.
    {params}
    {all_depths}
    {run}

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
    kw = dict(
        depth=depth,
        activation=activation,
        activation_params=activation_params,
        weight_std=weight_std,
        bias_std=bias_std,
        parameterization=parameterization,
        width=width,
        filter_shape=filter_shape,
        padding=padding,
        pool_after=pool_after,
        pool_window=pool_window,
        readout=readout,
    )
    spec = _spec(kw)
    X, Y, back = place_images(device, dtype, image_shape, X, Y)
    out = compute_kernels(
        X, Y, spec, ("ntk",), all_depths, budget_bytes(working_memory), n_jobs
    )
    return back(finish(out["ntk"], all_depths))


def nngp_kernel(
    X,
    Y=None,
    *,
    image_shape=None,
    depth=3,
    activation="relu",
    activation_params=None,
    weight_std=1.0,
    bias_std=0.0,
    parameterization="ntk",
    width=None,
    filter_shape=(3, 3),
    padding="SAME",
    pool_after=(),
    pool_window=(2, 2),
    readout="gap",
    all_depths=False,
    working_memory=None,
    n_jobs=-1,
    dtype=None,
    device="auto",
):
    """NNGP kernel (CNN-GP) of an infinitely wide convolutional network.

    The output covariance of the random network: the NTK of the same network
    when only the readout layer is trained.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, H, W, C) or (n_samples_X, H*W*C)
        Images, or flattened images (see ``image_shape``).
    Y : array-like of the same image shape, default=None
        Second set of images; ``None`` computes ``K(X, X)``.
    {params}
    {all_depths}
    {run}

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
    kw = dict(
        depth=depth,
        activation=activation,
        activation_params=activation_params,
        weight_std=weight_std,
        bias_std=bias_std,
        parameterization=parameterization,
        width=width,
        filter_shape=filter_shape,
        padding=padding,
        pool_after=pool_after,
        pool_window=pool_window,
        readout=readout,
    )
    spec = _spec(kw, ntk=False)
    X, Y, back = place_images(device, dtype, image_shape, X, Y)
    out = compute_kernels(
        X, Y, spec, ("nngp",), all_depths, budget_bytes(working_memory), n_jobs
    )
    return back(finish(out["nngp"], all_depths))


def _diag(X, kw, which, all_depths, dtype, working_memory, device, image_shape):
    spec = _spec(kw, ntk=which == "ntk")
    X, _, back = place_images(device, dtype, image_shape, X, None)
    xp = get_namespace(X)
    H, W = X.shape[1], X.shape[2]
    spec.map_shapes(H, W)
    itemsize = 4 if X.dtype == xp.float32 else 8
    pairs = pairs_per_tile(spec, H, W, itemsize, budget_bytes(working_memory), 1)
    _, diag = self_path(xp, X, spec, which == "ntk", all_depths, pairs)
    blocks = diag[which]
    return back(xp.stack(blocks) if all_depths else blocks[0])


def ntk_diag(
    X,
    *,
    image_shape=None,
    depth=3,
    activation="relu",
    activation_params=None,
    weight_std=1.0,
    bias_std=0.0,
    parameterization="ntk",
    width=None,
    filter_shape=(3, 3),
    padding="SAME",
    pool_after=(),
    pool_window=(2, 2),
    readout="gap",
    all_depths=False,
    dtype=None,
    working_memory=None,
    device="auto",
):
    """Diagonal ``NTK(x, x)`` of each image, without the kernel matrix.

    One image at a time: O(P) work per image with Flatten and no pooling,
    O(P^2) otherwise.

    Parameters
    ----------
    X : array-like of shape (n_samples, H, W, C) or (n_samples, H*W*C)
        Images, or flattened images (see ``image_shape``).
    {params}
    {all_depths}
    {diag_run}

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
    kw = dict(
        depth=depth,
        activation=activation,
        activation_params=activation_params,
        weight_std=weight_std,
        bias_std=bias_std,
        parameterization=parameterization,
        width=width,
        filter_shape=filter_shape,
        padding=padding,
        pool_after=pool_after,
        pool_window=pool_window,
        readout=readout,
    )
    return _diag(X, kw, "ntk", all_depths, dtype, working_memory, device, image_shape)


def nngp_diag(
    X,
    *,
    image_shape=None,
    depth=3,
    activation="relu",
    activation_params=None,
    weight_std=1.0,
    bias_std=0.0,
    parameterization="ntk",
    width=None,
    filter_shape=(3, 3),
    padding="SAME",
    pool_after=(),
    pool_window=(2, 2),
    readout="gap",
    all_depths=False,
    dtype=None,
    working_memory=None,
    device="auto",
):
    """Diagonal ``NNGP(x, x)``: the output variance of each image.

    Parameters
    ----------
    X : array-like of shape (n_samples, H, W, C) or (n_samples, H*W*C)
        Images, or flattened images (see ``image_shape``).
    {params}
    {all_depths}
    {diag_run}

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
    kw = dict(
        depth=depth,
        activation=activation,
        activation_params=activation_params,
        weight_std=weight_std,
        bias_std=bias_std,
        parameterization=parameterization,
        width=width,
        filter_shape=filter_shape,
        padding=padding,
        pool_after=pool_after,
        pool_window=pool_window,
        readout=readout,
    )
    return _diag(X, kw, "nngp", all_depths, dtype, working_memory, device, image_shape)


_PARAMS_FILLED = _PARAMS_DOC.format(activations=", ".join(ACTIVATION_NAMES))
for _f in (nngp_ntk_kernels, ntk_kernel, nngp_kernel, ntk_diag, nngp_diag):
    _f.__doc__ = (
        _f.__doc__.replace("    {params}", _PARAMS_FILLED, 1)
        .replace("    {all_depths}", _ALL_DEPTHS_DOC, 1)
        .replace("    {run}", _RUN_DOC.format(), 1)
        .replace("    {diag_run}", _DIAG_RUN_DOC.format(), 1)
    )
