"""Model selection without refitting: :class:`NTKRegressorCV`, :class:`NTKClassifierCV`.

Every depth's kernel comes from one pass of the layer recursion
(``all_depths=True``), each depth's kernel is eigendecomposed once,
``K = Q diag(L) Q^T``, and then every ridge costs O(n^2): with
``G = Q diag(1 / (L + alpha)) Q^T`` the dual coefficients are ``c = G y`` and
the exact leave-one-out residuals are ``c / diag(G)`` (the identity behind
``RidgeCV``). With an explicit ``cv`` splitter the full kernel is still
computed once per depth; each fold's blocks are sliced out of it and
decomposed once per fold.
"""

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MultiOutputMixin,
    RegressorMixin,
    _fit_context,
)
from sklearn.metrics import accuracy_score, check_scoring, get_scorer_names, r2_score
from sklearn.model_selection import ParameterGrid, check_cv
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._array_api import get_namespace, is_numpy_namespace, to_numpy
from ._base import (
    ACCEPT_SPARSE,
    KERNELS,
    SPARSE_DENSIFY_MAX_ENTRIES,
    check_fit_sample_weight,
    check_regression_targets,
    check_weighted_classes,
    densify,
    to_host,
    to_input_namespace,
)
from ._device import DEVICES, check_device, cupy_or_error, predict_device, use_gpu
from ._progress import progress
from ._solver import ALPHA_SCALES, effective_alpha, solve_kernel_ridge
from .dynamics import kernel_eigh
from .kernels import (
    ACTIVATION_NAMES,
    PARAMETERIZATIONS,
    KernelSpec,
    kernel_matvec,
    nngp_kernel,
    ntk_kernel,
)

__all__ = ["NTKRegressorCV", "NTKClassifierCV"]


# ---------------------------------------------------------------------------
# Pure building blocks
# ---------------------------------------------------------------------------
def _loo_predictions(evals, U, z, Y, ridge, K=None, positive=None, U2=None):
    """Exact leave-one-out predictions of kernel ridge regression.

    Parameters
    ----------
    evals, U : arrays
        ``kernel_eigh(K, w)`` with ``U = diag(sqrt(w)) V`` (``U = V`` without
        weights).
    z : array of shape (n, n_targets)
        ``U.T @ Y``.
    Y : array of shape (n, n_targets)
        Targets.
    ridge : float
        Ridge ``alpha > 0``.
    K : array of shape (n, n), default=None
        The kernel; needed only when some weights are zero.
    positive : array of bool of shape (n,), default=None
        ``w > 0``; None means all weights are positive.
    U2 : array of shape (n, n), default=None
        ``U * U``, to share between ridges (computed when None).

    Returns
    -------
    loo : array of shape (n, n_targets)
        Row ``i`` is the prediction at ``x_i`` of the model fitted without
        row ``i``. A zero-weight row does not influence the fit, so its
        prediction is the full model's.
    dual_coef : array of shape (n, n_targets)
        Dual coefficients of the full fit, ``U diag(1 / a) U^T Y``.
    """
    xp = get_namespace(evals, U)
    a = evals + ridge
    top = float(xp.max(xp.abs(a))) if a.shape[0] else 0.0
    cutoff = float(a.shape[0] * np.finfo(np.float64).eps * top)
    keep = a > cutoff
    g = xp.where(keep, 1.0 / xp.where(keep, a, xp.ones_like(a)), xp.zeros_like(a))
    c = U @ (g[:, None] * z)
    if U2 is None:
        U2 = U * U
    d = U2 @ g  # diag(U diag(g) U^T)
    if bool(xp.all(keep)):
        safe = d > 0
        residual = c / xp.where(safe, d, xp.ones_like(d))[:, None]
    else:
        # A ridge below rounding level: the coefficients are the
        # pseudo-inverse's (as the solver's), but the null directions cannot
        # be dropped from the leave-one-out identity for the rows that have
        # a component there (one of two duplicate rows, say): their c_i and
        # G_ii are then dominated by those directions, whose ratio is the
        # limit ridge -> 0 of the exact residual (y_i minus the twin's
        # target). Flooring the null directions' shift at the cutoff keeps
        # it (an all-zero kernel, cutoff 0: the residual is y_i, as the
        # model predicts 0). Other rows have no component there in exact
        # arithmetic; their rounding-level components would be amplified,
        # so they keep the pseudo-inverse's ratio.
        dropped = xp.astype(~keep, a.dtype)
        p = U2 @ dropped  # squared norm of each row's null component
        q = U @ (dropped[:, None] * z)
        norm = xp.sum(U2, axis=1)
        involved = p > math.sqrt(np.finfo(np.float64).eps) * norm
        d = xp.where(involved, cutoff * d + p, d)
        c_loo = xp.where(involved[:, None], cutoff * c + q, c)
        safe = d > 0
        residual = c_loo / xp.where(safe, d, xp.ones_like(d))[:, None]
    loo = Y - residual
    if positive is not None and not bool(xp.all(positive)):
        full = K @ c
        loo = xp.where(positive[:, None], loo, full)
    return loo, c


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
    """Scorer adaptor: decision values in, classes out."""

    def __init__(self, classes):
        self.classes = classes

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


