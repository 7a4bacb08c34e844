"""The layer recursion of convolutional NNGP and NTK kernels (CNN-GP, CNTK).

:class:`ConvKernelSpec` describes the network
``[Conv(filter, padding, stride 1) -> activation (-> AvgPool)] x depth ->
Flatten | GlobalAvgPool -> Dense(1)``; the functions here run its recursion on
arrays of any array-API namespace (NumPy, CuPy, ``array_api_strict``):

* every image pair carries its pixel-pair matrices ``Sigma(x, p; x', p')``
  (NNGP) and ``Theta(x, p; x', p')`` (NTK), stored pixel-major and pair-minor:
  the *full* layout ``(H, W, H, W, *batch)`` or, where only the diagonal pixel
  pairs ``(p, p)`` are needed (Flatten readout, no pooling left), the *diagonal*
  layout ``(H, W, *batch)``;
* a Conv shifts both pixel indices by the same offset and averages over the
  ``fh * fw`` offsets (zero, periodic or no extension of the map), one axis
  pair at a time (``fh + fw`` shifted additions instead of ``fh * fw``);
* the activation acts entry by entry through the closed-form duals of
  :mod:`sknetk._activations` (``corr_dual``), with the per-pixel variances
  ``q(x, p)`` of the two images;
* AvgPool averages the two pixel indices over independent windows; the
  readout averages the diagonal pixel pairs (Flatten) or all of them (GAP).

For the ReLU family in float64 on NumPy, with numba installed,
:func:`compute_kernels` and :func:`self_path` run the compiled recursion of
:mod:`sknetk._conv_compiled` instead (same kernels to rounding; threads take
row blocks of image pairs, each with its own scratch arrays).

:mod:`sknetk.conv` (validation, tiling, threads, public functions) builds on
this module. Conventions are those of neural-tangents' ``stax`` (see
``docs/conv.rst`` and ``tests/data/CNTK_README.md``).
"""

import math
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from threadpoolctl import threadpool_limits

from ._activations import ACTIVATIONS, correlation, snap_tolerance
from ._array_api import device as array_device
from ._array_api import get_namespace, is_cupy_namespace, is_numpy_namespace, to_numpy
from ._conv_compiled import CIRCULAR, SAME, VALID, compiled_conv, run_pairs
from ._device import check_device, cupy_or_error
from ._params import PADDINGS, READOUTS
from ._recursion import KernelSpec

__all__ = [
    "ConvKernelSpec",
    "PADDINGS",
    "READOUTS",
    "as_images",
    "compute_kernels",
    "entries_per_pair",
    "finish",
    "pairs_per_tile",
    "place_images",
    "self_path",
    "pair_tile",
    "self_recursion",
]


