"""NTK regression: the infinitely wide network trained to convergence."""

import numpy as np
from sklearn.base import MultiOutputMixin, RegressorMixin, _fit_context
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (
    ACCEPT_SPARSE,
    _BaseNTK,
    _insert_params_doc,
    check_fit_sample_weight,
    densify,
    to_host,
    to_input_namespace,
)


@_insert_params_doc
class NTKRegressor(MultiOutputMixin, RegressorMixin, _BaseNTK):
    """Kernel ridge regression with the Neural Tangent Kernel of a wide network.

    An infinitely wide fully connected network (``depth`` hidden layers with
    ``activation``, then a linear readout), trained by gradient descent on
    squared loss to convergence, predicts on average exactly as kernel ridge
    regression with its Neural Tangent Kernel (NTK) [1]_ [2]_. This estimator
    computes that kernel in closed form and solves the ridge problem exactly:

    .. math:: f(x) = K(x, X) (K(X, X) + \\alpha I)^{-1} y.

    With ``kernel="nngp"`` it is the same for a network whose readout layer
    alone is trained: the posterior mean of the network's Gaussian process.

    Use it where you would use ``KernelRidge`` with an RBF kernel, with a
    kernel that has no bandwidth to tune and the inductive bias of a deep
    ReLU (or other) network, or as a training-free baseline for a trained
    ``MLPRegressor``. The model has no intercept and its kernels depend on
    the scale of ``X``: standardise the features (and centre ``y`` or use
    ``TransformedTargetRegressor``). The exact solver needs the ``n x n``
    training kernel in memory and O(n^3) time.

    Read more in the :ref:`User Guide <estimators>`.

    Parameters
    ----------
    alpha : float, default=1.0
        Ridge added to the training kernel's diagonal (>= 0), as in
        ``KernelRidge``; see ``alpha_scale``. ``alpha=0`` is the network
        trained to zero training loss (interpolation); a singular kernel is
        then solved in the least-squares sense with a warning.

    {kernel_params}

    Attributes
    ----------
    X_fit_ : ndarray of shape (n_samples, n_features)
        Training data (a float64 copy), needed for prediction.

    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Dual coefficients: the prediction is ``K(X, X_fit_) @ dual_coef_``.

    alpha_ : float
        The ridge actually added to the diagonal (``alpha``, or ``alpha``
        times the mean diagonal with ``alpha_scale="mean_diag"``).

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    NTKClassifier : The same model on one-vs-all targets, for classification.
    sklearn.kernel_ridge.KernelRidge : Kernel ridge with classical kernels.
    sklearn.neural_network.MLPRegressor : A finite network trained by SGD.

    Notes
    -----
    Sample weights ``w`` solve the weighted problem of ``KernelRidge``:
    minimise ``sum_i w_i (y_i - f(x_i))^2 + alpha ||f||^2``. A zero weight
    removes the sample (its dual coefficient is zero); an integer weight
    equals repeating the row. Negative or non-finite weights raise
    ``ValueError``.

    Sparse ``X`` is converted to a dense array for fitting when it has at
    most ``sknetk._base.SPARSE_DENSIFY_MAX_ENTRIES`` (ten million) entries,
    and raises a ``TypeError`` saying so beyond; prediction densifies sparse
    rows block by block.

    When the Cholesky factorisation of ``K + alpha_ I`` fails or is singular
    to working precision, :meth:`fit` warns with
    :class:`~sknetk.exceptions.IllConditionedKernelWarning` and uses the
    minimum-norm least-squares solution; it never returns NaN.

    References
    ----------
    .. [1] A. Jacot, F. Gabriel, C. Hongler, "Neural Tangent Kernel:
       Convergence and Generalization in Neural Networks", NeurIPS 2018.
    .. [2] J. Lee, L. Xiao, S. Schoenholz, Y. Bahri, R. Novak, J.
       Sohl-Dickstein and J. Pennington, "Wide Neural Networks of Any Depth
       Evolve as Linear Models Under Gradient Descent", NeurIPS 2019.

    Examples
    --------
    >>> from sklearn.compose import TransformedTargetRegressor
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sknetk import NTKRegressor
    >>> X, y = make_friedman1(n_samples=300, random_state=0)
    >>> ntk = NTKRegressor(alpha=0.01, alpha_scale="mean_diag")
    >>> model = make_pipeline(
    ...     StandardScaler(),
    ...     TransformedTargetRegressor(ntk, transformer=StandardScaler()),
    ... )
    >>> round(model.fit(X[:200], y[:200]).score(X[200:], y[200:]), 2)
    0.89
    """

    _parameter_constraints: dict = {**_BaseNTK._parameter_constraints}

    def __init__(
        self,
        alpha=1.0,
        *,
        kernel="ntk",
        depth=3,
        activation="relu",
        activation_params=None,
        weight_std=1.0,
        bias_std=0.0,
        parameterization="ntk",
        width=None,
        alpha_scale="absolute",
        device="auto",
        working_memory=None,
        n_jobs=-1,
    ):
        self.alpha = alpha
        self.kernel = kernel
        self.depth = depth
        self.activation = activation
        self.activation_params = activation_params
        self.weight_std = weight_std
        self.bias_std = bias_std
        self.parameterization = parameterization
        self.width = width
        self.alpha_scale = alpha_scale
        self.device = device
        self.working_memory = working_memory
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model: compute the training kernel and solve for its duals.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        sample_weight : float or array-like of shape (n_samples,), default=None
            Non-negative weights; a zero weight removes its sample.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, _ = to_host(X)
        y, _ = to_host(y)
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=ACCEPT_SPARSE,
            dtype=np.float64,
            copy=True,
            multi_output=True,
            y_numeric=True,
        )
        X = densify(X)
        sample_weight = check_fit_sample_weight(sample_weight, X)
        return self._fit_kernel_ridge(X, y, sample_weight)

    def predict(self, X):
        """Predict with the trained infinite network.

        The kernel between ``X`` and the training rows is computed in blocks
        within ``working_memory``, so ``X`` can have many more rows than fit
        in memory as one ``n_test x n_train`` matrix.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predicted values (float64).
        """
        check_is_fitted(self)
        X, was_cupy = to_host(X)
        X = validate_data(
            self, X, accept_sparse=ACCEPT_SPARSE, dtype=np.float64, reset=False
        )
        return to_input_namespace(self._kernel_dot(X), was_cupy)
