"""Training time, uncertainty, frozen layers and kernel caching in the estimators.

References: neural-tangents' ``gradient_descent_mse_ensemble`` and
``gp_inference`` values stored in ``tests/data/ntk_reference.npz`` (end to end,
from the data); closed forms with ``scipy.linalg.expm``; scikit-learn's
``GaussianProcessRegressor`` and ``KernelRidge`` on the same kernels; repetition
of rows for integer sample weights; brute-force one-vs-all regressions; refits
at each time for the trajectories; and counted kernel computations.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.linalg import expm
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Kernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import LabelBinarizer

from sknetk._classification import NTKClassifier
from sknetk._regression import NTKRegressor
from sknetk.kernels import nngp_diag, nngp_kernel, nngp_ntk_kernels, ntk_kernel

from ._reference import kernel_kwargs, load

REF, INDEX = load()
PRED_KERNELS = {case["id"]: case for case in INDEX["prediction_kernels"]}
TIMES = REF["pred/t"]  # 1, 10, 100, inf
# End to end from the data (REFERENCE_README.md); observed: 1.2e-9 or better.
RTOL = 1e-6

NETWORK = dict(depth=2, activation="erf", weight_std=1.3, bias_std=0.3)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _data(rng, n=24, m=9, d=3, n_targets=None):
    X = rng.normal(size=(n, d))
    k = 1 if n_targets is None else n_targets
    y = np.sin(2 * X[:, :1]) + 0.1 * rng.normal(size=(n, k))
    return X, (y[:, 0] if n_targets is None else y), rng.normal(size=(m, d))


def _rel(a, ref):
    return np.max(np.abs(np.asarray(a) - ref)) / (np.max(np.abs(ref)) or 1.0)


def _model_for(case, kernel, **params):
    """An estimator equal to a fixture case (``diag_reg`` and its scaling)."""
    return NTKRegressor(
        normalize_y=False,
        output_scale=1.0,
        uncertainty="ensemble",
        alpha=case["diag_reg"],
        alpha_scale="absolute" if case["diag_reg_absolute_scale"] else "mean_diag",
        kernel=kernel,
        **kernel_kwargs(PRED_KERNELS[case["kernel"]]),
        **params,
    )


def _flow_matrix(K, t_over_n, ridge, w=None):
    """``W^1/2 (I - expm(-B s)) B^-1 W^1/2``, ``B = W^1/2 K W^1/2 + ridge I``."""
    root = np.ones(len(K)) if w is None else np.sqrt(w)
    B = root[:, None] * K * root[None, :] + ridge * np.eye(len(K))
    F = np.linalg.solve(B, np.eye(len(K)) - expm(-B * t_over_n))
    return root[:, None] * F * root[None, :]


# ---------------------------------------------------------------------------
# neural-tangents fixtures, end to end through the estimator
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", INDEX["predictions"], ids=lambda c: c["id"])
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_finite_time_predictions_match_neural_tangents(case, kernel):
    """t, predict_trajectory and t=None equal gradient_descent_mse_ensemble."""
    X, X_test = REF["pred/X_train"], REF["pred/X_test"]
    y = REF[f"pred/{case['y']}"]
    lr = case["learning_rate"]
    prefix = f"pred/{case['id']}/{kernel}_"
    expected = REF[prefix + "mean_t"]
    model = _model_for(case, kernel).fit(X, y)
    assert model.alpha_ == pytest.approx(case[f"{kernel}_reg_abs"], rel=RTOL)
    assert _rel(model.predict(X_test), REF[prefix + "mean_inf"]) <= RTOL
    curve = model.predict_trajectory(X_test, lr * TIMES)
    assert curve.shape == expected.shape
    assert _rel(curve, expected) <= RTOL
    for i, t in enumerate(TIMES):
        pred = clone(model).set_params(t=lr * t).fit(X, y).predict(X_test)
        assert _rel(pred, expected[i]) <= RTOL


@pytest.mark.parametrize("case", INDEX["gp_inference"], ids=lambda c: c["id"])
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_uncertainty_matches_neural_tangents(case, kernel):
    """return_cov / return_std equal gp_inference's NNGP posterior and NTK ensemble."""
    X, X_test = REF["pred/X_train"], REF["pred/X_test"]
    model = _model_for(case, kernel).fit(X, REF["pred/y_train"])
    prefix = f"gp/{case['id']}/{kernel}_"
    ref_cov = REF[prefix + "cov"]
    # A covariance is K_** minus terms of its size: errors relative to max|K_**|.
    scale = max(
        np.max(np.abs(REF[f"pred/{case['kernel']}/nngp_test_test"])),
        np.max(np.abs(ref_cov)),
    )
    mean, cov = model.predict(X_test, return_cov=True, latent=True)
    assert cov.shape == ref_cov.shape + (1,)  # y_train has one column
    assert _rel(mean, REF[prefix + "mean"]) <= RTOL
    assert np.max(np.abs(cov[..., 0] - ref_cov)) <= RTOL * scale
    mean_s, std = model.predict(X_test, return_std=True, latent=True)
    assert std.shape == mean_s.shape == (len(X_test), 1)
    assert_allclose(mean_s, mean, rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(std)) and np.all(std >= 0)
    assert np.max(np.abs(std[:, 0] ** 2 - np.clip(np.diag(ref_cov), 0, None))) <= (
        RTOL * scale
    )


