"""Activations as data: each one is its function and its closed-form duals.

An activation ``phi`` enters the infinite-width recursion only through two
Gaussian expectations over a centred pair ``(u, v)`` with variances
``(q1, q2)`` and covariance ``c``:

* the *dual* ``E[phi(u) phi(v)]``, the new covariance (NNGP), and
* the *derivative dual* ``E[phi'(u) phi'(v)]``, which multiplies the NTK.

Every entry of :data:`ACTIVATIONS` gives both as one function of the two
standard deviations and the correlation,
``corr_dual(xp, s1, s2, rho, **params) -> (new_k, dot)``, written against the
array namespace ``xp`` (so it runs on NumPy, CuPy and ``array_api_strict``).
:meth:`Activation.dual` (covariance in) and :meth:`Activation.variance` (the
same expectations at ``u = v``, correlation exactly one, used for the
per-example variances and the kernel diagonals) both call it, so a pair of
identical rows, whose correlation is snapped to exactly one, goes through the
very same arithmetic as the diagonal. Gap quantities such as
``q1 + q2 - 2k`` and ``q1 q2 - k^2`` are computed from the correlation without
cancellation. Adding an activation is one :class:`Activation` entry.

Conventions follow neural-tangents' ``stax`` layers (see
``docs/kernels.rst`` for the table of closed forms).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf as _np_erf

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "correlation",
    "get_activation",
    "snap_tolerance",
]

_PI = math.pi
#: Units of rounding (of the compute dtype) by which a correlation may miss
#: +-1 when the two rows are parallel: the rounding of the few chained
#: operations of one layer (the dual of identical rows is the diagonal's
#: arithmetic; what remains is ``k / (sqrt(q) sqrt(q))`` and last-bit
#: differences between vectorised and scalar ``exp``). The first layer adds
#: the rounding of the Gram product, see :func:`snap_tolerance`.
SNAP_ULPS = 32


def snap_tolerance(xp, dtype, n_terms=0):
    """Distance to 1 below which a correlation ``|rho|`` is snapped to exactly 1.

    ``(SNAP_ULPS + 2 n_terms) u`` with ``u`` the unit roundoff of ``dtype``
    (a dtype of the array namespace ``xp``).
    ``n_terms`` is the length of the dot products that produced the covariance
    (the number of features for the first layer, 0 after it): a computed dot
    product of ``d`` terms is within ``d u |x| |y|`` of the exact one whatever
    the summation order (BLAS blocking, FMA), and so is a squared norm, so the
    correlation of two parallel rows is within ``(2 d + O(1)) u`` of 1. Below
    that distance the computed correlation carries no information, and
    snapping makes duplicated (or antipodal) rows exactly parallel, so that
    they follow the diagonal's recursion bit for bit.
    """
    u = float(xp.finfo(dtype).eps) / 2
    return (SNAP_ULPS + 2 * int(n_terms)) * u


def correlation(xp, k, s1, s2, tol):
    """Correlation ``k / (s1 s2)``, clipped to [-1, 1] and snapped to +-1.

    Zero standard deviations (an all-zero input row in a network without
    biases) give correlation 0, i.e. the angle pi/2, so that zero rows give
    finite kernels. ``|rho| > 1 - tol`` becomes exactly +-1 (see
    :func:`snap_tolerance`); clipping is the Cauchy-Schwarz bound
    ``|k| <= sqrt(q1 q2)`` on the covariance, enforced at every layer.
    """
    norm = s1 * s2
    positive = norm > 0
    safe = xp.where(positive, norm, xp.ones_like(norm))
    rho = xp.where(positive, k / safe, xp.zeros_like(norm))
    rho = xp.clip(rho, -1.0, 1.0)
    return xp.where(xp.abs(rho) > 1.0 - tol, xp.sign(rho), rho)


@dataclass(frozen=True)
class Activation:
    """An activation function together with its closed-form Gaussian duals.

    Parameters
    ----------
    name : str
        Registry name.
    fn : callable
        ``fn(x, **params)``: the activation on NumPy arrays (for finite networks).
    derivative : callable
        ``derivative(x, **params)``: its derivative on NumPy arrays.
    corr_dual : callable
        ``corr_dual(xp, s1, s2, rho, **params) -> (new_k, dot)``: the dual and
        the derivative dual for standard deviations ``s1``, ``s2`` and
        correlation ``rho`` in [-1, 1] (broadcastable arrays; ``rho = 0``
        where ``s1 s2 = 0``).
    defaults : dict
        Parameters and their default values.
    domains : dict
        For parameters restricted to part of the real line,
        ``name -> (predicate, description)``; the others take any finite
        real value.
    kills_ntk : bool
        True when the derivative dual is zero by convention (``sign``): the
        NTK then only gets contributions from layers after it.
    slopes : callable or None
        For members of the ABReLU family, ``slopes(**params) -> (a, b)``; it
        enables the fused fast paths (in-place NumPy tiles, CUDA kernel).
    """

    name: str
    fn: Callable
    derivative: Callable
    corr_dual: Callable
    defaults: dict = field(default_factory=dict)
    domains: dict = field(default_factory=dict)
    kills_ntk: bool = False
    slopes: Callable = None

    def dual(self, xp, k, q1, q2, tol=None, **params):
        """``(new_k, dot)`` for covariance ``k`` and variances ``q1``, ``q2``.

        The covariance is clipped to the Cauchy-Schwarz bound and its
        correlation snapped to +-1 within ``tol`` (default: the snap
        tolerance of ``k``'s dtype, see :func:`snap_tolerance`).
        """
        s1, s2 = xp.sqrt(q1), xp.sqrt(q2)
        if tol is None:
            tol = snap_tolerance(xp, k.dtype)
        rho = correlation(xp, k, s1, s2, tol)
        return self.corr_dual(xp, s1, s2, rho, **params)

    def variance(self, xp, q, **params):
        """``(new_q, dot)``: the dual at ``u = v`` (correlation one; 0 if q = 0)."""
        s = xp.sqrt(q)
        rho = xp.where(q > 0, xp.ones_like(q), xp.zeros_like(q))
        return self.corr_dual(xp, s, s, rho, **params)

    def params(self, overrides=None):
        """Defaults updated with ``overrides``; unknown names raise ``ValueError``."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"Unknown parameter(s) {sorted(unknown)} for activation "
                f"{self.name!r}; it accepts {sorted(self.defaults) or 'none'}."
            )
        out = dict(self.defaults)
        for key, value in overrides.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"Activation parameter {key!r} of {self.name!r} must be a "
                    f"number, got {value!r}."
                ) from None
            if not math.isfinite(value):
                raise ValueError(
                    f"Activation parameter {key!r} must be finite, got {value}."
                )
            if key in self.domains:
                inside, description = self.domains[key]
                if not inside(value):
                    raise ValueError(
                        f"Activation parameter {key!r} of {self.name!r} must be "
                        f"{description}, got {value!r}."
                    )
            out[key] = value
        return out


