"""The layer recursion of the NNGP and NTK: the architecture and its arithmetic.

:class:`KernelSpec` describes the network; the functions here run the
recursion of ``docs/kernels.rst`` on arrays of any array-API namespace: the
per-row variance path, one tile of the kernel matrices, and the exact
correlation-one diagonals (with the overflow check that names its cause).
:mod:`sknetk.kernels` (tiling, threads, placement, public functions) and
:mod:`sknetk._cuda` (the fused CUDA kernel) both build on this module, which
imports neither.
"""

import dataclasses
import itertools
import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.utils._param_validation import (
    make_constraint,
    validate_parameter_constraints,
)

from ._activations import ACTIVATIONS, correlation, get_activation, snap_tolerance
from ._array_api import to_numpy
from ._params import NETWORK, PARAMETERIZATIONS, constraints

__all__ = [
    "KernelSpec",
    "PARAMETERIZATIONS",
    "checked_diagonals",
    "diag_recursion",
    "snap_tolerances",
    "tile_recursion",
    "variance_path",
]

# The table's constraints of the network's parameters, as the functions check
# them (resolved once: from_params runs on every kernel call).
_CONSTRAINTS = constraints(NETWORK, "function")
_MADE = {name: [make_constraint(c) for c in cs] for name, cs in _CONSTRAINTS.items()}


@dataclass(frozen=True)
class KernelSpec:
    """The architecture whose infinite-width kernels are computed.

    Parameters
    ----------
    depth : int
        Number of hidden ``Dense -> activation`` blocks (>= 1).
    activation : str
        A name from ``sknetk.kernels.ACTIVATION_NAMES``.
    activation_params : dict or None
        Parameters of the activation (for example ``{"alpha": 0.1}`` for
        ``leaky_relu``); missing ones take their defaults.
    weight_std, bias_std : float
        Standard deviations of the Dense layers' weights and biases.
        ``bias_std=None`` means the layers have no bias parameter.
    parameterization : {"ntk", "standard"}
        neural-tangents' parameterization of the Dense layers.
    width : int or None
        Hidden width; only the ``"standard"`` NTK depends on it.
    frozen_layers : int
        Number of leading Dense layers kept at initialisation (not trained):
        their parameters contribute nothing to the NTK. ``0`` trains all
        layers; ``depth`` trains the readout only.

    Examples
    --------
    >>> from sknetk.kernels import KernelSpec
    >>> spec = KernelSpec.from_params(depth=2, activation="leaky_relu",
    ...                               activation_params={"alpha": 0.1})
    >>> spec.depth, dict(spec.activation_params)
    (2, {'alpha': 0.1})
    """

    depth: int = 3
    activation: str = "relu"
    activation_params: tuple = ()
    weight_std: float = 1.0
    bias_std: float = 0.0
    parameterization: str = "ntk"
    width: int = None
    frozen_layers: int = 0

    @classmethod
    def from_params(cls, *, ntk=True, **params):
        """Validate user-facing parameters and build a spec.

        ``params`` are the fields by name (``sknetk._params.NETWORK``), with
        their user-facing values (``activation_params`` a dict or None);
        missing ones take their defaults. The values are checked against the
        parameter table's constraints (:mod:`sknetk._params`, as the public
        functions and the estimators check them; ``InvalidParameterError``
        names the parameter), then what no single constraint sees: the
        activation's name and parameters, ``width`` for the ``"standard"``
        NTK, ``frozen_layers <= depth``. ``ntk=False`` (NNGP only) does not
        require ``width`` in the ``"standard"`` parameterization, whose NNGP
        does not depend on it.
        """
        unknown = sorted(set(params) - set(NETWORK))
        if unknown:
            raise TypeError(f"KernelSpec.from_params got unknown parameters {unknown}.")
        fields = dataclasses.fields(cls)
        values = {f.name: f.default for f in fields} | {"activation_params": None}
        values.update(params)
        if not all(
            any(c.is_satisfied_by(values[name]) for c in made)
            for name, made in _MADE.items()
        ):  # scikit-learn's message, naming the parameter
            validate_parameter_constraints(
                _CONSTRAINTS, values, caller_name="KernelSpec"
            )
        act = get_activation(values["activation"])
        values["activation_params"] = tuple(
            sorted(act.params(values["activation_params"]).items())
        )
        if values["parameterization"] == "standard" and ntk and values["width"] is None:
            raise ValueError(
                "The 'standard' parameterization's NTK depends on the hidden "
                "width: pass width=<int>, e.g. width=512."
            )
        if values["frozen_layers"] > values["depth"]:
            raise ValueError(
                f"frozen_layers must be an integer in [0, depth={values['depth']}], "
                f"got {values['frozen_layers']!r}."
            )
        # plain Python numbers (np.int64(3) and 3 give one spec and cache key)
        for f in fields:
            if f.type in (int, float) and values[f.name] is not None:
                values[f.name] = f.type(values[f.name])
        return cls(**values)

    def for_kernel(self, kernel, strict=False):
        """This network's spec for ``kernel`` (``"ntk"`` or ``"nngp"``).

        The NNGP is the covariance of the untrained network: it does not
        depend on which layers training would freeze, so its spec has none
        (one spec and one cache entry per NNGP). ``strict=True`` raises a
        ``ValueError`` instead when frozen layers were asked for with the
        NNGP, which trains the readout alone already.
        """
        if kernel == "ntk" or not self.frozen_layers:
            return self
        if strict:
            raise ValueError(
                'frozen_layers applies to kernel="ntk" only (the NNGP already '
                f"trains the readout alone); got frozen_layers={self.frozen_layers}."
                ' Use kernel="ntk" with frozen_layers=depth for the readout-only NTK.'
            )
        return dataclasses.replace(self, frozen_layers=0)

    def params(self):
        """The keywords of :meth:`from_params` (and of the public kernel
        functions) that give this spec back."""
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        params["activation_params"] = dict(self.activation_params)
        return params

    # -- the pieces of the recursion -----------------------------------------
    @property
    def _act(self):
        return ACTIVATIONS[self.activation]

    @property
    def _params(self):
        return dict(self.activation_params)

    def _dense(self, index, n_features):
        """``(w2, b2, ntk_scale, ntk_shift, trainable)`` of Dense layer ``index``.

        The layer's own parameters add ``ntk_scale * Sigma_in + ntk_shift`` to
        the NTK, where ``Sigma_in`` is its input covariance.
        """
        # products, not ``**``: a huge std gives inf (reported by the overflow
        # check, naming the parameter), not a bare OverflowError
        w2 = self.weight_std * self.weight_std
        b2 = 0.0 if self.bias_std is None else self.bias_std * self.bias_std
        if self.parameterization == "ntk":
            scale, shift = w2, b2
        else:
            n_in = n_features if index == 0 else self.width
            if n_in is None:  # NNGP-only spec: the NTK scale is never used
                n_in = math.nan
            scale, shift = float(n_in), (0.0 if self.bias_std is None else 1.0)
        return w2, b2, scale, shift, index >= self.frozen_layers


