"""Model selection without refitting: :class:`NTKRegressorCV`, :class:`NTKClassifierCV`.

Every depth's kernel comes from one pass of the layer recursion
(``all_depths=True``), each depth's kernel is eigendecomposed once,
``K = Q diag(L) Q^T``, and then every ridge costs O(n^2): with
``G = Q diag(1 / (L + alpha)) Q^T`` the dual coefficients are ``c = G y`` and
the exact leave-one-out residuals are ``c / diag(G)`` (the identity behind
``RidgeCV``). With an explicit ``cv`` splitter the full kernel is still
computed once per depth; each fold's blocks are sliced out of it and
decomposed once per fold.

``cv="evidence"`` scores the same candidates by the exact log marginal
likelihood of the Gaussian process ``y ~ N(0, s2 (K + alpha W^-1))`` from the
same eigendecompositions (``O(n)`` per ridge and target), with the output
scale ``s2`` profiled out in closed form. Above ``max_search_samples`` rows
the search runs on a random subset and only the final model sees every row.
The chosen model is refitted once on all rows as ``best_estimator_`` (an
:class:`~sknetk.NTKRegressor` or :class:`~sknetk.NTKClassifier`), which
predicts.
"""

import copy
import warnings
from dataclasses import KW_ONLY
from numbers import Integral

import numpy as np
from scipy.stats import rankdata
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MultiOutputMixin,
    RegressorMixin,
    _fit_context,
)
from sklearn.metrics import accuracy_score, check_scoring, r2_score
from sklearn.model_selection import ParameterGrid, check_cv, train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._array_api import device as _device_of
from ._array_api import get_namespace, is_numpy_namespace, to_numpy
from ._base import (
    ACCEPT_SPARSE,
    check_fit_sample_weight,
    check_regression_targets,
    check_weighted_classes,
    densify,
    mirrors_input,
)
from ._calibration import fit_temperature, loo_predictions
from ._classification import NTKClassifier
from ._linalg import inverse_filter, spectral_cutoff
from ._params import (
    NETWORK,
    constraints,
    estimator_dataclass,
    fill_doc,
    param_fields,
)
from ._progress import progress
from ._regression import NTKRegressor
from ._solvers import Ridge
from .dynamics import kernel_eigh
from .exceptions import GridEdgeWarning

__all__ = ["DEFAULT_ALPHAS", "NTKRegressorCV", "NTKClassifierCV"]

#: Default ``alphas`` of the CV estimators: 15 ridges relative to the
#: kernel's mean diagonal (``alpha_scale="mean_diag"``), half a decade apart
#: from 1e-5 to 100 (each costs ``O(n^2)`` in the leave-one-out search and
#: ``O(n)`` with ``cv="evidence"``, next to one ``O(n^3)`` decomposition per
#: depth).
DEFAULT_ALPHAS = (
    1e-5,
    3e-5,
    1e-4,
    3e-4,
    1e-3,
    3e-3,
    0.01,
    0.03,
    0.1,
    0.3,
    1.0,
    3.0,
    10.0,
)


#: Settings of the search that ``best_estimator_`` predicts with as they are
#: at prediction time (``set_params`` after the fit takes effect).
_RUN_SETTINGS = ("device", "working_memory", "n_jobs")

#: The network parameters a search takes a list of (searched: one kernel pass
#: per value) or a single value (fixed), with the type of a single value.
_SEARCHABLE = {"activation": str, "frozen_layers": Integral}


# ---------------------------------------------------------------------------
# Pure building blocks
# ---------------------------------------------------------------------------
_loo_predictions = loo_predictions  # former name (tests, benchmarks)


def _log_evidence(evals, z, ridge, log_weights):
    """Profiled log marginal likelihood of each target, and its output scale.

    The model is ``y ~ N(0, s2 (K + ridge W^-1))``; with
    ``W^1/2 K W^1/2 = V diag(evals) V^T`` and ``z = V^T W^1/2 y`` (one column
    per target), the maximum over ``s2`` is at ``s2 = q / n`` with
    ``q = sum(z^2 / (evals + ridge))``, where the log likelihood is
    ``-n/2 (log(2 pi s2) + 1) - 1/2 sum(log(evals + ridge)) + 1/2 sum(log w)``.
    Eigenvalues below the spectral cut-off count at the cut-off (a kernel
    that is singular to rounding with no ridge).

    Returns
    -------
    log_ml : array of shape (n_targets,)
    scale : array of shape (n_targets,)
        The profiled ``s2``.
    """
    xp = get_namespace(evals, z)
    n = evals.shape[0]
    a = evals + ridge
    floor = max(spectral_cutoff(xp, a), float(np.finfo(np.float64).tiny))
    a = xp.where(a > floor, a, xp.full_like(a, floor))
    quad = xp.sum(z * z / a[:, None], axis=0)
    scale = to_numpy(quad) / n
    scale = np.maximum(scale, np.finfo(np.float64).tiny)
    log_det = float(xp.sum(xp.log(a)))
    log_ml = -0.5 * n * (np.log(2 * np.pi * scale) + 1.0) - 0.5 * log_det
    return log_ml + 0.5 * log_weights, scale


