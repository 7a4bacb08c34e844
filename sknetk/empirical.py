"""Empirical NTK of a trained scikit-learn MLP, and its distance to the limit.

:func:`empirical_ntk` computes the neural tangent kernel of a fitted
``MLPRegressor`` or ``MLPClassifier`` with respect to all its parameters,
layer by layer, without ever forming the ``n x n_params`` Jacobian.
:func:`limit_kernel` gives the infinite-width kernel matching the network's
architecture and initialisation, and :func:`kernel_distance`,
:func:`kernel_alignment`, :func:`centered_kernel_alignment` and
:func:`target_alignment` compare kernels on a scale-free footing.
:class:`AfterKernelRegressor` and :class:`AfterKernelClassifier` do kernel
ridge regression with a trained network's own kernel (the "after kernel").
See ``docs/empirical.rst``.
"""

import math
import warnings
from dataclasses import dataclass
from numbers import Real

import numpy as np
from scipy import linalg
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MultiOutputMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._activations import get_activation
from ._array_api import device as _device_of
from ._array_api import get_namespace, is_numpy_namespace
from ._params import param_docs
from .kernels import budget_bytes

__all__ = [
    "empirical_ntk",
    "limit_kernel",
    "LimitKernel",
    "kernel_alignment",
    "kernel_distance",
    "centered_kernel_alignment",
    "target_alignment",
    "AfterKernelRegressor",
    "AfterKernelClassifier",
    "MLP_ACTIVATIONS",
    "TANH_ERF",
    "LOGISTIC_ERF",
]

#: Hidden activations of scikit-learn's MLPs, all supported.
MLP_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")

#: ``tanh(x) ~ a erf(b x) + c`` with these ``(a, b, c)``: the same limits
#: +-1 and the same slope at 0 (``b = sqrt(pi) / 2``), so that small
#: pre-activations, which scikit-learn's initialisation produces in wide
#: layers, are exact to second order; largest error
#: ``max |tanh(x) - erf(b x)| = 0.035``. The limit kernels differ from the
#: exact tanh ones (Gauss-Hermite quadrature) by a kernel distance below
#: 5e-5 and at most 5.6% in any entry (measured, ``docs/empirical.rst``).
TANH_ERF = (1.0, math.sqrt(math.pi) / 2, 0.0)

#: ``logistic(x) = (1 + tanh(x / 2)) / 2 ~ 0.5 erf(b x / 2) + 0.5`` with the
#: ``b`` of :data:`TANH_ERF`: largest error 0.018; kernel distance to the
#: exact logistic limit below 3e-5, at most 2.1% in any entry.
LOGISTIC_ERF = (0.5, TANH_ERF[1] / 2, 0.5)

_OUTPUTS = ("mean", "full")


# ---------------------------------------------------------------------------
# Array-API names that NumPy 1.x lacks (NumPy 2 and the array-API libraries
# have them)
# ---------------------------------------------------------------------------
def _mT(xp, A):
    return xp.matrix_transpose(A) if hasattr(xp, "matrix_transpose") else A.T


def _permute(xp, A, axes):
    return (
        xp.permute_dims(A, axes) if hasattr(xp, "permute_dims") else A.transpose(axes)
    )


def _astype(xp, A, dtype):
    return xp.astype(A, dtype) if hasattr(xp, "astype") else A.astype(dtype)


# ---------------------------------------------------------------------------
# Activations of scikit-learn's MLPs and their derivatives, in any namespace
# ---------------------------------------------------------------------------
def _act_and_derivative(xp, name, u):
    if name == "identity":
        return u, xp.ones_like(u)
    if name == "relu":
        positive = u > 0
        return xp.where(positive, u, xp.zeros_like(u)), _astype(xp, positive, u.dtype)
    if name == "tanh":
        t = xp.tanh(u)
        return t, 1.0 - t * t
    if name == "logistic":
        # exp(-|u|) never overflows; s = 1 / (1 + e^-u) for u >= 0, e^u / (1 + e^u)
        e = xp.exp(-xp.abs(u))
        s = xp.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return s, s * (1.0 - s)
    raise ValueError(
        f"Unsupported activation {name!r}; scikit-learn's MLPs offer {MLP_ACTIVATIONS}."
    )


