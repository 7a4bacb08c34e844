"""Image estimators with the convolutional NTK/NNGP (CNTK): kernel ridge on images.

:class:`CNTKRegressor` and :class:`CNTKClassifier` are
:class:`~sknetk.NTKRegressor` and :class:`~sknetk.NTKClassifier` with the
kernel of an infinitely wide convolutional network (:mod:`sknetk.conv`);
:class:`CNTKRegressorCV` and :class:`CNTKClassifierCV` choose the depth and
the ridge by exact leave-one-out from one pass of the recursion and one
eigendecomposition per depth. They fit through the solver registry of
:mod:`sknetk._solvers` (Cholesky or, for a finite training time ``t``, the
eigendecomposition of gradient flow), on the CPU or the GPU.

The images are rows of ``X`` (flattened, NHWC order) with
``image_shape=(H, W, C)``, so that scikit-learn data such as ``load_digits``
work unchanged; NHWC arrays ``(n, H, W, C)`` are accepted too.
"""

import functools
import math
from dataclasses import KW_ONLY
from numbers import Integral

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MultiOutputMixin,
    RegressorMixin,
    _fit_context,
)
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._base import compute_device
from ._cache import cached_conv_kernel
from ._conv import ConvKernelSpec, check_image_shape
from ._device import cupy_or_error
from ._linalg import inverse_filter
from ._params import (
    CONV_NETWORK,
    constraints,
    estimator_dataclass,
    fill_doc,
    param_fields,
)
from ._solvers import SOLVERS, ExecutionContext, Kernel, Ridge, flow_time, solver_key
from .kernels import budget_bytes

__all__ = [
    "CNTKClassifier",
    "CNTKClassifierCV",
    "CNTKRegressor",
    "CNTKRegressorCV",
]

#: The parameters every image estimator has, in the docstrings' order (``t``
#: after ``alpha_scale`` for the plain models).
_COMMON = ("kernel", "image_shape", *CONV_NETWORK, "alpha_scale")
_RUN = ("memory", "device", "working_memory", "n_jobs")
#: The grid of the leave-one-out searches.
_SEARCH = ("alphas", "depths")


def _insert_doc(cls, own=("t",)):
    """Fill the ``{params}`` line of ``cls``'s docstring from :mod:`sknetk._params`:
    the shared parameters, then the model's own keyword-only ones."""
    return fill_doc(_COMMON + _RUN + own, "conv_estimator", blank_lines=True)(cls)


def _as_rows(X):
    """``(X, shape)``: image arrays (3-D, 4-D) flattened to rows, with their shape."""
    ndim = getattr(X, "ndim", None)
    if ndim in (3, 4):
        shape = tuple(X.shape[1:]) + ((1,) if ndim == 3 else ())
        return np.reshape(np.asarray(X), (X.shape[0], -1)), shape
    return X, None


def _image_shape(param, from_array, n_features):
    """The ``(H, W, C)`` a model uses (see ``image_shape`` in the docstring)."""
    if param is not None:
        shape = check_image_shape(param)
        if from_array is not None and from_array != shape:
            raise ValueError(
                f"X holds images of shape {from_array} but image_shape={shape}."
            )
        if math.prod(shape) != n_features:
            raise ValueError(
                f"X has {n_features} features but image_shape={shape} holds "
                f"{math.prod(shape)} values per image."
            )
        return shape
    if from_array is not None:
        return from_array
    side = math.isqrt(n_features)
    if side * side == n_features:
        return (side, side, 1)
    return (1, n_features, 1)


