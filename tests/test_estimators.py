"""NTKRegressor and NTKClassifier against independent references.

References: scikit-learn's ``KernelRidge(kernel="precomputed")``, ``Ridge`` and
``RidgeClassifier`` (a deep linear network's NTK is a scaled linear kernel),
brute-force one-vs-all loops, and neural-tangents' stored predictions.
"""

import pickle
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sknetk import kernels
from sknetk._classification import NTKClassifier
from sknetk._device import gpu_available
from sknetk._regression import NTKRegressor
from sknetk.exceptions import GPUUnavailableError, IllConditionedKernelWarning
from sknetk.fourier import FourierFeatures

from ._reference import load

NETWORK = dict(
    depth=2, activation="erf", weight_std=1.3, bias_std=0.2, activation_params=None
)


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def _kernel(X, Y=None, kernel="ntk", **params):
    function = kernels.ntk_kernel if kernel == "ntk" else kernels.nngp_kernel
    return function(X, Y, **params)


def _data(rng, n=40, d=3, n_targets=None):
    X = rng.normal(size=(n, d))
    k = 1 if n_targets is None else n_targets
    y = np.sin(2 * X[:, :1]) + 0.1 * rng.normal(size=(n, k))
    return X, (y[:, 0] if n_targets is None else y), rng.normal(size=(15, d))


# ---------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_targets", [None, 1, 3])
def test_regressor_equals_kernel_ridge_on_same_kernel(rng, kernel, weighted, n_targets):
    """Predictions equal KernelRidge(kernel="precomputed") on the same kernel."""
    X, y, X_test = _data(rng, n_targets=n_targets)
    sw = rng.uniform(0.2, 3.0, size=len(X)) if weighted else None
    model = NTKRegressor(alpha=0.05, kernel=kernel, normalize_y=False, **NETWORK)
    model.fit(X, y, sw)
    ref = KernelRidge(alpha=0.05, kernel="precomputed")
    ref.fit(_kernel(X, kernel=kernel, **NETWORK), y, sample_weight=sw)
    expected = ref.predict(_kernel(X_test, X, kernel=kernel, **NETWORK))
    pred = model.predict(X_test)
    assert pred.shape == expected.shape
    assert_allclose(pred, expected, rtol=1e-9, atol=1e-12)
    assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-9, atol=1e-12)
    assert model.alpha_ == 0.05


def test_mean_diag_alpha_scale_equals_scaled_kernel_ridge(rng):
    """alpha_scale="mean_diag" is KernelRidge with alpha * mean(diag(K))."""
    X, y, X_test = _data(rng)
    model = NTKRegressor(
        alpha=0.01, alpha_scale="mean_diag", depth=4, normalize_y=False
    ).fit(X, y)
    K = kernels.ntk_kernel(X, depth=4)
    alpha = 0.01 * np.mean(np.diag(K))
    assert_allclose(model.alpha_, alpha, rtol=1e-12)
    ref = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, y)
    expected = ref.predict(kernels.ntk_kernel(X_test, X, depth=4))
    assert_allclose(model.predict(X_test), expected, rtol=1e-9)


def _prediction_cases():
    _, index = load()
    for case in index["predictions"]:
        for kernel in ("ntk", "nngp"):
            yield pytest.param(case, kernel, id=f"{case['id']}-{kernel}")