def _pair(value, name):
    """``value`` as a pair of positive ints (an int ``k`` means ``(k, k)``)."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a positive int or a pair of them, got {value!r}."
        ) from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
            raise ValueError(
                f"{name} must be a positive int or a pair of them, got {value!r}."
            )
    return int(a), int(b)


@dataclass(frozen=True)
class ConvKernelSpec:
    """The convolutional architecture whose infinite-width kernels are computed.

    ``depth`` blocks of ``Conv(filter_shape, padding, stride 1) ->
    activation``, an ``AvgPool(pool_window, stride=pool_window, "VALID")``
    after every block whose 0-based index is in ``pool_after``, then the
    ``readout`` (``"flatten"`` or ``"gap"``, global average pooling) and a
    ``Dense(1)`` layer. Every Conv and the Dense layer have weights of
    standard deviation ``weight_std`` and biases of ``bias_std``.

    Parameters
    ----------
    depth : int
        Number of ``Conv -> activation`` blocks.
    activation : str
        A name from ``sknetk.kernels.ACTIVATION_NAMES``.
    activation_params : tuple
        Sorted ``(name, value)`` pairs of the activation's parameters.
    weight_std : float
        Standard deviation of the weights of every layer.
    bias_std : float or None
        Standard deviation of the biases; ``None``: no bias parameter.
    parameterization : {"ntk", "standard"}
        As in neural-tangents.
    width : int or None
        Channels of the hidden layers; only the ``"standard"`` NTK uses it.
    filter_shape : tuple of int
        ``(fh, fw)``.
    padding : {"SAME", "CIRCULAR", "VALID"}
        Extension of the feature maps at their border.
    pool_after : tuple of int
        Blocks followed by average pooling.
    pool_window : tuple of int
        ``(ph, pw)``.
    readout : {"flatten", "gap"}
        Readout before the Dense layer.

    Examples
    --------
    >>> from sknetk.conv import ConvKernelSpec
    >>> spec = ConvKernelSpec.from_params(depth=3, pool_after=[0, 1])
    >>> spec.map_shapes(8, 8)
    [(8, 8, 4, 4), (4, 4, 2, 2), (2, 2, 2, 2)]
    """

    depth: int = 3
    activation: str = "relu"
    activation_params: tuple = ()
    weight_std: float = 1.0
    bias_std: float = 0.0
    parameterization: str = "ntk"
    width: int = None
    filter_shape: tuple = (3, 3)
    padding: str = "SAME"
    pool_after: tuple = ()
    pool_window: tuple = (2, 2)
    readout: str = "gap"

    @classmethod
    def from_params(
        cls,
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
        ntk=True,
    ):
        """Validate user-facing parameters and build a spec (``ValueError``)."""
        dense = KernelSpec.from_params(
            depth=depth,
            activation=activation,
            activation_params=activation_params,
            weight_std=weight_std,
            bias_std=bias_std,
            parameterization=parameterization,
            width=width,
            ntk=ntk,
        )
        filter_shape = _pair(filter_shape, "filter_shape")
        pool_window = _pair(pool_window, "pool_window")
        if not isinstance(padding, str) or padding.upper() not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}.")
        if pool_after is None:
            pool_after = ()
        try:
            pools = sorted(set(pool_after))
        except TypeError:
            raise ValueError(
                f"pool_after must be a sequence of block indices, got {pool_after!r}."
            ) from None
        for p in pools:
            if isinstance(p, bool) or not isinstance(p, Integral) or not 0 <= p < depth:
                raise ValueError(
                    f"pool_after holds 0-based block indices in [0, depth={depth}), "
                    f"got {pool_after!r}."
                )
        return cls(
            depth=dense.depth,
            activation=dense.activation,
            activation_params=dense.activation_params,
            weight_std=dense.weight_std,
            bias_std=dense.bias_std,
            parameterization=dense.parameterization,
            width=dense.width,
            filter_shape=filter_shape,
            padding=padding.upper(),
            pool_after=tuple(int(p) for p in pools),
            pool_window=pool_window,
            readout=readout,
        )

    # -- geometry --------------------------------------------------------------
    def map_shapes(self, H, W):
        """Per block ``(h_conv, w_conv, h_out, w_out)``: its map after the Conv
        and after the block's pooling; ``ValueError`` when a map vanishes."""
        fh, fw = self.filter_shape
        ph, pw = self.pool_window
        shapes = []
        h, w = H, W
        for block in range(self.depth):
            if self.padding == "VALID":
                h, w = h - fh + 1, w - fw + 1
            hc, wc = h, w
            if hc >= 1 and wc >= 1 and block in self.pool_after:
                h, w = (h - ph) // ph + 1, (w - pw) // pw + 1
            if min(hc, wc, h, w) < 1:
                raise ValueError(
                    f"The feature map of {H}x{W} images vanishes at block {block} "
                    f"(filter_shape={self.filter_shape}, padding={self.padding!r}, "
                    f"pool_after={list(self.pool_after)}, "
                    f"pool_window={self.pool_window}): use smaller filters or "
                    "windows, fewer pooling layers or padding='SAME'."
                )
            shapes.append((hc, wc, h, w))
        return shapes

    def full_layout(self):
        """Per block, whether its Conv input needs all pixel pairs.

        True with the GAP readout, and while a pooling layer lies ahead (the
        pooling mixes off-diagonal pixel pairs into the diagonal ones). With
        Flatten and no pooling left, the Conv maps diagonal pairs to diagonal
        pairs, so only those ``P`` (instead of ``P^2``) are propagated.
        """
        return [
            self.readout == "gap" or any(p >= block for p in self.pool_after)
            for block in range(self.depth)
        ]

    def dense_spec(self):
        """The :class:`~sknetk.kernels.KernelSpec` of the same layers."""
        return KernelSpec(
            depth=self.depth,
            activation=self.activation,
            activation_params=self.activation_params,
            weight_std=self.weight_std,
            bias_std=self.bias_std,
            parameterization=self.parameterization,
            width=self.width,
        )


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------
def check_image_shape(image_shape):
    """``image_shape`` as ``(H, W, C)`` of positive ints (``(H, W)``: one
    channel), or a ``ValueError``."""
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"image_shape must be (H, W, C) or (H, W), got {image_shape!r}."
        ) from None
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"image_shape must be (H, W, C) or (H, W) of positive ints, got "
            f"{image_shape!r}."
        )
    return shape


def as_images(xp, X, image_shape, name="X"):
    """``X`` as an NHWC array ``(n, H, W, C)``.

    4-D input is taken as it is (``image_shape``, when given, must match);
    3-D input ``(n, H, W)`` is one channel; 2-D input holds flattened images,
    one per row, in NHWC order (``x.reshape(n, -1)`` of an NHWC array), of
    shape ``image_shape = (H, W, C)`` (or ``(H, W)``: one channel). With
    ``image_shape=None`` a row of ``d`` features is a square single-channel
    image when ``d`` is a perfect square (``load_digits``: 8x8, MNIST: 28x28)
    and a ``ValueError`` otherwise.
    """
    shape = tuple(X.shape)
    if image_shape is not None:
        image_shape = check_image_shape(image_shape)
    if len(shape) == 4:
        if image_shape is not None and shape[1:] != image_shape:
            raise ValueError(
                f"{name} has images of shape {shape[1:]} but image_shape={image_shape}."
            )
        return X
    if len(shape) == 3:
        return as_images(xp, xp.reshape(X, shape + (1,)), image_shape, name)
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be an array of images (n, H, W, C) or (n, H, W), or of "
            f"flattened images (n, H*W*C); got shape {shape}."
        )
    d = shape[1]
    if image_shape is None:
        side = math.isqrt(d)
        if side * side != d or d == 0:
            raise ValueError(
                f"{name} has {d} features, which is not a square number: pass "
                "image_shape=(H, W, C) to say how its rows are images."
            )
        image_shape = (side, side, 1)
    if math.prod(image_shape) != d:
        raise ValueError(
            f"{name} has {d} features but image_shape={image_shape} holds "
            f"{math.prod(image_shape)} values per image."
        )
    return xp.reshape(X, (shape[0],) + image_shape)


# ---------------------------------------------------------------------------
# The layer operations, on the full (H, W, H, W, *b) or diagonal (H, W, *b)
# layout
# ---------------------------------------------------------------------------
def _copy(xp, a):
    return xp.asarray(a, copy=True)


def _index(ndim, axes, sl):
    idx = [slice(None)] * ndim
    for axis in axes:
        idx[axis] = sl
    return tuple(idx)