def _as_list(value, scalar_types):
    """``(values, searched)``: a scalar is fixed, a sequence is searched."""
    if isinstance(value, scalar_types):
        return [value], False
    return list(value), True


# ---------------------------------------------------------------------------
# The shared search
# ---------------------------------------------------------------------------
_SHARED_DOC = """
    alphas : array-like of float, default=(0.1, 1.0, 10.0)
        Ridge values to try (each > 0); interpreted as in
        :class:`~sknetk.NTKRegressor` (see ``alpha_scale``).

    depths : array-like of int, default=(1, 2, 3, 4, 5)
        Numbers of hidden layers to try. All depths come from one pass of the
        kernel recursion up to ``max(depths)``.

    kernel : {{"ntk", "nngp"}}, default="ntk"
        Train every layer (``"ntk"``) or the readout only (``"nngp"``).

    activation : str or list of str, default="relu"
        Activation of the hidden layers, one of {activations}. A list is
        searched (one kernel pass per activation).

    activation_params : dict, default=None
        Parameters of the activation, applied to every searched activation.

    weight_std : float, default=1.0
        Standard deviation of every Dense layer's weights.

    bias_std : float or None, default=0.0
        Standard deviation of the biases; ``None`` means no bias parameter.

    parameterization : {{"ntk", "standard"}}, default="ntk"
        Parameterization of the Dense layers, as in neural-tangents.

    width : int, default=None
        Hidden width; required by the ``"standard"`` parameterization.

    frozen_layers : int or list of int, default=0
        Number of leading Dense layers kept at their initialisation (Arora et
        al., 2020): their parameters are not trained, so the NTK keeps only
        the later layers' terms; ``frozen_layers=depth`` trains the readout
        only (the NNGP). A list is searched; combinations with
        ``frozen_layers > depth`` are skipped. Only with ``kernel="ntk"``.

    alpha_scale : {{"absolute", "mean_diag"}}, default="absolute"
        ``"absolute"``: each alpha is the ridge itself. ``"mean_diag"``: alpha
        times the mean diagonal of the training kernel (neural-tangents'
        ``diag_reg``), which keeps its meaning across depths. With ``cv=None``
        the mean diagonal of the whole training set is used for every
        left-out row (exact LOO needs one ridge); with a splitter, that of
        each fold's training part, as a grid search would.

    cv : int, cross-validation generator or iterable, default=None
        ``None``: efficient exact leave-one-out. Otherwise as in
        ``GridSearchCV`` (an int is a number of {int_cv} folds; group
        splitters such as ``GroupKFold`` take ``groups`` from :meth:`fit`);
        the kernel is still computed once per depth over all rows and sliced
        per fold.

    scoring : str or callable, default=None
        A scorer name or callable ``scorer(estimator, X, y)``. ``None``
        means {default_scoring}.

    device : {{"auto", "cpu", "gpu"}}, default="auto"
        Where the kernels and eigendecompositions are computed. ``"gpu"``
        needs CuPy and a CUDA device; ``"auto"`` uses the GPU when one is
        available and the kernel has at least
        ``sknetk._device.AUTO_GPU_MIN_ENTRIES`` entries. Fitted attributes
        are NumPy arrays either way.

    working_memory : float, default=None
        Memory budget in MiB for the temporaries of the tiled kernel
        computations, defaulting to ``sklearn.get_config()["working_memory"]``.

    n_jobs : int, default=-1
        Number of threads computing kernel tiles; ``-1`` uses every core.

    verbose : int, default=0
        ``0`` is silent; ``>= 1`` shows progress bars on standard error over
        the kernel tiles and over the depths (and folds) of the search."""