@pytest.mark.parametrize("case, kernel", list(_prediction_cases()))
def test_regressor_matches_neural_tangents_converged_predictions(case, kernel):
    """End to end, the t = inf mean of neural-tangents' gradient_descent_mse_ensemble.

    ``diag_reg`` with its default trace/n scaling is ``alpha_scale="mean_diag"``.
    """
    ref, index = load()
    pk = next(p for p in index["prediction_kernels"] if p["id"] == case["kernel"])
    y = ref[f"pred/{case['y']}"]
    model = NTKRegressor(
        alpha=case["diag_reg"],
        alpha_scale="absolute" if case["diag_reg_absolute_scale"] else "mean_diag",
        kernel=kernel,
        depth=pk["depth"],
        activation=pk["act"],
        activation_params=pk["act_kwargs"],
        weight_std=pk["W_std"],
        bias_std=pk["b_std"],
        parameterization=pk["parameterization"],
        width=pk["width"],
        normalize_y=False,
    ).fit(ref["pred/X_train"], y)
    expected = ref[f"pred/{case['id']}/{kernel}_mean_inf"]
    # The diagonal holds degenerate (angle 0) pairs, where the ReLU NTK of two
    # correct implementations differs by ~1e-8 relative (REFERENCE_README.md).
    assert_allclose(model.alpha_, case[f"{kernel}_reg_abs"], rtol=1e-6)
    pred = model.predict(ref["pred/X_test"])
    assert pred.shape == expected.shape
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(pred - expected)) <= 1e-6 * scale


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("kernel, factor", [("ntk", "depth + 1"), ("nngp", "1")])
def test_deep_linear_network_is_ridge_regression(rng, depth, kernel, factor):
    """A deep linear net's kernel is ``c <x, x'> / d``: equal to Ridge on scaled X.

    With ``W_std=1`` and no bias, each of the ``depth + 1`` Dense layers adds
    ``<x, x'> / d`` to the NTK, and the NNGP is ``<x, x'> / d``.
    """
    X, y, X_test = _data(rng, n=30, d=5, n_targets=2)
    c = eval(factor)  # noqa: S307 - a fixed expression of the parameter
    s = np.sqrt(c / X.shape[1])
    model = NTKRegressor(
        alpha=0.7, kernel=kernel, activation="identity", depth=depth, normalize_y=False
    )
    model.fit(X, y)
    ref = Ridge(alpha=0.7, fit_intercept=False, solver="svd").fit(X * s, y)
    assert_allclose(model.predict(X_test), ref.predict(X_test * s), rtol=1e-9)


def test_leaky_relu_with_zero_slope_is_relu(rng):
    """``activation_params`` reach the kernel: leaky_relu(alpha=0) equals relu."""
    X, y, X_test = _data(rng)
    relu = NTKRegressor(activation="relu").fit(X, y).predict(X_test)
    leaky = NTKRegressor(activation="leaky_relu", activation_params={"alpha": 0.0})
    assert_allclose(leaky.fit(X, y).predict(X_test), relu, rtol=1e-12)
    other = leaky.set_params(activation_params={"alpha": 0.3}).fit(X, y)
    assert not np.allclose(other.predict(X_test), relu)


def test_one_sample_fit_is_the_kernel_ridge_formula(rng):
    """With one training row the prediction is ``k(x, x0) y0 / (k(x0, x0) + alpha)``."""
    X, y, X_test = _data(rng, n=1)
    pred = NTKRegressor(alpha=0.5, normalize_y=False).fit(X, y).predict(X_test)
    k_test = kernels.ntk_kernel(X_test, X)[:, 0]
    k00 = kernels.ntk_kernel(X)[0, 0]
    assert_allclose(pred, k_test * y[0] / (k00 + 0.5), rtol=1e-12)
    # with normalize_y (the default) the one target is the intercept
    assert_allclose(NTKRegressor().fit(X, y).predict(X_test), y[0], rtol=1e-12)


def test_zero_sample_weight_removes_the_sample(rng):
    """Zero weights give the model fitted without those rows."""
    X, y, X_test = _data(rng, n_targets=2)
    sw = np.ones(len(X))
    sw[[0, 7, 19]] = 0.0
    for scale in ("absolute", "mean_diag"):
        model = NTKRegressor(alpha=0.1, alpha_scale=scale).fit(X, y, sw)
        keep = sw > 0
        ref = NTKRegressor(alpha=0.1, alpha_scale=scale).fit(X[keep], y[keep])
        assert_allclose(model.predict(X_test), ref.predict(X_test), rtol=1e-9)
        assert_allclose(model.alpha_, ref.alpha_, rtol=1e-12)


