"""Calibrated probabilities of NTKClassifier and NTKClassifierCV.

References: leave-one-out decision values from refits of ``KernelRidge``
(``kernel="precomputed"``) or :class:`~sknetk.NTKClassifier` without each
row (or without one copy of a repeated row); the slope minimising
scikit-learn's ``log_loss`` found by a grid and a bounded search; the
linear-smoother matrix of the gradient flow built column by column from fits
on unit targets; scikit-learn's metrics and ``GridSearchCV``.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize_scalar
from scipy.special import expit, softmax
from sklearn.datasets import load_iris, make_classification
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknetk._calibration import fit_temperature, loo_decision_values
from sknetk._classification import NTKClassifier
from sknetk._cv import NTKClassifierCV
from sknetk._regression import NTKRegressor
from sknetk.kernels import ntk_kernel


def _kernel_problem(n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    K = ntk_kernel(X, depth=2, bias_std=0.3)
    Y = np.column_stack([np.sign(X[:, 0]), np.sin(X[:, 1])])
    return X, K, Y


def _brute_force(K, Y, ridge, w=None):
    n = len(K)
    out = np.empty_like(Y)
    for i in range(n):
        keep = np.arange(n) != i
        model = KernelRidge(alpha=ridge, kernel="precomputed").fit(
            K[np.ix_(keep, keep)], Y[keep], sample_weight=None if w is None else w[keep]
        )
        out[i] = model.predict(K[i : i + 1, keep])[0]
    return out


@pytest.mark.parametrize("ridge", [1e-3, 0.5])
def test_loo_decision_values_equal_refits(ridge):
    _, K, Y = _kernel_problem()
    assert_allclose(
        loo_decision_values(K, Y, ridge),
        _brute_force(K, Y, ridge),
        rtol=1e-8,
        atol=1e-10,
    )


def test_weighted_loo_leaves_one_observation_out():
    """Weights below 1 leave the row out; an integer weight is repeated rows."""
    X, K, Y = _kernel_problem(n=15, seed=1)
    w = np.full(15, 0.5)
    w[3] = 0.0
    assert_allclose(
        loo_decision_values(K, Y, 0.2, w)[w > 0],
        _brute_force(K, Y, 0.2, w)[w > 0],
        rtol=1e-8,
        atol=1e-10,
    )
    counts = np.array([1, 2, 3] * 5)
    repeat = np.repeat(np.arange(15), counts)
    loo_weighted = loo_decision_values(K, Y, 0.2, counts.astype(float))
    loo_repeated = loo_decision_values(K[np.ix_(repeat, repeat)], Y[repeat], 0.2)
    assert_allclose(loo_weighted[repeat], loo_repeated, rtol=1e-7, atol=1e-9)


def test_finite_time_loo_is_the_linear_smoother_form():
    """(y - f) / (1 - S_ii), with S built from fits on unit targets."""
    X, K, Y = _kernel_problem(n=12, seed=2)
    y = Y[:, :1]
    t, alpha = 30.0, 0.05
    params = dict(alpha=alpha, depth=2, bias_std=0.3, t=t, normalize_y=False)
    fitted = NTKRegressor(**params).fit(X, y[:, 0]).predict(X)
    S = np.column_stack(
        [NTKRegressor(**params).fit(X, e).predict(X) for e in np.eye(12)]
    )
    ref = y[:, 0] - (y[:, 0] - fitted) / (1 - np.diag(S))
    assert_allclose(loo_decision_values(K, y, alpha, t=t)[:, 0], ref, rtol=1e-7)


def _optimal_slope(loo, y, labels):
    def loss(a):
        if loo.ndim == 1:
            return log_loss(y, expit(a * loo), labels=labels)
        return log_loss(y, softmax(a * loo, axis=1), labels=labels)

    grid = np.logspace(-3, 3, 601)
    start = grid[np.argmin([loss(a) for a in grid])]
    return minimize_scalar(
        loss, bounds=(start / 1.02, start * 1.02), method="bounded"
    ).x


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_slope_minimises_the_loo_log_loss(n_classes):
    X, y = make_classification(
        n_samples=24,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        random_state=0,
    )
    params = dict(alpha=0.3, depth=2, bias_std=0.2)
    model = NTKClassifier(**params).fit(X, y)
    loo = np.array(
        [
            NTKClassifier(**params)
            .fit(np.delete(X, i, 0), np.delete(y, i))
            .decision_function(X[i : i + 1])[0]
            for i in range(len(y))
        ]
    )
    labels = list(range(n_classes))
    assert model.calibration_slope_ == pytest.approx(
        _optimal_slope(loo, y, labels), rel=1e-4
    )
    s = model.decision_function(X)
    proba = model.predict_proba(X)
    expected = (
        np.column_stack(
            [
                1 - expit(model.calibration_slope_ * s),
                expit(model.calibration_slope_ * s),
            ]
        )
        if n_classes == 2
        else softmax(model.calibration_slope_ * s, axis=1)
    )
    assert_allclose(proba, expected, rtol=1e-12)
    assert_allclose(np.exp(model.predict_log_proba(X)), proba, rtol=1e-12)
    assert_array_equal(model.classes_[np.argmax(proba, axis=1)], model.predict(X))


@pytest.mark.parametrize(
    "params",
    [
        dict(t=5.0, alpha=0.0),
        dict(solver="nystrom", n_centers=30, random_state=0),
        dict(alpha=0.0),
    ],
    ids=["finite-t", "nystrom", "interpolating"],
)
def test_probabilities_are_finite_for_every_solver(params):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = NTKClassifier(**params).fit(X, y)
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0)
    assert model.calibration_slope_ > 0
    assert_array_equal(model.classes_[np.argmax(proba, axis=1)], model.predict(X))


def test_probability_scorers_in_grid_search_and_cross_val_score():
    """neg_log_loss and roc_auc_ovr: finite, and equal to the metrics' values."""
    X, y = load_iris(return_X_y=True)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    model = make_pipeline(StandardScaler(), NTKClassifier(bias_std=0.5))
    search = GridSearchCV(
        model,
        {"ntkclassifier__alpha": [0.01, 0.1, 1.0]},
        cv=folds,
        scoring="neg_log_loss",
    ).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    auc = cross_val_score(
        NTKClassifierCV(depths=(1, 2)), X, y, cv=folds, scoring="roc_auc_ovr"
    )
    for score, (train, test) in zip(auc, folds.split(X, y)):
        fitted = NTKClassifierCV(depths=(1, 2)).fit(X[train], y[train])
        proba = fitted.predict_proba(X[test])
        assert score == pytest.approx(roc_auc_score(y[test], proba, multi_class="ovr"))
        assert_allclose(proba, fitted.best_estimator_.predict_proba(X[test]))


