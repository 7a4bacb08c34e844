"""Activations as data: each one is its function and its closed-form duals.

An activation ``phi`` enters the infinite-width recursion only through two
Gaussian expectations over a centred pair ``(u, v)`` with variances
``(q1, q2)`` and covariance ``c``:

* the *dual* ``E[phi(u) phi(v)]``, the new covariance (NNGP), and
* the *derivative dual* ``E[phi'(u) phi'(v)]``, which multiplies the NTK.

Every entry of :data:`ACTIVATIONS` gives both as one function
``dual(xp, k, q1, q2, **params) -> (new_k, dot)`` written against the array
namespace ``xp`` (so it runs on NumPy, CuPy and ``array_api_strict``), plus
``variance(xp, q, **params) -> (new_q, dot_diag)``, the same expectations at
``u = v`` (correlation exactly one), used for the per-example variances and the
kernel diagonals. Adding an activation is one :class:`Activation` entry.

Conventions follow neural-tangents' ``stax`` layers (see
``docs/kernels.rst`` for the table of closed forms).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf as _np_erf

__all__ = ["Activation", "ACTIVATIONS", "get_activation"]

_PI = math.pi
#: |correlation| above this is taken as exactly 1 (32 units of rounding below
#: 1.0, an angle of 8e-8): the rounding of a few chained products, which arccos
#: would otherwise turn into an angle of ~1e-8.
_SNAP = 1.0 - 32 * 2.0**-53


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
    dual : callable
        ``dual(xp, k, q1, q2, **params) -> (new_k, dot)``, the dual and the
        derivative dual for covariance ``c`` and variances ``q1``, ``q2``
        (broadcastable arrays).
    variance : callable
        ``variance(xp, q, **params) -> (new_q, dot_diag)``, the same at
        correlation one.
    defaults : dict
        Parameters and their default values.
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
    dual: Callable
    variance: Callable
    defaults: dict = field(default_factory=dict)
    kills_ntk: bool = False
    slopes: Callable = None

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
            out[key] = value
        return out


# --------------------------------------------------------------------------
# Shared geometry: the correlation of (u, v) and its angle.
# --------------------------------------------------------------------------
def _cos_sin_angle(xp, k, q1, q2):
    """Return ``(norm, rho, sin_theta, theta)`` for covariance ``c``.

    ``norm = sqrt(q1 q2)``; ``rho = k / norm`` clipped to [-1, 1]; the angle is
    ``theta = arccos(rho)``, taken as pi/2 where ``norm == 0`` (an all-zero
    input row), so that zero rows give finite kernels.
    """
    norm = xp.sqrt(q1) * xp.sqrt(q2)
    positive = norm > 0
    safe = xp.where(positive, norm, xp.ones_like(norm))
    rho = xp.where(positive, k / safe, xp.zeros_like(norm))
    rho = xp.clip(rho, -1.0, 1.0)
    # Correlations within a few ulps of +-1 are parallel rows up to rounding;
    # arccos would turn that rounding into an angle of ~1e-8. Snap them so that
    # duplicated (or antipodal) rows give identical kernel rows and K stays PSD.
    rho = xp.where(xp.abs(rho) > _SNAP, xp.sign(rho), rho)
    # (1 - rho)(1 + rho) keeps sin(theta) accurate close to rho = +-1.
    sin_theta = xp.sqrt((1.0 - rho) * (1.0 + rho))
    theta = xp.atan2(sin_theta, rho)
    return norm, rho, sin_theta, theta


# --------------------------------------------------------------------------
# ABReLU family: a * min(x, 0) + b * max(x, 0)  (relu, leaky_relu, abs)
# --------------------------------------------------------------------------
def _abrelu_dual(xp, k, q1, q2, a, b):
    norm, _, sin_theta, theta = _cos_sin_angle(xp, k, q1, q2)
    factor = (a - b) ** 2 / (2 * _PI)
    dot = (a * a + b * b) / 2 - factor * theta
    new_c = factor * norm * sin_theta + dot * k
    return new_c, dot


def _abrelu_variance(xp, q, a, b):
    scale = (a * a + b * b) / 2
    # At zero variance the angle is pi/2 by convention, as in the 2-D dual.
    dot_zero = (a + b) ** 2 / 4
    dot = xp.where(q > 0, scale + 0.0 * q, dot_zero + 0.0 * q)
    return scale * q, dot


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
        dual=lambda xp, k, q1, q2: _abrelu_dual(xp, k, q1, q2, a, b),
        variance=lambda xp, q: _abrelu_variance(xp, q, a, b),
    )


# --------------------------------------------------------------------------
# erf family: a * erf(b x) + c
# --------------------------------------------------------------------------
def _gap(xp, k, q1, q2):
    """``q1 q2 - k^2 >= 0``, computed without cancellation for huge variances."""
    root = xp.sqrt(q1) * xp.sqrt(q2)
    absk = xp.abs(k)
    return xp.clip((root - absk) * (root + absk), 0.0, None)


def _erf_dual(xp, k, q1, q2, a, b, c=0.0):
    b2 = b * b
    # (1 + 2 b2 q1)(1 + 2 b2 q2) - 4 b2^2 k^2, expanded so that huge rows
    # do not cancel: 1 + 2 b2 (q1 + q2) + 4 b2^2 (q1 q2 - k^2) >= 1.
    root = xp.sqrt(1.0 + 2.0 * b2 * (q1 + q2) + 4.0 * b2 * b2 * _gap(xp, k, q1, q2))
    new_c = (a * a * 2 / _PI) * xp.atan2(2.0 * b2 * k, root) + c * c
    dot = (a * a * b2 * 4 / _PI) / root
    return new_c, dot


def _erf_variance(xp, q, a, b, c=0.0):
    b2 = b * b
    root = xp.sqrt(1.0 + 4.0 * b2 * q)
    new_q = (a * a * 2 / _PI) * xp.atan2(2.0 * b2 * q, root) + c * c
    return new_q, (a * a * b2 * 4 / _PI) / root


def _erf_fn(x, a, b, c):
    return a * _np_erf(b * x) + c


def _erf_derivative(x, a, b, c):
    return a * b * 2 / math.sqrt(_PI) * np.exp(-((b * x) ** 2))


_SIGMOID_B = 1 / 2.4020563531719796


# --------------------------------------------------------------------------
# GELU: x * Phi(x), exact
# --------------------------------------------------------------------------
def _gelu_dual(xp, k, q1, q2):
    prod = q1 * q2
    prod1 = (q1 + 1.0) * (q2 + 1.0)
    # (q1 + 1)(q2 + 1) - k^2 = 1 + q1 + q2 + (q1 q2 - k^2) >= 1, without cancellation
    delta2 = 1.0 + q1 + q2 + _gap(xp, k, q1, q2)
    delta = xp.sqrt(delta2)
    angle = xp.atan2(k, delta)
    new_c = ((k * k + prod * delta2) / (prod1 * delta) + k * angle) / (
        2 * _PI
    ) + 0.25 * k
    dot = 0.25 + angle / (2 * _PI)
    dot = dot + k / delta / (2 * _PI) * (1.0 / delta2 + (1.0 - prod) / prod1 + 1.0)
    return new_c, dot


def _gelu_variance(xp, q):
    return _gelu_dual(xp, q, q, q)


def _gelu_fn(x):
    return x * 0.5 * (1.0 + _np_erf(x / math.sqrt(2)))


def _gelu_derivative(x):
    return 0.5 * (1.0 + _np_erf(x / math.sqrt(2))) + x * np.exp(
        -0.5 * x * x
    ) / math.sqrt(2 * _PI)


# --------------------------------------------------------------------------
# sin family: a * sin(b x + c)   (cos is sin with c + pi/2)
# --------------------------------------------------------------------------
def _sin_dual(xp, k, q1, q2, a, b, c=0.0):
    b2 = b * b
    s = q1 + q2
    e_minus = xp.exp(-0.5 * b2 * (s - 2.0 * k))
    e_plus = xp.exp(-0.5 * b2 * (s + 2.0 * k)) * math.cos(2 * c)
    half_a2 = a * a / 2
    return half_a2 * (e_minus - e_plus), half_a2 * b2 * (e_minus + e_plus)


def _sin_variance(xp, q, a, b, c=0.0):
    b2 = b * b
    e_plus = xp.exp(-2.0 * b2 * q) * math.cos(2 * c)
    half_a2 = a * a / 2
    return half_a2 * (1.0 - e_plus), half_a2 * b2 * (1.0 + e_plus)


def _sin_fn(x, a, b, c):
    return a * np.sin(b * x + c)


def _sin_derivative(x, a, b, c):
    return a * b * np.cos(b * x + c)


# --------------------------------------------------------------------------
# rbf: sqrt(2) sin(sqrt(2 gamma) x + pi/4), NNGP map exp(-gamma |u - v|^2)
# --------------------------------------------------------------------------
def _rbf_dual(xp, k, q1, q2, gamma):
    new_c = xp.exp(-gamma * (q1 + q2 - 2.0 * k))
    return new_c, (2.0 * gamma) * new_c


def _rbf_variance(xp, q, gamma):
    one = xp.ones_like(q)
    return one, (2.0 * gamma) * one


def _rbf_fn(x, gamma):
    return math.sqrt(2) * np.sin(math.sqrt(2 * gamma) * x + _PI / 4)


def _rbf_derivative(x, gamma):
    return 2 * math.sqrt(gamma) * np.cos(math.sqrt(2 * gamma) * x + _PI / 4)


# --------------------------------------------------------------------------
# sign: E[phi'(u) phi'(v)] = 0 by convention
# --------------------------------------------------------------------------
def _sign_dual(xp, k, q1, q2):
    _, _, _, theta = _cos_sin_angle(xp, k, q1, q2)
    new_c = 1.0 - theta * (2 / _PI)
    return new_c, xp.zeros_like(new_c)


def _sign_variance(xp, q):
    new_q = xp.where(q == 0, xp.zeros_like(q), xp.ones_like(q))
    return new_q, xp.zeros_like(q)


# --------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------
def _identity_dual(xp, k, q1, q2):
    return k, 1.0 + 0.0 * k


def _identity_variance(xp, q):
    return q, 1.0 + 0.0 * q


ACTIVATIONS = {
    "relu": Activation("relu", **_fixed_abrelu(0.0, 1.0)),
    "abs": Activation("abs", **_fixed_abrelu(-1.0, 1.0)),
    "leaky_relu": Activation(
        "leaky_relu",
        fn=lambda x, alpha: _abrelu_fn(x, alpha, 1.0),
        derivative=lambda x, alpha: _abrelu_derivative(x, alpha, 1.0),
        dual=lambda xp, k, q1, q2, alpha: _abrelu_dual(xp, k, q1, q2, alpha, 1.0),
        variance=lambda xp, q, alpha: _abrelu_variance(xp, q, alpha, 1.0),
        defaults={"alpha": 0.01},
        slopes=lambda alpha: (alpha, 1.0),
    ),
    "abrelu": Activation(
        "abrelu",
        fn=_abrelu_fn,
        derivative=_abrelu_derivative,
        dual=_abrelu_dual,
        variance=_abrelu_variance,
        defaults={"a": 0.0, "b": 1.0},
        slopes=lambda a, b: (a, b),
    ),
    "erf": Activation(
        "erf",
        fn=_erf_fn,
        derivative=_erf_derivative,
        dual=_erf_dual,
        variance=_erf_variance,
        defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    ),
    "sigmoid_like": Activation(
        "sigmoid_like",
        fn=lambda x: _erf_fn(x, 0.5, _SIGMOID_B, 0.5),
        derivative=lambda x: _erf_derivative(x, 0.5, _SIGMOID_B, 0.5),
        dual=lambda xp, k, q1, q2: _erf_dual(xp, k, q1, q2, 0.5, _SIGMOID_B, 0.5),
        variance=lambda xp, q: _erf_variance(xp, q, 0.5, _SIGMOID_B, 0.5),
    ),
    "gelu": Activation(
        "gelu",
        fn=_gelu_fn,
        derivative=_gelu_derivative,
        dual=_gelu_dual,
        variance=_gelu_variance,
    ),
    "sin": Activation(
        "sin",
        fn=_sin_fn,
        derivative=_sin_derivative,
        dual=_sin_dual,
        variance=_sin_variance,
        defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    ),
    "cos": Activation(
        "cos",
        fn=lambda x, a, b, c: _sin_fn(x, a, b, c + _PI / 2),
        derivative=lambda x, a, b, c: _sin_derivative(x, a, b, c + _PI / 2),
        dual=lambda xp, k, q1, q2, a, b, c: _sin_dual(
            xp, k, q1, q2, a, b, c + _PI / 2
        ),
        variance=lambda xp, q, a, b, c: _sin_variance(xp, q, a, b, c + _PI / 2),
        defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    ),
    "rbf": Activation(
        "rbf",
        fn=_rbf_fn,
        derivative=_rbf_derivative,
        dual=_rbf_dual,
        variance=_rbf_variance,
        defaults={"gamma": 1.0},
    ),
    "sign": Activation(
        "sign",
        fn=np.sign,
        derivative=lambda x: np.zeros_like(x),
        dual=_sign_dual,
        variance=_sign_variance,
        kills_ntk=True,
    ),
    "identity": Activation(
        "identity",
        fn=lambda x: x,
        derivative=lambda x: np.ones_like(x),
        dual=_identity_dual,
        variance=_identity_variance,
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
