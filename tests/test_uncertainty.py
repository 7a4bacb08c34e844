"""NTKRegressor's intercept (normalize_y) and its calibrated uncertainty.

References are written out here: a centred (weighted) KernelRidge for the
mean, and the Gaussian-process posterior computed by hand with NumPy
(``c (K** - K* (K + alpha W^-1)^-1 K*^T)`` plus the noise ``c alpha``, with
``c`` the maximum-likelihood amplitude of the standardized targets).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.kernel_ridge import KernelRidge

from sknetk import NTKRegressor
from sknetk.dynamics import ensemble_covariance
from sknetk.kernels import nngp_kernel, nngp_ntk_kernels, ntk_kernel

NET = dict(depth=2, bias_std=0.2, n_jobs=1)


def _kernel(kernel, A, B=None):
    function = ntk_kernel if kernel == "ntk" else nngp_kernel
    return function(A, B, depth=2, bias_std=0.2)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    X_test = rng.normal(size=(15, 3))
    y = 50.0 + 8.0 * np.sin(X[:, 0]) + 3.0 * X[:, 1] + rng.normal(size=40)
    return X, y, X_test, rng


def _moments(y, w):
    mean = np.average(y, axis=0, weights=w)
    std = np.sqrt(np.average((y - mean) ** 2, axis=0, weights=w))
    return mean, std


def _gp_by_hand(kernel, X, y, X_test, alpha, w=None):
    """Mean, latent covariance and output scale of the standardized GP, by hand."""
    w = np.ones(len(X)) if w is None else w
    mean, std = _moments(y, w)
    Z = ((y - mean) / std).reshape(len(X), -1)
    keep = w > 0
    K = _kernel(kernel, X[keep])
    A = K + np.diag(alpha / w[keep])
    Ks = _kernel(kernel, X_test, X[keep])
    Kss = _kernel(kernel, X_test)
    c = np.einsum("ij,ij->j", Z[keep], np.linalg.solve(A, Z[keep])) / w.sum()
    mu = Ks @ np.linalg.solve(A, Z[keep]) * std + mean
    latent = Kss - Ks @ np.linalg.solve(A, Ks.T)
    return mu, latent, c * std**2


# ---------------------------------------------------------------------------
# normalize_y: the intercept
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_targets", [None, 3])
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_normalize_y_is_kernel_ridge_on_centred_targets(
    data, weighted, n_targets, kernel
):
    """The mean is KernelRidge on y minus its (weighted) mean, plus that mean."""
    X, y, X_test, rng = data
    if n_targets:
        y = np.c_[y, -3.0 * y + 7.0, rng.normal(size=len(y)) * 1e3]
    w = rng.uniform(0.0, 3.0, size=len(X)) if weighted else None
    model = NTKRegressor(alpha=0.3, kernel=kernel, **NET).fit(X, y, w)
    mean = np.average(y, axis=0, weights=w)
    ref = KernelRidge(alpha=0.3, kernel="precomputed")
    ref.fit(_kernel(kernel, X), y - mean, sample_weight=w)
    expected = ref.predict(_kernel(kernel, X_test, X)) + mean
    assert_allclose(model.predict(X_test), expected, rtol=1e-9)
    assert_allclose(model.intercept_, mean, rtol=1e-12)
    assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-8, atol=1e-10)
    assert np.shape(model.intercept_) == np.shape(mean)


def test_normalize_y_false_is_the_network_without_intercept(data):
    """normalize_y=False is plain KernelRidge on the raw targets, intercept 0."""
    X, y, X_test, _ = data
    model = NTKRegressor(alpha=0.3, normalize_y=False, **NET).fit(X, y)
    ref = KernelRidge(alpha=0.3, kernel="precomputed").fit(_kernel("ntk", X), y)
    assert_allclose(model.predict(X_test), ref.predict(_kernel("ntk", X_test, X)))
    assert model.intercept_ == 0.0


def test_constant_target_predicts_the_constant_with_finite_spread(data):
    """A constant target keeps the scale 1: the prediction is the constant."""
    X, _, X_test, _ = data
    y = np.full(len(X), 1e6 + 0.1)
    model = NTKRegressor(**NET).fit(X, y)
    mean, std = model.predict(X_test, return_std=True)
    assert_allclose(mean, y[0], rtol=1e-14)
    assert np.all(np.isfinite(std)) and np.all(std >= 0)


def test_trajectory_starts_at_the_intercept(data):
    """t=0 predicts the mean; any time equals the refit at that time."""
    X, y, X_test, _ = data
    model = NTKRegressor(alpha=0.1, t=3.0, **NET).fit(X, y)
    curve = model.predict_trajectory(X_test, [0.0, 3.0, np.inf])
    assert_allclose(curve[0], y.mean(), rtol=1e-12)
    assert_allclose(curve[1], model.predict(X_test), rtol=1e-10)
    converged = NTKRegressor(alpha=0.1, **NET).fit(X, y)
    assert_allclose(curve[2], converged.predict(X_test), rtol=1e-8)
    # the flow runs on the standardized targets: y -> a y + b moves it along
    scaled = NTKRegressor(alpha=0.1, t=3.0, **NET).fit(X, 4.0 * y - 2.0)
    assert_allclose(scaled.predict(X_test), 4.0 * model.predict(X_test) - 2.0)


# ---------------------------------------------------------------------------
# Calibrated uncertainty against the Gaussian process written out by hand
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_predictive_distribution_equals_gp_by_hand(data, weighted, kernel):
    """std and cov: c s^2 (K** - K* A^-1 K*^T) (+ c s^2 alpha), A = K + alpha W^-1."""
    X, y, X_test, rng = data
    w = rng.uniform(0.0, 3.0, size=len(X)) if weighted else None
    if weighted:
        w[:4] = 0.0
    model = NTKRegressor(alpha=0.2, kernel=kernel, **NET).fit(X, y, w)
    mu, latent, scale = _gp_by_hand(kernel, X, y, X_test, 0.2, w)
    assert_allclose(model.output_scale_, scale[0], rtol=1e-9)
    predictive = scale * (latent + 0.2 * np.eye(len(X_test)))
    mean, std = model.predict(X_test, return_std=True)
    assert_allclose(mean, mu[:, 0], rtol=1e-9)
    assert_allclose(std, np.sqrt(np.diag(predictive)), rtol=1e-7)
    _, cov = model.predict(X_test, return_cov=True)
    assert_allclose(cov, predictive, rtol=1e-7, atol=1e-9 * scale[0])
    _, cov_f = model.predict(X_test, return_cov=True, latent=True)
    assert_allclose(cov_f, scale * latent, rtol=1e-7, atol=1e-9 * scale[0])


def test_multi_output_scales_per_target(data):
    """Each target has its own output scale; std and cov scale with it."""
    X, y, X_test, rng = data
    Y = np.c_[y, 0.01 * rng.normal(size=len(y)), 100.0 * np.cos(X[:, 2])]
    model = NTKRegressor(alpha=0.2, **NET).fit(X, Y)
    mu, latent, scale = _gp_by_hand("ntk", X, Y, X_test, 0.2)
    assert model.output_scale_.shape == (3,)
    assert_allclose(model.output_scale_, scale, rtol=1e-9)
    mean, std = model.predict(X_test, return_std=True)
    assert std.shape == mean.shape == (len(X_test), 3)
    assert_allclose(mean, mu, rtol=1e-9)
    var = np.diag(latent)[:, None] + 0.2
    assert_allclose(std, np.sqrt(var * scale[None, :]), rtol=1e-7)
    _, cov = model.predict(X_test, return_cov=True)
    assert cov.shape == (len(X_test), len(X_test), 3)
    for k in range(3):
        expected = scale[k] * (latent + 0.2 * np.eye(len(X_test)))
        assert_allclose(cov[:, :, k], expected, rtol=1e-7, atol=1e-9 * scale[k])


@pytest.mark.parametrize("t", [None, 2.0])
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_latent_and_predictive_differ_by_the_noise(data, t, kernel):
    """predictive variance - latent variance = output_scale_ * alpha_, everywhere."""
    X, y, X_test, _ = data
    model = NTKRegressor(alpha=0.5, alpha_scale="mean_diag", t=t, kernel=kernel)
    model.set_params(**NET).fit(X, y)
    _, std = model.predict(X_test, return_std=True)
    _, std_f = model.predict(X_test, return_std=True, latent=True)
    noise = model.output_scale_ * model.alpha_
    assert noise > 0
    assert_allclose(std**2 - std_f**2, noise, rtol=1e-9)
    assert np.all(std_f > 0)


def test_finite_time_shares_the_converged_scale_and_tends_to_it(data):
    """A finite t uses the converged amplitude; its spread tends to the GP's."""
    X, y, X_test, _ = data
    converged = NTKRegressor(alpha=0.2, **NET).fit(X, y)
    late = NTKRegressor(alpha=0.2, t=1e9, **NET).fit(X, y)
    early = NTKRegressor(alpha=0.2, t=0.0, **NET).fit(X, y)
    assert_allclose(late.output_scale_, converged.output_scale_, rtol=1e-12)
    assert_allclose(
        late.predict(X_test, return_std=True)[1],
        converged.predict(X_test, return_std=True)[1],
        rtol=1e-6,
    )
    # at t = 0 nothing is learnt: the latent spread is the prior's
    _, std0 = early.predict(X_test, return_std=True, latent=True)
    prior = np.diag(_kernel("ntk", X_test)) * early.output_scale_
    assert_allclose(std0**2, prior, rtol=1e-10)