def _patch_sum(xp, K, axes, f, padding):
    """Sum of ``K`` shifted by the same offset along ``axes``, over ``f`` offsets."""
    n = K.shape[axes[0]]
    ndim = K.ndim
    if padding == "VALID":
        m = n - f + 1
        out = _copy(xp, K[_index(ndim, axes, slice(0, m))])
        for a in range(1, f):
            out += K[_index(ndim, axes, slice(a, a + m))]
        return out
    lo = (f - 1) // 2
    out = _copy(xp, K)  # offset 0
    for a in range(f):
        d = a - lo
        if d == 0:
            continue
        if padding == "CIRCULAR":
            out += xp.roll(K, shift=(-d,) * len(axes), axis=tuple(axes))
            continue
        if abs(d) >= n:
            continue  # only zero padding in reach
        dst = slice(max(0, -d), n - max(0, d))
        src = slice(max(0, d), n + min(0, d))
        out[_index(ndim, axes, dst)] += K[_index(ndim, axes, src)]
    return out


def _conv(xp, K, spec, full):
    """``fh fw`` times the Conv's patch operator on ``K`` (the unnormalised sum)."""
    fh, fw = spec.filter_shape
    h_axes, w_axes = ((0, 2), (1, 3)) if full else ((0,), (1,))
    K = _patch_sum(xp, K, h_axes, fh, spec.padding)
    return _patch_sum(xp, K, w_axes, fw, spec.padding)


def _pool(xp, K, window):
    """AvgPool of both pixel indices over independent windows (full layout)."""
    ph, pw = window
    H, W = K.shape[0], K.shape[1]
    ho, wo = (H - ph) // ph + 1, (W - pw) // pw + 1
    batch = tuple(K.shape[4:])
    crop = K[: ho * ph, : wo * pw, : ho * ph, : wo * pw, ...]
    crop = xp.reshape(crop, (ho, ph, wo, pw, ho, ph, wo, pw) + batch)
    return xp.sum(crop, axis=(1, 3, 5, 7)) / float((ph * pw) ** 2)


def _pixel_diagonal(xp, K):
    """The diagonal pixel pairs ``K(p, p)`` of a full-layout array."""
    H, W = K.shape[0], K.shape[1]
    P = H * W
    batch = tuple(K.shape[4:])
    flat = xp.reshape(K, (P * P,) + batch)
    idx = xp.arange(P, device=array_device(K)) * (P + 1)
    return xp.reshape(xp.take(flat, idx, axis=0), (H, W) + batch)


def _readout_mean(xp, K, full, gap):
    """The readout of ``K``: mean of all pixel pairs (GAP) or of the diagonal."""
    if gap:
        P2 = K.shape[0] * K.shape[1] * K.shape[2] * K.shape[3]
        return xp.sum(K, axis=(0, 1, 2, 3)) / float(P2)
    D = _pixel_diagonal(xp, K) if full else K
    return xp.sum(D, axis=(0, 1)) / float(D.shape[0] * D.shape[1])


def _snap_tolerances(xp, spec, dtype, channels):
    """Per block, the distance to +-1 below which a correlation is snapped.

    The first Conv's covariances are dot products of ``C fh fw`` terms; later
    ones sums of ``fh fw`` terms (and ``(ph pw)^2`` after a pooling).
    """
    fh, fw = spec.filter_shape
    ph, pw = spec.pool_window
    tols = []
    for block in range(spec.depth):
        terms = fh * fw * (channels if block == 0 else 1)
        if block - 1 in spec.pool_after:
            terms += (ph * pw) ** 2
        tols.append(snap_tolerance(xp, dtype, terms))
    return tols


def _recursion(xp, sigma, spec, want_ntk, all_depths, channels, stds):
    """Run the blocks on ``sigma`` (the input covariances ``Sigma^0``).

    ``stds(block, sigma, full) -> (s1, s2)`` gives the standard deviations
    of the two images' pixels entering the block's activation, broadcastable
    against ``sigma``. Returns ``(nngps, ntks)``: the network's outputs after
    each collected block (every block with ``all_depths``, else the last),
    arrays of the batch shape.
    """
    act = ACTIVATIONS[spec.activation]
    params = dict(spec.activation_params)
    fh, fw = spec.filter_shape
    fhw = fh * fw
    w2 = spec.weight_std * spec.weight_std
    b2 = 0.0 if spec.bias_std is None else spec.bias_std * spec.bias_std
    bias_one = 0.0 if spec.bias_std is None else 1.0
    ntk_par = spec.parameterization == "ntk"
    full_at = spec.full_layout()
    gap = spec.readout == "gap"
    tols = _snap_tolerances(xp, spec, sigma.dtype, channels)
    full = full_at[0]
    # the ABReLU family on NumPy: in place, with arccos (see _abrelu_numpy)
    slopes = act.slopes(**params) if act.slopes is not None and xp is np else None
    theta = None
    nngps, ntks = [], []
    for block in range(spec.depth):
        c_in = channels if block == 0 else spec.width
        patch = _conv(xp, sigma, spec, full)
        sigma = (w2 / fhw) * patch + b2
        if want_ntk:
            conv_theta = (
                None if theta is None else (w2 / fhw) * _conv(xp, theta, spec, full)
            )
            if ntk_par:
                own = sigma if conv_theta is not None else _copy(xp, sigma)
            else:
                own = float(c_in if c_in is not None else math.nan) * patch + bias_one
            theta = own if conv_theta is None else conv_theta + own
        del patch
        s1, s2 = stds(block, sigma, full)
        if slopes is not None:
            sigma, dot = _abrelu_numpy(sigma, s1, s2, tols[block], *slopes)
        else:
            rho = correlation(xp, sigma, s1, s2, tols[block])
            sigma, dot = act.corr_dual(xp, s1, s2, rho, **params)
            del rho
        if want_ntk:
            theta = xp.zeros_like(sigma) if act.kills_ntk else theta * dot
        del dot
        if block in spec.pool_after:
            sigma = _pool(xp, sigma, spec.pool_window)
            if want_ntk:
                theta = _pool(xp, theta, spec.pool_window)
        if all_depths or block == spec.depth - 1:
            n_pix = sigma.shape[0] * sigma.shape[1]
            s_r = _readout_mean(xp, sigma, full, gap)
            nngp = w2 * s_r + b2
            ntk = None
            if want_ntk:
                t_r = _readout_mean(xp, theta, full, gap)
                if ntk_par:
                    ntk = nngp + w2 * t_r
                else:
                    width = math.nan if spec.width is None else spec.width
                    n_in = float(width * (1 if gap else n_pix))
                    ntk = n_in * s_r + w2 * t_r + bias_one
            nngps.append(nngp)
            ntks.append(ntk)
        if block + 1 < spec.depth and full and not full_at[block + 1]:
            sigma = _pixel_diagonal(xp, sigma)
            if want_ntk:
                theta = _pixel_diagonal(xp, theta)
            full = False
    return nngps, ntks