# ---------------------------------------------------------------------------
# Variance path (per example) and the recursion on one tile
# ---------------------------------------------------------------------------
def variance_path(xp, X, spec):
    """Per-example pre-activation variances and derivative duals, per layer.

    Returns ``(q_pre, dot_diag, q_out)``: lists of length ``depth`` holding the
    variance entering each activation, ``E[phi'(u)^2]`` there, and the variance
    leaving it.
    """
    d = X.shape[1]
    act, params = spec._act, spec._params
    q = xp.sum(X * X, axis=1) / d
    q_pre, dots, q_out = [], [], []
    for layer in range(spec.depth):
        w2, b2, *_ = spec._dense(layer, d)
        q = w2 * q + b2
        q_pre.append(q)
        q, dot = act.variance(xp, q, **params)
        dots.append(dot)
        q_out.append(q)
    return q_pre, dots, q_out


def _readout(spec, layer, sigma, theta, n_features, want_ntk):
    """NNGP and NTK of the network that stops after hidden block ``layer``.

    ``theta`` is ``None`` when no earlier layer is trained. The NTK is
    ``None`` when not wanted or when no layer at all is trained.
    """
    w2, b2, scale, shift, trainable = spec._dense(layer + 1, n_features)
    nngp = w2 * sigma + b2
    ntk = None
    if want_ntk:
        if theta is not None:
            ntk = w2 * theta
        if trainable:
            contribution = scale * sigma + shift
            ntk = contribution if ntk is None else ntk + contribution
    return nngp, ntk


