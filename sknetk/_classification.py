"""NTK classification: one-vs-all regression on +-1 targets, calibrated by LOO."""

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._array_api import is_dask, to_numpy
from ._base import (
    ACCEPT_SPARSE,
    _BaseNTK,
    check_fit_sample_weight,
    check_weighted_classes,
    densify,
    insert_params_doc,
    mirrors_input,
    n_rows,
    validate_dask_fit,
)
from ._calibration import TemperatureCalibration, fit_temperature, loo_decision_values
from ._params import estimator_dataclass
from ._solvers import train_kernel


@insert_params_doc
@estimator_dataclass
class NTKClassifier(ClassifierMixin, _BaseNTK):
    """Classifier using the Neural Tangent Kernel of an infinitely wide network.

    The labels are turned into one-vs-all targets in ``{-1, 1}``, exactly as
    in ``RidgeClassifier``, and each column is fitted by
    :class:`NTKRegressor`'s kernel ridge regression: the mean prediction of an
    infinitely wide network trained by gradient descent on squared loss
    against those targets. The predicted class is the one with the largest
    decision value (for two classes, the sign of the single decision value).

    Use it as a training-free, deterministic stand-in for an
    ``MLPClassifier`` of the same architecture, or where an RBF-kernel
    ``SVC``/``KernelRidge`` would be used, on up to tens of thousands of
    samples with the exact solver (it needs the ``n x n`` kernel), and on
    millions with ``solver="nystrom"`` (:ref:`scaling`). Labels of any type
    are accepted (strings, non-contiguous integers).

    :meth:`predict_proba` gives calibrated probabilities without held-out
    data: the softmax of ``calibration_slope_`` times the decision values,
    with the slope fitted by maximum likelihood on the exact leave-one-out
    decision values of the training rows (see Notes). The most probable class
    is always the predicted one.

    Read more in the :ref:`User Guide <estimators>`.

    Parameters
    ----------
    alpha : float, default=1.0
        Ridge added to the training kernel's diagonal (>= 0); see
        ``alpha_scale``.

    {kernel_params}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    X_fit_ : ndarray of shape (n_samples, n_features) or (n_centers, n_features)
        Training data (a float64 copy), needed for prediction; with the
        Nystrom solver, its centres only.

    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_classes)
        Dual coefficients of the one-vs-all problems, one row per row of
        ``X_fit_``; one column per class, or a single vector (for
        ``classes_[1]`` against ``classes_[0]``) with two classes.

    alpha_ : float
        The ridge actually added to the diagonal. The Nystrom solver floors
        it at about ``1e3 * n * eps`` times the mean diagonal, which only
        matters for ``alpha=0`` or duplicate centres.

    solver_ : {"cholesky", "nystrom"}
        The solver of the last :term:`fit` (what ``solver="auto"`` chose).

    n_iter_ : int
        Conjugate-gradient iterations of the Nystrom solver; 1 for the exact
        solver (one direct solve).

    calibration_slope_ : float
        Slope ``a > 0`` of the calibrated probabilities
        ``softmax(a * decision_function(X))`` (for two classes, the
        probability of ``classes_[1]`` is ``sigmoid(a * s)``), fitted on the
        leave-one-out decision values.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    NTKRegressor : The regression model behind this classifier.
    sklearn.linear_model.RidgeClassifier : The same one-vs-all scheme with a
        linear model.
    sklearn.calibration.CalibratedClassifierCV : Probabilities from decision
        values by cross-validation.

    Notes
    -----
    Sample weights, sparse input and ill-conditioned kernels are handled as
    in :class:`NTKRegressor`. Fitting raises ``ValueError`` when fewer than
    two classes have a positive total weight, and warns about a class of
    zero total weight (it would be almost never predicted); the same rule
    as :class:`~sknetk.NTKClassifierCV`'s.

    A finite ``t`` gives the decision values of the network trained for time
    ``t`` on the one-vs-all targets (``N = n_samples * n_classes`` training
    values, or ``n_samples`` with two classes); stopping early is a
    regulariser that acts like a ridge, but damps each eigendirection of the
    kernel by ``1 - exp(-a t / N)`` instead of ``a / (a + alpha)``.

    **Probabilities.** The one-vs-all decision values ``s`` become
    probabilities ``softmax(a * s)`` (temperature scaling, Guo et al. 2017).
    The slope ``a`` is fitted by weighted maximum likelihood on the exact
    leave-one-out decision values: for kernel ridge regression the model
    fitted without row ``i`` predicts ``y_i - c_i / G_ii`` at ``x_i``, with
    ``G = (K + alpha_ I)^-1`` and ``c = G y``, so every row is scored by a
    model that has not seen it, for the price of one more Cholesky
    factorisation and a triangular inverse (about twice the fit's solve; the
    training kernel is computed again, or read from ``memory``). One common
    increasing map keeps the class order, so ``predict`` is the most probable
    class. With a finite ``t`` the leave-one-out values are those of the
    linear smoother, ``y_i - (y_i - f_i) / (1 - S_ii)``, from one
    eigendecomposition. The Nystrom solver calibrates on the exact
    leave-one-out values of kernel ridge on ``min(n_samples, n_centers)``
    rows drawn with ``random_state``, an ``O(n_centers^3)`` step like its
    preconditioner.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sknetk import NTKClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), NTKClassifier(alpha=0.1, bias_std=0.5))
    >>> round(float(cross_val_score(model, X, y, cv=3).mean()), 2)
    0.97

    Calibrated probabilities, from the leave-one-out decision values:

    >>> proba = model.fit(X, y).predict_proba(X[:2])
    >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1.0))
    ((2, 3), True)
    >>> log_loss = cross_val_score(model, X, y, cv=3, scoring="neg_log_loss")
    >>> round(float(log_loss.mean()), 1)
    -0.1

    Early stopping instead of a ridge, searched by a grid search that caches
    the kernels (each fold's kernel is computed once for all ``t``):

    >>> from tempfile import TemporaryDirectory
    >>> from sklearn.model_selection import GridSearchCV
    >>> X = StandardScaler().fit_transform(X)
    >>> with TemporaryDirectory() as cache:
    ...     search = GridSearchCV(
    ...         NTKClassifier(alpha=0.0, memory=cache),
    ...         {"t": [1.0, 10.0, 100.0]}, cv=3,
    ...     ).fit(X, y)
    >>> search.best_params_["t"] in (1.0, 10.0, 100.0)
    True
    """

    alpha: float = 1.0

    @_fit_context(prefer_skip_nested_validation=True)
    @mirrors_input
    def fit(self, X, y, sample_weight=None):
        """Fit the one-vs-all kernel ridge models.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. With the Nystrom solver, also a ``numpy.memmap``
            (read block by block, never copied whole) or a dask array chunked
            by rows (fitted on the current dask cluster).

        y : array-like of shape (n_samples,)
            Class labels of any type.

        sample_weight : float or array-like of shape (n_samples,), default=None
            Non-negative weights; a zero weight removes its sample.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        solver = self._choose_solver(n_rows(X), is_dask(X))
        if is_dask(X):
            X, y = validate_dask_fit(self, X, y)
            y = column_or_1d(y, warn=True)
            sample_weight = check_fit_sample_weight(
                sample_weight, np.empty((X.shape[0], 0))
            )
        else:
            X, y = validate_data(
                self,
                X,
                y,
                accept_sparse=ACCEPT_SPARSE,
                dtype=np.float64,
                # a memory map is read block by block, never copied whole
                copy=not isinstance(X, np.memmap),
            )
            X = densify(X)
            sample_weight = check_fit_sample_weight(sample_weight, X)
        check_classification_targets(y)
        binarizer = LabelBinarizer(pos_label=1, neg_label=-1)
        Y = binarizer.fit_transform(y).astype(np.float64)
        self.classes_ = binarizer.classes_
        check_weighted_classes(type(self).__name__, Y, self.classes_, sample_weight)
        binary = len(self.classes_) == 2
        fit = self._fit_kernel_ridge(
            X, Y[:, 0] if binary else Y, sample_weight, solver, loo=True
        )
        Y_loo = Y[:, :1] if binary else Y
        if fit.loo is not None:  # from the exact solver's own factor
            loo, Y_rows, w_rows = fit.loo, Y_loo, sample_weight
        else:
            loo, Y_rows, w_rows = self._loo_decision(X, Y_loo, sample_weight)
        self.calibration_slope_ = fit_temperature(loo, Y_rows, w_rows).slope
        return self

    def _loo_decision(self, X, Y, sample_weight):
        """``(loo, Y, w)``: leave-one-out decision values on the calibration rows.

        All training rows for the exact solvers; for the Nystrom solver,
        ``min(n_samples, n_centers)`` rows drawn with ``random_state`` and
        the exact ridge model on them.
        """
        n = X.shape[0]
        t = self._flow_time()
        rows = None
        if self.solver_ == "nystrom":
            t = None
            if n > self.n_centers:
                rng = check_random_state(self.random_state)
                rows = np.sort(rng.choice(n, self.n_centers, replace=False))
        Xc = X if rows is None else X[rows]
        if is_dask(Xc):
            Xc = np.asarray(Xc.compute())
        Yc = Y if rows is None else Y[rows]
        wc = None if sample_weight is None or rows is None else sample_weight[rows]
        wc = sample_weight if rows is None else wc
        context = self._context(Xc.shape[0] ** 2)
        if context.cupy is not None:  # factorised on the device
            K = self._kernel().matrix(context.cupy.asarray(Xc), context)
        else:
            K = train_kernel(self._kernel(), Xc, context)
        return loo_decision_values(K, Yc, self.alpha_, wc, t), Yc, wc

    @mirrors_input
    def decision_function(self, X):
        """One-vs-all decision values: the network outputs for each class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples; a dask array chunked by rows gives a lazy dask array.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            With two classes, positive values favour ``classes_[1]``.
        """
        check_is_fitted(self)
        if is_dask(X):
            return self._dask_kernel_dot(X)
        X = validate_data(
            self, X, accept_sparse=ACCEPT_SPARSE, dtype=np.float64, reset=False
        )
        return self._kernel_dot(X)

    @mirrors_input
    def predict_proba(self, X):
        """Calibrated class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples; a dask array chunked by rows gives a lazy dask array.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            ``softmax(calibration_slope_ * decision_function(X))``, columns in
            the order of ``classes_``; the largest is at the predicted class.
        """
        return self._probabilities(X, log=False)

    @mirrors_input
    def predict_log_proba(self, X):
        """Logarithm of the calibrated class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples; a dask array chunked by rows gives a lazy dask array.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities (a log-softmax, accurate for tiny
            probabilities), columns in the order of ``classes_``.
        """
        return self._probabilities(X, log=True)

    def _probabilities(self, X, log):
        check_is_fitted(self)
        if is_dask(X):
            scores = self.decision_function(X)
            if scores.ndim == 1:
                scores = scores[:, None]
            return scores.rechunk({1: -1}).map_blocks(
                _proba_of,
                slope=self.calibration_slope_,
                log=log,
                chunks=(scores.chunks[0], (len(self.classes_),)),
                dtype=np.float64,
            )
        return _proba_of(self.decision_function(X), self.calibration_slope_, log)

    @mirrors_input(output=False)
    def predict(self, X):
        """Predict the class with the largest decision value.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples; a dask array chunked by rows gives a lazy dask array.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels, of the type of ``classes_``.
        """
        if is_dask(X):
            scores = self.decision_function(X)
            return scores.map_blocks(
                _labels_of,
                classes=self.classes_,
                drop_axis=list(range(1, scores.ndim)),
                dtype=self.classes_.dtype,
            )
        return _labels_of(self.decision_function(X), self.classes_)


def _proba_of(scores, slope, log):
    """Calibrated (log-)probabilities of decision values (a NumPy or CuPy block)."""
    calibration = TemperatureCalibration(slope)
    scores = to_numpy(scores)
    if log:
        return calibration.predict_log_proba(scores)
    return calibration.predict_proba(scores)


def _labels_of(scores, classes):
    """Labels for decision values (NumPy, or a CuPy block of a dask array)."""
    scores = to_numpy(scores)
    if scores.ndim == 1:
        return classes[(scores > 0).astype(np.intp)]
    return classes[np.argmax(scores, axis=1)]