# ---------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------
def _check_mlp(estimator):
    if not isinstance(estimator, (MLPRegressor, MLPClassifier)):
        raise TypeError(
            "estimator must be a scikit-learn MLPRegressor or MLPClassifier, got "
            f"{type(estimator).__name__}."
        )
    check_is_fitted(estimator, ("coefs_", "intercepts_"))
    if estimator.activation not in MLP_ACTIVATIONS:
        raise ValueError(
            f"Unsupported activation {estimator.activation!r}; expected one of "
            f"{MLP_ACTIVATIONS}."
        )
    for array in (*estimator.coefs_, *estimator.intercepts_):
        if not np.all(np.isfinite(array)):
            raise ValueError(
                "The network's parameters contain NaN or infinity (training "
                "diverged); lower its learning rate."
            )


def _check_rows(X, name, xp, n_features):
    if is_numpy_namespace(xp):
        from sklearn.utils import check_array

        X = check_array(X, dtype=np.float64, input_name=name, ensure_min_samples=0)
    else:
        if getattr(X, "ndim", None) != 2:
            raise ValueError(
                f"Expected a 2-D array for {name}, "
                f"got shape {getattr(X, 'shape', None)}."
            )
        X = _astype(xp, X, xp.float64)
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError(f"Input {name} contains NaN or infinity.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but the network was fitted on "
            f"{n_features}."
        )
    return X


def _network(estimator, xp, device):
    """The parameters as float64 arrays of namespace ``xp`` on ``device``."""
    coefs = [
        xp.asarray(np.asarray(W, dtype=np.float64), device=device)
        for W in estimator.coefs_
    ]
    intercepts = [
        xp.asarray(np.asarray(b, dtype=np.float64), device=device)
        for b in estimator.intercepts_
    ]
    return coefs, intercepts


# ---------------------------------------------------------------------------
# Layer features: inputs of every layer and back-propagated signals
# ---------------------------------------------------------------------------
def _features(xp, coefs, intercepts, activation, X):
    """Per Dense layer, its input rows and the signals back-propagated to its output.

    Returns ``acts`` (``L + 1`` arrays: ``acts[l]`` is the input of Dense
    layer ``l``, ``acts[0] = X``) and ``deltas`` (``L`` arrays of shape
    ``(rows, n_outputs, width_l)``: the derivative of each output logit with
    respect to the pre-activations of hidden layer ``l``). The readout's
    signal is the identity and is not stored.
    """
    acts, derivs = [X], []
    a = X
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        a, g = _act_and_derivative(xp, activation, a @ W + b)
        acts.append(a)
        derivs.append(g)
    deltas = [None] * len(derivs)
    if derivs:
        # (rows, 1, width) * (1, k, width): output c's signal at the last hidden layer
        delta = xp.expand_dims(derivs[-1], axis=1) * xp.expand_dims(
            _mT(xp, coefs[-1]), axis=0
        )
        deltas[-1] = delta
        for layer in range(len(derivs) - 2, -1, -1):
            delta = (delta @ _mT(xp, coefs[layer + 1])) * xp.expand_dims(
                derivs[layer], axis=1
            )
            deltas[layer] = delta
    return acts, deltas


def _tile(xp, fi, fj, output, n_outputs):
    """The NTK between two row blocks, from their layer features."""
    acts_i, deltas_i = fi
    acts_j, deltas_j = fj
    k = n_outputs
    readout = acts_i[-1] @ _mT(xp, acts_j[-1]) + 1.0
    if output == "mean":
        K = readout
        for a_i, a_j, d_i, d_j in zip(acts_i, acts_j, deltas_i, deltas_j):
            gram = a_i @ _mT(xp, a_j) + 1.0
            flat_i = xp.reshape(d_i, (d_i.shape[0], -1))
            flat_j = xp.reshape(d_j, (d_j.shape[0], -1))
            signal = flat_i @ _mT(xp, flat_j)
            K = K + gram * signal / k if k > 1 else K + gram * signal
        return K
    eye = xp.eye(k, dtype=readout.dtype, device=_device_of(readout))
    K = _expand2(xp, readout) * eye
    for a_i, a_j, d_i, d_j in zip(acts_i, acts_j, deltas_i, deltas_j):
        gram = a_i @ _mT(xp, a_j) + 1.0
        signal = _permute(xp, xp.tensordot(d_i, d_j, axes=([2], [2])), (0, 2, 1, 3))
        K = K + _expand2(xp, gram) * signal
    return K


def _expand2(xp, A):
    return xp.expand_dims(xp.expand_dims(A, axis=2), axis=3)