def test_integer_sample_weight_equals_repetition(rng):
    """Weight k gives the model fitted on the row repeated k times."""
    X, y, X_test = _data(rng)
    sw = rng.integers(1, 4, size=len(X))
    model = NTKRegressor(alpha=0.1, alpha_scale="mean_diag").fit(X, y, sw)
    rows = np.repeat(np.arange(len(X)), sw)
    ref = NTKRegressor(alpha=0.1, alpha_scale="mean_diag").fit(X[rows], y[rows])
    assert_allclose(model.predict(X_test), ref.predict(X_test), rtol=1e-8)
    assert_allclose(model.alpha_, ref.alpha_, rtol=1e-12)


def test_interpolation_with_duplicate_rows_warns_and_averages(rng):
    """alpha=0 with a duplicated row: warning, and the fit there is the mean target.

    The minimum-norm least-squares solution projects ``y`` on the range of
    ``K``, whose vectors take equal values at the two copies.
    """
    X, y, _ = _data(rng, n=12)
    X = np.vstack([X, X[:1]])
    y = np.append(y, y[0] + 1.0)
    model = NTKRegressor(alpha=0.0, bias_std=0.5, normalize_y=False)
    with pytest.warns(IllConditionedKernelWarning):
        model.fit(X, y)
    fitted = model.predict(X)
    assert np.isfinite(fitted).all()
    assert_allclose(fitted[[0, 12]], [y[0] + 0.5] * 2, rtol=1e-6)
    assert_allclose(fitted[1:12], y[1:12], rtol=1e-6, atol=1e-7)


def test_prediction_streams_within_working_memory(rng):
    """Predicting many rows never holds the full test-by-train kernel."""
    X, y, _ = _data(rng, n=200)
    model = NTKRegressor(working_memory=0.25, n_jobs=1, solver="cholesky").fit(X, y)
    X_test = rng.normal(size=(20_000, 3))
    expected = kernels.ntk_kernel(X_test[:500], X) @ model.dual_coef_
    expected += model.intercept_
    full_kernel_bytes = X_test.shape[0] * X.shape[0] * 8  # 32 MB
    tracemalloc.start()
    try:
        pred = model.predict(X_test)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_allclose(pred[:500], expected, rtol=1e-10)
    assert peak < full_kernel_bytes / 8, f"peak {peak} bytes"


def test_sparse_input_equals_dense(rng):
    """Sparse X (below the densifying limit) gives the dense results."""
    sparse = pytest.importorskip("scipy.sparse")
    X, y, X_test = _data(rng)
    X[X < 0.3] = 0.0
    dense = NTKRegressor().fit(X, y)
    model = NTKRegressor().fit(sparse.csr_array(X), y)
    assert_allclose(model.predict(sparse.csc_matrix(X_test)), dense.predict(X_test))
    assert isinstance(model.X_fit_, np.ndarray)


def test_device_cpu_and_auto_agree_and_gpu_needs_cupy(rng):
    """ "cpu" and "auto" give the same fit; "gpu" raises without CuPy."""
    X, y, X_test = _data(rng)
    cpu = NTKRegressor(device="cpu").fit(X, y).predict(X_test)
    auto = NTKRegressor(device="auto").fit(X, y).predict(X_test)
    assert_allclose(cpu, auto, rtol=0, atol=0)
    if gpu_available():  # pragma: no cover - depends on the machine
        pytest.skip("a GPU is present: the CuPy-missing error cannot be tested")
    with pytest.raises(GPUUnavailableError, match="CuPy"):
        NTKRegressor(device="gpu").fit(X, y)


