"""Edge cases of model selection (NTKRegressorCV, NTKClassifierCV).

Leave-one-out with ridges below rounding level, duplicate and all-zero rows,
multi-output targets, string labels, class and sample weights; explicit group
splitters, other splitters and scorers; folds without weight. References:
brute-force loops refitting :class:`~sknetk.NTKRegressor` /
``NTKClassifier`` without each row; the ridge-free limit of leave-one-out
written with a pseudo-inverse; ``GridSearchCV`` over the plain estimators.
"""

import functools
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    LeaveOneGroupOut,
    PredefinedSplit,
    RepeatedKFold,
    ShuffleSplit,
    StratifiedGroupKFold,
)
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_sample_weight

from sknetk._calibration import loo_predictions as _loo_predictions
from sknetk._classification import NTKClassifier
from sknetk._cv import NTKClassifierCV, NTKRegressorCV
from sknetk._regression import NTKRegressor
from sknetk.dynamics import (
    kernel_eigh,
)
from sknetk.kernels import ntk_kernel

# The references below use absolute ridges on raw targets: the CV estimators
# with those settings (their defaults are relative ridges, normalised targets).
RegCV = functools.partial(NTKRegressorCV, alpha_scale="absolute", normalize_y=False)
ClfCV = functools.partial(NTKClassifierCV, alpha_scale="absolute")