# --------------------------------------------------------------------------
# Shared geometry: the angle and the gaps, from the correlation.
# --------------------------------------------------------------------------
def _sin_angle(xp, rho):
    """``(sin_theta, theta)`` of ``rho = cos(theta)``.

    ``(1 - rho)(1 + rho)`` keeps ``sin(theta)`` accurate close to
    ``rho = +-1``; ``theta = atan2(sin, rho)`` is exactly 0 (pi) at
    ``rho = 1`` (-1).
    """
    sin_theta = xp.sqrt((1.0 - rho) * (1.0 + rho))
    return sin_theta, xp.atan2(sin_theta, rho)


def _gaps(s1, s2, rho):
    """``(q1 + q2 - 2k, q1 + q2 + 2k)`` for ``k = rho s1 s2``, both >= 0.

    Written as ``(s1 - s2)^2 + 2 s1 s2 (1 -+ rho)``: sums of non-negative
    terms, so there is no cancellation, and identical rows (``s1 == s2``,
    ``rho == 1``) give exactly 0.
    """
    diff = (s1 - s2) * (s1 - s2)
    two_norm = 2.0 * (s1 * s2)
    return diff + two_norm * (1.0 - rho), diff + two_norm * (1.0 + rho)


# --------------------------------------------------------------------------
# ABReLU family: a * min(x, 0) + b * max(x, 0)  (relu, leaky_relu, abs)
# --------------------------------------------------------------------------
def _abrelu_dual(xp, s1, s2, rho, a, b):
    sin_theta, theta = _sin_angle(xp, rho)
    factor = (a - b) * (a - b) / (2 * _PI)
    dot = (a * a + b * b) / 2 - factor * theta
    new_c = (s1 * s2) * (factor * sin_theta + dot * rho)
    return new_c, dot