def _take2(xp, K, rows, cols):
    """``K[rows][:, cols]`` for any namespace (``rows``/``cols`` NumPy ints)."""
    if is_numpy_namespace(xp):
        return K[np.ix_(rows, cols)]
    dev_rows = xp.asarray(rows)
    dev_cols = xp.asarray(cols)
    return xp.take(xp.take(K, dev_rows, axis=0), dev_cols, axis=1)


class _IdentityRegressor(RegressorMixin, BaseEstimator):
    """Scorer adaptor: ``predict`` returns its input (the CV predictions)."""

    def predict(self, y_predict):
        return y_predict


class _IdentityClassifier(ClassifierMixin, BaseEstimator):
    """Scorer adaptor: decision values in, classes (or probabilities) out.

    ``predict_proba`` is the temperature calibration of the final model
    (:func:`~sknetk._calibration.fit_temperature`), fitted on the scored
    decision values and ``calibration`` = ``(Y, sample_weight)``: one
    parameter, fitted on the held-out values it scores.
    """

    def __init__(self, classes, calibration=None):
        self.classes = classes
        self.calibration = calibration

    def __sklearn_is_fitted__(self):
        return True

    @property
    def classes_(self):
        return self.classes

    def decision_function(self, y_predict):
        return y_predict

    def predict(self, y_predict):
        if y_predict.ndim == 1:
            return self.classes[(y_predict > 0).astype(int)]
        return self.classes[np.argmax(y_predict, axis=1)]

    def predict_proba(self, y_predict):
        Y, sample_weight = self.calibration
        return fit_temperature(y_predict, Y, sample_weight).predict_proba(y_predict)


def _as_list(value, scalar_types):
    """``(values, searched)``: a scalar is fixed, a sequence is searched."""
    if isinstance(value, scalar_types):
        return [value], False
    return list(value), True


# ---------------------------------------------------------------------------
# The shared search
# ---------------------------------------------------------------------------
#: The parameters of both search estimators, in their signatures' order.
_SHARED = (
    ("alphas", "depths", "kernel")
    + NETWORK[1:]
    + ("alpha_scale", "cv", "scoring", "max_search_samples", "random_state")
    + ("device", "working_memory", "n_jobs", "verbose")
)


def _insert_doc(cls, **fmt):
    """Fill ``cls``'s ``{shared_params}`` line from :mod:`sknetk._params`."""
    fill = fill_doc(_SHARED, "cv", blank_lines=True, placeholder="shared_params", **fmt)
    return fill(cls)


_RESULTS_DOC = """
    cv_results_ : dict of ndarrays
        One entry per candidate, in ``ParameterGrid`` order (the ``depth``
        varies fastest after ``alpha``): ``"params"`` (list of dicts),
        ``"param_<name>"``, ``"mean_test_score"`` and ``"rank_test_score"``;
        with a ``cv`` splitter also ``"split<k>_test_score"`` and
        ``"std_test_score"``, as in ``GridSearchCV``. With
        ``cv="evidence"`` the score is the log marginal likelihood (summed
        over the targets).

    best_index_ : int
        Index of the best candidate (the first of the top scores).

    best_params_ : dict
        Parameters of the best candidate.

    best_score_ : float
        Its mean cross-validated score (or log marginal likelihood).

    best_estimator_ : {best_class}
        The model with the chosen parameters, fitted on all rows; it makes
        the predictions.

    alpha_ : float
        The ridge added to the kernel's diagonal in the final fit (the chosen
        alpha, times the mean diagonal with ``alpha_scale="mean_diag"``), as
        ``best_estimator_.alpha_`` and ``KernelRidge``'s ``alpha``.

        .. versionchanged:: 0.1.0
           ``alpha_`` was the chosen entry of ``alphas``, now
           ``alpha_relative_``.

    alpha_relative_ : float
        The chosen entry of ``alphas``, in the units of ``alpha_scale``
        (relative to the mean diagonal by default).

    ridge_ : float
        Deprecated alias of ``alpha_`` (a ``FutureWarning``); removed in 0.2.0.

    depth_ : int
        Chosen number of hidden layers.

    activation_ : str
        Chosen activation.

    frozen_layers_ : int
        Chosen number of frozen leading layers.

    output_scale_ : ndarray of shape (n_targets,)
        With ``cv="evidence"``: the maximum-likelihood output scale ``s2``
        of each target on the searched rows (normalised targets with
        ``normalize_y``); absent otherwise.

    search_indices_ : ndarray of shape (n_search,) or None
        Rows the search ran on (``None``: all rows).

    dual_coef_ : ndarray of shape {coef_shape}
        ``best_estimator_.dual_coef_``.

    X_fit_ : ndarray of shape (n_samples, n_features)
        ``best_estimator_.X_fit_``.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings."""


def _weighted_mean(xp, Y, sw):
    """Column means of ``Y`` (weighted by ``sw``; plain when all are zero)."""
    if sw is None or not bool(xp.sum(sw) > 0):
        return xp.mean(Y, axis=0)
    return xp.sum(sw[:, None] * Y, axis=0) / xp.sum(sw)


def _loo_mean_shift(xp, Y, sw):
    """Row ``i``: the (weighted) mean of ``Y`` without row ``i``, the
    centring of the model refitted without it (0 where no row would remain)."""
    w = xp.ones(Y.shape[0], dtype=Y.dtype, device=_device_of(Y)) if sw is None else sw
    total = xp.sum(w[:, None] * Y, axis=0)
    rest = xp.sum(w) - w
    safe = xp.where(rest > 0, rest, xp.ones_like(rest))
    shift = (total[None, :] - w[:, None] * Y) / safe[:, None]
    return xp.where((rest > 0)[:, None], shift, xp.zeros_like(shift))