def tile_recursion(xp, sigma, qa, qb, spec, want_ntk, all_depths, n_features, out=None):
    """Run the layer recursion on one tile ``sigma = X_a Y_b^T / d``.

    ``qa``/``qb`` are the variance paths of the tile's rows and columns.
    Returns two lists (NNGP, NTK) with one tile per requested depth.
    ``out`` (optional) maps ``"nngp"``/``"ntk"`` to NumPy arrays of shape
    ``(n_depths,) + sigma.shape`` (views of the caller's result) where the
    compiled tile kernel writes its results; the blocks returned are then
    views of them (other paths ignore ``out``; a caller checks with
    ``numpy.may_share_memory`` whether to copy).
    """
    act, params = spec._act, spec._params
    tols = snap_tolerances(xp, spec, sigma.dtype, n_features)
    if act.slopes is not None and xp is np:
        a, b = act.slopes(**params)
        return _abrelu_tile_numpy(
            sigma, qa, qb, spec, want_ntk, all_depths, n_features, a, b, tols, out
        )
    theta = None
    nngps, ntks = [], []
    for layer in range(spec.depth):
        w2, b2, *_ = spec._dense(layer, n_features)
        if want_ntk:
            theta = _dense_ntk(spec, layer, sigma, theta, n_features)
        sigma = w2 * sigma + b2
        s1 = xp.sqrt(qa[0][layer])[:, None]
        s2 = xp.sqrt(qb[0][layer])[None, :]
        # the covariance clipped to the Cauchy-Schwarz bound, as a correlation;
        # identical rows get exactly 1 and then the diagonal's arithmetic
        rho = correlation(xp, sigma, s1, s2, tols[layer])
        sigma, dot = act.corr_dual(xp, s1, s2, rho, **params)
        if theta is not None:
            theta = xp.zeros_like(sigma) if act.kills_ntk else theta * dot
        _collect(
            xp, spec, layer, sigma, theta, n_features, want_ntk, all_depths,
            nngps, ntks, qa, qb,
        )  # fmt: skip
    return nngps, ntks


def snap_tolerances(xp, spec, dtype, n_features):
    """Per layer, the distance to +-1 below which a correlation is snapped.

    The first layer's covariance comes from a Gram product of ``n_features``
    terms, whose rounding grows with its length; later ones from a few
    elementwise operations (see :func:`sknetk._activations.snap_tolerance`).
    """
    first = snap_tolerance(xp, dtype, n_features)
    return [first] + [snap_tolerance(xp, dtype)] * (spec.depth - 1)


def _dense_ntk(spec, layer, sigma, theta, n_features):
    """NTK after Dense layer ``layer`` with input covariance ``sigma``.

    ``theta`` is ``None`` while no layer has been trained (a zero NTK).
    """
    w2, _, scale, shift, trainable = spec._dense(layer, n_features)
    contribution = scale * sigma + shift if trainable else None
    if theta is None:
        return contribution
    theta = w2 * theta
    return theta if contribution is None else theta + contribution


def _collect(
    xp, spec, layer, sigma, theta, n_features, want_ntk, all_depths, nngps, ntks,
    qa, qb, scratch=None, clip=True,
):  # fmt: skip
    """Append the readout kernels after hidden block ``layer`` when wanted.

    ``qa[1]``/``qb[1]`` (when present) map ``"nngp"``/``"ntk"`` to the square
    roots of the rows' and columns' exact diagonals, one per collected depth:
    the kernels are clipped to the Cauchy-Schwarz bound
    ``|K(x, y)| <= sqrt(K(x, x) K(y, y))``, which rounding could otherwise
    exceed by a few ulps (``clip=False`` skips it where the caller knows
    that it cannot).
    """
    if all_depths or layer == spec.depth - 1:
        nngp, ntk = _readout(spec, layer, sigma, theta, n_features, want_ntk)
        if want_ntk and ntk is None:
            ntk = xp.zeros_like(nngp)
        if clip and len(qa) > 1:
            k = len(nngps)
            nngp = _clip_cs(xp, nngp, qa[1]["nngp"][k], qb[1]["nngp"][k], scratch)
            if want_ntk:
                ntk = _clip_cs(xp, ntk, qa[1]["ntk"][k], qb[1]["ntk"][k], scratch)
        nngps.append(nngp)
        ntks.append(ntk)


def _clip_cs(xp, K, root_a, root_b, scratch=None):
    """``K`` clipped to ``[-root_a root_b^T, root_a root_b^T]`` (in place for NumPy)."""
    if xp is np:
        bound = np.multiply(root_a[:, None], root_b[None, :], out=scratch)
        np.minimum(K, bound, out=K)
        np.negative(bound, out=bound)
        np.maximum(K, bound, out=K)
        return K
    bound = root_a[:, None] * root_b[None, :]
    return xp.maximum(xp.minimum(K, bound), -bound)