def _block_rows(budget, feature_bytes, entry_bytes, n_rows):
    """Largest row block B with ``2 B f + 4 B^2 e <= budget`` (at least 1)."""
    a, b = 4.0 * entry_bytes, 2.0 * feature_bytes
    side = (-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a)
    return int(max(1, min(n_rows, side)))


def empirical_ntk(estimator, X, Y=None, *, output="mean", working_memory=None):
    """Empirical neural tangent kernel of a fitted scikit-learn MLP.

    ``K(x, y) = J(x) J(y)^T`` where ``J(x)`` is the Jacobian of the network's
    outputs (the logits, before the output activation, for a classifier) with
    respect to all its parameters, every ``coefs_`` and ``intercepts_``
    entry. It is computed layer by layer, never forming ``J``: Dense layer
    ``l`` contributes ``(A_l(X) A_l(Y)^T + 1) * (D_l(X) D_l(Y)^T)``, the
    Gram matrix of its inputs (with a ones column for the bias) times, entry
    by entry, the Gram matrix of the signals back-propagated to its outputs.

    Parameters
    ----------
    estimator : MLPRegressor or MLPClassifier
        A fitted network, any hidden activation (``"identity"``,
        ``"logistic"``, ``"tanh"``, ``"relu"``).
    X : array of shape (n_samples_X, n_features)
        Input rows: NumPy, CuPy or any array-API array (the kernel is computed
        in that namespace, in float64).
    Y : array of shape (n_samples_Y, n_features), default=None
        Second set of rows; ``None`` computes the symmetric ``K(X, X)``.
    output : {"mean", "full"}, default="mean"
        With ``k`` outputs the NTK is a ``k x k`` block per pair of rows.
        ``"mean"`` returns the average of the ``k`` diagonal blocks, the
        kernel of a single output that kernel methods use (for one output it
        is the NTK itself); ``"full"`` returns every block, an array of shape
        ``(n_samples_X, n_samples_Y, k, k)``.
    working_memory : float, default=None
        Memory budget in MiB for the temporaries (the layer features of two
        row blocks and a few kernel tiles); ``None`` uses scikit-learn's
        ``working_memory`` setting. The output itself is not counted.

    Returns
    -------
    K : array of shape (n_samples_X, n_samples_Y) or (n_samples_X, n_samples_Y, k, k)
        Same array namespace and device as ``X``, float64.

    See Also
    --------
    limit_kernel : The infinite-width kernel of the same architecture.
    kernel_distance : How far apart two kernels are.

    Notes
    -----
    The cost is ``O(n m k sum_l (n_{l-1} + n_l))`` for ``n`` and ``m`` rows,
    ``k`` outputs and layer widths ``n_l``, against
    ``O(n m sum_l n_{l-1} n_l)`` for ``J J^T``; the memory is the output
    plus ``O((n + m) k sum_l n_l)`` per row block, instead of the
    ``n x n_params`` Jacobian. A network without hidden layers is a linear
    model, whose NTK is ``X Y^T + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> from sknetk.empirical import empirical_ntk
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    >>> mlp = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=1000,
    ...                    random_state=0).fit(X, y)
    >>> K = empirical_ntk(mlp, X)
    >>> K.shape, bool(np.allclose(K, K.T))
    ((20, 20), True)
    """
    _check_mlp(estimator)
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}.")
    xp = get_namespace(X, Y)
    n_features = estimator.n_features_in_
    X = _check_rows(X, "X", xp, n_features)
    symmetric = Y is None
    Y = X if symmetric else _check_rows(Y, "Y", xp, n_features)
    device = _device_of(X)
    coefs, intercepts = _network(estimator, xp, device)
    k = int(coefs[-1].shape[1])
    n, m = X.shape[0], Y.shape[0]
    widths = [int(W.shape[1]) for W in coefs[:-1]]
    # per row: the inputs of every layer, the signals (k per hidden unit),
    # and the pre-activations/derivatives alive while they are computed
    feature_bytes = 8 * (n_features + sum(widths) * (k + 3) + k)
    entry_bytes = 8 * (k * k if output == "full" else 1)
    side = _block_rows(budget_bytes(working_memory), feature_bytes, entry_bytes, n + m)
    shape = (n, m) if output == "mean" else (n, m, k, k)
    K = xp.zeros(shape, dtype=xp.float64, device=device)
    if n == 0 or m == 0:
        return K

    def features(Z, start):
        stop = min(start + side, Z.shape[0])
        return stop, _features(
            xp, coefs, intercepts, estimator.activation, Z[start:stop, ...]
        )

    for i0 in range(0, n, side):
        i1, fi = features(X, i0)
        for j0 in range(i0 if symmetric else 0, m, side):
            if symmetric and j0 == i0:
                j1, fj = i1, fi
            else:
                j1, fj = features(Y, j0)
            tile = _tile(xp, fi, fj, output, k)
            if symmetric and j0 == i0:
                swapped = (1, 0) if output == "mean" else (1, 0, 3, 2)
                tile = 0.5 * (tile + _permute(xp, tile, swapped))
            K[i0:i1, j0:j1, ...] = tile
            if symmetric and j0 != i0:
                swapped = (1, 0) if output == "mean" else (1, 0, 3, 2)
                K[j0:j1, i0:i1, ...] = _permute(xp, tile, swapped)
    return K