def _insert_doc(cls, **fmt):
    fmt.setdefault("activations", ", ".join(f'``"{a}"``' for a in ACTIVATION_NAMES))
    doc = _SHARED_DOC.format(**fmt).strip("\n")
    cls.__doc__ = cls.__doc__.replace("    {shared_params}", doc, 1)
    return cls


_RESULTS_DOC = """
    cv_results_ : dict of ndarrays
        One entry per candidate, in ``ParameterGrid`` order (the ``depth``
        varies fastest after ``alpha``): ``"params"`` (list of dicts),
        ``"param_<name>"``, ``"mean_test_score"`` and ``"rank_test_score"``;
        with a ``cv`` splitter also ``"split<k>_test_score"`` and
        ``"std_test_score"``, as in ``GridSearchCV``.

    best_index_ : int
        Index of the best candidate (the first of the top scores).

    best_params_ : dict
        Parameters of the best candidate.

    best_score_ : float
        Its mean cross-validated score.

    alpha_ : float
        Chosen value from ``alphas``.

    ridge_ : float
        The ridge actually added to the kernel's diagonal in the final fit
        (``alpha_``, or ``alpha_`` times the mean diagonal with
        ``alpha_scale="mean_diag"``); ``NTKRegressor(alpha=ridge_)`` with the
        chosen kernel parameters gives the same model.

    depth_ : int
        Chosen number of hidden layers.

    activation_ : str
        Chosen activation.

    frozen_layers_ : int
        Chosen number of frozen leading layers.

    dual_coef_ : ndarray of shape {coef_shape}
        Dual coefficients of the model refitted on all rows with the best
        parameters: predictions are ``K(X, X_fit_) @ dual_coef_``.

    X_fit_ : ndarray of shape (n_samples, n_features)
        Training data, needed for prediction.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings."""