def _abrelu_fn(x, a, b):
    return a * np.minimum(x, 0) + b * np.maximum(x, 0)


def _abrelu_derivative(x, a, b):
    return np.where(x > 0, b, a)


def _fixed_abrelu(a, b):
    """Duals of a parameter-free member of the ABReLU family."""
    return dict(
        slopes=lambda: (a, b),
        fn=lambda x: _abrelu_fn(x, a, b),
        derivative=lambda x: _abrelu_derivative(x, a, b),
        corr_dual=lambda xp, s1, s2, rho: _abrelu_dual(xp, s1, s2, rho, a, b),
    )


# --------------------------------------------------------------------------
# erf family: a * erf(b x) + c
# --------------------------------------------------------------------------
def _erf_dual(xp, s1, s2, rho, a, b, c=0.0):
    # With g_i = sqrt(2 b^2 q_i), the closed form needs
    # root^2 = (1 + g1^2)(1 + g2^2) - (g1 g2 rho)^2
    #        = 1 + g1^2 + g2^2 + (g1 g2)^2 (1 - rho^2),
    # a sum of non-negative terms (no cancellation). Every factor g_i is
    # divided by M_i = max(1, g_i), so that huge rows or a huge b overflow
    # nothing: E[phi phi] = (2 a^2 / pi) atan2(n1 n2 rho, root / (M1 M2)) + c^2
    # and E[phi' phi'] = (4 a^2 / pi) (|b| / M1) (|b| / M2) / (root / (M1 M2)).
    scale = math.sqrt(2.0) * abs(b)
    g1, g2 = scale * s1, scale * s2
    i1 = 1.0 / xp.maximum(g1, xp.ones_like(g1))
    i2 = 1.0 / xp.maximum(g2, xp.ones_like(g2))
    n1, n2 = g1 * i1, g2 * i2
    n12, i12 = n1 * n2, i1 * i2
    # (terms grouped so that swapping the two rows gives the same bits: the
    # symmetric path's K(X, X) is exactly symmetric)
    root = xp.sqrt(
        i12 * i12
        + ((n1 * i2) * (n1 * i2) + (n2 * i1) * (n2 * i1))
        + n12 * n12 * ((1.0 - rho) * (1.0 + rho))
    )
    new_c = (a * a * 2 / _PI) * xp.atan2(n12 * rho, root) + c * c
    dot = (a * a * 4 / _PI) * ((abs(b) * i1) * (abs(b) * i2)) / root
    return new_c, dot


def _erf_fn(x, a, b, c):
    return a * _np_erf(b * x) + c


def _erf_derivative(x, a, b, c):
    return a * b * 2 / math.sqrt(_PI) * np.exp(-((b * x) ** 2))


#: sigmoid_like is erf with these ``(a, b, c)``: 0.5 erf(x / 2.402...) + 0.5
SIGMOID_LIKE_ERF = (0.5, 1 / 2.4020563531719796, 0.5)