# ---------------------------------------------------------------------------
# Scale-free comparisons of kernels
# ---------------------------------------------------------------------------
def _frobenius_pair(K1, K2):
    xp = get_namespace(K1, K2)
    K1 = xp.asarray(K1, dtype=xp.float64)
    K2 = xp.asarray(K2, dtype=xp.float64)
    if K1.shape != K2.shape:
        raise ValueError(f"The kernels differ in shape: {K1.shape} and {K2.shape}.")
    return xp, K1, K2


def _alignment(xp, K1, K2):
    # scale each kernel by its largest entry first: no overflow of the squares
    s1 = float(xp.max(xp.abs(K1))) if K1.size else 0.0
    s2 = float(xp.max(xp.abs(K2))) if K2.size else 0.0
    if not (s1 > 0 and s2 > 0):
        raise ValueError("A kernel of zero Frobenius norm has no alignment.")
    if not (math.isfinite(s1) and math.isfinite(s2)):
        raise ValueError("The kernels contain NaN or infinity.")
    A, B = K1 / s1, K2 / s2
    inner = float(xp.sum(A * B))
    norm = math.sqrt(float(xp.sum(A * A))) * math.sqrt(float(xp.sum(B * B)))
    return min(1.0, max(-1.0, inner / norm))


def kernel_alignment(K1, K2):
    """Kernel alignment ``<K1, K2>_F / (|K1|_F |K2|_F)`` (Cristianini et al. 2002).

    The cosine of the angle between two kernel matrices seen as vectors:
    1 for kernels that are multiples of each other, invariant to the scale
    of either. In [0, 1] for positive semi-definite kernels.

    Parameters
    ----------
    K1, K2 : arrays of the same shape
        Kernel matrices (any shape, for instance ``(n, m)`` or the
        ``(n, m, k, k)`` of ``empirical_ntk(..., output="full")``; all
        entries count).

    Returns
    -------
    alignment : float
        The cosine of the angle between the kernels, in [-1, 1].

    See Also
    --------
    kernel_distance : One minus the alignment.
    centered_kernel_alignment : The same after centring both kernels.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.empirical import kernel_alignment
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> round(kernel_alignment(K, 3 * K), 12)
    1.0
    >>> round(kernel_alignment(K, np.eye(2)), 4)
    0.8944
    """
    return _alignment(*_frobenius_pair(K1, K2))


def kernel_distance(K1, K2):
    """Kernel distance ``1 - <K1, K2>_F / (|K1|_F |K2|_F)`` (Fort et al. 2020).

    Zero for kernels that are positive multiples of each other, invariant to
    the scale of either, in [0, 1] for positive semi-definite kernels (whose
    Frobenius inner product is non-negative).

    Parameters
    ----------
    K1, K2 : arrays of the same shape
        Kernel matrices.

    Returns
    -------
    distance : float
        ``1 - kernel_alignment(K1, K2)``, in [0, 2] ([0, 1] for PSD kernels).

    See Also
    --------
    kernel_alignment : One minus the distance.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.empirical import kernel_distance
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> round(kernel_distance(K, 5 * K), 12)
    0.0
    >>> round(kernel_distance(K, np.eye(2)), 4)
    0.1056
    """
    return 1.0 - _alignment(*_frobenius_pair(K1, K2))


def _center(xp, K):
    K = K - xp.mean(K, axis=0, keepdims=True)
    return K - xp.mean(K, axis=1, keepdims=True)


