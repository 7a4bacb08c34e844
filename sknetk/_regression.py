"""NTK regression: the infinitely wide network, trained to convergence or for time t."""

import math
import warnings
from dataclasses import KW_ONLY
from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import MultiOutputMixin, RegressorMixin, _fit_context
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._array_api import device as array_device
from ._array_api import get_namespace, is_dask, is_numpy_namespace, to_numpy
from ._base import (
    ACCEPT_SPARSE,
    _BaseNTK,
    check_finite_prediction,
    check_fit_sample_weight,
    check_regression_targets,
    densify,
    insert_params_doc,
    mirrors_input,
    n_rows,
    validate_dask_fit,
)
from ._linalg import eigen_basis, flow_filters
from ._params import estimator_dataclass
from ._solvers import time_scale
from .dynamics import (
    ensemble_covariance,
    gp_posterior,
    gradient_flow_dual_coef,
    kernel_eigh,
)
from .exceptions import IllConditionedKernelWarning
from .kernels import budget_bytes, nngp_diag, ntk_diag


@insert_params_doc
@estimator_dataclass
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

    Beyond the converged mean, the same model gives the network after a
    finite training time ``t`` (and, from one eigendecomposition, the whole
    learning curve: :meth:`predict_trajectory`), and the predictive
    uncertainty of ``predict(X, return_std=True)`` or ``return_cov=True``,
    as in ``GaussianProcessRegressor``: the NNGP posterior for
    ``kernel="nngp"`` and the spread of the infinite ensemble of trained
    networks for ``kernel="ntk"`` [2]_, with a fitted output scale and the
    observation noise, so that the intervals are calibrated.

    Use it where you would use ``KernelRidge`` with an RBF kernel, with a
    kernel that has no bandwidth to tune and the inductive bias of a deep
    ReLU (or other) network, or as a training-free baseline for a trained
    ``MLPRegressor``. The kernels depend on the scale of ``X``: standardise
    the features (e.g. ``StandardScaler``). The targets are standardized
    (``normalize_y=True``), which gives the model an intercept. The exact
    solver needs the ``n x n`` training kernel in memory and O(n^3) time;
    beyond tens of thousands of rows, ``solver="nystrom"`` (chosen by
    ``"auto"`` when the kernel does not fit ``working_memory``) fits millions
    of rows, memmaps and dask arrays (:ref:`scaling`).

    Read more in the :ref:`User Guide <estimators>`.

    Parameters
    ----------
    alpha : float, default=1.0
        Ridge added to the training kernel's diagonal (>= 0), as in
        ``KernelRidge``; see ``alpha_scale``. ``alpha=0`` is the network
        trained to zero training loss (interpolation); a singular kernel is
        then solved in the least-squares sense with a warning.

    {kernel_params}

    normalize_y : bool, default=True
        Standardize the targets before the solve, as
        ``GaussianProcessRegressor(normalize_y=True)``: subtract their mean
        and divide by their standard deviation (weighted by
        ``sample_weight``, per target; a constant target keeps the scale 1),
        and undo it in every prediction, standard deviation and covariance.
        The model then has an intercept (``intercept_``), as ``Ridge`` has:
        the network learns the deviation from the mean, and far from the data
        it predicts the mean instead of zero. With a finite ``t`` the network
        starts at the mean and learns the standardized targets. ``False`` is
        the network without intercept, whose predictions equal
        neural-tangents' on the raw targets.

    output_scale : "fit" or float, default="fit"
        The amplitude ``c`` of the Gaussian process behind
        ``return_std``/``return_cov``: the prior covariance of the
        (standardized) targets is ``c (K + alpha_ I)``. ``"fit"``: its maximum
        likelihood value with the ridge fixed,
        ``c = z^T (K + alpha_ W^-1)^-1 z / sum(w)`` per target (``z`` the
        standardized targets, ``W`` the sample weights; ``sum(w) = n``
        without weights). A float fixes it: ``1.0`` with ``normalize_y=False``
        is the scale of the random network itself (neural-tangents'
        covariances). The mean prediction does not depend on it.

    uncertainty : {"gp", "ensemble"}, default="gp"
        Which latent covariance ``return_std``/``return_cov`` describe.
        ``"gp"``: the posterior of the Gaussian process whose kernel is the
        model's (the NTK or the NNGP),
        ``K** - K* (K + alpha_ W^-1)^-1 K*^T``, the Bayesian model whose
        mean is this estimator's prediction and whose evidence fits
        ``output_scale_`` (with a finite ``t``: the ensemble of networks
        trained for time ``t`` whose initial function has that covariance,
        which tends to the posterior). ``"ensemble"``: the spread of the
        infinite ensemble of networks trained from random initialisations
        (Lee et al. 2019; neural-tangents' ``gp_inference(get="ntk")``):
        the initial function has the NNGP covariance while training follows
        the NTK. The two differ for ``kernel="ntk"`` only. ``"gp"`` gives
        calibrated intervals also with a ridge chosen by the evidence; the
        ensemble's are calibrated only near the default ridge (see
        :ref:`calibrated uncertainty <estimators_uncertainty>`).

    Attributes
    ----------
    X_fit_ : ndarray of shape (n_samples, n_features) or (n_centers, n_features)
        Training data (a float64 copy), needed for prediction; with the
        Nystrom solver, its centres only.

    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Dual coefficients, one row per row of ``X_fit_`` (``n_centers`` rows
        with the Nystrom solver), in the units of ``y``: the prediction is
        ``K(X, X_fit_) @ dual_coef_ + intercept_``.

    alpha_ : float
        The effective ridge: what is actually added to the training kernel's
        diagonal, in the kernel's units, as ``KernelRidge``'s ``alpha``
        (``alpha``, or ``alpha`` times the mean diagonal with
        ``alpha_scale="mean_diag"``). ``NTKRegressor(alpha=model.alpha_)``
        fits the same model. The Nystrom solver floors it at about
        ``1e3 * n * eps`` times the mean diagonal, which only matters for
        ``alpha=0`` or duplicate centres.

    intercept_ : float or ndarray of shape (n_targets,)
        The (weighted) mean of the training targets with
        ``normalize_y=True``, ``0.0`` otherwise: the prediction is
        ``K(X, X_fit_) @ dual_coef_ + intercept_``.

    output_scale_ : float or ndarray of shape (n_targets,) or None
        The variance scale of the uncertainty, per target, in the squared
        units of ``y``: ``c`` (see ``output_scale``) times the target's
        variance with ``normalize_y=True``. The latent variance is
        ``output_scale_`` times that of the network's kernel, and the
        observation noise is ``output_scale_ * alpha_`` (``/ w_i`` for a
        training row of weight ``w_i``). ``None`` after a Nystrom fit (which
        has no uncertainty).

    y_fit_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Training targets (a float64 copy), needed by
        :meth:`predict_trajectory`.

    solver_ : {"cholesky", "nystrom"}
        The solver of the last :term:`fit` (what ``solver="auto"`` chose).

    n_iter_ : int
        Conjugate-gradient iterations of the Nystrom solver; 1 for the exact
        solver (one direct solve).

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

    **Training time.** With ``K + alpha_ I = V diag(a) V^T`` and ``N`` the
    number of training values (``y.size``), the network trained for time
    ``t`` predicts ``K(x, X) V diag((1 - exp(-a t / N)) / a) V^T y``.
    Sample weights ``w`` put ``diag(sqrt(w)) K diag(sqrt(w))`` in the
    decomposition and make the loss a weighted mean (``N = sum(w) *
    n_targets``), so that integer weights equal repeated rows at any ``t``.
    Each eigendirection is learnt at its own rate: large eigenvalues
    (smooth patterns) first. These are the mean predictions of
    neural-tangents' ``gradient_descent_mse_ensemble`` with
    ``learning_rate * t`` as ``t`` and ``diag_reg`` as ``alpha`` (with
    ``alpha_scale="mean_diag"`` unless ``diag_reg_absolute_scale=True``).

    **Uncertainty.** The latent variance ``v(x)`` of the model is, with
    ``uncertainty="gp"``, the Gaussian-process posterior of the model's own
    kernel ``K`` (the NTK or the NNGP) with noise variance ``alpha_``
    (``alpha_ / w_i`` with weights), ``K** - K* (K + alpha_ W^-1)^-1 K*^T``;
    with a finite ``t``, the covariance of the ensemble trained for time
    ``t`` from that prior (for the NNGP, neural-tangents' readout-only
    ensemble covariance), which tends to the posterior as ``t`` grows. With
    ``uncertainty="ensemble"`` and ``kernel="ntk"``: the covariance of the
    infinite ensemble of networks trained for time ``t`` from random
    initialisations (Lee et al. 2019), ``K** - P K*^T - K* P^T + P K P^T``
    with ``K`` the NNGP and ``P = Theta* V diag((1 - exp(-a t / N)) / a)
    V^T``. Either is in the
    units of the network's prior, which has nothing to do with the scale of
    ``y``. The estimator fits that scale: ``output_scale_`` is the maximum
    likelihood amplitude ``c`` of the Gaussian process
    ``z ~ N(0, c (K + alpha_ W^-1))`` of the standardized targets ``z``, with
    the ridge fixed (the model's own kernel ``K``; the converged form also
    for a finite ``t``), times the targets' variance. ``predict`` then
    returns the variance ``output_scale_ * (v(x) + alpha_)`` of a new
    observation (``latent=False``, the default) or ``output_scale_ * v(x)``
    of the function (``latent=True``). With ``normalize_y=False,
    output_scale=1.0``, ``latent=True`` (and ``uncertainty="ensemble"`` for
    the NTK) they are neural-tangents' ``gp_inference`` /
    ``gradient_descent_mse_ensemble`` covariances. Computing them (and
    :meth:`predict_trajectory`) recomputes the training kernels and one
    eigendecomposition per call, O(n^3): the fitted model keeps the
    training data and targets, not ``n x n`` kernels or eigenvectors; pass
    ``memory`` to load the training kernels from a cache instead of
    recomputing them. A finite ``t`` with ``output_scale="fit"`` costs one
    more exact solve at fit time (the converged quadratic form).

    References
    ----------
    .. [1] A. Jacot, F. Gabriel, C. Hongler, "Neural Tangent Kernel:
       Convergence and Generalization in Neural Networks", NeurIPS 2018.
    .. [2] J. Lee, L. Xiao, S. Schoenholz, Y. Bahri, R. Novak, J.
       Sohl-Dickstein and J. Pennington, "Wide Neural Networks of Any Depth
       Evolve as Linear Models Under Gradient Descent", NeurIPS 2019.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sknetk import NTKRegressor
    >>> X, y = make_friedman1(n_samples=300, random_state=0)
    >>> ntk = NTKRegressor(alpha=0.01, alpha_scale="mean_diag")
    >>> model = make_pipeline(StandardScaler(), ntk)
    >>> round(model.fit(X[:200], y[:200]).score(X[200:], y[200:]), 2)
    0.89
    >>> round(ntk.intercept_, 2)  # normalize_y=True: the mean of the targets
    14.07

    Predictive uncertainty and training time:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(40, 1))
    >>> y = np.sin(2 * X[:, 0])
    >>> gp = NTKRegressor(kernel="nngp", alpha=1e-3, bias_std=0.5).fit(X, y)
    >>> mean, std = gp.predict([[0.5], [10.0]], return_std=True)
    >>> bool(std[0] < std[1])  # more uncertain far from the data
    True
    >>> _, std_f = gp.predict([[0.5], [10.0]], return_std=True, latent=True)
    >>> bool(np.allclose(std**2 - std_f**2, gp.output_scale_ * gp.alpha_))
    True
    >>> early = NTKRegressor(alpha=1e-3, t=10.0).fit(X, y)
    >>> curve = early.predict_trajectory(X, times=[1.0, 10.0, 1e6])
    >>> curve.shape
    (3, 40)
    >>> bool(np.allclose(curve[1], early.predict(X)))
    True
    """

    _parameter_constraints = {
        **_BaseNTK._parameter_constraints,
        "normalize_y": ["boolean"],
        "output_scale": [StrOptions({"fit"}), Interval(Real, 0, None, closed="left")],
        "uncertainty": [StrOptions({"gp", "ensemble"})],
    }

    alpha: float = 1.0
    _: KW_ONLY
    normalize_y: bool = True
    output_scale: object = "fit"
    uncertainty: str = "gp"

    @_fit_context(prefer_skip_nested_validation=True)
    @mirrors_input
    def fit(self, X, y, sample_weight=None):
        """Fit the model: compute the training kernel and solve for its duals.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. With the Nystrom solver, also a ``numpy.memmap``
            (read block by block, never copied whole) or a dask array chunked
            by rows (fitted on the current dask cluster).

        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

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
            y = check_array(
                y,
                ensure_2d=False,
                dtype=None,
                ensure_all_finite=False,
                input_name="y",
            )
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
                multi_output=True,
                # y is converted to float64 by check_regression_targets,
                # with a message naming y (object arrays included)
                y_numeric=False,
            )
            X = densify(X)
            sample_weight = check_fit_sample_weight(sample_weight, X)
        y = check_regression_targets(y)
        mean, scale = _target_moments(y, sample_weight, self.normalize_y)
        z = (y - mean) / scale
        self._fit_kernel_ridge(X, z, sample_weight, solver)
        self.output_scale_ = self._fit_output_scale(X, z, sample_weight, solver)
        if self.output_scale_ is not None:
            self.output_scale_ = _per_target(self.output_scale_ * scale**2, y)
        self.dual_coef_ = self.dual_coef_ * scale
        self.intercept_ = _per_target(mean, y)
        self._y_scale = scale
        self.y_fit_ = np.array(y, dtype=np.float64, copy=True)
        self._fit_sample_weight = (
            None if sample_weight is None else np.array(sample_weight, copy=True)
        )
        return self

    def _fit_output_scale(self, X, z, sample_weight, solver):
        """The amplitude ``c`` of the standardized targets (None: Nystrom).

        The maximum-likelihood scale of the Gaussian process
        ``z ~ N(0, c (K + alpha_ W^-1))`` with the ridge fixed,
        ``c = z^T (K + alpha_ W^-1)^-1 z / sum(w)`` per target, from the
        converged dual coefficients (one more exact solve for a finite
        ``t``, whose duals are not those). ``sum(w)`` (``n`` without weights)
        makes an integer weight the same as a repeated row.
        """
        if self.output_scale != "fit":
            return float(self.output_scale)
        if self.solver_ == "nystrom":
            return None
        dual = self.dual_coef_
        if self._flow_time() is not None:
            with warnings.catch_warnings():
                # a singular kernel is the finite-t model's business, not this
                # scale's (the least-squares duals give the pseudo-inverse form)
                warnings.simplefilter("ignore", IllConditionedKernelWarning)
                dual = self._solve(X, z, sample_weight, solver, None).dual_coef
        total = z.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        quadratic = np.sum(z * np.asarray(dual).reshape(z.shape), axis=0)
        return np.maximum(quadratic, 0.0) / max(total, np.finfo(np.float64).tiny)

    @mirrors_input
    def predict(self, X, return_std=False, return_cov=False, latent=False):
        """Predict with the trained infinite network, optionally with uncertainty.

        The kernel between ``X`` and the training rows is computed in blocks
        within ``working_memory``, so ``X`` can have many more rows than fit
        in memory as one ``n_test x n_train`` matrix.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples; also a ``numpy.memmap`` (read block by block) or a dask
            array chunked by rows, for which the prediction is a lazy dask
            array with the same row chunks.

        return_std : bool, default=False
            Also return the standard deviation of the predictive distribution
            at each sample (of a new observation ``y``, or of the function
            with ``latent=True``), in the units of ``y``; see Notes.
            Only the variances are computed (never the ``n_test x n_test``
            covariance), over blocks of at least ``n_train`` rows. Needs
            the exact solver (``ValueError`` after a Nystrom fit).

        return_cov : bool, default=False
            Also return the covariance of the predictive distribution between
            the samples (with ``latent=False`` the observation noise adds
            ``output_scale_ * alpha_`` to its diagonal). At most one of
            ``return_std`` and ``return_cov``. It is
            computed in place in the ``n_samples x n_samples`` output, by row
            blocks within ``working_memory`` (and at most an eighth of the
            output): the memory is the output plus a few
            ``n_samples x n_train`` matrices and one block, about 1.3 times
            the output for 5,000 samples and 200 training rows. With
            several targets the output holds one scaled covariance per
            target and one more ``n_samples x n_samples`` copy is held.

        latent : bool, default=False
            What ``return_std`` and ``return_cov`` describe. ``False``: the
            predictive distribution of a new target value ``y`` at ``X``
            (the function's uncertainty plus the observation noise), whose
            intervals are meant to cover new observations. ``True``: the
            latent function ``f(X)`` alone (no noise), for the uncertainty
            of the mean. Both are scaled by ``output_scale_``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predicted values (float64).

        y_std : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Standard deviations, per target (each target has its own
            ``output_scale_``). Only when ``return_std=True``.

        y_cov : ndarray of shape (n_samples, n_samples) or \
                (n_samples, n_samples, n_targets)
            Covariance, per target. Only when ``return_cov=True``.
        """
        check_is_fitted(self)
        if return_std and return_cov:
            raise ValueError(
                "At most one of return_std or return_cov can be requested."
            )
        if return_std or return_cov:
            self._check_exact("return_std or return_cov")
        if is_dask(X):
            if return_std or return_cov:
                raise ValueError(
                    "return_std and return_cov take NumPy or CuPy input, not "
                    "dask arrays."
                )
            return self._dask_kernel_dot(X) + self.intercept_
        X = validate_data(
            self, X, accept_sparse=ACCEPT_SPARSE, dtype=np.float64, reset=False
        )
        if not (return_std or return_cov):
            return self._kernel_dot(X) + self.intercept_
        mean, cov = self._mean_and_uncertainty(X, full=return_cov)
        mean += self.intercept_
        noise = 0.0 if latent else self.alpha_
        scale = np.atleast_1d(self.output_scale_)
        if return_std:
            var = np.maximum(cov, 0.0) + noise
            spread = np.sqrt(var[:, None] * scale[None, :])
            return mean, spread if self.y_fit_.ndim == 2 else spread[:, 0]
        cov[np.diag_indices(cov.shape[0])] += noise
        if self.y_fit_.ndim == 2 and scale.size > 1:
            # one scaled copy per target: the output, plus ``cov``
            return mean, cov[:, :, None] * scale[None, None, :]
        cov *= scale[0]  # in place: no copy
        return mean, cov[:, :, None] if self.y_fit_.ndim == 2 else cov

    @mirrors_input
    def predict_trajectory(self, X, times):
        """Predict with the network trained for each of the given times.

        One eigendecomposition of the training kernel serves every time, and
        the test kernel is streamed once for all of them, so a learning curve
        over hundreds of times costs about one fit and one prediction.
        ``t`` of the estimator plays no role here: the model at time
        ``times[i]`` is that of ``set_params(t=times[i]).fit(...)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        times : array-like of shape (n_times,)
            Training times ``>= 0``, with the learning rate folded in as for
            ``t``; ``inf`` gives the converged model.

        Returns
        -------
        y_pred : ndarray of shape (n_times, n_samples) or \
                (n_times, n_samples, n_targets)
            ``y_pred[i]`` is the prediction after training for ``times[i]``.

        Notes
        -----
        The training kernel is recomputed (or loaded from ``memory``) and
        decomposed at each call: O(n^3) time and about three ``n x n``
        matrices of memory, which the fitted model does not keep. It needs
        the exact solver: after a Nystrom fit it raises ``ValueError``.
        """
        check_is_fitted(self)
        self._check_exact("predict_trajectory")
        X = validate_data(
            self, X, accept_sparse=ACCEPT_SPARSE, dtype=np.float64, reset=False
        )
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or times.size == 0:
            raise ValueError(
                "times must be a non-empty 1-D array-like of training times, "
                f"got shape {times.shape}."
            )
        if np.any(np.isnan(times)) or np.any(times < 0):
            raise ValueError(f"times must be >= 0 (inf allowed), got {times!r}.")
        n = self.X_fit_.shape[0]
        asarray, device = self._device_converter(n * n)
        K = self._kernel_blocks(asarray(self.X_fit_), None, (self.kernel,), device)
        # the flow runs on the standardized targets (normalize_y): the model
        # starts at intercept_ (t=0) and moves by f_t(z) * scale
        z = (self.y_fit_ - self.intercept_) / self._y_scale
        duals = gradient_flow_dual_coef(
            K[self.kernel],
            asarray(z),
            times,
            ridge=self.alpha_,
            learning_rate=time_scale(self._fit_sample_weight),
            sample_weight=self._fit_weight(asarray),
        )
        del K
        # (n_times, n, ...) -> (n, n_times * n_targets): one pass over K(X, X_fit_)
        coef = np.moveaxis(to_numpy(duals) * self._y_scale, 0, 1).reshape(n, -1)
        out = self._kernel_dot(X, coef)
        out = out.reshape((X.shape[0], times.size) + self.y_fit_.shape[1:])
        return np.ascontiguousarray(np.moveaxis(out, 1, 0)) + self.intercept_

    # -- uncertainty -----------------------------------------------------------
    def _prior(self):
        """``(prior, readout_only)`` of the latent covariance.

        ``prior`` is the kernel of the Gaussian process the covariance comes
        from; ``readout_only`` is True when the trained kernel is that prior
        itself (the GP posterior, or its finite-``t`` ensemble), False for the
        NTK ensemble of networks initialised from the NNGP prior.
        """
        if self.uncertainty == "gp" or self.kernel == "nngp":
            return self.kernel, True
        return "nngp", False

    def _covariance_in_place(self, Kss, test, K, eigh, sw, n_targets):
        """The ``n_test x n_test`` covariance, written over the prior ``Kss``.

        The same covariances as :func:`~sknetk.dynamics.gp_posterior` and
        :func:`~sknetk.dynamics.ensemble_covariance`, written as
        ``Kss - sum(L @ R.T)`` with ``n_test x n_train`` factors ``L`` and
        ``R``, and subtracted from ``Kss`` by row blocks within
        ``working_memory``. The memory is then the output itself, a few
        ``n_test x n_train`` factors and one block, instead of four
        ``n_test x n_test`` temporaries.
        """
        xp, evals, U = eigen_basis(eigh, sw)
        ridge, t = self.alpha_, self._flow_time()
        prior, readout_only = self._prior()
        if readout_only and t is None:
            # K** - K* U g U^T K*^T  (g = 1 / (a + ridge))
            filters, _, _ = flow_filters(xp, evals, [math.inf], ridge, 1.0, 1)
            KsU = test[prior] @ U
            pairs = [(KsU * filters[0, :][None, :], KsU)]
        else:
            # K** - P K*^T - K* P^T + P K P^T with P = Theta* U g U^T:
            # with PV = Theta* U g, KsU = K* U and D = KsU - PV (U^T K U),
            # it is K** - PV KsU^T - D PV^T.
            n = U.shape[0]
            filters, _, _ = flow_filters(
                xp,
                evals,
                [math.inf if t is None else t],
                ridge,
                time_scale(self._fit_sample_weight),
                max(n * n_targets, 1),
            )
            PV = (test[self.kernel] @ U) * filters[0, :][None, :]
            KsU = test[prior] @ U
            D = KsU - PV @ (U.T @ (K @ U))
            pairs = [(PV, KsU), (D, PV)]
        if is_numpy_namespace(xp):
            # a kernel from ``memory`` is read-only (never written): copied
            Kss = np.require(Kss, dtype=np.float64, requirements=["W"])
        # Blocks within working_memory and at most about 1/8 of the output
        # (but at least 256 rows, for efficient products).
        m = Kss.shape[0]
        budget = budget_bytes(self.working_memory)
        cap = max(256, -(-m // 8))
        rows = max(1, min(cap, int(budget // (8 * max(m, 1)))))
        _subtract_products(Kss, pairs, rows)
        size = max(1, min(cap, int(math.sqrt(budget / 16))))
        return _symmetrize_in_place(Kss, size)

    def _fit_weight(self, asarray):
        w = self._fit_sample_weight
        return None if w is None else asarray(w)

    def _mean_and_uncertainty(self, X, full):
        """Mean and latent covariance (``full``) or variances, as NumPy arrays.

        The covariance is in the prior's units (``output_scale_`` is applied
        by :meth:`predict`). The training side (kernels and one
        eigendecomposition) is computed once; the test rows then go through
        in blocks (variances) or at once (covariance, computed in place by
        :meth:`_covariance_in_place`).
        """
        n = self.X_fit_.shape[0]
        asarray, device = self._device_converter(n * n)
        X_fit = asarray(self.X_fit_)
        sw = self._fit_weight(asarray)
        ridge = self.alpha_
        t = self._flow_time()
        n_targets = 1 if self.y_fit_.ndim == 1 else self.y_fit_.shape[1]
        prior, readout_only = self._prior()
        names = tuple(dict.fromkeys((prior, self.kernel)))
        train = self._kernel_blocks(X_fit, None, names, device)
        K = train[prior]
        eigh = kernel_eigh(train[self.kernel], sw)
        del train
        if readout_only and t is not None:
            # neural-tangents' readout-only covariance at time t is
            # K** - K* V diag((1 - exp(-2 a t / N)) / a) V^T K*^T: the ensemble
            # covariance of ``ensemble_covariance`` with the prior on the
            # training rows plus the observation noise (alpha_ / w_i).
            K = _add_noise(K, ridge, self._fit_sample_weight)
        dual = asarray(self.dual_coef_)
        prior_params = self._params_for(prior)
        prior_diag = ntk_diag if prior == "ntk" else nngp_diag

        def block(Xb):
            Xb = asarray(Xb)
            test = self._kernel_blocks(Xb, X_fit, names, device)
            if full:
                # the n_test x n_test prior is the output's buffer: the
                # covariance is subtracted from it in place, by row blocks
                Kss = self._kernel_blocks(Xb, None, (prior,), device)[prior]
                mean = test[self.kernel] @ dual
                cov = self._covariance_in_place(Kss, test, K, eigh, sw, n_targets)
                return check_finite_prediction(to_numpy(mean)), to_numpy(cov)
            Kss = prior_diag(Xb, **prior_params)
            mean = test[self.kernel] @ dual
            if readout_only and t is None:
                _, cov = gp_posterior(
                    None, test[prior], Kss, None, ridge, sample_weight=sw, eigh=eigh
                )
            else:
                cov = ensemble_covariance(
                    K,
                    test[prior],
                    Kss,
                    ntk_test_train=None if readout_only else test["ntk"],
                    t=math.inf if t is None else t,
                    ridge=ridge,
                    learning_rate=time_scale(self._fit_sample_weight),
                    n_targets=n_targets,
                    sample_weight=sw,
                    eigh=eigh,
                )
            return (
                check_finite_prediction(to_numpy(mean)),
                check_finite_prediction(to_numpy(cov)),
            )

        if full:
            return block(densify(X))
        # Blocks of at least n rows: each block costs O(n^2) per row plus, for
        # the ensemble covariance, O(n^3) once, so the total stays within a
        # small factor of one block's work.
        budget = (self.working_memory or get_config()["working_memory"]) * 2**20
        rows = max(n, int(budget // (8 * 6 * max(n, 1))), 1)
        if sp.issparse(X):
            X = X.tocsr()
        parts = []
        for start in range(0, X.shape[0], rows):
            Xb = X[start : start + rows]
            parts.append(block(Xb.toarray() if sp.issparse(Xb) else Xb))
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts))


def _subtract_products(C, pairs, rows):
    """``C -= sum(L @ R.T for L, R in pairs)`` in place, ``rows`` rows at a time.

    Each row block of ``C`` is checked for NaN and infinity as it is done.
    The temporaries are one ``rows x m`` product at a time.
    """
    xp = get_namespace(C)
    m = C.shape[0]
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        for left, right in pairs:
            C[start:stop, :] -= left[start:stop, :] @ right.T
        if not bool(xp.all(xp.isfinite(C[start:stop, :]))):
            check_finite_prediction(to_numpy(C[start:stop, :]))  # raises
    return C


def _symmetrize_in_place(C, size):
    """``C = (C + C.T) / 2`` in place, over ``size x size`` blocks.

    The products of :func:`_subtract_products` are symmetric up to rounding
    only; the returned covariance is exactly symmetric.
    """
    m = C.shape[0]
    for i in range(0, m, size):
        rows = slice(i, min(i + size, m))
        for j in range(i, m, size):
            cols = slice(j, min(j + size, m))
            mean = (C[rows, cols] + C[cols, rows].T) * 0.5
            C[rows, cols] = mean
            C[cols, rows] = mean.T
    return C


def _add_noise(K, ridge, sample_weight):
    """``K + ridge * diag(1 / w)`` over the rows of positive weight.

    Zero-weight rows keep ``K``'s diagonal: the weighted decomposition gives
    them no weight, so their entries do not enter the covariance.
    """
    n = K.shape[0]
    if sample_weight is None:
        noise = np.full(n, ridge)
    else:
        positive = sample_weight > 0
        noise = np.where(positive, ridge / np.where(positive, sample_weight, 1.0), 0.0)
    xp = get_namespace(K)
    if is_numpy_namespace(xp):
        K = np.require(K, requirements=["W"])  # a kernel from ``memory``: copied
        K[np.diag_indices(n)] += noise
        return K
    eye = xp.eye(n, dtype=K.dtype, device=array_device(K))
    return K + eye * xp.asarray(noise, device=array_device(K))[None, :]


def _target_moments(y, sample_weight, normalize):
    """``(mean, scale)`` of the targets per column (``normalize_y``).

    The (weighted) mean and standard deviation, as ``GaussianProcessRegressor``
    with ``normalize_y=True`` (which has no weights); a constant target (a
    deviation within rounding of its magnitude) keeps the scale 1. Without
    ``normalize``: ``(0.0, 1.0)``.
    """
    if not normalize:
        return 0.0, 1.0
    w = sample_weight
    if w is not None and not np.sum(w) > 0:
        w = None
    mean = np.average(y, axis=0, weights=w)
    std = np.sqrt(np.average((y - mean) ** 2, axis=0, weights=w))
    tiny = 16 * np.finfo(np.float64).eps * np.max(np.abs(y), axis=0, initial=0.0)
    scale = np.where(std > tiny, std, 1.0)
    if y.ndim == 1:
        return float(mean), float(scale)
    return mean, scale


def _per_target(value, y):
    """``value`` as a float (1-D ``y``) or an array of one value per target."""
    if y.ndim == 1:
        return float(np.asarray(value).reshape(-1)[0])
    return np.broadcast_to(np.asarray(value, dtype=np.float64), y.shape[1:]).copy()