def _collect_into(
    out, spec, layer, sigma, theta, n_features, want_ntk, all_depths, nngps,
    ntks, qa, qb, tmp, clip,
):  # fmt: skip
    """:func:`_collect` for NumPy tiles, written into ``out`` (no temporaries).

    The same operations as :func:`_readout` and :func:`_clip_cs`, with
    ``out=`` arguments: into the caller's result where ``out`` holds a
    writable view of it (see :func:`tile_recursion`), else into new arrays.
    A kernel that ``out`` omits is not computed (its block is ``None``).
    """
    if not (all_depths or layer == spec.depth - 1):
        return
    k = len(nngps)
    n_out = spec.depth if all_depths else 1
    shape = (n_out,) + sigma.shape
    w2, b2, scale, shift, trainable = spec._dense(layer + 1, n_features)
    roots = len(qa) > 1
    nngp = ntk = None
    if "nngp" in out:
        nngp = _out_or_empty(out["nngp"], shape)[k]
        np.multiply(sigma, w2, out=nngp)
        nngp += b2
        if clip and roots:
            _clip_cs(np, nngp, qa[1]["nngp"][k], qb[1]["nngp"][k], tmp)
    if want_ntk and "ntk" in out:
        ntk = _out_or_empty(out["ntk"], shape)[k]
        if theta is not None:
            np.multiply(theta, w2, out=ntk)
            if trainable:
                np.multiply(sigma, scale, out=tmp)
                tmp += shift
                ntk += tmp
        elif trainable:
            np.multiply(sigma, scale, out=ntk)
            ntk += shift
        else:
            ntk.fill(0.0)
        if clip and roots:
            _clip_cs(np, ntk, qa[1]["ntk"][k], qb[1]["ntk"][k], tmp)
    nngps.append(nngp)
    ntks.append(ntk)


def _abrelu_tile_numpy(
    sigma, qa, qb, spec, want_ntk, all_depths, n_features, a, b, tols, out=None
):
    """In-place NumPy version of :func:`tile_recursion` for the ABReLU family.

    Same mathematics as ``_abrelu_dual`` (``theta = arccos(rho)``, and
    ``rho = 0`` for zero-variance rows so that theta = pi/2), written with
    ``out=`` arguments on two scratch buffers: about 20 cache-resident passes
    per layer and no allocation inside the layer loop.
    """
    factor = (a - b) * (a - b) / (2 * math.pi)
    c1 = (a * a + b * b) / 2
    if sigma.dtype == np.float64 and sigma.size:
        kernel = compiled_abrelu()
        if kernel is not None:
            return _abrelu_tile_compiled(
                kernel, sigma, qa, qb, spec, want_ntk, all_depths, n_features,
                factor, c1, tols, out,
            )  # fmt: skip
    rho = np.empty_like(sigma)
    tmp = np.empty_like(sigma)
    near = np.empty(sigma.shape, dtype=bool)
    theta = None
    nngps, ntks = [], []
    for layer in range(spec.depth):
        w2, b2, scale, shift, trainable = spec._dense(layer, n_features)
        if want_ntk:
            if theta is not None:
                theta *= w2
            if trainable:
                if theta is None:
                    theta = np.multiply(sigma, scale)
                else:
                    np.multiply(sigma, scale, out=tmp)
                    theta += tmp
                if shift:
                    theta += shift
        if w2 != 1.0:
            sigma *= w2
        if b2:
            sigma += b2
        s1 = np.sqrt(qa[0][layer])
        s2 = np.sqrt(qb[0][layer])
        inv1 = np.divide(1.0, s1, out=np.zeros_like(s1), where=s1 > 0)
        inv2 = np.divide(1.0, s2, out=np.zeros_like(s2), where=s2 > 0)
        # outer products first: a * b == b * a bitwise, so symmetric tiles
        # stay exactly symmetric
        np.multiply(inv1[:, None], inv2[None, :], out=rho)
        rho *= sigma
        np.clip(rho, -1.0, 1.0, out=rho)
        # |rho| within rounding of 1 is parallel: snap it to +-1, so that
        # duplicated rows follow the diagonal's recursion (see
        # snap_tolerance). Two passes when nothing is to be snapped.
        np.abs(rho, out=tmp)
        np.greater(tmp, 1.0 - tols[layer], out=near)
        any_near = bool(near.any())
        if any_near:
            np.copyto(rho, np.sign(rho), where=near)
        # tmp <- sin(angle) = sqrt((1 - rho)(1 + rho)); sigma is free scratch now.
        np.subtract(1.0, rho, out=tmp)
        np.add(1.0, rho, out=sigma)
        tmp *= sigma
        np.sqrt(tmp, out=tmp)
        # sigma <- derivative dual c1 - factor * angle
        np.arccos(rho, out=sigma)
        if factor:
            sigma *= -factor
            sigma += c1
        else:
            sigma.fill(c1)
        if theta is not None:
            theta *= sigma
        # new covariance: norm * (factor * sin + dot * rho)
        rho *= sigma
        tmp *= factor
        tmp += rho
        np.multiply(s1[:, None], s2[None, :], out=sigma)
        sigma *= tmp
        # The Cauchy-Schwarz clip of the outputs can only bite where this
        # layer's correlation is +-1: elsewhere the dual and its derivative
        # are below their values at +-1 by ~tol relative, far more than the
        # rounding of the few operations left.
        if out is not None:
            _collect_into(
                out, spec, layer, sigma, theta, n_features, want_ntk,
                all_depths, nngps, ntks, qa, qb, tmp, any_near,
            )  # fmt: skip
            continue
        _collect(
            np, spec, layer, sigma, theta, n_features, want_ntk, all_depths,
            nngps, ntks, qa, qb, scratch=tmp, clip=any_near,
        )  # fmt: skip
    return nngps, ntks