def test_integer_weights_equal_repeated_rows_for_the_scale(data):
    """sum(w) in the amplitude: an integer weight is a repeated row."""
    X, y, X_test, rng = data
    w = rng.integers(0, 4, size=len(X)).astype(float)
    idx = np.repeat(np.arange(len(X)), w.astype(int))
    weighted = NTKRegressor(alpha=0.2, **NET).fit(X, y, w)
    repeated = NTKRegressor(alpha=0.2, **NET).fit(X[idx], y[idx])
    assert_allclose(weighted.output_scale_, repeated.output_scale_, rtol=1e-8)
    assert_allclose(
        weighted.predict(X_test, return_std=True)[1],
        repeated.predict(X_test, return_std=True)[1],
        rtol=1e-6,
    )


def test_fixed_output_scale_and_the_network_scale(data):
    """output_scale=c fixes the amplitude (times var(y) with normalize_y)."""
    X, y, X_test, _ = data
    model = NTKRegressor(alpha=0.2, output_scale=2.0, **NET).fit(X, y)
    assert_allclose(model.output_scale_, 2.0 * np.var(y), rtol=1e-12)
    raw = NTKRegressor(alpha=0.2, output_scale=1.0, normalize_y=False, **NET)
    _, std = raw.fit(X, y).predict(X_test, return_std=True, latent=True)
    _, latent, _ = _gp_by_hand("ntk", X, y, X_test, 0.2)
    assert_allclose(std**2, np.diag(latent), rtol=1e-7, atol=1e-12)