def test_fitted_x_is_a_copy(rng):
    """Changing the training array after fit does not change the model."""
    X, y, X_test = _data(rng)
    model = NTKRegressor().fit(X, y)
    before = model.predict(X_test)
    X[:] = 0.0
    assert_allclose(model.predict(X_test), before, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------
def _blobs(rng, labels, n_per_class=15, d=3):
    centres = rng.normal(scale=2.0, size=(len(labels), d))
    X = np.vstack([c + rng.normal(size=(n_per_class, d)) for c in centres])
    y = np.repeat(np.asarray(labels, dtype=object), n_per_class)
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


@pytest.mark.parametrize(
    "labels", [["b", "a", "c", "d"], [10, -3, 7], ["yes", "no"], [5, 2]]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_classifier_equals_brute_force_one_vs_all(rng, labels, weighted):
    """Decision values and labels equal a loop of KernelRidge fits on +-1 targets."""
    X, y = _blobs(rng, labels)
    y = np.asarray(y.tolist())  # natural dtype: str or int
    X_test = rng.normal(scale=2.0, size=(20, 3))
    sw = rng.uniform(0.2, 2.0, size=len(y)) if weighted else None
    model = NTKClassifier(alpha=0.3, kernel="nngp", bias_std=0.3).fit(X, y, sw)
    classes = np.unique(y)
    assert_array_equal(model.classes_, classes)
    K = kernels.nngp_kernel(X, bias_std=0.3)
    K_test = kernels.nngp_kernel(X_test, X, bias_std=0.3)
    scores = np.column_stack(
        [
            KernelRidge(alpha=0.3, kernel="precomputed")
            .fit(K, np.where(y == c, 1.0, -1.0), sample_weight=sw)
            .predict(K_test)
            for c in classes
        ]
    )
    decision = model.decision_function(X_test)
    if len(classes) == 2:
        assert decision.shape == (20,)
        assert_allclose(decision, scores[:, 1], rtol=1e-9, atol=1e-12)
        expected = classes[(scores[:, 1] > 0).astype(int)]
    else:
        assert decision.shape == (20, len(classes))
        assert_allclose(decision, scores, rtol=1e-9, atol=1e-12)
        expected = classes[np.argmax(scores, axis=1)]
    assert_array_equal(model.predict(X_test), expected)
    assert model.predict(X_test).dtype == classes.dtype


@pytest.mark.parametrize("n_classes", [2, 3])
def test_deep_linear_network_classifier_is_ridge_classifier(rng, n_classes):
    """Identity activation: equal to RidgeClassifier without intercept on scaled X."""
    X, y = _blobs(rng, list(range(n_classes)), d=4)
    y = y.astype(int)
    X_test = rng.normal(scale=2.0, size=(25, 4))
    s = np.sqrt(3 / X.shape[1])  # depth 2: three Dense layers
    model = NTKClassifier(alpha=2.0, activation="identity", depth=2).fit(X, y)
    ref = RidgeClassifier(alpha=2.0, fit_intercept=False, solver="svd")
    ref.fit(X * s, y)
    assert_allclose(
        model.decision_function(X_test), ref.decision_function(X_test * s), rtol=1e-9
    )
    assert_array_equal(model.predict(X_test), ref.predict(X_test * s))


def test_cross_val_score_with_string_labels(rng):
    """String labels give the same cross-validated accuracy as integer codes."""
    X, y = _blobs(rng, ["setosa", "versicolor", "virginica"], n_per_class=20)
    codes = np.unique(y, return_inverse=True)[1]
    model = NTKClassifier(alpha=0.1, bias_std=0.5)
    cv = KFold(4, shuffle=True, random_state=0)
    scores = cross_val_score(model, X, y.astype(str), cv=cv)
    assert_allclose(scores, cross_val_score(model, X, codes, cv=cv))
    assert scores.mean() > 0.8


def test_classifier_zero_weights_remove_samples(rng):
    """Zero weights give the classifier fitted without those rows."""
    X, y = _blobs(rng, ["x", "y", "z"])
    sw = np.ones(len(y))
    sw[:9] = 0.0
    X_test = rng.normal(size=(10, 3))
    model = NTKClassifier().fit(X, y, sw)
    ref = NTKClassifier().fit(X[9:], y[9:])
    assert_allclose(model.decision_function(X_test), ref.decision_function(X_test))


# ---------------------------------------------------------------------------
# scikit-learn integration
# ---------------------------------------------------------------------------
def test_pipeline_with_fourier_features_in_grid_search(rng):
    """GridSearchCV over depth, alpha and scale picks the best manual CV score."""
    X = rng.uniform(size=(48, 2))
    y = np.sin(6 * X[:, 0]) + X[:, 1] ** 2
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("ff", FourierFeatures(n_components=16, random_state=0)),
            ("ntk", NTKRegressor(alpha_scale="mean_diag")),
        ]
    )
    grid = {"ntk__depth": [1, 3], "ntk__alpha": [1e-3, 1.0], "ff__scale": [0.1, 1.0]}
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, grid, cv=cv).fit(X, y)
    manual = {
        (d, a, s): cross_val_score(
            clone(pipe).set_params(ntk__depth=d, ntk__alpha=a, ff__scale=s), X, y, cv=cv
        ).mean()
        for d in grid["ntk__depth"]
        for a in grid["ntk__alpha"]
        for s in grid["ff__scale"]
    }
    best = max(manual, key=manual.get)
    assert search.best_params_ == dict(
        zip(["ntk__depth", "ntk__alpha", "ff__scale"], best)
    )
    assert_allclose(search.best_score_, manual[best])
    refit = clone(pipe).set_params(**search.best_params_).fit(X, y)
    assert_allclose(search.predict(X), refit.predict(X))