def _data(seed, n=16, d=3, n_targets=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.normal(size=n)
    if n_targets:
        y = np.column_stack([y] + [np.cos(X[:, j]) for j in range(n_targets - 1)])
    return X, y, rng


def _neg_mse(Y, P, w=None):
    sq = (Y - P) ** 2
    sq = sq if sq.ndim == 1 else sq.mean(axis=1)
    return -np.average(sq, weights=w)


# ---------------------------------------------------------------------------
# Leave-one-out: ridges below rounding level, all-zero kernels
# ---------------------------------------------------------------------------
def _ridgeless_loo(K, y):
    """Limit ridge -> 0 of leave-one-out: ``K_i,rest K_rest^+ y_rest``.

    The data below have exact duplicate rows and an otherwise well
    conditioned kernel, so a pseudo-inverse with ``rcond=1e-10`` drops exactly
    the null directions.
    """
    n = len(y)
    out = np.empty(n)
    for i in range(n):
        rest = np.arange(n) != i
        pinv = np.linalg.pinv(K[np.ix_(rest, rest)], rcond=1e-10, hermitian=True)
        out[i] = K[i, rest] @ pinv @ y[rest]
    return out


@pytest.mark.parametrize("seed, depth", [(1, 1), (4, 3), (9, 5)])
def test_loo_with_ridge_below_rounding_is_the_ridgeless_limit(seed, depth):
    """Duplicate rows and a ridge below n*eps*|K|: LOO is the ridge -> 0 limit.

    A duplicated row left out is predicted by its twin: its LOO prediction is
    the twin's target. Dropping the null directions from the LOO identity got
    those rows (and the scores, by O(1)) wrong.
    """
    X, y, _ = _data(seed, n=12)
    X = np.vstack([X, X[:2], X[:1]])  # two pairs and a triple
    y = np.r_[y, y[:2] + 1.0, y[0] - 0.5]
    K = ntk_kernel(X, depth=depth, bias_std=0.1)
    K = (K + K.T) / 2
    ref = _ridgeless_loo(K, y)
    evals, V = kernel_eigh(K)
    for ridge in (1e-18, 1e-16):
        loo, coef = _loo_predictions(evals, V, V.T @ y[:, None], y[:, None], ridge)
        assert np.all(np.isfinite(loo))
        assert_allclose(loo[:, 0], ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())
    # A pair's member is predicted by its twin (the triple by the mean of the
    # other two, the ridgeless interpolant of identical rows).
    assert_allclose(loo[13, 0], y[1], rtol=1e-8)
    assert_allclose(loo[1, 0], y[13], rtol=1e-8)
    assert_allclose(loo[14, 0], (y[0] + y[12]) / 2, rtol=1e-8)
    # Through the estimator: the tiny-alpha candidate scores the limit.
    model = RegCV(alphas=[1e-17, 1e-2], depths=[depth], bias_std=0.1)
    model.fit(X, y)
    assert model.cv_results_["mean_test_score"][0] == pytest.approx(
        _neg_mse(y, ref), rel=1e-8
    )


def test_weighted_loo_with_ridge_below_rounding_is_the_ridgeless_limit():
    """Weights (zero on one twin): the weighted minimum-norm refit of each row."""
    X, y, rng = _data(4, n=12)
    X = np.vstack([X, X[:2], X[:1]])
    y = np.r_[y, rng.normal(size=3)]
    n = len(X)
    w = rng.uniform(0.5, 2.0, size=n)
    w[[5, 13]] = 0.0
    K = ntk_kernel(X, depth=2, bias_std=0.1)
    K = (K + K.T) / 2
    ref = np.empty(n)
    for i in range(n):
        rest = np.arange(n) != i
        s = np.sqrt(w[rest])
        A = s[:, None] * K[np.ix_(rest, rest)] * s[None, :]
        pinv = np.linalg.pinv(A, rcond=1e-10, hermitian=True)
        ref[i] = K[i, rest] @ (s * (pinv @ (s * y[rest])))
    evals, V = kernel_eigh(K, w)
    U = np.sqrt(w)[:, None] * V
    for ridge in (1e-18, 1e-16):
        loo, _ = _loo_predictions(
            evals, U, U.T @ y[:, None], y[:, None], ridge, K, w > 0
        )
        assert_allclose(loo[:, 0], ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


def test_loo_of_an_all_zero_kernel_predicts_zero():
    """All-zero rows without bias: every model predicts 0, so LOO does too.

    With ``alpha_scale="mean_diag"`` the ridge is then 0 as well; the LOO
    predictions used to equal the targets (a perfect score).
    """
    X = np.zeros((6, 2))
    y = np.arange(6.0) - 1.0
    model = RegCV(alphas=[1e-3, 1.0], depths=[1, 2], alpha_scale="mean_diag").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular zero kernel
        brute = [
            NTKRegressor(normalize_y=False, alpha=1.0, alpha_scale="mean_diag", depth=1)
            .fit(np.delete(X, i, 0), np.delete(y, i))
            .predict(X[i : i + 1])[0]
            for i in range(len(y))
        ]
    assert_array_equal(brute, 0.0)
    assert_allclose(model.cv_results_["mean_test_score"], -np.mean(y**2))
    assert_array_equal(model.predict(X), 0.0)


# ---------------------------------------------------------------------------
# Leave-one-out against brute-force refits of the plain estimators
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha_scale", ["absolute", "mean_diag"])
def test_regressor_loo_equals_refits_multi_output_zero_weights(alpha_scale):
    """Multi-output y, zero weights, depths with a gap, a small alpha."""
    X, Y, rng = _data(21, n=14, n_targets=2)
    w = rng.uniform(0.3, 2.0, size=len(X))
    w[[2, 9]] = 0.0
    model = RegCV(
        alphas=[1e-6, 0.05, 3.0], depths=[2, 5], alpha_scale=alpha_scale, bias_std=0.3
    )
    model.fit(X, Y, sample_weight=w)
    for params, score in zip(
        model.cv_results_["params"], model.cv_results_["mean_test_score"]
    ):
        K = ntk_kernel(X, depth=params["depth"], bias_std=0.3)
        ridge = params["alpha"]
        if alpha_scale == "mean_diag":
            ridge *= np.average(np.diag(K), weights=w)
        loo = np.empty_like(Y)
        for i in range(len(X)):
            rest = np.arange(len(X)) != i
            refit = NTKRegressor(
                normalize_y=False, alpha=ridge, depth=params["depth"], bias_std=0.3
            )
            refit.fit(X[rest], Y[rest], sample_weight=w[rest])
            loo[i] = refit.predict(X[i : i + 1])[0]
        assert score == pytest.approx(_neg_mse(Y, loo, w), rel=1e-9)
    best = model.best_params_
    ref = NTKRegressor(
        normalize_y=False, alpha=model.alpha_, depth=best["depth"], bias_std=0.3
    )
    ref.fit(X, Y, sample_weight=w)
    assert_allclose(model.predict(X), ref.predict(X), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("scoring", [None, "accuracy", "balanced_accuracy"])
def test_classifier_loo_equals_refits_string_labels_class_weight(scoring):
    """Four string classes, a class_weight dict and a zero weight."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(18, 3))
    labels = np.array(["cat", "dog", "eel", "fox"])[np.arange(18) % 4]
    rng.shuffle(labels)
    w = rng.uniform(0.2, 2.0, size=18)
    w[2] = 0.0
    class_weight = {"cat": 2.0, "dog": 1.0, "eel": 0.5, "fox": 3.0}
    model = ClfCV(
        alphas=[0.01, 1.0], depths=[1, 3], scoring=scoring, class_weight=class_weight
    )
    model.fit(X, labels, sample_weight=w)
    sw = w * compute_sample_weight(class_weight, labels)
    Y = LabelBinarizer(neg_label=-1).fit_transform(labels).astype(float)
    for params, score in zip(
        model.cv_results_["params"], model.cv_results_["mean_test_score"]
    ):
        decision = np.empty_like(Y)
        for i in range(len(X)):
            rest = np.arange(len(X)) != i
            refit = NTKClassifier(alpha=params["alpha"], depth=params["depth"])
            refit.fit(X[rest], labels[rest], sample_weight=sw[rest])
            assert list(refit.classes_) == list(model.classes_)
            decision[i] = refit.decision_function(X[i : i + 1])[0]
        pred = model.classes_[np.argmax(decision, axis=1)]
        if scoring is None:
            ref = _neg_mse(Y, decision, sw)
        elif scoring == "accuracy":
            ref = accuracy_score(labels, pred, sample_weight=sw)
        else:
            ref = balanced_accuracy_score(labels, pred, sample_weight=sw)
        assert score == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert set(model.predict(X)) <= set(labels)


# ---------------------------------------------------------------------------
# Explicit splitters and scorers
# ---------------------------------------------------------------------------
_GROUPS = np.repeat(np.arange(6), 4)


@pytest.mark.parametrize(
    "cv",
    [GroupKFold(3), LeaveOneGroupOut()],
    ids=["GroupKFold", "LeaveOneGroupOut"],
)
def test_group_splitters_take_groups_as_grid_search_does(cv):
    """fit(X, y, groups=...) reaches the splitter, as in GridSearchCV.fit."""
    X, y, _ = _data(3, n=24)
    grid = {"alpha": [0.01, 1.0], "depth": [1, 2]}
    model = RegCV(alphas=grid["alpha"], depths=grid["depth"], cv=cv)
    model.fit(X, y, groups=_GROUPS)
    search = GridSearchCV(NTKRegressor(normalize_y=False), grid, cv=cv).fit(
        X, y, groups=_GROUPS
    )
    assert model.cv_results_["params"] == search.cv_results_["params"]
    assert_allclose(
        model.cv_results_["mean_test_score"],
        search.cv_results_["mean_test_score"],
        rtol=1e-9,
    )
    assert model.best_params_ == search.best_params_
    with pytest.raises(ValueError, match="groups"):
        RegCV(cv=cv, depths=[1]).fit(X, y)


def test_classifier_group_splitter():
    """NTKClassifierCV passes groups to StratifiedGroupKFold too."""
    X, y = make_classification(n_samples=36, n_features=4, random_state=0)
    groups = np.arange(36) % 9
    cv = StratifiedGroupKFold(3)
    model = ClfCV(alphas=[0.1, 1.0], depths=[1, 2], cv=cv)
    model.fit(X, y, groups=groups)
    search = GridSearchCV(
        NTKClassifier(), {"alpha": [0.1, 1.0], "depth": [1, 2]}, cv=cv
    ).fit(X, y, groups=groups)
    assert_allclose(
        model.cv_results_["mean_test_score"],
        search.cv_results_["mean_test_score"],
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "cv",
    [
        ShuffleSplit(3, test_size=0.25, random_state=0),
        RepeatedKFold(n_splits=3, n_repeats=2, random_state=1),
        PredefinedSplit(np.arange(24) % 3),
        list(KFold(4, shuffle=True, random_state=2).split(np.zeros((24, 1)))),
    ],
    ids=["ShuffleSplit", "RepeatedKFold", "PredefinedSplit", "list"],
)
@pytest.mark.parametrize(
    "scoring", [None, "neg_mean_absolute_error", "explained_variance"]
)
def test_splitters_and_scorers_match_grid_search(cv, scoring):
    """Any splitter or iterable of splits, any scorer: GridSearchCV's scores."""
    X, y, _ = _data(5, n=24)
    grid = {"alpha": [0.01, 1.0], "depth": [2, 4]}
    model = RegCV(
        alphas=grid["alpha"],
        depths=grid["depth"],
        cv=cv,
        scoring=scoring,
        alpha_scale="mean_diag",
    ).fit(X, y)
    search = GridSearchCV(
        NTKRegressor(alpha_scale="mean_diag", normalize_y=False),
        grid,
        cv=cv,
        scoring=scoring,
    ).fit(X, y)
    assert_allclose(
        model.cv_results_["mean_test_score"],
        search.cv_results_["mean_test_score"],
        rtol=1e-9,
    )
    assert model.best_params_ == search.best_params_


@pytest.mark.parametrize("scoring", ["neg_log_loss", "roc_auc_ovr"])
def test_probability_scorers_score_the_calibrated_loo_values(scoring):
    """Scorers of probabilities score softmax(a * LOO decision values).

    Reference: the LOO decision values from refits of NTKClassifier without
    each row, the slope ``a`` minimising scikit-learn's log loss over a fine
    grid (then scipy's bounded search), and scikit-learn's metric.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import softmax
    from sklearn.metrics import log_loss, roc_auc_score

    X, y = make_classification(
        n_samples=30,
        n_features=4,
        n_classes=3,
        n_informative=3,
        n_redundant=0,
        random_state=1,
    )
    model = ClfCV(alphas=[1.0], depths=[1], scoring=scoring).fit(X, y)
    n = len(y)
    loo = np.empty((n, 3))
    for i in range(n):
        keep = np.arange(n) != i
        ref = NTKClassifier(alpha=1.0, depth=1).fit(X[keep], y[keep])
        loo[i] = ref.decision_function(X[i : i + 1])[0]

    def loss(a):
        return log_loss(y, softmax(a * loo, axis=1), labels=[0, 1, 2])

    grid = np.logspace(-3, 3, 601)
    start = grid[np.argmin([loss(a) for a in grid])]
    a = minimize_scalar(loss, bounds=(start / 1.02, start * 1.02), method="bounded").x
    proba = softmax(a * loo, axis=1)
    if scoring == "neg_log_loss":
        expected = -log_loss(y, proba)
    else:
        expected = roc_auc_score(y, proba, multi_class="ovr")
    assert model.best_score_ == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------
# Hard grids and folds without weight
# ---------------------------------------------------------------------------
def test_tiny_alpha_regressor_cv_with_duplicates_predicts_finite():
    """A logspace of alphas down to 1e-15 on data with repeated rows."""
    X, y, _ = _data(12, n=20)
    X = np.vstack([X, X[:5]])
    y = np.r_[y, y[:5]]
    model = RegCV(alphas=np.logspace(-15, 0, 6), depths=[1, 3], alpha_scale="mean_diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    assert np.all(np.isfinite(model.cv_results_["mean_test_score"]))
    assert np.all(np.isfinite(model.predict(X)))
    assert np.all(np.isfinite(model.dual_coef_))


@pytest.mark.parametrize("Estimator", [NTKRegressorCV, NTKClassifierCV])
def test_split_without_positive_weight_raises_clearly(Estimator):
    """A fold part with zero total weight can be neither fitted nor scored."""
    X, y, _ = _data(0, n=12)
    y = (y > 0).astype(int) if Estimator is NTKClassifierCV else y
    w = np.ones(12)
    w[:4] = 0.0  # the whole first test fold of KFold(3)
    with pytest.raises(ValueError, match="Split 0 of cv has no test sample"):
        Estimator(alphas=[1.0], depths=[1], cv=KFold(3)).fit(X, y, sample_weight=w)
    w = np.zeros(12)
    w[:4] = 1.0  # the training part of the first split has no weight
    with pytest.raises(ValueError, match="Split 0 of cv has no training sample"):
        Estimator(alphas=[1.0], depths=[1], cv=KFold(3)).fit(X, y, sample_weight=w)
    # Leave-one-out needs no such check: zero weights are simply not scored.
    w = np.ones(12)
    w[:4] = 0.0
    model = Estimator(alphas=[1.0], depths=[1]).fit(X, y, sample_weight=w)
    assert np.all(np.isfinite(model.cv_results_["mean_test_score"]))