def centered_kernel_alignment(K1, K2):
    """Centred kernel alignment (CKA; Cortes et al. 2012, Kornblith et al. 2019).

    The alignment of ``H K1 H`` and ``H K2 H``, with ``H = I - 1 1^T / n``
    the centring matrix: the alignment of the feature maps after removing
    their means, blind to constant offsets of the kernels (such as the
    ``+ 1`` of every bias). In [0, 1] for positive semi-definite kernels.

    Parameters
    ----------
    K1, K2 : arrays of shape (n_samples, n_samples)
        Square kernel matrices on the same rows.

    Returns
    -------
    cka : float
        The alignment of the centred kernels, in [-1, 1].

    Raises
    ------
    ValueError
        When a centred kernel is zero (a constant kernel has no CKA).

    See Also
    --------
    kernel_alignment : Without centring.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.empirical import centered_kernel_alignment
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> K = X @ X.T
    >>> centered_kernel_alignment(K, K + 7.0)
    1.0
    """
    xp, K1, K2 = _frobenius_pair(K1, K2)
    if K1.ndim != 2 or K1.shape[0] != K1.shape[1]:
        raise ValueError(f"CKA needs square 2-D kernels, got shape {K1.shape}.")
    return _alignment(xp, _center(xp, K1), _center(xp, K2))


def target_alignment(K, y, *, centered=False):
    """Alignment of a kernel with the targets, ``y^T K y / (|K|_F |y|^2)``.

    The kernel alignment of ``K`` with the ideal kernel ``y y^T``
    (Cristianini et al. 2002), for a target matrix ``Y`` of shape
    ``(n, t)`` ``<K, Y Y^T>_F / (|K|_F |Y Y^T|_F)``. Large values mean the
    targets lie in the kernel's leading eigendirections (kernel regression
    learns them fast); it is scale-free in ``K`` and in ``y``.

    Parameters
    ----------
    K : array of shape (n_samples, n_samples)
        Kernel matrix.
    y : array of shape (n_samples,) or (n_samples, n_targets)
        Targets (for classification, one-hot or +-1 columns).
    centered : bool, default=False
        Centre the kernel and the targets first (the CKA of ``K`` with
        ``y y^T``), which ignores a constant offset of either.

    Returns
    -------
    alignment : float
        In [-1, 1]; in [0, 1] for a positive semi-definite ``K``.

    See Also
    --------
    kernel_alignment : Between two kernels.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.empirical import target_alignment
    >>> y = np.array([1.0, -1.0, 1.0])
    >>> target_alignment(np.outer(y, y), y)
    1.0
    >>> round(target_alignment(np.eye(3), y), 4)
    0.5774
    """
    xp = get_namespace(K, y)
    K = xp.asarray(K, dtype=xp.float64)
    y = xp.asarray(y, dtype=xp.float64)
    if y.ndim == 1:
        y = xp.reshape(y, (-1, 1))
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] != y.shape[0]:
        raise ValueError(
            f"K must be square with as many rows as y: got {K.shape} and {y.shape}."
        )
    if centered:
        K = _center(xp, K)
        y = y - xp.mean(y, axis=0, keepdims=True)
    return _alignment(xp, K, y @ _mT(xp, y))