# ---------------------------------------------------------------------------
# The compiled ABReLU tile (optional: with numba installed)
# ---------------------------------------------------------------------------
# fdlibm's rational approximation of asin on [0, 1/4] (e_acos.c; < 1 ulp)
_PS = (
    1.66666666666666657415e-01,
    -3.25565818622400915405e-01,
    2.01212532134862925881e-01,
    -4.00555345006794114027e-02,
    7.91534994289814532176e-04,
    3.47933107596021167570e-05,
)
_QS = (
    -2.40339491173441421878e00,
    2.02094576023350569471e00,
    -6.88283971605453293030e-01,
    7.70381505559019352791e-02,
)
_PIO2_HI = 1.57079632679489655800e00
_PIO2_LO = 6.12323399573676603587e-17
_PI = 3.14159265358979311600e00


def acos_rational(x):
    """``arccos(x)`` for a float ``x`` in [-1, 1], without a libm call.

    fdlibm's algorithm with its coefficients, written without branches that
    a vectorising compiler could not turn into selects: for ``|x| < 1/2``,
    ``pi/2 - asin(x)`` with ``asin(x) = x + x R(x^2)``; otherwise the
    half-angle form ``2 asin(sqrt((1 - |x|) / 2))`` (reflected for ``x < 0``).
    ``R`` is fdlibm's rational minimax approximation on [0, 1/4]. Exact at
    the ends: ``acos(1) = 0``, ``acos(-1) = pi``. Within about one unit in
    the last place of ``numpy.arccos`` (``tests/test_kernel_numerics.py``
    checks 2.2e-16 absolute over [-1, 1]). The compiled tile kernel calls this
    same function; plain Python runs it too (the test does).
    """
    y = abs(x)
    small = y < 0.5
    z = x * x if small else (1.0 - y) * 0.5
    p = z * (
        _PS[0] + z * (_PS[1] + z * (_PS[2] + z * (_PS[3] + z * (_PS[4] + z * _PS[5]))))
    )
    q = 1.0 + z * (_QS[0] + z * (_QS[1] + z * (_QS[2] + z * _QS[3])))
    r = p / q
    s = math.sqrt(z)
    if small:
        return _PIO2_HI - (x - (_PIO2_LO - x * r))
    if x > 0.0:
        return 2.0 * (s + s * r)
    return _PI - 2.0 * (s + (s * r - _PIO2_LO))