class _BaseNTKCV(BaseEstimator):
    """Shared search over (activation, frozen_layers, depth, alpha)."""

    _parameter_constraints: dict = {
        "alphas": ["array-like", Interval(Real, 0, None, closed="neither")],
        "depths": ["array-like", Interval(Integral, 1, None, closed="left")],
        "kernel": [StrOptions(set(KERNELS))],
        "activation": [StrOptions(set(ACTIVATION_NAMES)), "array-like"],
        "activation_params": [dict, None],
        "weight_std": [Interval(Real, 0, None, closed="left")],
        "bias_std": [Interval(Real, 0, None, closed="left"), None],
        "parameterization": [StrOptions(set(PARAMETERIZATIONS))],
        "width": [Interval(Integral, 1, None, closed="left"), None],
        "frozen_layers": [Interval(Integral, 0, None, closed="left"), "array-like"],
        "alpha_scale": [StrOptions(set(ALPHA_SCALES))],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "device": [StrOptions(set(DEVICES))],
        "working_memory": [Interval(Real, 0, None, closed="neither"), None],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    # -- the grid -------------------------------------------------------------
    def _grid(self):
        """Validated candidates (list of dicts) and the fixed values."""
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0:
            raise ValueError(
                f"alphas must be a non-empty 1-D list, got {self.alphas!r}."
            )
        if not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"alphas must be finite and > 0, got {self.alphas!r}.")
        depths, _ = _as_list(self.depths, Integral)
        if not depths or any(
            isinstance(d, bool) or not isinstance(d, Integral) or d < 1 for d in depths
        ):
            raise ValueError(
                "depths must be a non-empty list of integers >= 1, got "
                f"{self.depths!r}."
            )
        activations, search_act = _as_list(self.activation, str)
        if not activations or any(a not in ACTIVATION_NAMES for a in activations):
            raise ValueError(
                f"activation must be one of {ACTIVATION_NAMES} or a non-empty list "
                f"of them, got {self.activation!r}."
            )
        frozen, search_frozen = _as_list(self.frozen_layers, Integral)
        if not frozen or any(
            isinstance(f, bool) or not isinstance(f, Integral) or f < 0 for f in frozen
        ):
            raise ValueError(
                "frozen_layers must be an integer >= 0 or a non-empty list of "
                f"them, got {self.frozen_layers!r}."
            )
        if self.kernel == "nngp" and any(f != 0 for f in frozen):
            raise ValueError(
                'frozen_layers applies to kernel="ntk" only (the NNGP trains the '
                f"readout alone); got frozen_layers={self.frozen_layers!r}."
            )
        grid = {"alpha": [float(a) for a in alphas], "depth": [int(d) for d in depths]}
        if search_act:
            grid["activation"] = activations
        if search_frozen:
            grid["frozen_layers"] = [int(f) for f in frozen]
        candidates = [
            p
            for p in ParameterGrid(grid)
            if p.get("frozen_layers", int(frozen[0])) <= p["depth"]
        ]
        if not candidates:
            raise ValueError(
                f"Every frozen_layers value ({self.frozen_layers!r}) exceeds every "
                f"depth ({self.depths!r}); nothing would be trained."
            )
        for act in activations:  # fail early on bad kernel parameters
            KernelSpec.from_params(**self._kernel_params(max(grid["depth"]), act, 0))
        fixed = {"activation": activations[0], "frozen_layers": int(frozen[0])}
        return candidates, fixed

    def _kernel_params(self, depth, activation, frozen_layers):
        return dict(
            depth=depth,
            activation=activation,
            activation_params=self.activation_params,
            weight_std=self.weight_std,
            bias_std=self.bias_std,
            parameterization=self.parameterization,
            width=self.width,
            frozen_layers=frozen_layers,
        )

    def _kernel_stack(self, X, depth, activation, frozen_layers):
        """Kernels of depths ``1..depth``, shape (depth, n, n), one pass."""
        return self._kernel_matrix(
            X, None, depth, activation, frozen_layers, all_depths=True
        )

    def _kernel_matrix(self, X, Y, depth, activation, frozen_layers, all_depths=False):
        function = ntk_kernel if self.kernel == "ntk" else nngp_kernel
        return function(
            X,
            Y,
            **self._kernel_params(depth, activation, frozen_layers),
            all_depths=all_depths,
            working_memory=self.working_memory,
            n_jobs=self.n_jobs,
            device=self.device,
            verbose=self.verbose,
        )

    def _to_device(self, X):
        """``X`` moved to the GPU when the work should run there."""
        check_device(self.device)
        n = X.shape[0]
        if use_gpu(self.device, n * n):
            return cupy_or_error().asarray(X)
        return X

    # -- fit ------------------------------------------------------------------
    def _search(self, X, Y, y_true, sample_weight, groups=None):
        """Score every candidate, then refit the best one on all rows.

        ``Y`` holds the float regression targets (n, n_targets); ``y_true``
        is what scoring compares against (the targets, or the labels);
        ``groups`` goes to the splitter.
        """
        candidates, fixed = self._grid()
        Xd = self._to_device(X)
        xp = get_namespace(Xd)
        Yd = xp.asarray(Y) if not is_numpy_namespace(xp) else Y
        sw = (
            None
            if sample_weight is None
            else (
                xp.asarray(sample_weight)
                if not is_numpy_namespace(xp)
                else sample_weight
            )
        )
        by_kernel = {}
        for i, p in enumerate(candidates):
            key = (
                p.get("activation", fixed["activation"]),
                p.get("frozen_layers", fixed["frozen_layers"]),
            )
            by_kernel.setdefault(key, {}).setdefault(p["depth"], []).append(i)

        kept = None
        if self.cv is None:
            scores, kept = self._search_loo(
                Xd, Yd, y_true, sw, sample_weight, candidates, by_kernel
            )
            split_scores, n_splits = None, 0
        else:
            cv = check_cv(self.cv, y_true, classifier=self._is_classifier)
            splits = list(cv.split(X, y_true, groups))
            _check_split_weights(splits, sample_weight)
            n_splits = len(splits)
            scores, split_scores = self._search_splits(
                Xd, Yd, y_true, sw, sample_weight, candidates, by_kernel, splits
            )

        ranking_scores = np.where(np.isfinite(scores), scores, -np.inf)
        rank = rankdata(-ranking_scores, method="min").astype(np.int32)
        best = int(np.argmin(rank))
        params = candidates[best]
        self.best_index_ = best
        self.best_params_ = dict(params)
        self.best_score_ = float(scores[best])
        self.alpha_ = params["alpha"]
        self.depth_ = params["depth"]
        self.activation_ = params.get("activation", fixed["activation"])
        self.frozen_layers_ = params.get("frozen_layers", fixed["frozen_layers"])
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

        if kept is not None and kept[0] == best:
            _, coef, self.ridge_ = kept
        else:  # refit the best candidate on all rows
            K = self._kernel_matrix(
                Xd, None, self.depth_, self.activation_, self.frozen_layers_
            )
            self.ridge_ = self._ridge(self.alpha_, K, sw)
            coef = to_numpy(
                solve_kernel_ridge(K, Yd, self.ridge_, sw, overwrite_K=True)
            )
        self.X_fit_ = X
        return coef

    def _ridge(self, alpha, K, sw):
        return effective_alpha(alpha, self.alpha_scale, _diagonal(K), sw)

    def _search_loo(self, X, Y, y_true, sw, sample_weight, candidates, by_kernel):
        xp = get_namespace(X)
        scores = np.full(len(candidates), np.nan)
        kept = None  # (index, dual_coef, ridge) of the best so far
        positive = None if sw is None else sw > 0
        for (act, frozen), by_depth in by_kernel.items():
            stack = self._kernel_stack(X, max(by_depth), act, frozen)
            for depth, indices in progress(
                list(by_depth.items()),
                desc="leave-one-out over depths",
                verbose=self.verbose,
            ):
                K = stack[depth - 1, ...]
                evals, V = kernel_eigh(K, sw)
                U = V if sw is None else xp.sqrt(sw)[:, None] * V
                del V
                z = U.T @ Y
                U2 = U * U
                for i in indices:
                    ridge = self._ridge(candidates[i]["alpha"], K, sw)
                    loo, coef = _loo_predictions(evals, U, z, Y, ridge, K, positive, U2)
                    score = self._score(y_true, to_numpy(loo), sample_weight, loo=True)
                    scores[i] = score
                    if math.isfinite(score) and (
                        kept is None
                        or score > scores[kept[0]]
                        or (score == scores[kept[0]] and i < kept[0])
                    ):  # the first of the top scores, in candidate order
                        kept = (i, to_numpy(coef), ridge)
            del stack
        return scores, kept

    def _search_splits(
        self, X, Y, y_true, sw, sample_weight, candidates, by_kernel, splits
    ):
        xp = get_namespace(X)
        split_scores = np.full((len(candidates), len(splits)), np.nan)
        for (act, frozen), by_depth in by_kernel.items():
            stack = self._kernel_stack(X, max(by_depth), act, frozen)
            for depth, indices in by_depth.items():
                K = stack[depth - 1, ...]
                for k, (train, test) in progress(
                    list(enumerate(splits)),
                    desc=f"folds (depth {depth})",
                    verbose=self.verbose,
                ):
                    K_tr = _take2(xp, K, train, train)
                    K_te = _take2(xp, K, test, train)
                    dev_train = train if is_numpy_namespace(xp) else xp.asarray(train)
                    Y_tr = (
                        Y[dev_train, ...]
                        if is_numpy_namespace(xp)
                        else xp.take(Y, dev_train, axis=0)
                    )
                    sw_tr = None
                    if sw is not None:
                        sw_tr = (
                            sw[train]
                            if is_numpy_namespace(xp)
                            else xp.take(sw, dev_train, axis=0)
                        )
                    evals, V = kernel_eigh(K_tr, sw_tr)
                    U = V if sw_tr is None else xp.sqrt(sw_tr)[:, None] * V
                    z = U.T @ Y_tr
                    KU = K_te @ U
                    w_test = None if sample_weight is None else sample_weight[test]
                    for i in indices:
                        ridge = self._ridge(candidates[i]["alpha"], K_tr, sw_tr)
                        a = evals + ridge
                        top = float(xp.max(xp.abs(a)))
                        keep = a > float(a.shape[0] * np.finfo(np.float64).eps * top)
                        g = xp.where(
                            keep,
                            1.0 / xp.where(keep, a, xp.ones_like(a)),
                            xp.zeros_like(a),
                        )
                        pred = to_numpy(KU @ (g[:, None] * z))
                        split_scores[i, k] = self._score(
                            y_true[test], pred, w_test, loo=False
                        )
            del stack
        return np.mean(split_scores, axis=1), split_scores

    # -- prediction -----------------------------------------------------------
    def _decision(self, X):
        """Decision values; CuPy in gives CuPy out (computed from the host copy)."""
        check_is_fitted(self)
        X, was_cupy = to_host(X)
        X = validate_data(
            self, X, accept_sparse=ACCEPT_SPARSE, dtype=np.float64, reset=False
        )
        if sp.issparse(X):
            rows = max(1, SPARSE_DENSIFY_MAX_ENTRIES // max(X.shape[1], 1))
            X = X.tocsr()
            parts = [
                self._dense_decision(X[i : i + rows].toarray())
                for i in range(0, X.shape[0], rows)
            ]
            if parts:
                return np.concatenate(parts, axis=0)
            return np.zeros((0,) + self.dual_coef_.shape[1:])
        return to_input_namespace(self._dense_decision(X), was_cupy)

    def _dense_decision(self, X):
        params = self._kernel_params(self.depth_, self.activation_, self.frozen_layers_)
        return kernel_matvec(
            X,
            self.X_fit_,
            self.dual_coef_,
            kernel=self.kernel,
            **params,
            working_memory=self.working_memory,
            n_jobs=self.n_jobs,
            device=predict_device(self.device),
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


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
    # scikit-learn's validation is NumPy based: CuPy input is validated (and
    # searched) on the host, as by NTKRegressor and NTKClassifier.
    X, _ = to_host(X)
    y, _ = to_host(y)
    sample_weight, _ = to_host(sample_weight)
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
class NTKRegressorCV(MultiOutputMixin, RegressorMixin, _BaseNTKCV):
    """NTK regression with its ridge, depth (and more) chosen by cross-validation.

    The counterpart of ``RidgeCV`` for :class:`~sknetk.NTKRegressor`. By
    default it scores every ``(alpha, depth)`` pair by exact leave-one-out
    from one eigendecomposition per depth, with the kernels of all depths
    from one recursion pass, which costs a few plain fits instead of the
    ``n_folds x n_candidates`` fits of
    ``GridSearchCV(NTKRegressor(), ...)``. Activations and the number of
    frozen layers can be searched too. The best model is then refitted on
    all rows and used by :meth:`predict`.

    Read more in the :ref:`User Guide <dynamics>`.

    Parameters
    ----------
    {shared_params}

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
    O(n^2) for all rows at once. Sample weights ``w`` enter as in
    ``KernelRidge`` (the decomposed matrix is
    ``diag(sqrt(w)) K diag(sqrt(w))``); leaving row ``i`` out removes it
    with its weight, and the default score is the weighted mean squared
    error. With a ``cv`` splitter, the test folds are scored with their
    sample weights.

    The LOO search holds ``max(depths)`` kernels of ``n x n`` plus the
    eigenvectors at a time (about ``(max(depths) + 3) * 8 n^2`` bytes).

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sknetk._cv import NTKRegressorCV
    >>> X, y = make_friedman1(n_samples=200, random_state=0)
    >>> model = NTKRegressorCV(alphas=[0.01, 0.1, 1.0], depths=[1, 2, 3],
    ...                        alpha_scale="mean_diag").fit(X[:150], y[:150])
    >>> model.alpha_ in (0.01, 0.1, 1.0), model.depth_ in (1, 2, 3)
    (True, True)
    >>> len(model.cv_results_["params"])
    9
    >>> round(model.score(X[150:], y[150:]), 2) > 0.5
    True
    """

    _parameter_constraints: dict = {**_BaseNTKCV._parameter_constraints}
    _is_classifier = False

    def __init__(
        self,
        alphas=(0.1, 1.0, 10.0),
        depths=(1, 2, 3, 4, 5),
        *,
        kernel="ntk",
        activation="relu",
        activation_params=None,
        weight_std=1.0,
        bias_std=0.0,
        parameterization="ntk",
        width=None,
        frozen_layers=0,
        alpha_scale="absolute",
        cv=None,
        scoring=None,
        device="auto",
        working_memory=None,
        n_jobs=-1,
        verbose=0,
    ):
        self.alphas = alphas
        self.depths = depths
        self.kernel = kernel
        self.activation = activation
        self.activation_params = activation_params
        self.weight_std = weight_std
        self.bias_std = bias_std
        self.parameterization = parameterization
        self.width = width
        self.frozen_layers = frozen_layers
        self.alpha_scale = alpha_scale
        self.cv = cv
        self.scoring = scoring
        self.device = device
        self.working_memory = working_memory
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _score(self, y_true, pred, sample_weight, loo):
        pred = pred.reshape(y_true.shape)
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
    def fit(self, X, y, sample_weight=None, groups=None):
        """Search the grid, then refit the best model on all rows.

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
            Ignored by the leave-one-out search (``cv=None``).

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
        coef = self._search(X, Y, y, sample_weight, groups)
        self.dual_coef_ = coef[:, 0] if y.ndim == 1 else coef
        return self

    def predict(self, X):
        """Predict with the best model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predicted values.
        """
        return self._decision(X)


class NTKClassifierCV(ClassifierMixin, _BaseNTKCV):
    """NTK classification with its ridge, depth (and more) chosen by CV.

    The counterpart of ``RidgeClassifierCV`` for
    :class:`~sknetk.NTKClassifier`: the labels become one-vs-all targets in
    ``{-1, 1}`` and every candidate is scored by exact leave-one-out on
    those targets (one eigendecomposition per depth, all outputs at once),
    or by an explicit ``cv`` splitter. The best model is refitted on all
    rows. There is no ``predict_proba``; wrap the estimator in
    ``sklearn.calibration.CalibratedClassifierCV`` for probabilities.

    Read more in the :ref:`User Guide <dynamics>`.

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
    >>> clf = NTKClassifierCV(alphas=[0.1, 1.0], depths=[1, 2]).fit(X, y)
    >>> clf.classes_
    array([0, 1, 2])
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **_BaseNTKCV._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }
    _is_classifier = True

    def __init__(
        self,
        alphas=(0.1, 1.0, 10.0),
        depths=(1, 2, 3, 4, 5),
        *,
        kernel="ntk",
        activation="relu",
        activation_params=None,
        weight_std=1.0,
        bias_std=0.0,
        parameterization="ntk",
        width=None,
        frozen_layers=0,
        alpha_scale="absolute",
        cv=None,
        scoring=None,
        device="auto",
        working_memory=None,
        n_jobs=-1,
        verbose=0,
        class_weight=None,
    ):
        self.alphas = alphas
        self.depths = depths
        self.kernel = kernel
        self.activation = activation
        self.activation_params = activation_params
        self.weight_std = weight_std
        self.bias_std = bias_std
        self.parameterization = parameterization
        self.width = width
        self.frozen_layers = frozen_layers
        self.alpha_scale = alpha_scale
        self.cv = cv
        self.scoring = scoring
        self.device = device
        self.working_memory = working_memory
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.class_weight = class_weight

    def _score(self, y_true, pred, sample_weight, loo):
        identity = _IdentityClassifier(self.classes_)
        decision = pred[:, 0] if pred.shape[1] == 1 else pred
        if self.scoring is None:
            if loo:
                Y = self._binarizer.transform(y_true).astype(np.float64)
                sq = np.mean((Y - pred) ** 2, axis=1)
                return -float(np.average(sq, weights=sample_weight))
            return float(
                accuracy_score(
                    y_true, identity.predict(decision), sample_weight=sample_weight
                )
            )
        scorer = check_scoring(identity, scoring=self.scoring)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        try:
            return float(scorer(identity, decision, y_true, **kwargs))
        except AttributeError as exc:
            if "predict_proba" not in str(exc):
                raise
            raise ValueError(
                f"scoring={self.scoring!r} needs predict_proba, but "
                f"{type(self).__name__} scores its candidates by decision "
                "values, which are not probabilities. Use a scorer of decision "
                "values or labels (e.g. 'roc_auc' for two classes, 'accuracy', "
                "'balanced_accuracy', 'f1_macro'), or calibrate the final model "
                "with sklearn.calibration.CalibratedClassifierCV."
            ) from exc

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, groups=None):
        """Search the grid on one-vs-all targets, then refit the best model.

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
            Ignored by the leave-one-out search (``cv=None``).

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
        coef = self._search(X, Y, y, sample_weight, groups)
        self.dual_coef_ = coef[:, 0] if Y.shape[1] == 1 else coef
        return self

    def decision_function(self, X):
        """One-vs-all decision values of the best model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            With two classes, positive values favour ``classes_[1]``.
        """
        return self._decision(X)

    def predict(self, X):
        """Predict the class with the largest decision value.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted class labels.
        """
        check_is_fitted(self)
        return _IdentityClassifier(self.classes_).predict(
            self.decision_function(to_host(X)[0])
        )


_insert_doc(
    NTKRegressorCV,
    int_cv="``KFold``",
    default_scoring=(
        "the negative (weighted) mean squared error for leave-one-out, and "
        "the coefficient of determination (R^2) with a ``cv`` splitter, as "
        "in ``RidgeCV``"
    ),
)
_insert_doc(
    NTKClassifierCV,
    int_cv="``StratifiedKFold``",
    default_scoring=(
        "the negative (weighted) mean squared error of the one-vs-all "
        "decision values for leave-one-out, and the accuracy with a ``cv`` "
        "splitter, as in ``RidgeClassifierCV``"
    ),
)
for _cls, _shape in (
    (NTKRegressorCV, "(n_samples,) or (n_samples, n_targets)"),
    (NTKClassifierCV, "(n_samples,) or (n_samples, n_classes)"),
):
    _cls.__doc__ = _cls.__doc__.replace(
        "    {results}", _RESULTS_DOC.format(coef_shape=_shape).strip("\n"), 1
    )
del _cls, _shape