def _target_moments(Y, sample_weight):
    """Weighted mean and standard deviation per column (scale 1 if constant)."""
    w = (
        sample_weight
        if sample_weight is not None and np.sum(sample_weight) > 0
        else None
    )
    mean = np.average(Y, axis=0, weights=w)
    std = np.sqrt(np.average((Y - mean) ** 2, axis=0, weights=w))
    tiny = 16 * np.finfo(np.float64).eps * np.max(np.abs(Y), axis=0, initial=0.0)
    return mean, np.where(std > tiny, std, 1.0)


@estimator_dataclass
class _BaseNTKCV(BaseEstimator, param_fields("SearchParams", _SHARED[2:], "cv")):
    """Shared search over the network's parameters, its depth and alpha.

    The parameters of ``_SHARED`` are dataclass fields: ``alphas`` and
    ``depths`` here (positional), the others from the table
    (:func:`~sknetk._params.param_fields`); the subclasses add their own
    keyword-only ones.
    """

    _parameter_constraints = constraints(_SHARED, "cv")

    alphas: tuple = DEFAULT_ALPHAS
    depths: tuple = (1, 2, 3, 4, 5)

    # -- the model the search stands for ---------------------------------------
    def _model(self, **params):
        """An unfitted plain model (``_model_class``) with ``params``.

        Every parameter the search shares with :class:`~sknetk.NTKRegressor`
        or :class:`~sknetk.NTKClassifier` (the network, ``alpha_scale``,
        ``device``, ``working_memory``, ``n_jobs``, ``verbose``,
        ``random_state``, ``normalize_y``) is passed on as it is set now;
        ``params`` (a candidate of the grid) override them. The exact solver
        is used: the search has the kernels in memory anyway.
        """
        names = self._model_class().get_params(deep=False)
        shared = {
            name: value
            for name, value in self.get_params(deep=False).items()
            if name in names
        }
        return self._model_class(**{**shared, "solver": "cholesky", **params})

    def _search_context(self, n_rows):
        """The execution context of a search on ``n_rows`` rows.

        Resolved by the plain model (the one reader of ``device``), as for
        its own fit on an ``n_rows x n_rows`` kernel.
        """
        return self._model()._context(n_rows * n_rows)

    def _to_device(self, X):
        """``X`` where the search computes: a CuPy array on the GPU."""
        cupy = self._search_context(X.shape[0]).cupy
        return X if cupy is None else cupy.asarray(X)

    # -- the grid -------------------------------------------------------------
    def _grid(self):
        """Validated candidates (list of dicts) and the fixed values.

        A candidate holds ``alpha``, ``depth`` and the searched network
        parameters (those given as lists); ``fixed`` the network parameters
        that are not searched. ``self._model(**fixed, **candidate)`` is the
        candidate's model.
        """
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0:
            raise ValueError(
                f"alphas must be a non-empty 1-D list, got {self.alphas!r}."
            )
        if not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"alphas must be finite and > 0, got {self.alphas!r}.")
        grid = {"alpha": [float(a) for a in alphas]}
        grid["depth"], _ = self._values("depths", "depth", Integral)
        fixed = {}
        for name, scalar in _SEARCHABLE.items():
            values, searched = self._values(name, name, scalar)
            (grid if searched else fixed)[name] = values if searched else values[0]
        # a network of depth d has at most d layers to freeze
        candidates = [
            p
            for p in ParameterGrid(grid)
            if {**fixed, **p}["frozen_layers"] <= p["depth"]
        ]
        if not candidates:
            raise ValueError(
                f"Every frozen_layers value ({self.frozen_layers!r}) exceeds every "
                f"depth ({self.depths!r}); nothing would be trained."
            )
        for network, by_depth in _networks(candidates).items():
            # fail early on bad kernel parameters, before any kernel
            model = self._model(**fixed, **dict(network), depth=max(by_depth))
            model._check_kernel_params()
        return candidates, fixed

    def _values(self, name, param, scalar):
        """``(values, searched)`` of the search's parameter ``name``.

        A ``scalar`` is fixed, a list is searched; each value must be one that
        the plain model takes for its parameter ``param`` (its constraints,
        from :mod:`sknetk._params`).
        """
        value = getattr(self, name)
        values, searched = _as_list(value, scalar)
        try:
            if not values:
                raise ValueError("The list is empty.")
            for v in values:
                if isinstance(v, bool):
                    raise ValueError(f"{v!r} is a bool.")
                validate_parameter_constraints(
                    constraints([param], "estimator"),
                    {param: v},
                    caller_name=self._model_class.__name__,
                )
        except ValueError as exc:  # InvalidParameterError included
            raise ValueError(
                f"{name} must be one of the values {self._model_class.__name__} "
                f"takes for {param}, or a non-empty list of them; got {value!r}. "
                f"{exc}"
            ) from None
        return values, searched

    def _depth_kernels(self, X, candidates, fixed, context, desc=None):
        """Yield ``(depth, indices, K)``: each candidate depth's training kernel.

        Each network's kernels of every depth (:func:`_networks`) come from
        one pass of the recursion, up to its largest depth, computed where
        ``context`` says (``X`` is already there). ``indices`` are the
        candidates with that network and depth. ``desc``: a progress bar over
        the depths.
        """
        for network, by_depth in _networks(candidates).items():
            model = self._model(**fixed, **dict(network), depth=max(by_depth))
            stack = model._kernel().matrix(X, context, all_depths=True)
            verbose = self.verbose if desc else 0
            for depth, indices in progress(
                list(by_depth.items()), desc=desc, verbose=verbose
            ):
                yield depth, indices, stack[depth - 1, ...]
            del stack

    # -- fit ------------------------------------------------------------------
    def _search_rows(self, n, y_true):
        """Indices of the rows searched on (None: all of them)."""
        m = self.max_search_samples
        if m is None or n <= m:
            return None
        rng = check_random_state(self.random_state)
        rows = np.arange(n)
        if self._is_classifier:
            try:
                rows, _ = train_test_split(
                    rows, train_size=m, stratify=y_true, random_state=rng
                )
            except ValueError:  # a class too small to stratify
                rows = rng.choice(n, m, replace=False)
        else:
            rows = rng.choice(n, m, replace=False)
        return np.sort(rows)

    def _search(self, X, Y, y_true, sample_weight, groups=None):
        """Score every candidate on the searched rows and record the best.

        ``Y`` holds the float regression targets (n, n_targets), normalised
        when the regressor's ``normalize_y`` is on; ``y_true`` is what scoring
        compares against (the targets, or the labels); ``groups`` goes to the
        splitter. Returns the chosen model, unfitted.
        """
        candidates, fixed = self._grid()
        evidence = isinstance(self.cv, str) and self.cv == "evidence"
        if evidence and self.scoring is not None:
            raise ValueError(
                'cv="evidence" ranks the candidates by their marginal likelihood; '
                f"scoring must be None, got scoring={self.scoring!r}."
            )
        rows = self._search_rows(X.shape[0], y_true)
        self.search_indices_ = rows
        Xs, Ys, ys_true, sws = X, Y, y_true, sample_weight
        if rows is not None:
            Xs, Ys, ys_true = X[rows], Y[rows], y_true[rows]
            sws = None if sample_weight is None else sample_weight[rows]
            groups = None if groups is None else np.asarray(groups)[rows]
        context = self._search_context(Xs.shape[0])
        Xd = self._to_device(Xs)
        xp = get_namespace(Xd)
        Yd, sw = Ys, sws
        if not is_numpy_namespace(xp):
            Yd = xp.asarray(Ys)
            sw = None if sws is None else xp.asarray(sws)

        def kernels(X, desc=None):
            return self._depth_kernels(X, candidates, fixed, context, desc)

        split_scores, n_splits = None, 0
        if evidence:
            scores, scales = self._search_evidence(kernels, Xd, Yd, sw, candidates)
        elif self.cv is None:
            loo_kernels = kernels(Xd, "leave-one-out over depths")
            scores = self._search_loo(loo_kernels, Yd, ys_true, sw, sws, candidates)
        else:
            cv = check_cv(self.cv, ys_true, classifier=self._is_classifier)
            splits = list(cv.split(Xs, ys_true, groups))
            _check_split_weights(splits, sws)
            n_splits = len(splits)
            split_scores = self._search_splits(
                kernels(Xd), Yd, ys_true, sw, sws, candidates, splits
            )
            scores = np.mean(split_scores, axis=1)

        ranking_scores = np.where(np.isfinite(scores), scores, -np.inf)
        rank = rankdata(-ranking_scores, method="min").astype(np.int32)
        best = int(np.argmin(rank))
        params = candidates[best]
        self.best_index_ = best
        self.best_params_ = dict(params)
        self.best_score_ = float(scores[best])
        self.alpha_relative_ = params["alpha"]
        self.depth_ = params["depth"]
        chosen = {**fixed, **params}
        for name in _SEARCHABLE:  # activation_, frozen_layers_
            setattr(self, f"{name}_", chosen[name])
        if evidence:
            self.output_scale_ = scales[best]
        elif hasattr(self, "output_scale_"):
            del self.output_scale_
        results = {"params": candidates}
        for name in candidates[0]:
            results[f"param_{name}"] = np.asarray([p[name] for p in candidates])
        for k in range(n_splits):
            results[f"split{k}_test_score"] = split_scores[:, k]
        results["mean_test_score"] = scores
        if n_splits:
            results["std_test_score"] = np.std(split_scores, axis=1)
        results["rank_test_score"] = rank
        self.cv_results_ = results
        self._warn_at_grid_edge()
        return self._model(**chosen)

    def _warn_at_grid_edge(self):
        alphas = np.unique(np.asarray(self.alphas, dtype=np.float64).ravel())
        if alphas.size < 2 or self.alpha_relative_ not in (alphas[0], alphas[-1]):
            return
        end = "smallest" if self.alpha_relative_ == alphas[0] else "largest"
        warnings.warn(
            f"{type(self).__name__} chose alpha={self.alpha_relative_:g}, the "
            f"{end} of alphas (alpha_scale={self.alpha_scale!r}): the best "
            "ridge may lie beyond the grid. Extend alphas past that end.",
            GridEdgeWarning,
            stacklevel=6,  # the user's fit (_search, fit, mirrors_input, _fit_context)
        )

    def _finish(self, best, X, y, sample_weight):
        """Fit ``best`` on all rows and expose its solution."""
        best.fit(X, y, sample_weight=sample_weight)
        self.best_estimator_ = best
        self.alpha_ = best.alpha_
        self.X_fit_ = best.X_fit_
        self.dual_coef_ = best.dual_coef_
        return self

    @property
    def ridge_(self):
        """Deprecated: the ridge added to the diagonal, now ``alpha_``."""
        check_is_fitted(self, "alpha_")
        warnings.warn(
            "ridge_ is deprecated in 0.1.0 and will be removed in 0.2.0: alpha_ is "
            "now the ridge added to the diagonal (the chosen entry of alphas is "
            "alpha_relative_).",
            FutureWarning,
            stacklevel=2,
        )
        return self.alpha_

    def _ridge(self, alpha, K, sw):
        return Ridge(alpha, self.alpha_scale, sw).value(_diagonal(K))

    def _eigh(self, K, sw, Y):
        """``(evals, U, z)`` of the weighted kernel: ``U = diag(sqrt(w)) V``,
        ``z = U^T Y``."""
        xp = get_namespace(K)
        evals, V = kernel_eigh(K, sw)
        U = V if sw is None else xp.sqrt(sw)[:, None] * V
        return evals, U, U.T @ Y

    def _search_loo(self, kernels, Y, y_true, sw, sample_weight, candidates):
        scores = np.full(len(candidates), np.nan)
        positive = None if sw is None else sw > 0
        recentre = self._centres_targets()
        if recentre:
            xp = get_namespace(Y)
            ones = xp.ones((Y.shape[0], 1), dtype=Y.dtype, device=_device_of(Y))
            shift = _loo_mean_shift(xp, Y, sw)
        for _, indices, K in kernels:
            evals, U, z = self._eigh(K, sw, Y)
            U2 = U * U
            if recentre:
                z1 = U.T @ ones
            for i in indices:
                ridge = self._ridge(candidates[i]["alpha"], K, sw)
                loo, _ = loo_predictions(evals, U, z, Y, ridge, K, positive, U2)
                if recentre:
                    # the model refitted without row i centres its targets by
                    # their mean without row i: by linearity, its prediction
                    # moves by that mean's shift times (1 - the leave-one-out
                    # prediction of a constant 1)
                    loo1, _ = loo_predictions(
                        evals, U, z1, ones, ridge, K, positive, U2
                    )
                    loo = loo + shift * (1.0 - loo1)
                scores[i] = self._score(y_true, to_numpy(loo), sample_weight, loo=True)
        return scores

    def _search_evidence(self, kernels, X, Y, sw, candidates):
        """Log marginal likelihoods (summed over targets) and output scales."""
        xp = get_namespace(X)
        scores = np.full(len(candidates), np.nan)
        scales = [None] * len(candidates)
        if sw is not None:  # a zero weight is infinite noise: drop the row
            positive = to_numpy(sw) > 0
            if not positive.all():
                rows = np.flatnonzero(positive)
                take = rows if is_numpy_namespace(xp) else xp.asarray(rows)
                X, Y, sw = X[take, ...], Y[take, ...], sw[take]
        log_weights = 0.0 if sw is None else float(xp.sum(xp.log(sw)))
        for _, indices, K in kernels(X, "evidence over depths"):
            evals, _, z = self._eigh(K, sw, Y)
            for i in indices:
                ridge = self._ridge(candidates[i]["alpha"], K, sw)
                log_ml, scale = _log_evidence(evals, z, ridge, log_weights)
                scores[i] = float(np.sum(log_ml))
                scales[i] = scale
        return scores, scales

    def _search_splits(self, kernels, Y, y_true, sw, sample_weight, candidates, splits):
        """Scores of every candidate on every split (candidates x splits)."""
        xp = get_namespace(Y)
        split_scores = np.full((len(candidates), len(splits)), np.nan)
        recentre = self._centres_targets()
        for depth, indices, K in kernels:
            for k, (train, test) in progress(
                list(enumerate(splits)),
                desc=f"folds (depth {depth})",
                verbose=self.verbose,
            ):
                K_tr = _take2(xp, K, train, train)
                K_te = _take2(xp, K, test, train)
                dev_train = train if is_numpy_namespace(xp) else xp.asarray(train)
                Y_tr = xp.take(Y, dev_train, axis=0)
                sw_tr = None if sw is None else xp.take(sw, dev_train, axis=0)
                # the model fitted on the fold centres the fold's targets
                offset = _weighted_mean(xp, Y_tr, sw_tr) if recentre else 0.0
                Y_tr = Y_tr - offset
                evals, U, z = self._eigh(K_tr, sw_tr, Y_tr)
                KU = K_te @ U
                w_test = None if sample_weight is None else sample_weight[test]
                for i in indices:
                    ridge = self._ridge(candidates[i]["alpha"], K_tr, sw_tr)
                    g, _ = inverse_filter(xp, evals + ridge)
                    pred = to_numpy(KU @ (g[:, None] * z) + offset)
                    split_scores[i, k] = self._score(
                        y_true[test], pred, w_test, loo=False
                    )
        return split_scores

    def _centres_targets(self):
        """True when the fitted model centres its targets (``normalize_y``)."""
        return not self._is_classifier and bool(getattr(self, "normalize_y", False))

    # -- prediction -----------------------------------------------------------
    def _delegate(self, method, X, **kwargs):
        """``best_estimator_.<method>(X, **kwargs)`` on validated rows.

        ``X`` is validated against the features seen in :meth:`fit` (names
        included); the public methods calling it are wrapped in
        :func:`~sknetk._base.mirrors_input` (CuPy in, CuPy out). The chosen
        model predicts with the search's run settings as they are now
        (``device``, ``working_memory``, ``n_jobs``: e.g. a GPU fit loaded
        on a machine without a GPU, then set to ``device="cpu"``).
        """
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=ACCEPT_SPARSE, dtype=np.float64, reset=False
        )
        best = self.best_estimator_
        params = self.get_params(deep=False)
        run = {name: params[name] for name in _RUN_SETTINGS}
        if any(best.get_params(deep=False)[k] != v for k, v in run.items()):
            best = copy.copy(best)
            best.set_params(**run)
        return getattr(best, method)(X, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _networks(candidates):
    """``{network: {depth: [indices]}}``: the candidates grouped by network.

    A candidate's network is what it sets besides ``alpha`` and ``depth``
    (as a tuple of items); one kernel pass computes every depth of it.
    """
    networks = {}
    for i, params in enumerate(candidates):
        network = tuple(
            (k, v) for k, v in params.items() if k not in ("alpha", "depth")
        )
        by_depth = networks.setdefault(network, {})
        by_depth.setdefault(params["depth"], []).append(i)
    return networks


def _check_split_weights(splits, sample_weight):
    """Refuse a split whose training or test part has no positive weight.

    Such a part can be neither fitted nor scored (a weighted score divides by
    the total weight); say which split it is instead of failing inside a
    metric.
    """
    if sample_weight is None:
        return
    for k, (train, test) in enumerate(splits):
        for part, rows in (("training", train), ("test", test)):
            if not np.any(sample_weight[rows] > 0):
                raise ValueError(
                    f"Split {k} of cv has no {part} sample with a positive "
                    "sample_weight, so it cannot be "
                    f"{'fitted' if part == 'training' else 'scored'}. Use a "
                    "splitter that spreads the weighted samples over the "
                    "folds (e.g. shuffle=True)."
                )


def _diagonal(K):
    xp = get_namespace(K)
    if is_numpy_namespace(xp):
        return np.diagonal(K)
    return xp.linalg.diagonal(K)


def _check_fit_input(estimator, X, y, sample_weight, **kwargs):
    # CuPy input arrives on the host (fit is wrapped in mirrors_input):
    # scikit-learn's validation is NumPy based.
    X, y = validate_data(
        estimator,
        X,
        y,
        accept_sparse=ACCEPT_SPARSE,
        dtype=np.float64,
        copy=True,
        **kwargs,
    )
    X = densify(X)
    sample_weight = check_fit_sample_weight(sample_weight, X)
    return X, y, sample_weight


# ---------------------------------------------------------------------------
# Public estimators
# ---------------------------------------------------------------------------
@estimator_dataclass
class NTKRegressorCV(MultiOutputMixin, RegressorMixin, _BaseNTKCV):
    """NTK regression with its ridge, depth (and more) chosen by cross-validation.

    The counterpart of ``RidgeCV`` for :class:`~sknetk.NTKRegressor`. By
    default it scores every ``(alpha, depth)`` pair by exact leave-one-out
    from one eigendecomposition per depth, with the kernels of all depths
    from one recursion pass, which costs a few plain fits instead of the
    ``n_folds x n_candidates`` fits of
    ``GridSearchCV(NTKRegressor(), ...)``. ``cv="evidence"`` ranks the same
    candidates by their exact marginal likelihood instead. Activations and
    the number of frozen layers can be searched too. The best model is then
    fitted on all rows as ``best_estimator_``, which predicts (with
    uncertainty: ``predict(X, return_std=True)``).

    Read more in the :ref:`User Guide <model_selection>`.

    Parameters
    ----------
    {shared_params}

    normalize_y : bool, default=True
        Standardise the targets (weighted mean and standard deviation) before
        the search and in ``best_estimator_``, as
        :class:`~sknetk.NTKRegressor`'s ``normalize_y``: the model then has an
        intercept and its ridge is relative to the targets' variance.

    Attributes
    ----------
    {results}

    See Also
    --------
    NTKRegressor : One fixed set of hyperparameters.
    NTKClassifierCV : The classification counterpart.
    sklearn.linear_model.RidgeCV : The same leave-one-out identity for linear
        ridge regression.

    Notes
    -----
    For an ``n x n`` kernel ``K = Q diag(L) Q^T`` and ridge ``alpha`` let
    ``G = Q diag(1 / (L + alpha)) Q^T``. The dual coefficients are
    ``c = G y`` and the leave-one-out residual of row ``i`` is
    ``c_i / G_ii``, so after the O(n^3) decomposition each alpha costs
    O(n^2) for all rows at once. The log marginal likelihood of
    ``y ~ N(0, s2 (K + alpha I))`` is, with ``z = Q^T y``,
    ``-n/2 log(2 pi s2) - 1/2 sum(log(L + alpha)) - sum(z^2 / (L + alpha)) /
    (2 s2)``, largest at ``s2 = sum(z^2 / (L + alpha)) / n``: O(n) per alpha.
    Sample weights ``w`` enter as in ``KernelRidge`` (the decomposed matrix
    is ``diag(sqrt(w)) K diag(sqrt(w))``); leaving row ``i`` out removes it
    with its weight, and the default score is the weighted mean squared
    error; for the evidence, a weight divides the row's noise variance. With
    a ``cv`` splitter, the test folds are scored with their sample weights.

    The LOO search holds ``max(depths)`` kernels of ``m x m`` plus the
    eigenvectors at a time (about ``(max(depths) + 3) * 8 m^2`` bytes, ``m``
    the searched rows).

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sknetk._cv import NTKRegressorCV
    >>> X, y = make_friedman1(n_samples=200, random_state=0)
    >>> model = NTKRegressorCV(alphas=[0.001, 0.01, 0.1, 1.0], depths=[1, 2, 3])
    >>> model = model.fit(X[:150], y[:150])
    >>> model.alpha_relative_ in (0.001, 0.01, 0.1, 1.0), model.depth_ in (1, 2, 3)
    (True, True)
    >>> len(model.cv_results_["params"])
    12
    >>> round(model.score(X[150:], y[150:]), 2) > 0.5
    True
    >>> mean, std = model.predict(X[150:], return_std=True)
    >>> bool((std > 0).all())
    True

    The marginal likelihood instead of leave-one-out:

    >>> evidence = NTKRegressorCV(cv="evidence").fit(X[:150], y[:150])
    >>> round(evidence.score(X[150:], y[150:]), 2) > 0.5
    True
    """

    _parameter_constraints = {
        **_BaseNTKCV._parameter_constraints,
        "normalize_y": ["boolean"],
    }
    _is_classifier = False
    _model_class = NTKRegressor

    _: KW_ONLY
    normalize_y: bool = True

    def _score(self, y_true, pred, sample_weight, loo):
        pred = pred.reshape(y_true.shape) * self._y_scale + self._y_mean
        if self.scoring is None:
            if loo:
                sq = (y_true - pred) ** 2
                sq = sq if sq.ndim == 1 else np.mean(sq, axis=1)
                return -float(np.average(sq, weights=sample_weight))
            return float(r2_score(y_true, pred, sample_weight=sample_weight))
        scorer = check_scoring(_IdentityRegressor(), scoring=self.scoring)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return float(scorer(_IdentityRegressor(), pred, y_true, **kwargs))

    @_fit_context(prefer_skip_nested_validation=True)
    @mirrors_input
    def fit(self, X, y, sample_weight=None, groups=None):
        """Search the grid, then fit the best model on all rows.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        sample_weight : float or array-like of shape (n_samples,), default=None
            Non-negative weights.

        groups : array-like of shape (n_samples,), default=None
            Group labels of the samples, for a group splitter such as
            ``GroupKFold`` in ``cv`` (as ``GridSearchCV.fit`` takes them).
            Ignored by the leave-one-out and evidence searches.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y, sample_weight = _check_fit_input(
            self, X, y, sample_weight, multi_output=True
        )
        y = check_regression_targets(y)  # float64, or a message naming y
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if self.normalize_y:
            mean, scale = _target_moments(Y, sample_weight)
        else:
            mean, scale = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        self._y_mean = mean if y.ndim == 2 else mean[0]
        self._y_scale = scale if y.ndim == 2 else scale[0]
        best = self._search(X, (Y - mean) / scale, y, sample_weight, groups)
        return self._finish(best, X, y, sample_weight)

    @mirrors_input
    def predict(self, X, **kwargs):
        """Predict with ``best_estimator_``, optionally with its uncertainty.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        **kwargs : dict
            Passed to :meth:`NTKRegressor.predict <sknetk.NTKRegressor.predict>`
            (``return_std``, ``return_cov`` and the choice between the latent
            and the predictive distribution).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predicted values; with ``return_std`` or ``return_cov``, a tuple
            ``(y_pred, std)`` or ``(y_pred, cov)`` as
            :meth:`NTKRegressor.predict <sknetk.NTKRegressor.predict>`.
        """
        return self._delegate("predict", X, **kwargs)


@estimator_dataclass
class NTKClassifierCV(ClassifierMixin, _BaseNTKCV):
    """NTK classification with its ridge, depth (and more) chosen by CV.

    The counterpart of ``RidgeClassifierCV`` for
    :class:`~sknetk.NTKClassifier`: the labels become one-vs-all targets in
    ``{-1, 1}`` and every candidate is scored by exact leave-one-out on
    those targets (one eigendecomposition per depth, all outputs at once),
    by their marginal likelihood (``cv="evidence"``) or by an explicit
    ``cv`` splitter. The best model is fitted on all rows as
    ``best_estimator_``; its :meth:`predict_proba` is calibrated on its exact
    leave-one-out decision values.

    Read more in the :ref:`User Guide <model_selection>`.

    Parameters
    ----------
    {shared_params}

    class_weight : dict or "balanced", default=None
        Weights of the classes, multiplied into ``sample_weight`` as in
        ``RidgeClassifierCV``. As for :class:`~sknetk.NTKClassifier`, fitting
        needs two classes of positive total weight (``ValueError``) and warns
        about a class of zero total weight.

    Attributes
    ----------
    {results}

    classes_ : ndarray of shape (n_classes,)
        The class labels.

    See Also
    --------
    NTKClassifier : One fixed set of hyperparameters.
    NTKRegressorCV : The regression counterpart (its Notes give the identity).
    sklearn.linear_model.RidgeClassifierCV : The same for linear models.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sknetk._cv import NTKClassifierCV
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> clf = NTKClassifierCV(depths=[1, 2]).fit(X, y)
    >>> clf.classes_
    array([0, 1, 2])
    >>> clf.score(X, y) > 0.9
    True
    >>> proba = clf.predict_proba(X[:1])
    >>> proba.shape, bool(proba[0, 0] > 0.9)
    ((1, 3), True)
    """

    _parameter_constraints = {
        **_BaseNTKCV._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }
    _is_classifier = True
    _model_class = NTKClassifier

    _: KW_ONLY
    class_weight: object = None

    def _score(self, y_true, pred, sample_weight, loo):
        decision = pred[:, 0] if pred.shape[1] == 1 else pred
        Y = self._binarizer.transform(y_true).astype(np.float64)
        identity = _IdentityClassifier(self.classes_, (Y, sample_weight))
        if self.scoring is None:
            if loo:
                sq = np.mean((Y - pred) ** 2, axis=1)
                return -float(np.average(sq, weights=sample_weight))
            return float(
                accuracy_score(
                    y_true, identity.predict(decision), sample_weight=sample_weight
                )
            )
        scorer = check_scoring(identity, scoring=self.scoring)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return float(scorer(identity, decision, y_true, **kwargs))

    @_fit_context(prefer_skip_nested_validation=True)
    @mirrors_input
    def fit(self, X, y, sample_weight=None, groups=None):
        """Search the grid on one-vs-all targets, then fit the best model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,)
            Class labels of any type.

        sample_weight : float or array-like of shape (n_samples,), default=None
            Non-negative weights.

        groups : array-like of shape (n_samples,), default=None
            Group labels of the samples, for a group splitter such as
            ``GroupKFold`` in ``cv`` (as ``GridSearchCV.fit`` takes them).
            Ignored by the leave-one-out and evidence searches.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y, sample_weight = _check_fit_input(self, X, y, sample_weight)
        check_classification_targets(y)
        self._binarizer = LabelBinarizer(pos_label=1, neg_label=-1)
        Y = self._binarizer.fit_transform(y).astype(np.float64)
        self.classes_ = self._binarizer.classes_
        if self.class_weight is not None:
            cw = compute_sample_weight(self.class_weight, y)
            sample_weight = cw if sample_weight is None else sample_weight * cw
        check_weighted_classes(
            type(self).__name__,
            Y,
            self.classes_,
            sample_weight,
            weights="sample_weight and class_weight",
        )
        best = self._search(X, Y, y, sample_weight, groups)
        with warnings.catch_warnings():  # already said by check_weighted_classes
            warnings.filterwarnings("ignore", message=".*have zero total weight")
            return self._finish(best, X, y, sample_weight)

    @mirrors_input
    def decision_function(self, X):
        """One-vs-all decision values of ``best_estimator_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            With two classes, positive values favour ``classes_[1]``.
        """
        return self._delegate("decision_function", X)

    @mirrors_input
    def predict_proba(self, X):
        """Calibrated class probabilities of ``best_estimator_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            See :meth:`NTKClassifier.predict_proba
            <sknetk.NTKClassifier.predict_proba>`.
        """
        return self._delegate("predict_proba", X)

    @mirrors_input
    def predict_log_proba(self, X):
        """Logarithm of the calibrated class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        return self._delegate("predict_log_proba", X)

    @mirrors_input(output=False)
    def predict(self, X):
        """Predict the class with the largest decision value.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted class labels (NumPy, whatever the input).
        """
        return self._delegate("predict", X)


_insert_doc(
    NTKRegressorCV,
    int_cv="``KFold``",
    default_scoring=(
        "the negative (weighted) mean squared error for leave-one-out, and "
        "the coefficient of determination (R^2) with a ``cv`` splitter, as "
        "in ``RidgeCV``"
    ),
    subsample="uniformly",
)
_insert_doc(
    NTKClassifierCV,
    int_cv="``StratifiedKFold``",
    default_scoring=(
        "the negative (weighted) mean squared error of the one-vs-all "
        "decision values for leave-one-out, and the accuracy with a ``cv`` "
        "splitter, as in ``RidgeClassifierCV``. Scorers of probabilities "
        "(``neg_log_loss``, ``roc_auc_ovr``) score the softmax of the "
        "held-out decision values at the temperature fitted on them"
    ),
    subsample="stratified by class",
)
for _cls, _shape, _best in (
    (NTKRegressorCV, "(n_samples,) or (n_samples, n_targets)", "NTKRegressor"),
    (NTKClassifierCV, "(n_samples,) or (n_samples, n_classes)", "NTKClassifier"),
):
    _cls.__doc__ = _cls.__doc__.replace(
        "    {results}",
        _RESULTS_DOC.format(coef_shape=_shape, best_class=_best).strip("\n"),
        1,
    )
del _cls, _shape, _best