def _abrelu_rows(
    sigma, s1, s2, inv1, inv2, layers, tols, collect, factor, c1, want_nngp,
    want_ntk, clip, roots1, roots2, nngp_out, ntk_out,
):  # fmt: skip
    """The in-place NumPy tile's arithmetic, entry by entry (numba compiles it).

    One row of the tile at a time, through all layers, in two row buffers
    (vectorised over the columns, within L1): the same operations in the same
    order as :func:`_abrelu_tile_numpy`, except ``arccos`` (see
    :func:`acos_rational`) and the Cauchy-Schwarz clip, applied to every
    entry (where it does not bite it changes nothing). ``layers[l]`` holds
    ``(w2, b2, scale, shift, trainable)`` of Dense layer ``l`` (``depth + 1``
    rows, the readout last); ``collect[l]`` is the output index of hidden
    block ``l`` or -1.
    """
    m, n = sigma.shape
    depth = s1.shape[0]
    sig = np.empty(n)
    th = np.empty(n)
    for i in range(m):
        for j in range(n):
            sig[j] = sigma[i, j]
        has_theta = False
        for layer in range(depth):
            w2 = layers[layer, 0]
            b2 = layers[layer, 1]
            scale = layers[layer, 2]
            shift = layers[layer, 3]
            trainable = layers[layer, 4] != 0.0
            if want_ntk and trainable:
                if has_theta:
                    for j in range(n):
                        th[j] = (th[j] * w2 + sig[j] * scale) + shift
                else:
                    for j in range(n):
                        th[j] = sig[j] * scale + shift
                has_theta = True
            elif want_ntk and has_theta:
                for j in range(n):
                    th[j] = th[j] * w2
            a1 = inv1[layer, i]
            r1 = s1[layer, i]
            snap = 1.0 - tols[layer]
            for j in range(n):
                rho = (a1 * inv2[layer, j]) * ((sig[j] * w2) + b2)
                rho = min(max(rho, -1.0), 1.0)
                if abs(rho) > snap:
                    rho = math.copysign(1.0, rho)
                sin = math.sqrt((1.0 - rho) * (1.0 + rho))
                dot = acos_rational(rho) * (-factor) + c1
                if has_theta:
                    th[j] = th[j] * dot
                sig[j] = (r1 * s2[layer, j]) * (sin * factor + rho * dot)
            k = collect[layer]
            if k >= 0:
                w2 = layers[layer + 1, 0]
                b2 = layers[layer + 1, 1]
                scale = layers[layer + 1, 2]
                shift = layers[layer + 1, 3]
                trainable = layers[layer + 1, 4] != 0.0
                if want_nngp:
                    ra = roots1[0, k, i]
                    for j in range(n):
                        v = w2 * sig[j] + b2
                        if clip:
                            bound = ra * roots2[0, k, j]
                            v = max(min(v, bound), -bound)
                        nngp_out[k, i, j] = v
                if want_ntk:
                    ra = roots1[1, k, i]
                    for j in range(n):
                        v = 0.0
                        if has_theta:
                            v = w2 * th[j]
                            if trainable:
                                v = v + (scale * sig[j] + shift)
                        elif trainable:
                            v = scale * sig[j] + shift
                        if clip:
                            bound = ra * roots2[1, k, j]
                            v = max(min(v, bound), -bound)
                        ntk_out[k, i, j] = v


class LazyJit:
    """A numba kernel compiled on first use: ``kernel = LazyJit(jit, what)()``.

    Calling it returns ``jit(numba)``, compiled once (under a lock, so that
    concurrent tile threads compile it once; cached on disk by numba where
    it can write), or ``None`` without numba, or, with a ``RuntimeWarning``,
    when this numba release cannot compile it: the NumPy path then computes
    the same kernels. ``kernel`` holds the state (``None``: not tried yet,
    ``False``: not available).
    """

    def __init__(self, jit, what):
        self.jit = jit
        self.what = what
        self.kernel = None
        self._lock = threading.Lock()

    def __call__(self):
        if self.kernel is None:
            with self._lock:
                if self.kernel is None:
                    self.kernel = self._compile() or False
        return self.kernel or None

    def _compile(self):
        try:
            import numba
        except ImportError:
            return None
        try:
            return self.jit(numba)
        except Exception as exc:  # a numba release this code does not suit
            warnings.warn(
                f"numba {getattr(numba, '__version__', '?')} could not compile the "
                f"{self.what} ({type(exc).__name__}: {exc}); the NumPy path "
                "computes the same kernels, more slowly.",
                RuntimeWarning,
                stacklevel=3,
            )
            return None


