"""The CNTK estimators: scikit-learn contract, neural-tangents predictions,
KernelRidge on the same kernel, exact leave-one-out model selection."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import (
    check_param_validation,
    parametrize_with_checks,
)

from sknetk._conv_estimators import (
    CNTKClassifier,
    CNTKClassifierCV,
    CNTKRegressor,
    CNTKRegressorCV,
)
from sknetk.conv import nngp_kernel, ntk_kernel

DATA = Path(__file__).parent / "data" / "cntk_reference.npz"

# Small networks keep the common checks fast; both readouts are covered.
ESTIMATORS = [
    CNTKRegressor(depth=2, readout="flatten"),
    CNTKClassifier(depth=2),
    CNTKRegressorCV(depth=2, readout="flatten", alphas=(1e-2, 1.0)),
    CNTKClassifierCV(depth=2, readout="flatten", alphas=(1e-2, 1.0)),
]


@pytest.mark.slow
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    """scikit-learn's common estimator checks, with no expected failure."""
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_param_validation(estimator):
    """Every parameter is declared in ``_parameter_constraints``."""
    check_param_validation(type(estimator).__name__, estimator)


RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(30, 5, 6, 2))
TARGET = IMAGES[:, 1:4, 2:5, 0].mean(axis=(1, 2)) + 0.1 * RNG.normal(size=30)


@pytest.mark.parametrize("alpha_scale", ["absolute", "mean_diag"])
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_regressor_is_kernel_ridge(kernel, alpha_scale):
    """CNTKRegressor equals KernelRidge on the precomputed conv kernel (weighted)."""
    Xtr, Xte, ytr = IMAGES[:20], IMAGES[20:], TARGET[:20]
    w = RNG.uniform(0.5, 2.0, size=20)
    kw = dict(depth=2, readout="gap", bias_std=0.1, padding="CIRCULAR")
    model = CNTKRegressor(alpha=0.05, kernel=kernel, alpha_scale=alpha_scale, **kw)
    model.fit(Xtr, ytr, sample_weight=w)
    fn = ntk_kernel if kernel == "ntk" else nngp_kernel
    K = fn(Xtr, **kw)
    alpha = (
        0.05 if alpha_scale == "absolute" else 0.05 * np.average(np.diag(K), weights=w)
    )
    ref = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, ytr, sample_weight=w)
    np.testing.assert_allclose(model.alpha_, alpha, rtol=1e-12)
    np.testing.assert_allclose(
        model.predict(Xte), ref.predict(fn(Xte, Xtr, **kw)), rtol=1e-8, atol=1e-10
    )


def _nt_cases():
    ref = np.load(DATA)
    index = json.loads(str(ref["index_json"]))
    return {k: ref[k] for k in ref.files}, index


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_predictions_match_neural_tangents(kernel):
    """predict() equals neural-tangents' gradient_descent_mse_ensemble means."""
    ref, index = _nt_cases()
    Xtr, Xte = ref["pred/X_train"], ref["pred/X_test"]
    for pred in index["predictions"]:
        arch = next(c for c in index["prediction_kernels"] if c["id"] == pred["kernel"])
        y = ref["pred/y_train"] if pred["y"] == "y_train" else ref["pred/Y_train_multi"]
        y = y[:, 0] if y.shape[1] == 1 else y
        kw = dict(
            kernel=kernel,
            depth=arch["depth"],
            activation=arch["act"],
            activation_params=arch["act_kwargs"],
            weight_std=arch["W_std"],
            bias_std=arch["b_std"],
            filter_shape=tuple(arch["filter_shape"]),
            padding=arch["padding"],
            readout=arch["readout"],
            alpha=pred["diag_reg"],
            alpha_scale="mean_diag",
        )
        key = f"pred/{pred['id']}/{kernel}_"
        mean_inf = ref[key + "mean_inf"]
        mean_inf = mean_inf[:, 0] if y.ndim == 1 else mean_inf
        got = CNTKRegressor(**kw).fit(Xtr, y).predict(Xte)
        scale = np.abs(mean_inf).max()
        assert np.abs(got - mean_inf).max() <= 1e-8 * scale, pred["id"]
        for k, t in enumerate(ref["pred/t"][:3]):
            expect = ref[key + "mean_t"][k]
            expect = expect[:, 0] if y.ndim == 1 else expect
            got = CNTKRegressor(t=float(t), **kw).fit(Xtr, y).predict(Xte)
            assert np.abs(got - expect).max() <= 1e-8 * np.abs(expect).max()


