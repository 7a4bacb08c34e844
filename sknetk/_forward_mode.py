"""Forward-mode differentiation of the kernel recursion: a small dual-number array.

A :class:`Dual` holds a NumPy value ``v`` and the tangents ``t`` of that value
with respect to ``P`` parameters, stacked on a leading axis
(``t.shape == (P,) + v.shape``). :data:`xp` is an array namespace implementing
the few array-API functions that the activation duals
(:mod:`sknetk._activations`) and the layer recursion (:mod:`sknetk._recursion`)
use, on duals and on plain NumPy arrays (constants, no tangent). Passing it as
the namespace of that code gives the exact derivatives of the very arithmetic
that computes the kernels: there is one source of the mathematics.

Functions that are not differentiable at isolated points get the derivative
of the function actually computed next to them:

* ``clip`` and the snap of a correlation to ``+-1`` (``where``) have a zero
  derivative where they replace the value (a clipped or snapped correlation is
  a constant);
* ``sqrt`` at 0 and ``atan2`` at the origin get a zero derivative. In the
  recursion they are reached only where the argument is constant (a snapped
  correlation, an all-zero row of a network without biases), so this is the
  exact derivative there;
* ``maximum``/``minimum`` take the first argument's derivative at a tie.

Only what the recursion needs is implemented; anything else raises
``AttributeError`` or ``TypeError`` (a ``Dual`` is never silently turned into
a float: it defines no ``__float__`` and no truth value).
"""

import math

import numpy as np
from scipy.special import erf as _erf

__all__ = ["Dual", "xp", "seed"]


def _value(x):
    return x.v if isinstance(x, Dual) else x


def _tangent(x, shape):
    """Tangents of ``x`` broadcast to ``(P,) + shape``; ``None`` for constants."""
    if not isinstance(x, Dual):
        return None
    t = x.t
    extra = len(shape) - x.v.ndim
    if extra:
        t = t.reshape(t.shape[:1] + (1,) * extra + t.shape[1:])
    return t


def _combine(shape, *terms):
    """Sum of ``factor * tangent`` over the non-constant terms, or ``None``."""
    out = None
    for factor, t in terms:
        if t is None:
            continue
        term = t if factor is None else t * factor
        out = term if out is None else out + term
    return out


def _make(v, t):
    """A :class:`Dual` (full-shape tangents) or the plain value if ``t`` is None."""
    if t is None:
        return v
    v = np.asarray(v)
    if t.shape[1:] != v.shape:
        t = np.broadcast_to(t, t.shape[:1] + v.shape)
    return Dual(v, t)


class Dual:
    """A NumPy array with its tangents: ``v + sum_i t[i] eps_i``, ``eps_i^2 = 0``.

    Parameters
    ----------
    v : ndarray or float
        The value.
    t : ndarray of shape (P,) + v.shape
        Its derivatives with respect to the ``P`` parameters.
    """

    __slots__ = ("v", "t")
    # NumPy defers to the reflected operators below (ndarray * Dual)
    __array_ufunc__ = None

    def __init__(self, v, t):
        self.v = np.asarray(v)
        self.t = np.asarray(t)

    # -- array attributes -------------------------------------------------
    @property
    def shape(self):
        return self.v.shape

    @property
    def ndim(self):
        return self.v.ndim

    @property
    def dtype(self):
        return self.v.dtype

    @property
    def T(self):
        return Dual(
            self.v.T, np.swapaxes(self.t, -1, -2) if self.v.ndim > 1 else self.t
        )

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        return Dual(self.v[key], self.t[(slice(None),) + key])

    def __len__(self):
        return len(self.v)

    def __bool__(self):
        raise TypeError("The truth value of a Dual is ambiguous (compare .v).")

    def __repr__(self):
        return f"Dual(v={self.v!r}, t={self.t!r})"

    # -- arithmetic -------------------------------------------------------
    def __add__(self, other):
        v = self.v + _value(other)
        return _make(
            v,
            _combine(
                v.shape,
                (None, _tangent(self, v.shape)),
                (None, _tangent(other, v.shape)),
            ),
        )

    __radd__ = __add__

    def __sub__(self, other):
        v = self.v - _value(other)
        t_other = _tangent(other, v.shape)
        return _make(
            v,
            _combine(
                v.shape,
                (None, _tangent(self, v.shape)),
                (None, None if t_other is None else -t_other),
            ),
        )

    def __rsub__(self, other):
        return (-self) + other

    def __neg__(self):
        return Dual(-self.v, -self.t)

    def __pos__(self):
        return self

    def __mul__(self, other):
        a, b = self.v, _value(other)
        v = a * b
        return _make(
            v,
            _combine(
                v.shape, (b, _tangent(self, v.shape)), (a, _tangent(other, v.shape))
            ),
        )

    __rmul__ = __mul__

    def __truediv__(self, other):
        b = _value(other)
        v = self.v / b
        inv = 1.0 / b
        t_other = _tangent(other, v.shape)
        return _make(
            v,
            _combine(
                v.shape,
                (inv, _tangent(self, v.shape)),
                (None, None if t_other is None else -t_other * (v * inv)),
            ),
        )

    def __rtruediv__(self, other):
        v = _value(other) / self.v
        # d(c / x) = -c / x^2 dx = -(v / x) dx
        return _make(v, _combine(v.shape, (-(v / self.v), _tangent(self, v.shape))))

    def __pow__(self, exponent):
        if isinstance(exponent, Dual):
            raise TypeError("Dual ** Dual is not implemented.")
        v = self.v**exponent
        return _make(v, self.t * (exponent * self.v ** (exponent - 1)))

    def __abs__(self):
        return Dual(np.abs(self.v), self.t * np.sign(self.v))

    # -- comparisons (on values: the branches of the recursion) -----------
    def __gt__(self, other):
        return self.v > _value(other)

    def __ge__(self, other):
        return self.v >= _value(other)

    def __lt__(self, other):
        return self.v < _value(other)

    def __le__(self, other):
        return self.v <= _value(other)