class _BaseCNTK(
    BaseEstimator, param_fields("ImageParams", _COMMON + _RUN, "conv_estimator")
):
    """Shared parameters, validation, kernels and prediction of the CNTK models.

    The parameters of ``_COMMON + _RUN`` are dataclass fields
    (:func:`~sknetk._params.param_fields`); the models add theirs.
    """

    _parameter_constraints = constraints(_COMMON + _RUN, "conv_estimator")

    # -- parameters ------------------------------------------------------------
    def _network(self, depth=None):
        params = {name: getattr(self, name) for name in CONV_NETWORK}
        if depth is not None:
            params["depth"] = depth
            pools = () if self.pool_after is None else self.pool_after
            params["pool_after"] = [p for p in pools if p < depth]
        return params

    def _check_network(self, H, W, kernel):
        """Validate the network for ``H x W`` images (``ValueError``)."""
        spec = ConvKernelSpec.from_params(**self._network(), ntk=kernel == "ntk")
        spec.map_shapes(H, W)
        return spec

    # -- input -----------------------------------------------------------------
    def _validate_X(self, X, reset):
        """Validated float64 rows, and at fit ``image_shape_``."""
        X, from_array = _as_rows(X)
        X = validate_data(self, X, reset=reset, dtype=np.float64)
        if reset:
            self.image_shape_ = _image_shape(self.image_shape, from_array, X.shape[1])
        elif from_array is not None and from_array != self.image_shape_:
            raise ValueError(
                f"X holds images of shape {from_array}, but "
                f"{type(self).__name__} was fitted on {self.image_shape_}."
            )
        return X

    def _validate_fit(self, X, y, **kwargs):
        X, from_array = _as_rows(X)
        X, y = validate_data(self, X, y, dtype=np.float64, **kwargs)
        self.image_shape_ = _image_shape(self.image_shape, from_array, X.shape[1])
        return X, y

    # -- where and how ---------------------------------------------------------
    def _context(self, n_entries, predict=False):
        """The execution context of one fit or prediction (``n_entries``
        kernel entries)."""
        # ``device`` resolved as for the dense estimators (the one reader).
        device = compute_device(self, n_entries, predict=predict)
        return ExecutionContext(
            device=device,
            cupy=cupy_or_error() if device == "gpu" else None,
            working_memory=self.working_memory,
            n_jobs=self.n_jobs,
        )

    def _kernel_fn(self, name, depth=None):
        """``fn(X, Y=None, **run)`` computing kernel ``name`` (cached on the CPU)."""
        network = self._network(depth)
        memory, shape = self.memory, self.image_shape_

        def fn(X, Y=None, *, working_memory=None, n_jobs=-1, device="cpu", **_):
            return cached_conv_kernel(
                memory if device == "cpu" else None,
                X,
                Y,
                kernel=name,
                image_shape=shape,
                working_memory=working_memory,
                n_jobs=n_jobs,
                device=device,
                **network,
            )

        return fn

    def _kernel_matrix(self, X, Y, name, context, depth=None, all_depths=False):
        fn = self._kernel_fn(name, depth)
        if all_depths:
            return np.asarray(
                cached_conv_kernel(
                    self.memory if context.device == "cpu" else None,
                    X,
                    Y,
                    kernel=name,
                    image_shape=self.image_shape_,
                    all_depths=True,
                    working_memory=context.working_memory,
                    n_jobs=context.n_jobs,
                    device=context.device,
                    **self._network(depth),
                )
            )
        return fn(
            X,
            Y,
            working_memory=context.working_memory,
            n_jobs=context.n_jobs,
            device=context.device,
        )

    def _solve(self, X, Y, sample_weight, kernel_name, alpha, t):
        """Dual coefficients and ``alpha_`` through the solver registry."""
        context = self._context(X.shape[0] ** 2)
        kernel = Kernel(kernel_name, {}, self._kernel_fn(kernel_name), None)
        ridge = Ridge(alpha, self.alpha_scale, sample_weight)
        solver = SOLVERS[solver_key("cholesky", context.device, flow_time(t))]
        fit = solver(kernel, X, Y, sample_weight, ridge, flow_time(t), context)
        return fit.dual_coef, fit.alpha

    def _fit_ridge(self, X, y, sample_weight):
        """Fit one kernel ridge model (the plain estimators' ``fit``)."""
        X, Y, y = self._targets(X, y)
        self._check_network(*self.image_shape_[:2], self.kernel)
        sw = _fit_weights(sample_weight, X)
        class_weight = getattr(self, "class_weight", None)
        if class_weight is not None:
            cw = compute_sample_weight(class_weight, y)
            sw = cw if sw is None else sw * cw
        self.dual_coef_, self.alpha_ = self._solve(
            X, Y, sw, self.kernel, self.alpha, self.t
        )
        self.X_fit_ = X
        return self

    def _fitted_decision(self, X):
        """``K(X, X_fit_) @ dual_coef_`` of the fitted model on validated ``X``
        (the chosen ``depth_`` after a search)."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        depth = getattr(self, "depth_", None)
        return self._decision(X, self.dual_coef_, self.kernel, depth)

    def _decision(self, X, coef, kernel_name, depth=None):
        """``K(X, X_fit_) @ coef``, over row blocks of ``X`` within the budget."""
        n_train = self.X_fit_.shape[0]
        context = self._context(X.shape[0] * n_train, predict=True)
        rows = max(1, int(budget_bytes(self.working_memory) / 4 / (8 * n_train)))
        parts = []
        for i0 in range(0, X.shape[0], rows):
            K = self._kernel_matrix(
                X[i0 : i0 + rows], self.X_fit_, kernel_name, context, depth
            )
            if context.cupy is not None:
                K = context.cupy.asnumpy(K)
            parts.append(np.asarray(K) @ coef)
        if not parts:
            return np.zeros((0,) + coef.shape[1:])
        out = np.concatenate(parts, axis=0)
        if not np.isfinite(out).all():
            raise ValueError(
                "The kernel between X and the training images overflows float64: "
                "scale the pixels (e.g. to [0, 1])."
            )
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class _ImageRegressor(MultiOutputMixin, RegressorMixin):
    """What the image regressors share: their targets, score and ``predict``."""

    def _targets(self, X, y):
        """``(X, Y, y)``: validated images and float64 targets (twice)."""
        X, y = self._validate_fit(X, y, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        return X, y, y

    def _loo_score(self, Y, y):
        """Score of leave-one-out predictions: minus the mean squared error."""

        def score(loo):
            return (-float(np.mean((Y - loo) ** 2)),)

        return score

    def __sklearn_tags__(self):
        # scikit-learn's generic regression data are tables, and as ``1 x d``
        # images a translation-invariant (GAP) CNN kernel cannot fit them
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags

    def predict(self, X):
        """Predict with the fitted model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Images.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions.
        """
        return self._fitted_decision(X)


class _ImageClassifier(ClassifierMixin):
    """What the image classifiers share: their targets, score, predictions."""

    def _targets(self, X, y):
        """``(X, Y, y)``: validated images, one-vs-all targets and labels;
        sets ``classes_``."""
        X, y = self._validate_fit(X, y)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        Y, self.classes_ = _binarize(y)
        return X, Y, y

    def _loo_score(self, Y, y):
        """Score of leave-one-out decision values: the accuracy, then minus
        the mean squared error on the targets (ties)."""
        codes = np.searchsorted(self.classes_, y)

        def score(loo):
            labels = (loo > 0).astype(int) if loo.ndim == 1 else np.argmax(loo, 1)
            accuracy = float(np.mean(labels == codes))
            return accuracy, -float(np.mean((Y - loo) ** 2))

        return score

    def decision_function(self, X):
        """One-vs-all decision values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Images.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, positive values favour ``classes_[1]``.
        """
        return self._fitted_decision(X)

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Images.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Predicted classes.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def _fit_weights(sample_weight, X):
    if sample_weight is None:
        return None
    sw = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    )
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight contains NaN or infinity.")
    if not sw.any():
        raise ValueError("sample_weight must not be all zero.")
    return sw


# ---------------------------------------------------------------------------
# Regression and classification
# ---------------------------------------------------------------------------
@_insert_doc
@estimator_dataclass
class CNTKRegressor(_ImageRegressor, _BaseCNTK):
    """Kernel ridge regression on images with a convolutional NTK (CNTK).

    An infinitely wide convolutional network (``depth`` blocks of a
    stride-1 convolution and ``activation``, optional average pooling, then
    global average pooling or a flattened readout and a dense layer), trained
    by gradient descent on squared loss, predicts on average exactly as
    kernel ridge regression with its Neural Tangent Kernel [1]_ [2]_. This
    estimator computes that kernel in closed form (:mod:`sknetk.conv`) and
    solves ``f(x) = K(x, X) (K(X, X) + alpha I)^-1 y`` exactly.

    Use it where :class:`~sknetk.NTKRegressor` would be used, when the rows
    are images: the convolution shares weights over positions and the GAP
    readout makes the model translation invariant. Each kernel entry costs
    O(P^2) work for ``P`` pixels with GAP (O(P) with Flatten and no
    pooling), against O(P) for the fully connected NTK; see :ref:`conv`.

    Read more in the :ref:`User Guide <conv>`.

    Parameters
    ----------
    alpha : float, default=1.0
        Ridge added to the training kernel's diagonal (>= 0); see
        ``alpha_scale``.

    {params}

    Attributes
    ----------
    X_fit_ : ndarray of shape (n_samples, n_features)
        Training images as float64 rows.

    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Dual coefficients: the prediction is ``K(X, X_fit_) @ dual_coef_``.

    alpha_ : float
        The ridge actually added to the diagonal.

    image_shape_ : tuple of int
        ``(H, W, C)`` of the images.

    n_features_in_ : int
        Number of features (``H * W * C``) seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`, when all strings.

    See Also
    --------
    CNTKClassifier : The same model on one-vs-all targets.
    CNTKRegressorCV : Depth and ridge chosen by exact leave-one-out.
    sknetk.NTKRegressor : The fully connected network's kernel.

    Notes
    -----
    Sample weights solve ``min sum_i w_i (y_i - f(x_i))^2 + alpha ||f||^2``
    as in ``KernelRidge``; a failed Cholesky factorisation falls back to a
    least-squares solve with a warning.

    References
    ----------
    .. [1] S. Arora, S. S. Du, W. Hu, Z. Li, R. Salakhutdinov and R. Wang,
       "On Exact Computation with an Infinitely Wide Neural Net",
       NeurIPS 2019.
    .. [2] R. Novak, L. Xiao, J. Lee, Y. Bahri, G. Yang, J. Hron, D. Abolafia,
       J. Pennington and J. Sohl-Dickstein, "Bayesian Deep Convolutional
       Networks with Many Channels are Gaussian Processes", ICLR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk import CNTKRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 6, 6, 1))
    >>> y = X[:, 2:4, 2:4, 0].mean(axis=(1, 2))  # mean of the centre pixels
    >>> model = CNTKRegressor(alpha=1e-3, alpha_scale="mean_diag", depth=2)
    >>> model.fit(X[:30], y[:30]).predict(X[30:]).shape
    (10,)
    >>> model.image_shape_
    (6, 6, 1)
    """

    _parameter_constraints = {
        **_BaseCNTK._parameter_constraints,
        **constraints(["alpha", "t"]),
    }

    alpha: float = 1.0
    _: KW_ONLY
    t: object = None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the CNTK ridge model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Training images (rows, see ``image_shape``).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit_ridge(X, y, sample_weight)


def _binarize(y, classes=None):
    """``(Y, classes)``: one-vs-all targets in {-1, 1} (one column for 2 classes)."""
    lb = LabelBinarizer(neg_label=-1, pos_label=1)
    Y = lb.fit_transform(y).astype(np.float64)
    if len(lb.classes_) < 2:
        raise ValueError(
            "The classifier needs samples of at least 2 classes in the data, "
            f"but the data contain only one class: {lb.classes_[0]!r}."
        )
    return (Y[:, 0] if Y.shape[1] == 1 else Y), lb.classes_


@_insert_doc
@estimator_dataclass
class CNTKClassifier(_ImageClassifier, _BaseCNTK):
    """Image classifier with the convolutional NTK (CNTK) of a wide CNN.

    The labels become one-vs-all targets in ``{-1, 1}`` (as in
    ``RidgeClassifier``), each fitted by :class:`CNTKRegressor`'s kernel
    ridge regression: the mean prediction of an infinitely wide convolutional
    network trained by gradient descent on squared loss against those
    targets [1]_. The predicted class has the largest decision value.

    Use it on small image data sets (up to some thousands of images: the
    ``n x n`` kernel is held in memory, and each entry costs O(P^2) work for
    ``P`` pixels with the default GAP readout), where it is a strong
    training-free baseline (Arora et al. 2020 [2]_); ``readout="flatten"``
    is much faster and usually less accurate.

    Read more in the :ref:`User Guide <conv>`.

    Parameters
    ----------
    alpha : float, default=1.0
        Ridge added to the training kernel's diagonal (>= 0); see
        ``alpha_scale``.

    {params}

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    X_fit_ : ndarray of shape (n_samples, n_features)
        Training images as float64 rows.

    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_classes)
        Dual coefficients of the one-vs-all problems (one vector for
        ``classes_[1]`` against ``classes_[0]`` with two classes).

    alpha_ : float
        The ridge actually added to the diagonal.

    image_shape_ : tuple of int
        ``(H, W, C)`` of the images.

    n_features_in_ : int
        Number of features (``H * W * C``) seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`, when all strings.

    See Also
    --------
    CNTKClassifierCV : Depth and ridge chosen by exact leave-one-out.
    sknetk.NTKClassifier : The fully connected network's kernel.
    sklearn.svm.SVC : Kernel classifier with classical kernels.

    References
    ----------
    .. [1] S. Arora, S. S. Du, W. Hu, Z. Li, R. Salakhutdinov and R. Wang,
       "On Exact Computation with an Infinitely Wide Neural Net",
       NeurIPS 2019.
    .. [2] S. Arora, S. S. Du, Z. Li, R. Salakhutdinov, R. Wang and D. Yu,
       "Harnessing the Power of Infinitely Wide Deep Nets on Small-data
       Tasks", ICLR 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknetk import CNTKClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNTKClassifier(alpha=1e-3, alpha_scale="mean_diag", depth=2)
    >>> clf.fit(X[:60] / 16, y[:60]).score(X[60:100] / 16, y[60:100])
    0.975
    """

    _parameter_constraints = {
        **_BaseCNTK._parameter_constraints,
        **constraints(["alpha", "t"]),
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    alpha: float = 1.0
    _: KW_ONLY
    t: object = None
    class_weight: object = None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the one-vs-all CNTK ridge models.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Training images (rows, see ``image_shape``).
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit_ridge(X, y, sample_weight)


# ---------------------------------------------------------------------------
# Exact leave-one-out model selection
# ---------------------------------------------------------------------------
def _loo(evals, V, Y, ridge):
    """Dual coefficients and exact leave-one-out predictions of kernel ridge.

    With ``K = V diag(evals) V^T`` and ``G = V diag(1 / (evals + ridge)) V^T``:
    ``c = G Y`` and the prediction at ``x_i`` without row ``i`` is
    ``Y_i - c_i / G_ii``.
    """
    g, _ = inverse_filter(np, evals + ridge)
    Z = V.T @ Y
    c = V @ (g[:, None] * Z) if Y.ndim == 2 else V @ (g * Z)
    d = (V * V) @ g
    d = np.where(d > 0, d, 1.0)
    residual = c / (d[:, None] if Y.ndim == 2 else d)
    return c, Y - residual


@estimator_dataclass
class _BaseCNTKCV(_BaseCNTK):
    """The leave-one-out search over depths and alphas of the CNTK models."""

    _parameter_constraints = {
        **_BaseCNTK._parameter_constraints,
        **constraints(_SEARCH, "conv_estimator"),
    }

    alphas: tuple = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    _: KW_ONLY
    depths: object = None

    def _fit_search(self, X, y):
        """Choose depth and ridge by exact leave-one-out, then fit (``fit``)."""
        X, Y, y = self._targets(X, y)
        best = self._search(X, Y, self._loo_score(Y, y))
        (self.best_score_, *_), self.depth_, self.alpha_relative_, self.alpha_, c = best
        self.dual_coef_ = c
        self.X_fit_ = X
        return self

    def _search(self, X, Y, score):
        """Best ``(score, depth, alpha, alpha_, dual_coef)`` over depths and
        alphas, by exact LOO; ``score(loo)`` is a tuple, compared in order,
        whose first entry is reported."""
        alphas = np.asarray(self.alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(
                f"alphas must be a non-empty list of positive numbers, got "
                f"{self.alphas!r}."
            )
        depths = (
            list(range(1, self.depth + 1)) if self.depths is None else list(self.depths)
        )
        if not depths or any(
            isinstance(d, bool) or not isinstance(d, Integral) or d < 1 for d in depths
        ):
            raise ValueError(
                f"depths must be a non-empty list of ints >= 1, got {self.depths!r}."
            )
        top = max(depths)
        self._check_network(*self.image_shape_[:2], self.kernel)
        ConvKernelSpec.from_params(
            **self._network(top), ntk=self.kernel == "ntk"
        ).map_shapes(*self.image_shape_[:2])
        context = self._context(X.shape[0] ** 2)
        stack = self._kernel_matrix(
            X, None, self.kernel, context, depth=top, all_depths=True
        )
        if context.cupy is not None:
            stack = context.cupy.asnumpy(stack)
        results = []
        for depth in sorted(set(depths)):
            K = np.asarray(stack[depth - 1], dtype=np.float64)
            if not np.isfinite(K).all():
                raise ValueError(
                    "The training kernel overflows float64: scale the pixels."
                )
            evals, V = np.linalg.eigh((K + K.T) / 2)
            for alpha in alphas:
                ridge = Ridge(alpha, self.alpha_scale).value(np.diag(K))
                c, loo = _loo(evals, V, Y, ridge)
                results.append((score(loo), depth, float(alpha), ridge, c))
        best = max(results, key=lambda r: r[0])
        self.cv_results_ = {
            "depth": np.array([r[1] for r in results]),
            "alpha": np.array([r[2] for r in results]),
            "score": np.array([r[0][0] for r in results]),
        }
        return best


#: The fitted attributes of both searches (``{score}``: what ``best_score_``
#: is; ``{outputs}``: the second dimension of ``dual_coef_``).
_SEARCH_ATTRIBUTES = """\
depth_ : int
        The chosen depth.

    alpha_ : float
        The chosen ridge, as added to the diagonal.

    alpha_relative_ : float
        The chosen value of ``alphas`` (as the dense searches'
        ``alpha_relative_``).

    best_score_ : float
        {score}

    cv_results_ : dict of ndarray
        ``depth``, ``alpha`` and ``score`` of every candidate.

    X_fit_ : ndarray of shape (n_samples, n_features)
        Training images as float64 rows.

    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, {outputs})
        Dual coefficients of the chosen model.

    image_shape_ : tuple of int
        ``(H, W, C)`` of the images.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`, when all strings."""


def _insert_cv_doc(cls, score, outputs):
    """Fill the ``{cv_params}`` and ``{params}`` lines of a search's docstring."""
    fill = fill_doc(
        _SEARCH[:1], "conv_estimator", blank_lines=True, placeholder="cv_params"
    )
    attributes = _SEARCH_ATTRIBUTES.format(score=score, outputs=outputs)
    cls.__doc__ = cls.__doc__.replace("{search_attributes}", attributes)
    return _insert_doc(fill(cls), own=_SEARCH[1:])


@functools.partial(
    _insert_cv_doc,
    score="Its leave-one-out score (minus the mean squared error).",
    outputs="n_targets",
)
class CNTKRegressorCV(_ImageRegressor, _BaseCNTKCV):
    """:class:`CNTKRegressor` with depth and ridge chosen by exact leave-one-out.

    The kernels of every depth come from one pass of the recursion
    (``all_depths``); each is eigendecomposed once, ``K = V diag(L) V^T``,
    and then every ridge costs O(n^2): the dual coefficients are ``c = G y``
    with ``G = V diag(1 / (L + alpha)) V^T`` and the exact leave-one-out
    residuals are ``c / diag(G)``, as in ``RidgeCV``. The pair of lowest
    leave-one-out mean squared error is kept.

    Read more in the :ref:`User Guide <conv>`.

    Parameters
    ----------
    {cv_params}

    {params}

    Attributes
    ----------
    {search_attributes}

    See Also
    --------
    CNTKRegressor : One depth and one ridge.
    sknetk.NTKRegressorCV : The same search for the fully connected kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk import CNTKRegressorCV
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 5, 5, 1))
    >>> y = X[:, 1:4, 1:4, 0].mean(axis=(1, 2))
    >>> model = CNTKRegressorCV(depth=3, alpha_scale="mean_diag").fit(X, y)
    >>> model.depth_ in (1, 2, 3), model.predict(X[:2]).shape
    (True, (2,))
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Choose depth and ridge by leave-one-out squared error, then fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Training images.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit_search(X, y)


@functools.partial(
    _insert_cv_doc, score="Its leave-one-out accuracy.", outputs="n_classes"
)
class CNTKClassifierCV(_ImageClassifier, _BaseCNTKCV):
    """:class:`CNTKClassifier` with depth and ridge chosen by exact leave-one-out.

    As :class:`CNTKRegressorCV` on the one-vs-all targets in ``{-1, 1}``;
    the candidate with the highest leave-one-out accuracy is kept (ties: the
    lower leave-one-out squared error on the targets).

    Read more in the :ref:`User Guide <conv>`.

    Parameters
    ----------
    {cv_params}

    {params}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    {search_attributes}

    See Also
    --------
    CNTKClassifier : One depth and one ridge.
    sknetk.NTKClassifierCV : The same search for the fully connected kernel.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknetk import CNTKClassifierCV
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNTKClassifierCV(depth=2, alpha_scale="mean_diag", readout="flatten")
    >>> clf.fit(X[:100] / 16, y[:100]).depth_ in (1, 2)
    True
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Choose depth and ridge by leave-one-out accuracy, then fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Training images.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit_search(X, y)