# ---------------------------------------------------------------------------
# The infinite-width kernel of an MLP's architecture
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LimitKernel:
    """The infinite-width NTK of a scikit-learn MLP's architecture.

    The expectation of the empirical NTK over the network's random
    initialisation, in the limit where every hidden layer has infinitely many
    units but keeps its per-entry weight and bias variances (the
    "standard" parameterization, as scikit-learn trains). Built by
    :func:`limit_kernel`; call it on rows to get the kernel.

    Parameters
    ----------
    activation : str
        The sknetk activation used in the recursion (``"relu"``,
        ``"identity"``, or ``"erf"`` standing for ``tanh`` and ``logistic``).
    activation_params : tuple of (str, float)
        Its parameters (``(("a", 1.0), ("b", 0.886), ("c", 0.0))`` for tanh).
    widths : tuple of int
        The hidden widths ``n_1, ..., n_L``.
    weight_variances, bias_variances : tuple of float
        Per Dense layer (``L + 1`` of them), the variance of each weight and
        bias entry at initialisation.
    mlp_activation : str
        The hidden activation's name in scikit-learn.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk.empirical import LimitKernel
    >>> kernel = LimitKernel("relu", (), (512,), (2 / 514, 2 / 513), (2 / 514, 2 / 513))
    >>> kernel(np.eye(2)).shape
    (2, 2)
    """

    activation: str
    activation_params: tuple
    widths: tuple
    weight_variances: tuple
    bias_variances: tuple
    mlp_activation: str = ""

    def __call__(self, X, Y=None):
        """The kernel ``K(X, Y)`` (``K(X, X)`` when ``Y`` is None).

        Parameters
        ----------
        X : array of shape (n_samples_X, n_features)
            Input rows (NumPy, CuPy or any array-API array).
        Y : array of shape (n_samples_Y, n_features), default=None
            Second set of rows.

        Returns
        -------
        K : array of shape (n_samples_X, n_samples_Y)
            Float64, in the namespace of ``X``.
        """
        xp = get_namespace(X, Y)
        X = _check_rows(X, "X", xp, None)
        Y = X if Y is None else _check_rows(Y, "Y", xp, X.shape[1])
        act = get_activation(self.activation)
        params = dict(self.activation_params)
        A = X @ _mT(xp, Y)  # sum over the fan-in of the first layer
        ax, ay = xp.sum(X * X, axis=1), xp.sum(Y * Y, axis=1)
        grams, dots = [], []
        for layer, width in enumerate(self.widths):
            vw, vb = self.weight_variances[layer], self.bias_variances[layer]
            q, qx, qy = vw * A + vb, vw * ax + vb, vw * ay + vb
            E, Ed = act.dual(
                xp, q, xp.expand_dims(qx, axis=1), xp.expand_dims(qy, axis=0), **params
            )
            grams.append(A)
            dots.append(Ed)
            A = width * E
            ax = width * act.variance(xp, qx, **params)[0]
            ay = width * act.variance(xp, qy, **params)[0]
        K = A + 1.0
        back = xp.ones_like(K)
        for layer in range(len(self.widths) - 1, -1, -1):
            back = (
                self.widths[layer]
                * self.weight_variances[layer + 1]
                * dots[layer]
                * back
            )
            K = K + (grams[layer] + 1.0) * back
        return K


def _glorot_variance(fan_in, fan_out, activation):
    # uniform(-r, r) with r^2 = factor / (fan_in + fan_out) has variance r^2 / 3
    factor = 2.0 if activation == "logistic" else 6.0
    return factor / (3.0 * (fan_in + fan_out))


def limit_kernel(estimator):
    """The infinite-width kernel matching a scikit-learn MLP's architecture.

    scikit-learn initialises every Dense layer (fan-in ``a``, fan-out ``b``)
    with weights and biases drawn uniformly from ``[-r, r]``,
    ``r = sqrt(6 / (a + b))`` (``sqrt(2 / (a + b))`` for ``logistic``,
    Glorot and Bengio 2010), i.e. of variance ``2 / (a + b)``
    (``2 / (3 (a + b))``), and trains them directly (the "standard"
    parameterization). The returned kernel is the expectation of the
    empirical NTK over that initialisation when the hidden layers become
    infinitely wide with these per-entry variances held fixed: the usual
    Gaussian recursion (pre-activations are Gaussian with covariance
    ``v_w <a(x), a(y)> + v_b``; the back-propagated signals multiply by
    ``n_l v_w E[phi'(u) phi'(v)]`` per layer). In sknetk's terms the hidden
    layers have ``weight_std = 1`` in the standard parameterization, while
    the first and the readout layers have fan-dependent variances
    (``2 d / (d + n_1)`` and ``2 n_L / (n_L + k)`` times ``1 / fan_in``),
    which is why the kernel is a :class:`LimitKernel` rather than a
    parameter set of :func:`~sknetk.kernels.ntk_kernel`.

    Parameters
    ----------
    estimator : MLPRegressor or MLPClassifier
        A fitted network (its number of features and outputs set the first
        and last layers' variances); the trained weights are not used.

    Returns
    -------
    kernel : LimitKernel
        Callable, ``kernel(X, Y=None)``; same depth and widths as the
        network. ``relu`` and ``identity`` are exact; ``tanh`` becomes
        ``erf`` with :data:`TANH_ERF` (largest error 0.035, kernel distance
        to the exact tanh limit below 5e-5) and ``logistic`` ``erf`` with
        :data:`LOGISTIC_ERF` (largest error 0.018, distance below 3e-5).

    See Also
    --------
    empirical_ntk : The finite network's kernel.
    kernel_distance : Compare the two.

    Notes
    -----
    Two approximations of the finite-width network remain: the first layer's
    pre-activations are sums of ``d`` uniform terms, taken as Gaussian (exact
    as ``d`` grows; for relu the difference is the fourth moment of the
    weights), and each kernel of the expectation is the average over
    finitely many units, whose fluctuations fall as ``1 / sqrt(width)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> from sknetk.empirical import empirical_ntk, kernel_distance, limit_kernel
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(30, 20)), rng.normal(size=30)
    >>> mlp = MLPRegressor(hidden_layer_sizes=(2048,), solver="sgd",
    ...                    learning_rate_init=1e-12, random_state=0)
    >>> mlp = mlp.partial_fit(X, y)  # one step of 1e-12: the initialisation
    >>> kernel = limit_kernel(mlp)
    >>> kernel.widths, kernel.activation
    ((2048,), 'relu')
    >>> bool(kernel_distance(empirical_ntk(mlp, X), kernel(X)) < 0.01)
    True
    """
    _check_mlp(estimator)
    name = estimator.activation
    if name == "tanh":
        sk_name, params = "erf", TANH_ERF
    elif name == "logistic":
        sk_name, params = "erf", LOGISTIC_ERF
    else:
        sk_name, params = name, ()
    named = tuple(zip(("a", "b", "c"), params)) if params else ()
    fans = [int(W.shape[0]) for W in estimator.coefs_] + [
        int(estimator.coefs_[-1].shape[1])
    ]
    variances = tuple(
        _glorot_variance(fans[i], fans[i + 1], name) for i in range(len(fans) - 1)
    )
    return LimitKernel(
        activation=sk_name,
        activation_params=named,
        widths=tuple(fans[1:-1]),
        weight_variances=variances,
        bias_variances=variances,
        mlp_activation=name,
    )