def _unary(x, f, df):
    """``f(x)`` with tangent ``df(x, f(x)) * dx`` (``df`` sees the values)."""
    if not isinstance(x, Dual):
        return f(x)
    v = f(x.v)
    return Dual(v, x.t * df(x.v, v))


def _safe_divide(num, den):
    """``num / den`` where ``den != 0``, else 0."""
    den = np.asarray(den)
    zero = den == 0
    if not zero.any():
        return num / den
    return np.where(zero, 0.0, num / np.where(zero, 1.0, den))


class _Namespace:
    """The array namespace of :class:`Dual` (and of plain NumPy constants)."""

    __name__ = "sknetk._forward_mode.xp"

    float64 = np.float64
    float32 = np.float32
    pi = math.pi
    e = math.e

    @staticmethod
    def finfo(dtype):
        return np.finfo(dtype)

    @staticmethod
    def asarray(x):
        return x if isinstance(x, Dual) else np.asarray(x)

    @staticmethod
    def ones_like(x):
        return np.ones_like(_value(x))

    @staticmethod
    def zeros_like(x):
        return np.zeros_like(_value(x))

    @staticmethod
    def sqrt(x):
        return _unary(x, np.sqrt, lambda v, s: _safe_divide(0.5, s))

    @staticmethod
    def exp(x):
        return _unary(x, np.exp, lambda v, e: e)

    @staticmethod
    def erf(x):
        return _unary(x, _erf, lambda v, _: (2 / math.sqrt(math.pi)) * np.exp(-v * v))

    @staticmethod
    def acos(x):
        return _unary(
            x,
            np.arccos,
            lambda v, _: -_safe_divide(1.0, np.sqrt((1.0 - v) * (1.0 + v))),
        )

    arccos = acos

    @staticmethod
    def sin(x):
        return _unary(x, np.sin, lambda v, _: np.cos(v))

    @staticmethod
    def cos(x):
        return _unary(x, np.cos, lambda v, _: -np.sin(v))

    @staticmethod
    def abs(x):
        return abs(x) if isinstance(x, Dual) else np.abs(x)

    @staticmethod
    def sign(x):
        return np.sign(_value(x))  # piecewise constant

    @staticmethod
    def atan2(y, x):
        yv, xv = _value(y), _value(x)
        v = np.arctan2(yv, xv)
        if not isinstance(x, Dual) and not isinstance(y, Dual):
            return v
        # d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)
        den = xv * xv + yv * yv
        shape = np.shape(v)
        return _make(
            v,
            _combine(
                shape,
                (_safe_divide(xv, den), _tangent(y, shape)),
                (_safe_divide(-yv, den), _tangent(x, shape)),
            ),
        )

    arctan2 = atan2

    @staticmethod
    def where(cond, a, b):
        cond = np.asarray(cond)
        v = np.where(cond, _value(a), _value(b))
        if not isinstance(a, Dual) and not isinstance(b, Dual):
            return v
        ta, tb = _tangent(a, v.shape), _tangent(b, v.shape)
        zero = np.zeros((1,) * (v.ndim + 1), dtype=v.dtype)
        t = np.where(cond, zero if ta is None else ta, zero if tb is None else tb)
        return _make(v, t)

    @staticmethod
    def clip(x, lo, hi):
        if not isinstance(x, Dual):
            return np.clip(x, lo, hi)
        v = np.clip(x.v, lo, hi)
        inside = (x.v >= lo) & (x.v <= hi)
        return Dual(v, np.where(inside, x.t, 0.0))

    @staticmethod
    def maximum(a, b):
        return _namespace.where(_value(a) >= _value(b), a, b)

    @staticmethod
    def minimum(a, b):
        return _namespace.where(_value(a) <= _value(b), a, b)

    @staticmethod
    def sum(x, axis=None):
        if not isinstance(x, Dual):
            return np.sum(x, axis=axis)
        t_axis = None if axis is None else (axis + 1 if axis >= 0 else axis)
        if t_axis is None:
            t_axis = tuple(range(1, x.t.ndim))
        return Dual(np.sum(x.v, axis=axis), np.sum(x.t, axis=t_axis))

    @staticmethod
    def isfinite(x):
        if isinstance(x, Dual):
            return np.isfinite(x.v) & np.all(np.isfinite(x.t), axis=0)
        return np.isfinite(x)

    @staticmethod
    def all(x):
        return np.all(x)


_namespace = _Namespace()
#: The namespace to pass as ``xp`` to the recursion.
xp = _namespace


def seed(values, scales):
    """Scalar duals of ``values``, parameter ``i`` with tangent ``scales[i] e_i``.

    Parameters
    ----------
    values : sequence of float
        The parameters' values.
    scales : sequence of float
        ``d value_i / d theta_i`` (the value itself for ``theta = log value``).

    Returns
    -------
    list of Dual
        One scalar dual per parameter.
    """
    n = len(values)
    out = []
    for i, (value, scale) in enumerate(zip(values, scales)):
        t = np.zeros(n)
        t[i] = scale
        out.append(Dual(np.float64(value), t))
    return out