# --------------------------------------------------------------------------
# GELU: x * Phi(x), exact
# --------------------------------------------------------------------------
def _gelu_dual(xp, s1, s2, rho):
    # With P = (1 + q1)(1 + q2), delta^2 = P - k^2, beta = arcsin(k / sqrt(P)):
    #   E[phi phi] = k/4 + ((k^2 + q1 q2 delta^2) / (P delta) + k beta) / (2 pi)
    #   E[phi' phi'] = 1/4 + beta/(2 pi)
    #                  + k/delta (1 + 1/delta^2 + (1 - q1 q2)/P) / (2 pi),
    # rewritten with e_i = 1/(1 + q_i), u_i = q_i/(1 + q_i) = 1 - e_i and
    # D^2 = delta^2/P = (1 - u1 u2) + u1 u2 (1 - rho^2) with
    # 1 - u1 u2 = e1 e2 + (e1 u2 + u1 e2): non-negative terms, no
    # cancellation, symmetric in the two rows to the last bit, and no product
    # of two variances (which would overflow for rows far smaller than the
    # float range).
    q1, q2 = s1 * s1, s2 * s2
    e1, e2 = 1.0 / (1.0 + q1), 1.0 / (1.0 + q2)
    u1, u2 = q1 * e1, q2 * e2
    u12, e12 = u1 * u2, e1 * e2
    one_minus_u12 = e12 + (e1 * u2 + u1 * e2)
    dd = one_minus_u12 + u12 * ((1.0 - rho) * (1.0 + rho))
    d = xp.sqrt(dd)
    kappa = rho * ((s1 * xp.sqrt(e1)) * (s2 * xp.sqrt(e2)))  # k / sqrt(P)
    root_p = xp.sqrt(1.0 + q1) * xp.sqrt(1.0 + q2)
    k = rho * (s1 * s2)
    beta = xp.atan2(kappa, d)
    new_c = 0.25 * k + (root_p * u12 * d + kappa * kappa / (d * root_p) + k * beta) / (
        2 * _PI
    )
    dot = (
        0.25
        + beta / (2 * _PI)
        + (kappa / d) * (one_minus_u12 + e12 * (1.0 + 1.0 / dd)) / (2 * _PI)
    )
    return new_c, dot


def _gelu_fn(x):
    return x * 0.5 * (1.0 + _np_erf(x / math.sqrt(2)))


def _gelu_derivative(x):
    return 0.5 * (1.0 + _np_erf(x / math.sqrt(2))) + x * np.exp(
        -0.5 * x * x
    ) / math.sqrt(2 * _PI)


# --------------------------------------------------------------------------
# sin family: a * sin(b x + c)   (cos is sin with c + pi/2)
# --------------------------------------------------------------------------
def _sin_dual(xp, s1, s2, rho, a, b, cos2c):
    # E[sin(bu + c) sin(bv + c)] = a^2/2 (e^{-b2 m/2} - cos(2c) e^{-b2 p/2})
    # with the gaps m = q1 + q2 - 2k and p = q1 + q2 + 2k from _gaps (no
    # cancellation; m = 0 exactly for identical rows). This is
    # neural-tangents' form, kept so that the values agree with its to the
    # last bits (for tiny variances 1 - e^{-x} rounds to ~1e-16 absolute in
    # both).
    b2 = b * b
    minus, plus = _gaps(s1, s2, rho)
    e_minus = xp.exp(-0.5 * b2 * minus)
    e_plus = xp.exp(-0.5 * b2 * plus) * cos2c
    half_a2 = a * a / 2
    return half_a2 * (e_minus - e_plus), (half_a2 * b2) * (e_minus + e_plus)


#: the sin-family dual with ``cos(2 c)`` given, for the package's other
#: modules (``gaussian_process`` differentiates it)
sin_dual = _sin_dual


def cos2(c, shift=False):
    """``cos(2 c')`` for ``c' = c`` (sin) or ``c + pi/2`` (cos), for any finite c.

    Written as ``cos^2 - sin^2`` of ``c'`` so that no ``2 c`` is formed (it
    would overflow for huge ``c``); for the cosine, ``cos(2 c + pi) =
    sin^2 c - cos^2 c``.
    """
    sn, cs = math.sin(c), math.cos(c)
    value = cs * cs - sn * sn
    return -value if shift else value


def _sin_fn(x, a, b, c):
    return a * np.sin(b * x + c)


def _sin_derivative(x, a, b, c):
    return a * b * np.cos(b * x + c)


# --------------------------------------------------------------------------
# rbf: sqrt(2) sin(sqrt(2 gamma) x + pi/4), NNGP map exp(-gamma |u - v|^2)
# --------------------------------------------------------------------------
def _rbf_dual(xp, s1, s2, rho, gamma):
    minus, _ = _gaps(s1, s2, rho)
    new_c = xp.exp(-gamma * minus)
    return new_c, (2.0 * gamma) * new_c


def _rbf_fn(x, gamma):
    return math.sqrt(2) * np.sin(math.sqrt(2 * gamma) * x + _PI / 4)


def _rbf_derivative(x, gamma):
    return 2 * math.sqrt(gamma) * np.cos(math.sqrt(2 * gamma) * x + _PI / 4)