# ---------------------------------------------------------------------------
# Finite training time against closed forms
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_targets", [None, 2])
def test_finite_time_equals_matrix_exponential(rng, kernel, weighted, n_targets):
    """Mean at time t is ``K_* W^1/2 (I - e^{-Bt/N}) B^-1 W^1/2 y`` (scipy expm).

    ``N = sum(w) * n_targets``: the weighted loss is a weighted mean.
    """
    X, y, X_test = _data(rng, n_targets=n_targets)
    w = rng.uniform(0.3, 2.0, size=len(X)) if weighted else None
    t, ridge = 7.0, 0.05
    N = y.size if w is None else w.sum() * y.size / len(X)
    model = NTKRegressor(
        normalize_y=False, alpha=ridge, kernel=kernel, t=t, **NETWORK
    ).fit(X, y, w)
    function = ntk_kernel if kernel == "ntk" else nngp_kernel
    F = _flow_matrix(function(X, **NETWORK), t / N, ridge, w)
    assert_allclose(model.dual_coef_, F @ y, rtol=1e-9, atol=1e-12)
    expected = function(X_test, X, **NETWORK) @ F @ y
    assert_allclose(model.predict(X_test), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("weighted", [False, True])
def test_finite_time_covariance_equals_matrix_exponential(rng, kernel, weighted):
    """Covariance at time t from expm: the trained NTK ensemble, and for the
    NNGP neural-tangents' readout-only formula ``K** - K* (I - e^{-2Bt/N}) B^-1 K*^T``.
    """
    X, y, X_test = _data(rng, n_targets=2)
    w = rng.uniform(0.3, 2.0, size=len(X)) if weighted else None
    t, ridge = 30.0, 0.02
    N = y.size if w is None else w.sum() * y.size / len(X)
    model = NTKRegressor(
        normalize_y=False,
        output_scale=1.0,
        uncertainty="ensemble",
        alpha=ridge,
        kernel=kernel,
        t=t,
        **NETWORK,
    ).fit(X, y, w)
    K, Theta = nngp_ntk_kernels(X, **NETWORK)
    Ks, Thetas = nngp_ntk_kernels(X_test, X, **NETWORK)
    Kss = nngp_kernel(X_test, **NETWORK)
    if kernel == "ntk":
        P = Thetas @ _flow_matrix(Theta, t / N, ridge, w)
        expected = Kss - P @ Ks.T - Ks @ P.T + P @ K @ P.T
    else:
        expected = Kss - Ks @ _flow_matrix(K, 2 * t / N, ridge, w) @ Ks.T
    mean, cov = model.predict(X_test, return_cov=True, latent=True)
    assert cov.shape == (len(X_test), len(X_test), 2)
    assert_array_equal(cov[..., 0], cov[..., 1])
    atol = 1e-10 * np.abs(Kss).max()
    assert_allclose(cov[..., 0], expected, rtol=1e-8, atol=atol)
    assert_allclose(mean, model.predict(X_test), rtol=1e-12, atol=1e-14)
    _, std = model.predict(X_test, return_std=True, latent=True)
    assert std.shape == (len(X_test), 2)
    assert_allclose(std[:, 1] ** 2, np.diag(expected), rtol=1e-8, atol=atol)


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_training_time_limits(rng, kernel):
    """t=0: zero mean and the NNGP prior; t large: the converged model."""
    X, y, X_test = _data(rng)
    prior = nngp_kernel(X_test, **NETWORK)
    start = NTKRegressor(
        normalize_y=False,
        output_scale=1.0,
        uncertainty="ensemble",
        alpha=0.1,
        kernel=kernel,
        t=0.0,
        **NETWORK,
    ).fit(X, y)
    assert_array_equal(start.predict(X_test), 0.0)
    assert_allclose(
        start.predict(X_test, return_cov=True, latent=True)[1], prior, rtol=1e-12
    )
    late = NTKRegressor(
        normalize_y=False, alpha=0.1, kernel=kernel, t=1e9, **NETWORK
    ).fit(X, y)
    done = NTKRegressor(normalize_y=False, alpha=0.1, kernel=kernel, **NETWORK).fit(
        X, y
    )
    assert_allclose(late.predict(X_test), done.predict(X_test), rtol=1e-8)
    assert_allclose(
        late.predict(X_test, return_cov=True, latent=True)[1],
        done.predict(X_test, return_cov=True, latent=True)[1],
        rtol=1e-7,
        atol=1e-10 * prior.max(),
    )
    inf = NTKRegressor(
        normalize_y=False, alpha=0.1, kernel=kernel, t=math.inf, **NETWORK
    ).fit(X, y)
    assert_array_equal(inf.dual_coef_, done.dual_coef_)


def test_finite_time_on_singular_kernel_is_finite_without_warning(rng):
    """alpha=0 with duplicated rows: the flow never divides by a null eigenvalue."""
    X, y, X_test = _data(rng)
    X[1] = X[0]
    y[1] = y[0] + 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = NTKRegressor(
            normalize_y=False,
            output_scale=1.0,
            uncertainty="ensemble",
            alpha=0.0,
            t=50.0,
        ).fit(X, y)
        pred, std = model.predict(X_test, return_std=True, latent=True)
        curve = model.predict_trajectory(X_test, [0.0, 1.0, np.inf])
    for a in (pred, std, curve):
        assert np.all(np.isfinite(a))


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("t", [3.0, None])
def test_integer_weights_equal_repeated_rows(rng, kernel, t):
    """Weight k = the row repeated k times (0 = removed), at every training time."""
    X, y, X_test = _data(rng, n=15)
    w = rng.integers(0, 4, size=len(X)).astype(float)
    w[:2] = (0.0, 3.0)
    params = dict(alpha=0.03, alpha_scale="mean_diag", kernel=kernel, **NETWORK)
    weighted = NTKRegressor(t=t, **params).fit(X, y, w)
    idx = np.repeat(np.arange(len(X)), w.astype(int))
    repeated = NTKRegressor(t=t, **params).fit(X[idx], y[idx])
    assert weighted.alpha_ == pytest.approx(repeated.alpha_, rel=1e-12)
    for a, b in zip(
        weighted.predict(X_test, return_cov=True),
        repeated.predict(X_test, return_cov=True),
    ):
        assert_allclose(a, b, rtol=1e-8, atol=1e-11)
    assert_allclose(
        weighted.predict(X_test, return_std=True)[1],
        repeated.predict(X_test, return_std=True)[1],
        rtol=1e-7,
        atol=1e-9,
    )
    times = np.array([0.5, 5.0, np.inf])
    assert_allclose(
        weighted.predict_trajectory(X_test, times),
        repeated.predict_trajectory(X_test, times),
        rtol=1e-8,
        atol=1e-11,
    )


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_finite_time_is_one_vs_all_regression(rng, n_classes):
    """NTKClassifier(t) decisions = NTKRegressor(t) on the +-1 one-vs-all targets."""
    X, _, X_test = _data(rng)
    labels = np.array(["a", "b", "c"][:n_classes])[rng.integers(0, n_classes, len(X))]
    labels[:n_classes] = ["a", "b", "c"][:n_classes]
    params = dict(alpha=0.01, alpha_scale="mean_diag", t=20.0, **NETWORK)
    clf = NTKClassifier(**params).fit(X, labels)
    Y = LabelBinarizer(neg_label=-1).fit_transform(labels).astype(float)
    Y = Y[:, 0] if n_classes == 2 else Y
    reg = NTKRegressor(normalize_y=False, **params).fit(X, Y)
    assert_allclose(clf.decision_function(X_test), reg.predict(X_test), rtol=1e-12)
    converged = NTKClassifier(**{**params, "t": None}).fit(X, labels)
    assert not np.allclose(
        clf.decision_function(X_test), converged.decision_function(X_test)
    )


# ---------------------------------------------------------------------------
# predict_trajectory
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_targets", [None, 3])
def test_trajectory_equals_refits_at_each_time(rng, n_targets):
    """trajectory[i] equals set_params(t=times[i]).fit().predict(), any y shape."""
    X, y, X_test = _data(rng, n_targets=n_targets)
    w = rng.uniform(0.0, 2.0, size=len(X))
    times = [0.0, 0.3, 4.0, 60.0, np.inf]
    model = NTKRegressor(alpha=0.01, bias_std=0.2, t=4.0).fit(X, y, w)
    curve = model.predict_trajectory(X_test, times)
    assert curve.shape == (len(times),) + model.predict(X_test).shape
    for i, t in enumerate(times):
        refit = clone(model).set_params(t=t).fit(X, y, w)
        assert_allclose(curve[i], refit.predict(X_test), rtol=1e-9, atol=1e-12)
    sparse = model.predict_trajectory(sp.coo_matrix(X_test), times)
    assert_allclose(sparse, curve, rtol=1e-12, atol=1e-14)


def test_trajectory_rejects_bad_times(rng):
    """Negative, NaN, empty and 2-D times raise ValueError."""
    X, y, X_test = _data(rng)
    model = NTKRegressor().fit(X, y)
    for times in ([-1.0, 1.0], [np.nan], [], [[1.0, 2.0]], 3.0):
        with pytest.raises(ValueError, match="times"):
            model.predict_trajectory(X_test, times)


# ---------------------------------------------------------------------------
# Uncertainty
# ---------------------------------------------------------------------------
class _NNGPKernel(Kernel):
    """The NNGP kernel as a scikit-learn GP kernel without hyperparameters."""

    def __init__(self, depth=2, bias_std=0.3):
        self.depth = depth
        self.bias_std = bias_std

    def __call__(self, X, Y=None, eval_gradient=False):
        return nngp_kernel(X, Y, depth=self.depth, bias_std=self.bias_std)

    def diag(self, X):
        return nngp_diag(X, depth=self.depth, bias_std=self.bias_std)

    def is_stationary(self):
        return False


@pytest.mark.parametrize("weighted", [False, True])
def test_nngp_uncertainty_equals_gaussian_process_regressor(rng, weighted):
    """kernel="nngp" is scikit-learn's GP with the NNGP kernel and noise alpha / w."""
    X, y, X_test = _data(rng, n_targets=3)
    w = rng.uniform(0.5, 2.0, size=len(X)) if weighted else np.ones(len(X))
    model = NTKRegressor(
        normalize_y=False,
        output_scale=1.0,
        uncertainty="ensemble",
        kernel="nngp",
        alpha=0.02,
        depth=2,
        bias_std=0.3,
    )
    model.fit(X, y, w if weighted else None)
    gp = GaussianProcessRegressor(_NNGPKernel(), alpha=0.02 / w, optimizer=None)
    gp.fit(X, y)
    for option in ("return_std", "return_cov"):
        got = model.predict(X_test, **{option: True}, latent=True)
        expected = gp.predict(X_test, **{option: True})
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            assert_allclose(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.slow  # a subprocess or many rows: seconds
def test_std_streams_in_blocks_and_equals_covariance_diagonal(rng):
    """With a tiny working_memory the std is computed block by block, unchanged."""
    X, y, _ = _data(rng, n=12)
    X_test = rng.normal(size=(40, X.shape[1]))
    for kernel in ("ntk", "nngp"):
        model = NTKRegressor(alpha=0.1, kernel=kernel, t=5.0, working_memory=1e-4)
        model.fit(X, y)
        mean, std = model.predict(X_test, return_std=True)
        _, cov = model.predict(X_test, return_cov=True)
        assert_allclose(std**2, np.clip(np.diag(cov), 0, None), rtol=1e-9, atol=1e-12)
        assert_allclose(mean, model.predict(X_test), rtol=1e-12, atol=1e-14)
        _, std_sparse = model.predict(sp.csr_matrix(X_test), return_std=True)
        assert_allclose(std_sparse, std, rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_uncertainty_of_overflowing_X_raises_instead_of_nan(rng, kernel):
    """Rows so large that the kernels overflow raise, as predict does."""
    X, y, X_test = _data(rng)
    model = NTKRegressor(kernel=kernel, t=1.0).fit(X, y)
    for option in ("return_std", "return_cov"):
        with pytest.raises(ValueError, match="overflows"):
            model.predict(X_test * 1e200, **{option: True})
    with pytest.raises(ValueError, match="overflows"):
        model.predict_trajectory(X_test * 1e200, [1.0])


def test_return_std_and_return_cov_together_raise(rng):
    """Asking for both is an error, as in GaussianProcessRegressor."""
    X, y, X_test = _data(rng)
    model = NTKRegressor().fit(X, y)
    with pytest.raises(ValueError, match="At most one"):
        model.predict(X_test, return_std=True, return_cov=True)


# ---------------------------------------------------------------------------
# Frozen layers
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("frozen_layers", [1, 2])
def test_frozen_layers_equal_kernel_ridge_on_frozen_ntk(rng, frozen_layers):
    """frozen_layers=f is KernelRidge on the NTK without the first f layers' terms."""
    X, y, X_test = _data(rng)
    params = dict(depth=3, bias_std=0.2, frozen_layers=frozen_layers)
    model = NTKRegressor(
        normalize_y=False,
        output_scale=1.0,
        uncertainty="ensemble",
        alpha=0.05,
        **params,
    ).fit(X, y)
    K, Theta = nngp_ntk_kernels(X, **params)
    Ks, Thetas = nngp_ntk_kernels(X_test, X, **params)
    ref = KernelRidge(alpha=0.05, kernel="precomputed").fit(Theta, y)
    assert_allclose(model.predict(X_test), ref.predict(Thetas), rtol=1e-9)
    # The ensemble covariance pairs the frozen NTK with the unchanged NNGP.
    P = Thetas @ np.linalg.inv(Theta + 0.05 * np.eye(len(X)))
    Kss = nngp_kernel(X_test, depth=3, bias_std=0.2)
    expected = Kss - P @ Ks.T - Ks @ P.T + P @ K @ P.T
    assert_allclose(
        model.predict(X_test, return_cov=True, latent=True)[1],
        expected,
        rtol=1e-7,
        atol=1e-10 * Kss.max(),
    )
    clf = NTKClassifier(alpha=0.05, **params).fit(X, y > 0)
    ref = KernelRidge(alpha=0.05, kernel="precomputed").fit(Theta, 2.0 * (y > 0) - 1)
    assert_allclose(clf.decision_function(X_test), ref.predict(Thetas), rtol=1e-9)


def test_all_layers_frozen_is_the_nngp(rng):
    """Freezing every hidden layer trains the readout alone: kernel="nngp"."""
    X, y, X_test = _data(rng)
    frozen = NTKRegressor(alpha=0.1, depth=3, frozen_layers=3, t=2.0).fit(X, y)
    nngp = NTKRegressor(alpha=0.1, depth=3, kernel="nngp", t=2.0).fit(X, y)
    assert_allclose(frozen.predict(X_test), nngp.predict(X_test), rtol=1e-12)


@pytest.mark.parametrize("Estimator", [NTKRegressor, NTKClassifier])
def test_frozen_layers_checks(rng, Estimator):
    """More frozen layers than depth, or frozen layers with the NNGP, raise."""
    X, y, _ = _data(rng)
    y = y > 0
    with pytest.raises(ValueError, match="frozen_layers"):
        Estimator(depth=2, frozen_layers=3).fit(X, y)
    with pytest.raises(ValueError, match="frozen_layers"):
        Estimator(kernel="nngp", frozen_layers=1).fit(X, y)


# ---------------------------------------------------------------------------
# memory: cached kernels
# ---------------------------------------------------------------------------
def _count_kernel_computations(monkeypatch):
    """Count the kernel computations that go through ``sknetk._cache``."""
    import sknetk._cache as cache

    calls = []
    for name in ("ntk_kernel", "nngp_kernel", "nngp_ntk_kernels"):
        original = getattr(cache, name)

        def wrapper(*args, _original=original, **kwargs):
            calls.append("train" if args[1] is None else "test")
            return _original(*args, **kwargs)

        monkeypatch.setattr(cache, name, wrapper)
    return calls


@pytest.mark.parametrize("Estimator", [NTKRegressor, NTKClassifier])
def test_grid_search_with_memory_computes_each_fold_kernel_once(
    rng, tmp_path, monkeypatch, Estimator
):
    """5 alphas x 5 folds: one train and one test kernel per fold, then the refit."""
    X, y, _ = _data(rng, n=30)
    if Estimator is NTKClassifier:
        y = y > np.median(y)
    grid = {"alpha": [1e-3, 1e-2, 0.1, 1.0, 10.0]}
    plain = GridSearchCV(Estimator(**NETWORK), grid, cv=KFold(5)).fit(X, y)
    calls = _count_kernel_computations(monkeypatch)
    cached = GridSearchCV(
        Estimator(memory=str(tmp_path), **NETWORK), grid, cv=KFold(5)
    ).fit(X, y)
    assert len(calls) == 5 * 2 + 1  # without memory: 5 * 5 * 2 + 1
    assert_allclose(
        cached.cv_results_["mean_test_score"],
        plain.cv_results_["mean_test_score"],
        rtol=1e-12,
    )
    assert cached.best_params_ == plain.best_params_
    # A second search over other kernel-free parameters computes nothing.
    grid2 = {"alpha": [0.5, 5.0], "t": [None, 10.0], "alpha_scale": ["mean_diag"]}
    GridSearchCV(Estimator(memory=str(tmp_path), **NETWORK), grid2, cv=KFold(5)).fit(
        X, y
    )
    assert len(calls) == 5 * 2 + 1


def test_memory_serves_trajectory_and_uncertainty(rng, tmp_path, monkeypatch):
    """After fit, the training kernels come from the cache; results unchanged."""
    X, y, X_test = _data(rng)
    params = dict(alpha=0.1, t=3.0, frozen_layers=1, **NETWORK)
    times = [1.0, 10.0]
    plain = NTKRegressor(**params).fit(X, y)
    expected = [
        plain.predict_trajectory(X_test, times),
        *plain.predict(X_test, return_std=True),
        *plain.predict(X_test, return_cov=True),
    ]
    calls = _count_kernel_computations(monkeypatch)
    model = NTKRegressor(memory=str(tmp_path), **params).fit(X, y)
    assert calls == ["train"]
    assert_allclose(model.predict_trajectory(X_test, times), expected[0], rtol=1e-12)
    assert calls == ["train", "test"]  # K(X_test, X_fit_) was new
    got = [
        *model.predict(X_test, return_std=True),
        *model.predict(X_test, return_cov=True),
    ]
    for a, b in zip(got, expected[1:]):
        assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    n_calls = len(calls)  # plus the NNGP blocks of the uncertainty
    model.predict(X_test, return_std=True)
    model.predict(X_test, return_cov=True)
    model.predict_trajectory(X_test, times)
    assert len(calls) == n_calls  # everything was cached the first time


# ---------------------------------------------------------------------------
# The device code path (array-API generic), run on array_api_strict
# ---------------------------------------------------------------------------
def test_non_numpy_namespace_path(rng, monkeypatch):
    """Trajectory and uncertainty computed in another namespace equal NumPy's."""
    xp = pytest.importorskip("array_api_strict")
    X, y, X_test = _data(rng, n_targets=2)
    w = rng.uniform(0.0, 2.0, size=len(X))
    for kernel, t in (("ntk", 4.0), ("nngp", 4.0), ("nngp", None)):
        model = NTKRegressor(alpha=0.05, kernel=kernel, t=t, **NETWORK).fit(X, y, w)
        ref = (
            model.predict_trajectory(X_test, [1.0, np.inf]),
            *model.predict(X_test, return_cov=True),
            model.predict(X_test, return_std=True)[1],
        )
        monkeypatch.setattr(
            NTKRegressor, "_device_converter", lambda self, n: (xp.asarray, "cpu")
        )
        got = (
            model.predict_trajectory(X_test, [1.0, np.inf]),
            *model.predict(X_test, return_cov=True),
            model.predict(X_test, return_std=True)[1],
        )
        monkeypatch.undo()
        for a, b in zip(got, ref):
            assert isinstance(a, np.ndarray)
            # The two kernel code paths differ by ~1e-9 on the diagonal.
            assert_allclose(a, b, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------
# GPU (skipped without CuPy and a CUDA device)
# ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_gpu_finite_time_equals_cpu(rng, kernel):
    """device="gpu": finite-t fit, trajectory and std equal the CPU's."""
    cupy = pytest.importorskip("cupy")
    X, y, X_test = _data(rng, n=200, m=50, n_targets=2)
    w = rng.uniform(0.0, 2.0, size=len(X))
    params = dict(alpha=0.01, alpha_scale="mean_diag", kernel=kernel, t=30.0, **NETWORK)
    cpu = NTKRegressor(device="cpu", **params).fit(X, y, w)
    gpu = NTKRegressor(device="gpu", **params).fit(X, y, w)
    assert isinstance(gpu.dual_coef_, np.ndarray)
    assert gpu.alpha_ == pytest.approx(cpu.alpha_, rel=1e-10)
    assert_allclose(gpu.dual_coef_, cpu.dual_coef_, rtol=1e-6, atol=1e-9)
    assert_allclose(gpu.predict(X_test), cpu.predict(X_test), rtol=1e-6, atol=1e-9)
    times = [1.0, 30.0, np.inf]
    assert_allclose(
        gpu.predict_trajectory(X_test, times),
        cpu.predict_trajectory(X_test, times),
        rtol=1e-6,
        atol=1e-9,
    )
    mean, std = gpu.predict(cupy.asarray(X_test), return_std=True)
    assert isinstance(std, cupy.ndarray)
    assert_allclose(
        cupy.asnumpy(std), cpu.predict(X_test, return_std=True)[1], rtol=1e-6, atol=1e-9
    )


def test_gpu_flow_fit_logic_on_numpy(rng, monkeypatch):
    """The finite-t GPU fit, with NumPy standing in for CuPy, equals the CPU fit."""
    from types import SimpleNamespace

    import sknetk._base

    fake_cupy = SimpleNamespace(
        asarray=np.asarray,
        asnumpy=np.asarray,
        get_default_memory_pool=lambda: SimpleNamespace(free_all_blocks=lambda: None),
    )

    def kernel_on_cpu(X, device, **params):
        assert device == "gpu"
        return ntk_kernel(X, device="cpu", **params)

    X, y, _ = _data(rng, n_targets=2)
    w = rng.uniform(0.0, 2.0, size=len(X))
    model = NTKRegressor(
        alpha=0.01,
        alpha_scale="mean_diag",
        t=5.0,
        frozen_layers=1,
        solver="cholesky",
        **NETWORK,
    )
    ref = clone(model).fit(X, y, w)
    monkeypatch.setattr(sknetk._base, "cupy_or_error", lambda: fake_cupy)
    monkeypatch.setattr(sknetk._base, "ntk_kernel", kernel_on_cpu)
    monkeypatch.setattr(NTKRegressor, "_compute_device", lambda self, n, **kw: "gpu")
    model.fit(X, y, w)
    assert model.alpha_ == pytest.approx(ref.alpha_, rel=1e-12)
    assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-10, atol=1e-13)