def test_image_shapes():
    """Flat rows with image_shape, NHWC and (n, H, W) arrays: the same model."""
    X4 = IMAGES[:20, :, :, :1]
    y = TARGET[:20]
    a = CNTKRegressor(depth=2).fit(X4, y)
    b = CNTKRegressor(depth=2, image_shape=(5, 6, 1)).fit(X4.reshape(20, -1), y)
    c = CNTKRegressor(depth=2).fit(X4[..., 0], y)
    assert a.image_shape_ == b.image_shape_ == c.image_shape_ == (5, 6, 1)
    np.testing.assert_allclose(a.dual_coef_, b.dual_coef_, rtol=1e-12)
    np.testing.assert_allclose(a.dual_coef_, c.dual_coef_, rtol=1e-12)
    np.testing.assert_allclose(a.predict(X4), b.predict(X4.reshape(20, -1)))
    # square rows: one-channel images; other counts: a 1 x d signal
    square = CNTKRegressor(depth=1).fit(RNG.normal(size=(5, 16)), y[:5])
    assert square.image_shape_ == (4, 4, 1)
    signal = CNTKRegressor(depth=1).fit(RNG.normal(size=(5, 6)), y[:5])
    assert signal.image_shape_ == (1, 6, 1)
    with pytest.raises(ValueError, match="image_shape"):
        CNTKRegressor(image_shape=(4, 4, 2)).fit(X4.reshape(20, -1), y)
    with pytest.raises(ValueError, match="fitted on"):
        a.predict(IMAGES[:2, :, :, :1].reshape(2, 6, 5, 1))
    with pytest.raises(ValueError, match="vanishes"):
        CNTKRegressor(padding="VALID", filter_shape=6).fit(X4, y)


def test_classifier_labels_and_decisions():
    """String labels, binary and multiclass decision shapes, predictions in classes_."""
    X = IMAGES[:24]
    labels = np.array(["cat", "dog", "emu"])[np.arange(24) % 3]
    clf = CNTKClassifier(depth=2, alpha=1e-3, alpha_scale="mean_diag").fit(X, labels)
    assert clf.decision_function(X).shape == (24, 3)
    assert set(clf.predict(X)) <= set(labels)
    assert clf.score(X, labels) == 1.0  # small ridge: interpolates the training set
    binary = CNTKClassifier(depth=2).fit(X, labels == "cat")
    assert binary.decision_function(X).shape == (24,)
    with pytest.raises(ValueError, match="2 classes"):
        CNTKClassifier().fit(X, np.zeros(24))


def _brute_loo_mse(X, y, depth, alpha, kw):
    """Leave-one-out mean squared error by refitting n times."""
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        model = CNTKRegressor(alpha=alpha, depth=depth, **kw).fit(X[keep], y[keep])
        errors.append((model.predict(X[i : i + 1])[0] - y[i]) ** 2)
    return np.mean(errors)


def test_regressor_cv_is_brute_force_loo():
    """CNTKRegressorCV's scores are the leave-one-out errors of refitted models."""
    X, y = IMAGES[:12, :4, :4], TARGET[:12]
    kw = dict(readout="flatten", bias_std=0.1)
    cv = CNTKRegressorCV(alphas=(1e-2, 1.0), depth=2, **kw).fit(X, y)
    for depth, alpha, score in zip(
        cv.cv_results_["depth"], cv.cv_results_["alpha"], cv.cv_results_["score"]
    ):
        np.testing.assert_allclose(
            -score, _brute_loo_mse(X, y, depth, alpha, kw), rtol=1e-8
        )
    best = CNTKRegressor(alpha=cv.alpha_relative_, depth=cv.depth_, **kw).fit(X, y)
    np.testing.assert_allclose(
        cv.predict(IMAGES[20:, :4, :4]), best.predict(IMAGES[20:, :4, :4])
    )


def test_classifier_cv_picks_best_loo_accuracy():
    """CNTKClassifierCV keeps the best leave-one-out accuracy and refits to it."""
    X = IMAGES[:18, :4, :4]
    labels = (TARGET[:18] > np.median(TARGET[:18])).astype(int)
    cv = CNTKClassifierCV(alphas=(1e-3, 1e-1, 10.0), depth=2, readout="flatten")
    cv.fit(X, labels)
    assert cv.best_score_ == cv.cv_results_["score"].max()
    best = CNTKClassifier(alpha=cv.alpha_relative_, depth=cv.depth_, readout="flatten")
    np.testing.assert_allclose(
        cv.decision_function(X), best.fit(X, labels).decision_function(X), rtol=1e-8
    )


def test_pipeline_grid_search_and_cache(tmp_path):
    """Pipeline + GridSearchCV over alpha, with and without the kernel cache."""
    X = IMAGES[:24, :, :, :1].reshape(24, -1)
    labels = (TARGET[:24] > 0).astype(int)
    grid = {"cntkclassifier__alpha": [1e-3, 1e-1, 10.0]}

    def search(memory):
        pipe = make_pipeline(
            FunctionTransformer(lambda Z: Z / 2),
            CNTKClassifier(depth=2, image_shape=(5, 6, 1), memory=memory),
        )
        return GridSearchCV(pipe, grid, cv=3).fit(X, labels)

    plain = search(None)
    cached = search(str(tmp_path / "cache"))
    assert plain.best_params_ == cached.best_params_
    np.testing.assert_allclose(
        plain.cv_results_["mean_test_score"], cached.cv_results_["mean_test_score"]
    )
    assert any((tmp_path / "cache").rglob("*.pkl"))
