"""Edge cases of training time and uncertainty.

Empty time lists, zero-weight rows, frozen layers with weights, training times
from 0 through subnormal to infinity, one and two samples, NumPy integer
scalars. References: dense closed forms (``scipy.linalg.expm``), the
estimator refitted without the zero-weight rows, the ``t -> 0`` and
``t -> inf`` limits.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.linalg import expm

from sknetk._cv import NTKRegressorCV
from sknetk._regression import NTKRegressor
from sknetk.dynamics import (
    ensemble_covariance,
    gradient_flow_dual_coef,
    gradient_flow_predict,
)
from sknetk.kernels import nngp_kernel, nngp_ntk_kernels, ntk_kernel
from sknetk.spectrum import kernel_spectrum

# The raw network of the dynamics functions: no intercept, the network's own
# output scale, the trained ensemble's covariance of the function.
RAW = dict(normalize_y=False, output_scale=1.0, uncertainty="ensemble")


def _data(seed, n=16, d=3, n_targets=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.normal(size=n)
    if n_targets:
        y = np.column_stack([y] + [np.cos(X[:, j]) for j in range(n_targets - 1)])
    return X, y, rng


def test_empty_time_lists_raise_clearly():
    """t=[] in the dynamics functions says so (no bare stacking error)."""
    X, y, rng = _data(0, n=6)
    K, Theta = nngp_ntk_kernels(X)
    Ks, Thetas = nngp_ntk_kernels(X[:2], X)
    for call in (
        lambda: gradient_flow_predict(Theta, Thetas, y, t=[]),
        lambda: gradient_flow_dual_coef(Theta, y, t=np.array([])),
        lambda: ensemble_covariance(K, Ks, np.diag(K)[:2], t=[]),
    ):
        with pytest.raises(ValueError, match="at least one time"):
            call()


# ---------------------------------------------------------------------------
# Uncertainty and training time through the estimator
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("t", [None, 2.5])
def test_zero_weight_rows_are_dropped_everywhere(kernel, t):
    """Zero weights = the rows removed: mean, cov, std and trajectory (multi-output)."""
    X, Y, rng = _data(11, n=14, n_targets=3)
    X_test = rng.normal(size=(5, 3))
    w = np.ones(len(X))
    w[[0, 6, 9]] = 0.0
    keep = w > 0
    params = dict(
        alpha=0.05, t=t, kernel=kernel, depth=3, bias_std=0.2, alpha_scale="mean_diag"
    )
    a = NTKRegressor(**params).fit(X, Y, sample_weight=w)
    b = NTKRegressor(**params).fit(X[keep], Y[keep])
    for u, v in zip(
        a.predict(X_test, return_cov=True), b.predict(X_test, return_cov=True)
    ):
        assert_allclose(u, v, rtol=1e-9, atol=1e-12)
    assert_allclose(
        a.predict(X_test, return_std=True)[1],
        b.predict(X_test, return_std=True)[1],
        rtol=1e-9,
        atol=1e-12,
    )
    times = [3.0, 0.0, np.inf, 3.0, 0.2]  # unsorted, repeated, 0 and inf
    assert_allclose(
        a.predict_trajectory(X_test, times),
        b.predict_trajectory(X_test, times),
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("frozen_layers", [0, 1, 3])
@pytest.mark.parametrize("t", [0.7, 30.0, None])
def test_weighted_frozen_covariance_equals_dense_formula(frozen_layers, t):
    """K** - P K*^T - K* P^T + P K P^T with P from expm (weights, 2 targets)."""
    X, Y, rng = _data(3, n=15, n_targets=2)
    X_test = rng.normal(size=(4, 3))
    w = rng.uniform(0.3, 2.0, size=len(X))
    net = dict(depth=3, bias_std=0.2, activation="erf")
    model = NTKRegressor(alpha=0.02, frozen_layers=frozen_layers, t=t, **RAW, **net)
    model.fit(X, Y, sample_weight=w)
    mean, cov = model.predict(X_test, return_cov=True, latent=True)
    K, _ = nngp_ntk_kernels(X, **net)
    _, Theta = nngp_ntk_kernels(X, frozen_layers=frozen_layers, **net)
    Ks, _ = nngp_ntk_kernels(X_test, X, **net)
    _, Thetas = nngp_ntk_kernels(X_test, X, frozen_layers=frozen_layers, **net)
    Kss = nngp_kernel(X_test, **net)
    root = np.sqrt(w)
    B = root[:, None] * Theta * root[None, :] + 0.02 * np.eye(len(X))
    decay = 0.0 if t is None else expm(-B * t / (w.sum() * 2))
    T = root[:, None] * np.linalg.solve(B, np.eye(len(X)) - decay) * root[None, :]
    P = Thetas @ T
    ref = Kss - P @ Ks.T - Ks @ P.T + P @ K @ P.T
    assert cov.shape == (4, 4, 2)
    assert_allclose(cov[..., 0], ref, rtol=1e-9, atol=1e-12)
    assert_array_equal(cov[..., 0], cov[..., 1])
    assert_allclose(mean, P @ Y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_extreme_training_times_are_finite_and_consistent(kernel):
    """t in {0, subnormal, tiny, huge, max float, inf}: finite, with the limits."""
    X, y, rng = _data(8, n=12)
    X_test = rng.normal(size=(4, 3))
    params = dict(alpha=1e-3, kernel=kernel, depth=2, bias_std=0.1, **RAW)
    converged = NTKRegressor(**params).fit(X, y)
    prior = nngp_kernel(X_test, depth=2, bias_std=0.1)
    for t in (0.0, 5e-324, 1e-300, 1e-8, 1e300, np.finfo(float).max, np.inf):
        model = NTKRegressor(t=t, **params).fit(X, y)
        mean, cov = model.predict(X_test, return_cov=True, latent=True)
        _, std = model.predict(X_test, return_std=True, latent=True)
        assert np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))
        assert np.all(np.isfinite(std)) and np.all(std >= 0)
        if t < 1e-200:
            assert np.max(np.abs(mean)) <= 1e-290
            assert_allclose(cov, prior, rtol=1e-12)
        if t >= 1e300:
            assert_allclose(mean, converged.predict(X_test), rtol=1e-8)
            assert_allclose(
                cov,
                converged.predict(X_test, return_cov=True, latent=True)[1],
                rtol=1e-7,
                atol=1e-10,
            )
    small = NTKRegressor(t=1e-8, **params).fit(X, y).predict(X_test)
    K = ntk_kernel if kernel == "ntk" else nngp_kernel
    # First order in t: K_* y t / N.
    slope = K(X_test, X, depth=2, bias_std=0.1) @ y / len(y)
    assert_allclose(small, 1e-8 * slope, rtol=1e-6)


def test_one_and_two_samples_through_every_feature():
    """n_samples in {1, 2}: fits, uncertainty, trajectories, CV, spectrum."""
    for X, y in [
        (np.array([[1.0, 2.0]]), np.array([3.0])),
        (np.array([[1.0, 2.0], [-0.5, 0.3]]), np.array([3.0, -1.0])),
    ]:
        for kernel in ("ntk", "nngp"):
            for t in (None, 2.0):
                model = NTKRegressor(alpha=0.01, kernel=kernel, t=t).fit(X, y)
                mean, std = model.predict(X, return_std=True)
                _, cov = model.predict(X, return_cov=True)
                curve = model.predict_trajectory(X, [0.0, 1.0, np.inf])
                for a in (mean, std, cov, curve):
                    assert np.all(np.isfinite(a))
                # the untrained network predicts the intercept (normalize_y)
                assert_array_equal(curve[0], model.intercept_)
        cv = NTKRegressorCV(alphas=[1e-3, 1.0], depths=[1, 2], normalize_y=False)
        cv.fit(X, y)
        assert np.all(np.isfinite(cv.cv_results_["mean_test_score"]))
        if len(y) == 1:  # leaving the only row out predicts 0
            assert_allclose(cv.cv_results_["mean_test_score"], -(y[0] ** 2))
        spectrum = kernel_spectrum(X, depth=2)
        assert spectrum.eigenvalues[0] == 1.0 and len(spectrum.eigenvalues) == len(y)


# ---------------------------------------------------------------------------
# Pure functions: NumPy scalars
# ---------------------------------------------------------------------------
def test_ensemble_covariance_takes_numpy_integer_n_targets():
    """n_targets=np.int64(2) is an integer like 2."""
    X, _, rng = _data(2, n=10)
    X_test = rng.normal(size=(3, 3))
    K, Theta = nngp_ntk_kernels(X)
    Ks, Thetas = nngp_ntk_kernels(X_test, X)
    Kss = nngp_kernel(X_test)
    kw = dict(ntk_train_train=Theta, ntk_test_train=Thetas, t=3.0, ridge=0.01)
    assert_array_equal(
        ensemble_covariance(K, Ks, Kss, n_targets=np.int64(2), **kw),
        ensemble_covariance(K, Ks, Kss, n_targets=2, **kw),
    )