def _jit(numba):
    numba.extending.register_jitable(inline="always")(acos_rational)
    c2, c1, a3 = "float64[:, ::1]", "float64[::1]", "float64[:, :, :]"
    signature = (
        f"void({c2}, {c2}, {c2}, {c2}, {c2}, {c2}, {c1}, int64[::1], float64, "
        f"float64, boolean, boolean, boolean, float64[:, :, ::1], "
        f"float64[:, :, ::1], {a3}, {a3})"
    )
    options = dict(nogil=True, error_model="numpy")
    try:
        return numba.njit(signature, cache=True, **options)(_abrelu_rows)
    except RuntimeError:  # nowhere to write numba's cache: compile per process
        return numba.njit(signature, **options)(_abrelu_rows)


#: The compiled :func:`_abrelu_rows`: ``compiled_abrelu()`` is the kernel, or
#: ``None`` without numba.
compiled_abrelu = LazyJit(_jit, "ReLU-family tile kernel")


def _abrelu_tile_compiled(
    kernel, sigma, qa, qb, spec, want_ntk, all_depths, n_features, factor, c1, tols,
    out=None,
):  # fmt: skip
    """:func:`_abrelu_tile_numpy` through the compiled kernel (float64).

    Writes into ``out``'s arrays where given (see :func:`tile_recursion`).
    """
    depth = spec.depth
    m, n = sigma.shape
    layers = np.array(
        [spec._dense(layer, n_features) for layer in range(depth + 1)],
        dtype=np.float64,
    )
    s1 = np.sqrt(np.stack([qa[0][layer] for layer in range(depth)]))
    s2 = np.sqrt(np.stack([qb[0][layer] for layer in range(depth)]))
    inv1 = np.divide(1.0, s1, out=np.zeros_like(s1), where=s1 > 0)
    inv2 = np.divide(1.0, s2, out=np.zeros_like(s2), where=s2 > 0)
    collect = np.full(depth, -1, dtype=np.int64)
    if all_depths:
        collect[:] = np.arange(depth)
    else:
        collect[-1] = 0
    n_out = depth if all_depths else 1
    clip = len(qa) > 1
    names = ("nngp", "ntk") if want_ntk else ("nngp",)
    if clip:
        roots1 = np.stack([np.stack(qa[1][name]) for name in names])
        roots2 = np.stack([np.stack(qb[1][name]) for name in names])
    else:
        roots1 = roots2 = np.zeros((1, 1, 1))
    shape = (n_out, m, n)
    want_nngp = out is None or "nngp" in out
    nngp = _out_or_empty(out and out.get("nngp"), shape) if want_nngp else None
    ntk = _out_or_empty(out and out.get("ntk"), shape) if want_ntk else None
    kernel(
        np.ascontiguousarray(sigma), s1, s2, inv1, inv2, layers,
        np.asarray(tols, dtype=np.float64), collect, float(factor), float(c1),
        want_nngp, bool(want_ntk), clip, roots1, roots2,
        _NONE if nngp is None else nngp, _NONE if ntk is None else ntk,
    )  # fmt: skip
    nngps = list(nngp) if want_nngp else [None] * n_out
    return nngps, (list(ntk) if want_ntk else [None] * n_out)


_NONE = np.empty((0, 0, 0))  # an output the kernel does not write


def _out_or_empty(target, shape):
    """``target`` when it is a float64 array of ``shape`` the kernel can write.

    Otherwise (no ``out``, or one it cannot write) a new array.
    """
    if target is None:
        return np.empty(shape)
    if (
        isinstance(target, np.ndarray)
        and target.shape == shape
        and target.dtype == np.float64
        and target.flags.writeable
        and target.strides[-1] == 8
    ):
        return target
    return np.empty(shape)


def diag_recursion(xp, X, spec, want_ntk, all_depths, path=None):
    """Exact diagonals K(x, x) from the variance path (correlation one)."""
    d = X.shape[1]
    q_pre, dots, q_out = variance_path(xp, X, spec) if path is None else path
    sigma = xp.sum(X * X, axis=1) / d
    theta = None
    nngps, ntks = [], []
    for layer in range(spec.depth):
        if want_ntk:
            theta = _dense_ntk(spec, layer, sigma, theta, d)
        sigma = q_out[layer]
        if theta is not None:
            theta = xp.zeros_like(sigma) if spec._act.kills_ntk else theta * dots[layer]
        _collect(
            xp, spec, layer, sigma, theta, d, want_ntk, all_depths, nngps, ntks, (), ()
        )
    return nngps, ntks