# ---------------------------------------------------------------------------
# Kernel regression with a trained network's own kernel
# ---------------------------------------------------------------------------
_ALPHA_SCALES = ("absolute", "mean_diag")


def _solve(K, Y, ridge):
    """``(K + ridge I)^{-1} Y``: Cholesky, else least squares with a warning."""
    A = K.copy()
    A.flat[:: A.shape[0] + 1] += ridge
    try:
        return linalg.cho_solve(linalg.cho_factor(A, lower=True), Y)
    except (linalg.LinAlgError, ValueError):
        warnings.warn(
            "The regularised after-kernel is singular or not positive definite; "
            "solving by least squares instead (increase alpha).",
            RuntimeWarning,
            stacklevel=3,
        )
        return linalg.lstsq(A, Y)[0]


class _BaseAfterKernel(BaseEstimator):
    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "alpha_scale": [StrOptions(set(_ALPHA_SCALES))],
        "working_memory": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        alpha=1e-3,
        alpha_scale="mean_diag",
        working_memory=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.alpha = alpha
        self.alpha_scale = alpha_scale
        self.working_memory = working_memory
        self.random_state = random_state

    def _network(self, default):
        mlp = clone(self.estimator) if self.estimator is not None else default
        if not isinstance(mlp, self._mlp_class):
            raise TypeError(
                f"estimator must be an {self._mlp_class.__name__}, got "
                f"{type(mlp).__name__}."
            )
        if self.random_state is not None:
            mlp.set_params(random_state=self.random_state)
        return mlp

    def _fit_kernel(self, X, targets):
        K = empirical_ntk(self.mlp_, X, working_memory=self.working_memory)
        if not np.all(np.isfinite(K)):
            raise ValueError("The after-kernel is not finite; lower the learning rate.")
        ridge = float(self.alpha)
        if self.alpha_scale == "mean_diag":
            ridge *= float(np.mean(np.diag(K))) if K.shape[0] else 0.0
        self.alpha_ = ridge
        self.X_fit_ = X
        self.dual_coef_ = _solve(K, targets, ridge)

    def _decision(self, X):
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False)
        K = empirical_ntk(self.mlp_, X, self.X_fit_, working_memory=self.working_memory)
        return K @ self.dual_coef_


_ESTIMATOR_DOC = """    estimator : {cls}, default=None
        The network to train (cloned; ``None`` uses ``{default}``)."""


# The after-kernel estimators' attributes, but for the classifier's classes_
# (inserted at the line {attributes} of their docstrings).
_ATTRIBUTES_DOC = """\
    mlp_ : {cls}
        The trained network.
    X_fit_ : ndarray of shape (n_samples, n_features)
        Training rows (needed for prediction).
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, {outputs})
        {dual_coef}
    alpha_ : float
        The ridge actually added to the diagonal.
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings."""