def test_activation_params_can_be_tuned_by_grid_search(rng):
    """A list of dicts for ``activation_params`` works in GridSearchCV."""
    X, y, _ = _data(rng)
    grid = {"activation_params": [{"alpha": 0.0}, {"alpha": 0.5}]}
    search = GridSearchCV(NTKRegressor(activation="leaky_relu"), grid, cv=3)
    search.fit(X, y)
    assert search.best_params_["activation_params"] in grid["activation_params"]
    assert search.cv_results_["mean_test_score"].shape == (2,)


@pytest.mark.parametrize("Estimator", [NTKRegressor, NTKClassifier])
def test_clone_and_pickle_round_trip(rng, Estimator):
    """clone keeps the parameters unfitted; pickle keeps identical predictions."""
    X, y = _blobs(rng, [0, 1, 2])
    y = y.astype(int)
    est = Estimator(alpha=0.2, depth=2, activation_params=None, working_memory=1.0)
    est.fit(X, y)
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()
    assert not hasattr(cloned, "dual_coef_")
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.predict(X), est.predict(X))
    assert_array_equal(restored.dual_coef_, est.dual_coef_)


@pytest.mark.parametrize("Estimator", [NTKRegressor, NTKClassifier])
def test_pandas_input_records_feature_names(rng, Estimator):
    """A DataFrame sets feature_names_in_ and predicts like the NumPy array."""
    pd = pytest.importorskip("pandas")
    X, y = _blobs(rng, [0, 1])
    y = y.astype(int)
    frame = pd.DataFrame(X, columns=["alpha", "beta", "gamma"])
    model = Estimator().fit(frame, pd.Series(y))
    assert_array_equal(model.feature_names_in_, ["alpha", "beta", "gamma"])
    assert model.n_features_in_ == 3
    assert_array_equal(model.predict(frame), Estimator().fit(X, y).predict(X))
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame[["gamma", "beta", "alpha"]])


@pytest.mark.parametrize("n_jobs", [1, -1])
def test_n_jobs_bounds_blas_threads_during_fit_and_predict(n_jobs, monkeypatch):
    """A positive ``n_jobs`` bounds the BLAS threads inside fit and predict;
    ``-1`` leaves them as they are."""
    from threadpoolctl import threadpool_info

    import sknetk._regression as regression

    def blas_threads():
        return [
            info["num_threads"]
            for info in threadpool_info()
            if info["user_api"] == "blas"
        ]

    outside = blas_threads()
    seen = []
    original = regression.check_regression_targets

    def spy(y):
        seen.append(blas_threads())
        return original(y)

    monkeypatch.setattr(regression, "check_regression_targets", spy)
    X = np.random.default_rng(0).normal(size=(20, 3))
    NTKRegressor(n_jobs=n_jobs).fit(X, X[:, 0])
    assert seen, "fit did not run the spied function"
    expected = [1] * len(outside) if n_jobs == 1 else outside
    assert seen[-1] == expected
    assert blas_threads() == outside