#: Entries of the chunks in which the NumPy ABReLU activation runs: its six
#: scratch arrays (256 KiB each in float64) stay in a core's cache, which
#: matters more than the number of passes on a memory-bound machine.
_ACTIVATION_CHUNK = 2**15


def _abrelu_numpy(sigma, s1, s2, tol, a, b):
    """``(new_sigma, dot)`` of ``a min(x, 0) + b max(x, 0)``, NumPy, in chunks.

    The mathematics of ``sknetk._activations._abrelu_dual`` after
    ``correlation`` (``rho = 0`` where a standard deviation is zero, clipping
    to [-1, 1], snapping to +-1 within ``tol``), written with ``out=``
    arguments on scratch buffers of :data:`_ACTIVATION_CHUNK` entries (the
    first axis is cut into chunks; ``s1``/``s2`` broadcast against
    ``sigma`` and have a first axis of ``sigma``'s length or 1) and with
    ``arccos`` for the angle (about half the cost of ``atan2``). ``sigma``
    is overwritten with the new covariance.
    """
    factor = (a - b) * (a - b) / (2 * math.pi)
    c1 = (a * a + b * b) / 2
    inv1 = np.divide(1.0, s1, out=np.zeros_like(s1), where=s1 > 0)
    inv2 = np.divide(1.0, s2, out=np.zeros_like(s2), where=s2 > 0)
    dot = np.empty_like(sigma)
    n0 = sigma.shape[0]
    per_row = max(1, sigma.size // max(n0, 1))
    rows = max(1, _ACTIVATION_CHUNK // per_row)
    shape = (min(rows, n0),) + sigma.shape[1:]
    rho_buf = np.empty(shape, dtype=sigma.dtype)
    tmp_buf = np.empty(shape, dtype=sigma.dtype)
    near_buf = np.empty(shape, dtype=bool)

    def part(a_, i0, i1):
        return a_ if a_.shape[0] == 1 else a_[i0:i1]

    for i0 in range(0, n0, rows):
        i1 = min(i0 + rows, n0)
        k = sigma[i0:i1]
        d = dot[i0:i1]
        rho, tmp, near = rho_buf[: i1 - i0], tmp_buf[: i1 - i0], near_buf[: i1 - i0]
        np.multiply(part(inv1, i0, i1), part(inv2, i0, i1), out=rho)
        rho *= k
        np.clip(rho, -1.0, 1.0, out=rho)
        np.abs(rho, out=tmp)
        np.greater(tmp, 1.0 - tol, out=near)
        if near.any():
            np.copyto(rho, np.sign(rho), where=near)
        # tmp <- sin(angle) = sqrt((1 - rho)(1 + rho))
        np.subtract(1.0, rho, out=tmp)
        np.add(1.0, rho, out=d)
        tmp *= d
        np.sqrt(tmp, out=tmp)
        np.arccos(rho, out=d)  # the angle, then the derivative dual
        if factor:
            d *= -factor
            d += c1
        else:
            d.fill(c1)
        tmp *= factor
        rho *= d
        tmp += rho
        np.multiply(part(s1, i0, i1), part(s2, i0, i1), out=k)
        k *= tmp
    return sigma, dot


def _first_covariance_self(xp, X, full):
    """``Sigma^0(x, p; x, p')`` of each image: ``(H, W, H, W, n)`` or ``(H, W, n)``."""
    n, H, W, C = X.shape
    if not full:
        q = xp.sum(X * X, axis=3) / float(C)
        return xp.permute_dims(q, (1, 2, 0))
    flat = xp.reshape(X, (n, H * W, C))
    G = flat @ xp.permute_dims(flat, (0, 2, 1))  # (n, P, P)
    G = xp.permute_dims(G, (1, 2, 0)) / float(C)
    return xp.reshape(G, (H, W, H, W, n))


def _first_covariance_pairs(xp, A, B, full):
    """``Sigma^0(x, p; x', p')`` of a tile, full or diagonal layout."""
    na, H, W, C = A.shape
    nb = B.shape[0]
    P = H * W
    At = xp.permute_dims(xp.reshape(A, (na, P, C)), (1, 0, 2))  # (P, na, C)
    Bt = xp.permute_dims(xp.reshape(B, (nb, P, C)), (1, 0, 2))  # (P, nb, C)
    if not full:
        G = At @ xp.permute_dims(Bt, (0, 2, 1))  # (P, na, nb)
        return xp.reshape(G, (H, W, na, nb)) / float(C)
    G = xp.reshape(At, (P * na, C)) @ xp.permute_dims(
        xp.reshape(Bt, (P * nb, C)), (1, 0)
    )
    G = xp.permute_dims(xp.reshape(G, (P, na, P, nb)), (0, 2, 1, 3))
    return xp.reshape(G, (H, W, H, W, na, nb)) / float(C)


def self_recursion(xp, X, spec, want_ntk, all_depths):
    """The per-image recursion: the pixel variances and the exact diagonals.

    Parameters
    ----------
    X : array of shape (n, H, W, C)
        Images.

    Returns
    -------
    q_maps : list of arrays of shape (H_l, W_l, n)
        Per block, the variance ``q(x, p)`` entering its activation.
    diag : dict
        ``{"nngp": [...], "ntk": [...]}`` (the NTK when wanted): ``K(x, x)``
        of each image, arrays of shape ``(n,)``, one per collected depth.
    """
    full0 = spec.full_layout()[0]
    q_maps = []

    def stds(block, sigma, full):
        q = _pixel_diagonal(xp, sigma) if full else _copy(xp, sigma)
        q_maps.append(q)
        s = xp.sqrt(q)
        if full:
            H, W, n = s.shape
            return xp.reshape(s, (H, W, 1, 1, n)), xp.reshape(s, (1, 1, H, W, n))
        return s, s

    sigma = _first_covariance_self(xp, X, full0)
    nngps, ntks = _recursion(xp, sigma, spec, want_ntk, all_depths, X.shape[3], stds)
    diag = {"nngp": nngps}
    if want_ntk:
        diag["ntk"] = ntks
    return q_maps, diag


def pair_tile(xp, A, B, qa, qb, spec, want_ntk, all_depths):
    """Kernels between the images ``A`` (rows) and ``B`` (columns) of one tile.

    ``qa``/``qb`` are the :func:`self_recursion` variance maps of ``A`` and
    ``B`` (per block, ``(H_l, W_l, na)`` and ``(H_l, W_l, nb)``). Returns
    ``(nngps, ntks)``: lists of ``(na, nb)`` arrays, one per collected depth.
    """
    full0 = spec.full_layout()[0]

    def stds(block, sigma, full):
        sa, sb = xp.sqrt(qa[block]), xp.sqrt(qb[block])
        H, W, na = sa.shape
        nb = sb.shape[2]
        if full:
            return (
                xp.reshape(sa, (H, W, 1, 1, na, 1)),
                xp.reshape(sb, (1, 1, H, W, 1, nb)),
            )
        return xp.reshape(sa, (H, W, na, 1)), xp.reshape(sb, (H, W, 1, nb))

    sigma = _first_covariance_pairs(xp, A, B, full0)
    return _recursion(xp, sigma, spec, want_ntk, all_depths, A.shape[3], stds)


def entries_per_pair(spec, H, W):
    """Largest number of pixel-pair entries one image pair holds at once."""
    shapes = spec.map_shapes(H, W)
    full_at = spec.full_layout()
    sizes = [H * W * (H * W if full_at[0] else 1)]
    for block, (hc, wc, _, _) in enumerate(shapes):
        sizes.append(hc * wc * (hc * wc if full_at[block] else 1))
    return max(sizes)


# ---------------------------------------------------------------------------
# Validation, tiling and threads
# ---------------------------------------------------------------------------
#: Float arrays of one tile's size alive at once (the activation's duals).
_TEMPORARIES = 16
#: Largest number of pixel-pair entries of one tile: its temporaries (8 MiB
#: each in float64) stay near the cache of a core, which keeps the ~40
#: elementwise passes per block out of main memory.
_MAX_TILE_ENTRIES = 2**20


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------
def _compute_dtype(xp, dtype):
    if dtype is None or dtype in ("float64", np.float64) or dtype is xp.float64:
        return xp.float64
    if dtype in ("float32", np.float32) or dtype is xp.float32:
        return xp.float32
    raise ValueError(f"dtype must be None, 'float64' or 'float32', got {dtype!r}.")


def _check_images(X, name, image_shape, xp, dtype):
    """Validate finite real images and return them NHWC in the compute dtype."""
    if is_numpy_namespace(xp):
        from sklearn.utils import check_array

        X = check_array(
            X,
            dtype=[np.float64, np.float32],
            ensure_all_finite=True,
            input_name=name,
            ensure_min_samples=0,
            allow_nd=True,
        )
        X = np.asarray(X, dtype=dtype)
    else:
        if getattr(X, "ndim", 0) not in (2, 3, 4):
            raise ValueError(
                f"Expected images for {name}, got shape {getattr(X, 'shape', None)}."
            )
        if not xp.isdtype(X.dtype, ("real floating", "integral")):
            raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}.")
        X = xp.astype(X, dtype)
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError(f"Input {name} contains NaN or infinity.")
    return as_images(xp, X, image_shape, name)


def place_images(device, dtype, image_shape, X, Y):
    """Validated images in the compute namespace, and the way back.

    ``device="auto"`` computes where the input lives; ``"gpu"`` moves NumPy
    input to CuPy (results come back as NumPy); ``"cpu"`` moves CuPy input to
    NumPy (results go back to CuPy).
    """
    check_device(device)
    xp = get_namespace(X, Y)
    cupy_in = is_cupy_namespace(xp)
    back = _same
    if device == "cpu" and cupy_in:
        cupy = cupy_or_error()
        X = to_numpy(X)
        Y = None if Y is None else to_numpy(Y)
        xp, back = np, cupy.asarray
    dt = _compute_dtype(xp, dtype)
    X = _check_images(X, "X", image_shape, xp, dt)
    if Y is not None:
        Y = _check_images(Y, "Y", image_shape, xp, dt)
        if tuple(Y.shape[1:]) != tuple(X.shape[1:]):
            raise ValueError(
                f"X has images of shape {tuple(X.shape[1:])} but Y has "
                f"{tuple(Y.shape[1:])}; they must match."
            )
    if device == "gpu" and not cupy_in:
        cupy = cupy_or_error()
        X = cupy.asarray(X)
        Y = None if Y is None else cupy.asarray(Y)
        back = cupy.asnumpy
    return X, Y, back


def _same(a):
    return a


# ---------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------
def pairs_per_tile(spec, H, W, itemsize, budget, threads):
    """Image pairs per tile: the temporaries fit the budget over all threads."""
    per_pair = entries_per_pair(spec, H, W)
    fit = int(budget / (_TEMPORARIES * itemsize * per_pair * threads))
    return max(1, min(fit, _MAX_TILE_ENTRIES // per_pair))


def _n_threads(xp, n_jobs, n_tiles):
    if not is_numpy_namespace(xp):
        return 1  # device libraries parallelise inside each operation
    return max(1, min(effective_n_jobs(n_jobs), n_tiles))


def self_path(xp, X, spec, want_ntk, all_depths, pairs):
    """:func:`self_recursion` over chunks of ``pairs`` images; overflow checked."""
    kernel = _compiled_kernel(xp, spec, X.dtype)
    if kernel is not None:
        return _self_path_compiled(kernel, X, spec, want_ntk, all_depths, 1)
    n = X.shape[0]
    q_parts, d_parts = [], []
    for i0 in range(0, n, pairs):
        with np.errstate(over="ignore", invalid="ignore"):
            q, d = self_recursion(
                xp, X[i0 : min(i0 + pairs, n), ...], spec, want_ntk, all_depths
            )
        q_parts.append(q)
        d_parts.append(d)
    if not q_parts:  # no images: empty maps of the right shapes
        with np.errstate(over="ignore", invalid="ignore"):
            return self_recursion(xp, X, spec, want_ntk, all_depths)
    q_maps = [
        xp.concat([q[k] for q in q_parts], axis=2) for k in range(len(q_parts[0]))
    ]
    diag = {
        name: [
            xp.concat([d[name][k] for d in d_parts], axis=0)
            for k in range(len(d_parts[0][name]))
        ]
        for name in d_parts[0]
    }
    _check_finite(xp, X, spec, q_maps, diag)
    return q_maps, diag


def _check_finite(xp, X, spec, q_maps, diag):
    """A ``ValueError`` where the per-image recursion overflowed."""
    arrays = q_maps + [v for vs in diag.values() for v in vs]
    if not all(bool(xp.all(xp.isfinite(a))) for a in arrays):
        raise ValueError(
            f"The convolutional kernel overflows {X.dtype} (NaN or infinity) at "
            f"depth {spec.depth}: the images are too large in magnitude for "
            f"weight_std={spec.weight_std!r}, bias_std={spec.bias_std!r} and the "
            "activation's parameters. Scale the pixels (e.g. to [0, 1] or unit "
            "variance)."
        )


def compute_kernels(X, Y, spec, want, all_depths, budget, n_jobs):
    """The requested kernels of ``X`` and ``Y``: ``{name: (n_depths, n1, n2)}``."""
    xp = get_namespace(X)
    kernel = _compiled_kernel(xp, spec, X.dtype)
    if kernel is not None:
        return _compute_compiled(kernel, X, Y, spec, want, all_depths, budget, n_jobs)
    symmetric = Y is None
    Yv = X if symmetric else Y
    n1, H, W, _ = X.shape
    n2 = Yv.shape[0]
    spec.map_shapes(H, W)  # a vanishing map raises here
    want_ntk = "ntk" in want
    n_depths = spec.depth if all_depths else 1
    itemsize = 4 if X.dtype == xp.float32 else 8
    threads = _n_threads(xp, n_jobs, max(n1, n2))
    pairs = pairs_per_tile(spec, H, W, itemsize, budget, threads)
    q_x, d_x = self_path(xp, X, spec, want_ntk, all_depths, pairs)
    q_y, d_y = (
        (q_x, d_x)
        if symmetric
        else self_path(xp, Yv, spec, want_ntk, all_depths, pairs)
    )
    zero = xp.zeros((), dtype=X.dtype, device=array_device(X))
    roots_x = {k: [xp.sqrt(xp.maximum(v, zero)) for v in vs] for k, vs in d_x.items()}
    roots_y = (
        roots_x
        if symmetric
        else {k: [xp.sqrt(xp.maximum(v, zero)) for v in vs] for k, vs in d_y.items()}
    )
    if symmetric or n2 >= math.isqrt(pairs):
        side_b = max(1, math.isqrt(pairs))
        side_a = side_b if symmetric else max(1, pairs // side_b)
    else:  # few columns (prediction against a few rows): tall tiles
        side_b = max(1, n2)
        side_a = max(1, pairs // side_b)
    tiles = [
        (i0, min(i0 + side_a, n1), j0, min(j0 + side_b, n2))
        for i0 in range(0, n1, side_a)
        for j0 in range(i0 if symmetric else 0, n2, side_b)
    ]
    out = {
        name: xp.empty((n_depths, n1, n2), dtype=X.dtype, device=array_device(X))
        for name in want
    }
    threads = _n_threads(xp, n_jobs, len(tiles))

    def work(i0, i1, j0, j1):
        qa = [q[:, :, i0:i1] for q in q_x]
        qb = [q[:, :, j0:j1] for q in q_y]
        with np.errstate(over="ignore", invalid="ignore"):
            nngps, ntks = pair_tile(
                xp, X[i0:i1, ...], Yv[j0:j1, ...], qa, qb, spec, want_ntk, all_depths
            )
        for name, blocks in (("nngp", nngps), ("ntk", ntks)):
            if name not in out:
                continue
            for k, block in enumerate(blocks):
                ra = roots_x[name][k][i0:i1]
                rb = roots_y[name][k][j0:j1]
                # Cauchy-Schwarz: |K(x, y)| <= sqrt(K(x, x) K(y, y)), which
                # rounding could exceed by a few ulps
                bound = ra[:, None] * rb[None, :]
                block = xp.minimum(xp.maximum(block, -bound), bound)
                if symmetric and i0 == j0:
                    # exactly symmetric, with the per-image recursion's
                    # exact K(x, x) on the diagonal
                    block = (block + xp.permute_dims(block, (1, 0))) * 0.5
                    eye = xp.eye(i1 - i0, dtype=xp.bool, device=array_device(block))
                    exact = d_x[name][k][i0:i1]
                    block = xp.where(eye, exact[None, :], block)
                out[name][k, i0:i1, j0:j1] = block
                if symmetric and j0 != i0:
                    out[name][k, j0:j1, i0:i1] = xp.permute_dims(block, (1, 0))

    if threads == 1 or len(tiles) == 1:
        for tile in tiles:
            work(*tile)
    else:
        with threadpool_limits(limits=1, user_api="blas"):
            Parallel(n_jobs=threads, backend="threading")(
                delayed(work)(*tile) for tile in tiles
            )
    return out


# ---------------------------------------------------------------------------
# The compiled path (numba; the ReLU family in float64 on NumPy)
# ---------------------------------------------------------------------------
#: Scratch arrays of the largest pixel-pair matrix per thread of the
#: compiled kernel.
_COMPILED_SCRATCH = 4
#: Largest number of image pairs per call of the compiled kernel (a few
#: calls per thread balance the threads; the pair lists stay small).
_COMPILED_MAX_PAIRS = 2**14


def _compiled_kernel(xp, spec, dtype):
    """The compiled kernel where it applies, else ``None``.

    NumPy arrays in float64 and an activation of the ReLU family (an arccos
    dual); everything else (and an installation without numba) runs the
    NumPy path.
    """
    if not is_numpy_namespace(xp) or dtype != np.float64:
        return None
    if ACTIVATIONS[spec.activation].slopes is None:
        return None
    return compiled_conv()


def _compiled_setup(spec, H, W, channels, all_depths):
    """The compiled kernel's geometry and parameters for ``H x W`` images."""
    shapes = spec.map_shapes(H, W)
    full_at = spec.full_layout()
    depth = spec.depth
    geo = np.zeros((depth, 10), dtype=np.int64)
    hi, wi = H, W
    for block, (hc, wc, ho, wo) in enumerate(shapes):
        if all_depths:
            collect = block
        else:
            collect = 0 if block == depth - 1 else -1
        full_next = full_at[block + 1] if block + 1 < depth else False
        geo[block] = (
            hi, wi, hc, wc, ho, wo, block in spec.pool_after, full_at[block],
            collect, full_next,
        )  # fmt: skip
        hi, wi = ho, wo
    fh, fw = spec.filter_shape
    ph, pw = spec.pool_window
    pad = {"SAME": SAME, "CIRCULAR": CIRCULAR, "VALID": VALID}[spec.padding]
    lo_h, lo_w = (0, 0) if spec.padding == "VALID" else ((fh - 1) // 2, (fw - 1) // 2)
    ints = np.array([fh, fw, lo_h, lo_w, pad, ph, pw], dtype=np.int64)
    a, b = ACTIVATIONS[spec.activation].slopes(**dict(spec.activation_params))
    factor = (a - b) * (a - b) / (2 * math.pi)
    c1 = (a * a + b * b) / 2
    w2 = spec.weight_std * spec.weight_std
    b2 = 0.0 if spec.bias_std is None else spec.bias_std * spec.bias_std
    bias_one = 0.0 if spec.bias_std is None else 1.0
    gap = spec.readout == "gap"
    par = np.array(
        [w2, b2, w2 / (fh * fw), bias_one, factor, c1,
         float(spec.parameterization == "ntk"), float(gap)],
        dtype=np.float64,
    )  # fmt: skip
    tols = np.array(_snap_tolerances(np, spec, np.float64, channels), dtype=np.float64)
    width = math.nan if spec.width is None else float(spec.width)
    cin = np.array(
        [float(channels) if block == 0 else width for block in range(depth)],
        dtype=np.float64,
    )
    nin = np.array(
        [width * (1 if gap else ho * wo) for (_, _, ho, wo) in shapes],
        dtype=np.float64,
    )
    return geo, ints, par, tols, cin, nin


def _self_path_compiled(kernel, X, spec, want_ntk, all_depths, threads):
    """:func:`self_path` through the compiled kernel."""
    n, H, W, C = X.shape
    setup = _compiled_setup(spec, H, W, C, all_depths)
    n_out = spec.depth if all_depths else 1
    A = np.ascontiguousarray(np.reshape(X, (n, H * W, C)))
    index = np.arange(n, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        nngp, ntk, q = run_pairs(
            kernel, A, A, index, index, True, want_ntk, setup, None, n_out, threads
        )
    q_maps = [
        np.ascontiguousarray(q[:, block, : hc * wc].T).reshape(hc, wc, n)
        for block, (hc, wc, _, _) in enumerate(spec.map_shapes(H, W))
    ]
    diag = {"nngp": [np.ascontiguousarray(nngp[:, k]) for k in range(n_out)]}
    if want_ntk:
        diag["ntk"] = [np.ascontiguousarray(ntk[:, k]) for k in range(n_out)]
    _check_finite(np, X, spec, q_maps, diag)
    return q_maps, diag


def _stds(q_maps, p_max):
    """``(sqrt(q), 1 / sqrt(q) or 0)`` of each image, ``(n, depth, p_max)``."""
    n = q_maps[0].shape[2]
    s = np.zeros((n, len(q_maps), p_max))
    for block, q in enumerate(q_maps):
        hc, wc = q.shape[0], q.shape[1]
        s[:, block, : hc * wc] = np.sqrt(np.reshape(q, (hc * wc, n)).T)
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    return s, inv


def _compute_compiled(kernel, X, Y, spec, want, all_depths, budget, n_jobs):
    """:func:`compute_kernels` through the compiled kernel.

    Threads (``n_jobs``, fewer where their scratch arrays would not fit
    ``budget``) take row blocks of image pairs; K(X, X) computes each pair
    ``i < j`` once and takes its diagonal from the per-image recursion.
    """
    symmetric = Y is None
    Yv = X if symmetric else Y
    n1, H, W, C = X.shape
    n2 = Yv.shape[0]
    setup = _compiled_setup(spec, H, W, C, all_depths)
    want_ntk = "ntk" in want
    n_out = spec.depth if all_depths else 1
    entries = (H * W) ** (2 if spec.full_layout()[0] else 1)
    if spec.padding == "SAME" and spec.readout == "gap" and not spec.pool_after:
        # the compiled kernel's padded layout: every plane with its margins
        fw = spec.filter_shape[1]
        entries = H * H * ((W + fw - 1) ** 2 + fw - 1)
    per_thread = _COMPILED_SCRATCH * 8 * entries
    threads = max(1, min(effective_n_jobs(n_jobs), max(n1, n2, 1)))
    threads = max(1, min(threads, int(budget // max(per_thread, 1))))
    q_x, d_x = _self_path_compiled(kernel, X, spec, want_ntk, all_depths, threads)
    q_y, d_y = (
        (q_x, d_x)
        if symmetric
        else _self_path_compiled(kernel, Yv, spec, want_ntk, all_depths, threads)
    )
    p_max = q_x[0].shape[0] * q_x[0].shape[1]
    sa, ia = _stds(q_x, p_max)
    sb, ib = (sa, ia) if symmetric else _stds(q_y, p_max)
    A = np.ascontiguousarray(np.reshape(X, (n1, H * W, C)))
    B = A if symmetric else np.ascontiguousarray(np.reshape(Yv, (n2, H * W, C)))
    roots_x = {k: [np.sqrt(np.maximum(v, 0.0)) for v in vs] for k, vs in d_x.items()}
    roots_y = (
        roots_x
        if symmetric
        else {k: [np.sqrt(np.maximum(v, 0.0)) for v in vs] for k, vs in d_y.items()}
    )
    out = {name: np.empty((n_out, n1, n2)) for name in want}
    n_pairs = n1 * (n1 - 1) // 2 if symmetric else n1 * n2
    target = max(1, min(_COMPILED_MAX_PAIRS, -(-n_pairs // (4 * threads))))
    per_tile = max(1, target // max(n2, 1))
    tiles = [(i0, min(i0 + per_tile, n1)) for i0 in range(0, n1, per_tile)]

    def work(i0, i1):
        if symmetric:
            rows = np.concatenate(
                [np.full(n1 - i - 1, i, dtype=np.int64) for i in range(i0, i1)]
                + [np.zeros(0, dtype=np.int64)]
            )
            cols = np.concatenate(
                [np.arange(i + 1, n1, dtype=np.int64) for i in range(i0, i1)]
                + [np.zeros(0, dtype=np.int64)]
            )
        else:
            rows = np.repeat(np.arange(i0, i1, dtype=np.int64), n2)
            cols = np.tile(np.arange(n2, dtype=np.int64), i1 - i0)
        with np.errstate(over="ignore", invalid="ignore"):
            nngp, ntk, _ = run_pairs(
                kernel, A, B, rows, cols, False, want_ntk, setup, (sa, ia, sb, ib),
                n_out, 1,
            )  # fmt: skip
        for name, values in (("nngp", nngp), ("ntk", ntk)):
            if name not in out:
                continue
            for k in range(n_out):
                v = values[:, k]
                # Cauchy-Schwarz: |K(x, y)| <= sqrt(K(x, x) K(y, y)), which
                # rounding could exceed by a few ulps
                bound = roots_x[name][k][rows] * roots_y[name][k][cols]
                v = np.minimum(np.maximum(v, -bound), bound)
                out[name][k, rows, cols] = v
                if symmetric:
                    out[name][k, cols, rows] = v

    if threads == 1 or len(tiles) == 1:
        for tile in tiles:
            work(*tile)
    else:
        Parallel(n_jobs=threads, backend="threading")(
            delayed(work)(*tile) for tile in tiles
        )
    if symmetric:
        idx = np.arange(n1)
        for name in want:
            for k in range(n_out):
                out[name][k, idx, idx] = d_x[name][k]
    return out


def finish(arr, all_depths):
    return arr if all_depths else arr[0, ...]


ConvKernelSpec.__module__ = "sknetk.conv"