# --------------------------------------------------------------------------
# sign: E[phi'(u) phi'(v)] = 0 by convention
# --------------------------------------------------------------------------
def _sign_dual(xp, s1, s2, rho):
    # (2/pi) arcsin(rho) = 1 - 2 theta / pi; exactly 0 at rho = 0 (zero rows)
    sin_theta, _ = _sin_angle(xp, rho)
    new_c = (2 / _PI) * xp.atan2(rho, sin_theta)
    return new_c, xp.zeros_like(new_c)


# --------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------
def _identity_dual(xp, s1, s2, rho):
    new_c = rho * (s1 * s2)
    return new_c, xp.ones_like(new_c)


def _nonnegative(value):
    return value >= 0


ACTIVATIONS = {
    "relu": Activation("relu", **_fixed_abrelu(0.0, 1.0)),
    "abs": Activation("abs", **_fixed_abrelu(-1.0, 1.0)),
    "leaky_relu": Activation(
        "leaky_relu",
        fn=lambda x, alpha: _abrelu_fn(x, alpha, 1.0),
        derivative=lambda x, alpha: _abrelu_derivative(x, alpha, 1.0),
        corr_dual=lambda xp, s1, s2, rho, alpha: _abrelu_dual(
            xp, s1, s2, rho, alpha, 1.0
        ),
        defaults={"alpha": 0.01},
        slopes=lambda alpha: (alpha, 1.0),
    ),
    "abrelu": Activation(
        "abrelu",
        fn=_abrelu_fn,
        derivative=_abrelu_derivative,
        corr_dual=_abrelu_dual,
        defaults={"a": 0.0, "b": 1.0},
        slopes=lambda a, b: (a, b),
    ),
    "erf": Activation(
        "erf",
        fn=_erf_fn,
        derivative=_erf_derivative,
        corr_dual=_erf_dual,
        defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    ),
    "sigmoid_like": Activation(
        "sigmoid_like",
        fn=lambda x: _erf_fn(x, *SIGMOID_LIKE_ERF),
        derivative=lambda x: _erf_derivative(x, *SIGMOID_LIKE_ERF),
        corr_dual=lambda xp, s1, s2, rho: _erf_dual(xp, s1, s2, rho, *SIGMOID_LIKE_ERF),
    ),
    "gelu": Activation(
        "gelu",
        fn=_gelu_fn,
        derivative=_gelu_derivative,
        corr_dual=_gelu_dual,
    ),
    "sin": Activation(
        "sin",
        fn=_sin_fn,
        derivative=_sin_derivative,
        corr_dual=lambda xp, s1, s2, rho, a, b, c: _sin_dual(
            xp, s1, s2, rho, a, b, cos2(c)
        ),
        defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    ),
    "cos": Activation(
        "cos",
        fn=lambda x, a, b, c: _sin_fn(x, a, b, c + _PI / 2),
        derivative=lambda x, a, b, c: _sin_derivative(x, a, b, c + _PI / 2),
        corr_dual=lambda xp, s1, s2, rho, a, b, c: _sin_dual(
            xp, s1, s2, rho, a, b, cos2(c, shift=True)
        ),
        defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    ),
    "rbf": Activation(
        "rbf",
        fn=_rbf_fn,
        derivative=_rbf_derivative,
        corr_dual=_rbf_dual,
        defaults={"gamma": 1.0},
        domains={
            "gamma": (
                _nonnegative,
                ">= 0 (the network is sqrt(2) sin(sqrt(2 gamma) x + pi/4))",
            )
        },
    ),
    "sign": Activation(
        "sign",
        fn=np.sign,
        derivative=lambda x: np.zeros_like(x),
        corr_dual=_sign_dual,
        kills_ntk=True,
    ),
    "identity": Activation(
        "identity",
        fn=lambda x: x,
        derivative=lambda x: np.ones_like(x),
        corr_dual=_identity_dual,
    ),
}


def get_activation(name):
    """Look up an activation of :data:`ACTIVATIONS` by name.

    Raises ``ValueError`` listing the valid names for an unknown one.
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown activation {name!r}; valid ones are {sorted(ACTIVATIONS)}."
        ) from None