def test_ensemble_uncertainty_is_the_scaled_network_ensemble(data):
    """uncertainty="ensemble": the NTK ensemble spread (NNGP prior), scaled."""
    X, y, X_test, _ = data
    model = NTKRegressor(alpha=0.2, uncertainty="ensemble", **NET).fit(X, y)
    K, Theta = nngp_ntk_kernels(X, depth=2, bias_std=0.2)
    Ks, Theta_s = nngp_ntk_kernels(X_test, X, depth=2, bias_std=0.2)
    Kss, _ = nngp_ntk_kernels(X_test, depth=2, bias_std=0.2)
    var = ensemble_covariance(
        K,
        Ks,
        np.diag(Kss),
        ntk_train_train=Theta,
        ntk_test_train=Theta_s,
        ridge=0.2,
    )
    _, std = model.predict(X_test, return_std=True, latent=True)
    assert_allclose(std**2, model.output_scale_ * var, rtol=1e-7)
    gp = NTKRegressor(alpha=0.2, **NET).fit(X, y)
    assert_allclose(gp.output_scale_, model.output_scale_)
    assert not np.allclose(gp.predict(X_test, return_std=True)[1], std)


def test_nystrom_fit_has_no_output_scale(data):
    X, y, _, _ = data
    model = NTKRegressor(solver="nystrom", n_centers=10, random_state=0, **NET)
    assert model.fit(X, y).output_scale_ is None


# ---------------------------------------------------------------------------
# Coverage on data drawn from the model
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_intervals_cover_95_percent_of_gp_samples(kernel):
    """y ~ GP(c K) + noise c alpha: the 95% intervals cover about 95%.

    Five independent draws of 300 training and 500 test rows; the average
    coverage has a standard error of about 0.5% (the intervals are exact for
    data from the model, up to the estimated scale), so the bounds hold for
    any seed.
    """
    rng = np.random.default_rng(12345)
    covered, ratios = [], []
    for _ in range(5):
        X = rng.normal(size=(800, 2))
        K = _kernel(kernel, X)
        c, alpha = 7.0, 0.3
        L = np.linalg.cholesky(c * (K + alpha * np.eye(800)))
        y = 3.0 + L @ rng.normal(size=800)
        model = NTKRegressor(alpha=alpha, kernel=kernel, **NET).fit(X[:300], y[:300])
        mean, std = model.predict(X[300:], return_std=True)
        covered.append(np.mean(np.abs(y[300:] - mean) <= 1.959964 * std))
        ratios.append(model.output_scale_ / c)
    assert 0.92 <= np.mean(covered) <= 0.98
    # the fitted amplitude recovers c (its relative error is about sqrt(2/n))
    assert 0.75 <= np.mean(ratios) <= 1.25