def checked_diagonals(xp, X, name, spec, want_ntk, all_depths):
    """Variance path and exact diagonals of ``X``, or a ``ValueError`` on overflow.

    Returns ``(path, {"nngp": [...], "ntk": [...]})`` (the NTK only when
    wanted), one diagonal per collected depth. Since every kernel entry is
    bounded by its diagonals (Cauchy-Schwarz), finite variances and diagonals
    mean a finite kernel; otherwise the error names what overflowed.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        path = variance_path(xp, X, spec)
        nngps, ntks = diag_recursion(xp, X, spec, want_ntk, all_depths, path)
    diag = {"nngp": nngps}
    if want_ntk:
        diag["ntk"] = ntks
    arrays = list(path[0]) + list(path[2]) + [v for vs in diag.values() for v in vs]
    if not all(bool(xp.all(xp.isfinite(a))) for a in arrays):
        raise _overflow_error(to_numpy(X), name, spec, want_ntk)
    return path, diag


def _finite_diagonals(X, spec, want_ntk):
    """True when the variance path and all diagonals of ``X`` (NumPy) are finite."""
    with np.errstate(all="ignore"):
        path = variance_path(np, X, spec)
        nngps, ntks = diag_recursion(np, X, spec, want_ntk, True, path)
    arrays = list(path[0]) + list(path[2]) + nngps + (ntks if want_ntk else [])
    return all(np.isfinite(a).all() for a in arrays)


def _row_rms(X):
    """Root-mean-square of each row, without overflow (float64)."""
    X = np.asarray(X, dtype=np.float64)
    top = np.max(np.abs(X), axis=1)
    safe = np.where(top > 0, top, 1.0)
    return top * np.sqrt(np.mean((X / safe[:, None]) ** 2, axis=1))


def _overflow_error(X, name, spec, want_ntk):
    """``ValueError`` naming what makes the kernels of ``X`` overflow.

    The culprit is found by counterfactuals on the offending rows: the
    smallest set among {the input scale, ``weight_std``, ``bias_std``, each
    activation parameter} whose reset to a benign value (rows rescaled to
    unit root-mean-square, a standard deviation of 1, the parameter's default)
    makes the variance path and the diagonals finite.
    """
    dtype = X.dtype
    with np.errstate(all="ignore"):
        bad = [
            i
            for i in range(X.shape[0])
            if not _finite_diagonals(X[i : i + 1], spec, want_ntk)
        ][:16]
    rows = X[bad] if bad else X[:16]
    rms = _row_rms(rows)
    params = spec._params
    defaults = spec._act.defaults
    candidates = []  # (description, change to rows, change to spec)
    if rms.max(initial=0.0) > 1.0:
        safe = np.where(rms > 0, rms, 1.0)
        candidates.append(
            (
                f"the rows of {name} are too large in magnitude (largest "
                f"root-mean-square {rms.max():.3g}); scale the features (e.g. "
                "StandardScaler)",
                lambda r: (r / safe[:, None]).astype(dtype),
                {},
            )
        )
    if spec.weight_std > 1.0:
        candidates.append(
            (f"weight_std={spec.weight_std!r} is too large", None, {"weight_std": 1.0})
        )
    if spec.bias_std is not None and spec.bias_std > 1.0:
        candidates.append(
            (f"bias_std={spec.bias_std!r} is too large", None, {"bias_std": 1.0})
        )
    for key, value in sorted(params.items()):
        if abs(value) > max(1.0, abs(defaults[key])):
            new_params = dict(params, **{key: defaults[key]})
            candidates.append(
                (
                    f"activation parameter {key!r}={value!r} of {spec.activation!r} "
                    "is too large",
                    None,
                    {"activation_params": tuple(sorted(new_params.items()))},
                )
            )
    culprits = None
    for size in range(1, len(candidates) + 1):
        for subset in itertools.combinations(candidates, size):
            trial_rows, trial_spec = rows, spec
            for _, change_rows, change_spec in subset:
                if change_rows is not None:
                    trial_rows = change_rows(trial_rows)
                trial_spec = dataclasses.replace(trial_spec, **change_spec)
            if _finite_diagonals(trial_rows, trial_spec, want_ntk):
                culprits = [description for description, _, _ in subset]
                break
        if culprits:
            break
    if culprits is None:
        culprits = [f"the depth ({spec.depth}) with these parameters is too large"]
    return ValueError(
        f"The kernel of {name} overflows {np.dtype(dtype).name} (NaN or "
        f"infinity) at depth {spec.depth}: " + "; and ".join(culprits) + "."
    )


# Instances pickle (and hash, for the kernel cache) under the public name that
# users import, as they did before this module existed.
KernelSpec.__module__ = "sknetk.kernels"