def test_probabilities_are_calibrated_like_cross_validated_platt():
    """Held-out log loss within 10% of CalibratedClassifierCV on the same model."""
    from sklearn.calibration import CalibratedClassifierCV

    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, flip_y=0.1, random_state=3
    )
    X = StandardScaler().fit_transform(X)
    train, test = np.arange(400), np.arange(400, 600)
    ntk = NTKClassifier(alpha=0.1, alpha_scale="mean_diag", depth=2).fit(
        X[train], y[train]
    )
    ours = log_loss(y[test], ntk.predict_proba(X[test]))
    platt = CalibratedClassifierCV(
        NTKClassifier(alpha=0.1, alpha_scale="mean_diag", depth=2), cv=5
    ).fit(X[train], y[train])
    ref = log_loss(y[test], platt.predict_proba(X[test]))
    assert ours <= 1.1 * ref


def test_fit_temperature_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5000, 3))
    p = softmax(2.5 * s, axis=1)
    codes = np.array([rng.choice(3, p=row) for row in p])
    Y = np.where(np.arange(3)[None, :] == codes[:, None], 1.0, -1.0)
    assert fit_temperature(s, Y).slope == pytest.approx(2.5, rel=0.1)


def test_loo_on_another_namespace_equals_numpy(xps):
    """The Cholesky path on a non-NumPy kernel (CuPy on a GPU) factorises it in
    its own namespace and gives the NumPy values."""
    _, K, Y = _kernel_problem(n=14, seed=5)
    w = np.linspace(0.0, 3.0, 14)
    for weights in (None, w):
        expected = loo_decision_values(K, Y, 0.3, weights)
        got = loo_decision_values(xps.asarray(K), Y, 0.3, weights)
        assert isinstance(got, np.ndarray)
        assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