def _params_doc(cls, default):
    """The after-kernel estimators' parameter section (shared parameters
    from :mod:`sknetk._params`)."""
    shared = ("alpha", "alpha_scale", "working_memory", "random_state")
    return "\n".join(
        [
            "",
            "    Parameters",
            "    ----------",
            _ESTIMATOR_DOC.format(cls=cls, default=default),
            param_docs(shared, context="empirical"),
            "",
        ]
    )


class AfterKernelRegressor(MultiOutputMixin, RegressorMixin, _BaseAfterKernel):
    """Kernel ridge regression with a trained MLP's empirical NTK (the after kernel).

    ``fit`` trains the network, computes its empirical NTK on the training
    rows (:func:`empirical_ntk`, the "after kernel" of Long 2021 and Fort
    et al. 2020) and solves kernel ridge regression with it; ``predict``
    uses ``K(X, X_train)``. Set side by side with the trained network and
    the infinite-width :class:`~sknetk.NTKRegressor`, it shows how much of the
    network's accuracy lies in the kernel it learned.
    {params}
    Attributes
    ----------
    {attributes}

    See Also
    --------
    AfterKernelClassifier : The classifier.
    empirical_ntk : The kernel.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sknetk.empirical import AfterKernelRegressor
    >>> X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    >>> model = AfterKernelRegressor(random_state=0).fit(X, y / y.std())
    >>> model.predict(X[:3]).shape
    (3,)
    """

    _mlp_class = MLPRegressor

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Train the network, then fit kernel ridge regression on its NTK.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.

        Returns
        -------
        self : AfterKernelRegressor
            Fitted estimator.
        """
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=np.float64
        )
        default = MLPRegressor(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=200)
        self.mlp_ = self._network(default).fit(X, y)
        self._fit_kernel(X, np.asarray(y, dtype=np.float64))
        return self

    def predict(self, X):
        """Kernel ridge predictions with the after kernel.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions.
        """
        return self._decision(X)


class AfterKernelClassifier(ClassifierMixin, _BaseAfterKernel):
    """Kernel classification with a trained MLP's empirical NTK (the after kernel).

    ``fit`` trains the network, computes the empirical NTK of its logits on
    the training rows (the mean of the per-logit kernels,
    :func:`empirical_ntk`) and fits kernel ridge regression on one-vs-all
    targets in ``{{-1, 1}}``, exactly as :class:`~sknetk.NTKClassifier`; the
    predicted class has the largest decision value.
    {params}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    {attributes}

    See Also
    --------
    AfterKernelRegressor : The regressor.
    empirical_ntk : The kernel.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sknetk.empirical import AfterKernelClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> model = AfterKernelClassifier(random_state=0).fit(X, y)
    >>> bool(model.score(X, y) > 0.9)
    True
    """

    _mlp_class = MLPClassifier

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Train the network, then fit one-vs-all kernel ridge on its NTK.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : AfterKernelClassifier
            Fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        binarizer = LabelBinarizer(pos_label=1, neg_label=-1)
        targets = binarizer.fit_transform(y).astype(np.float64)
        self.classes_ = binarizer.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                "The classifier needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {self.classes_[0]!r}."
            )
        default = MLPClassifier(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=200)
        self.mlp_ = self._network(default).fit(X, y)
        self._fit_kernel(X, targets if targets.shape[1] > 1 else targets[:, 0])
        return self

    def decision_function(self, X):
        """One-vs-all decision values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, positive values favour ``classes_[1]``.
        """
        return self._decision(X)

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


for _cls, _default, _outputs, _dual_coef in (
    (
        AfterKernelRegressor,
        "MLPRegressor((32,), solver='lbfgs', max_iter=200)",
        "n_targets",
        "Dual coefficients of the kernel ridge regression.",
    ),
    (
        AfterKernelClassifier,
        "MLPClassifier((32,), solver='lbfgs', max_iter=200)",
        "n_classes",
        "Dual coefficients (one column per class; a single one with two\n"
        "        classes).",
    ),
):
    _name = _cls._mlp_class.__name__
    _cls.__doc__ = _cls.__doc__.format(
        params=_params_doc(_name, _default),
        attributes=_ATTRIBUTES_DOC.format(
            cls=_name, outputs=_outputs, dual_coef=_dual_coef
        ).lstrip(),
    )
del _cls, _default, _outputs, _dual_coef, _name
