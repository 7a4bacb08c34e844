"""Gradient-flow means and ensemble covariances against independent references.

References: neural-tangents' ``gradient_descent_mse_ensemble`` and
``gp_inference`` values stored in ``tests/data/ntk_reference.npz``; for the
finite-time covariance, a matrix-exponential formula (``scipy.linalg.expm``)
and a numerical integration of the gradient-flow ODE (``solve_ivp``);
scikit-learn's ``KernelRidge`` for sample weights; and repetition of rows.
"""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from sklearn.kernel_ridge import KernelRidge

from sknetk.dynamics import (
    diag_reg_to_ridge,
    ensemble_covariance,
    gp_posterior,
    gradient_flow_dual_coef,
    gradient_flow_predict,
    gradient_flow_train_predict,
    kernel_eigh,
)
from sknetk.kernels import nngp_ntk_kernels

from ._reference import kernel_kwargs, load

REF, INDEX = load()
PRED_KERNELS = {case["id"]: case for case in INDEX["prediction_kernels"]}
TIMES = REF["pred/t"]
RTOL_STORED, RTOL_END_TO_END = 1e-8, 1e-6


def _stored_kernels(pk, name):
    prefix = f"pred/{pk}/{name}_"
    return (
        REF[prefix + "train_train"],
        REF[prefix + "test_train"],
        REF[prefix + "test_test"],
    )


def _computed_kernels(pk):
    """NNGP and NTK blocks computed by sknetk for a ``prediction_kernels`` case."""
    kw = kernel_kwargs(PRED_KERNELS[pk])
    X, X_test = REF["pred/X_train"], REF["pred/X_test"]
    blocks = [
        nngp_ntk_kernels(A, B, **kw)
        for A, B in ((X, None), (X_test, X), (X_test, None))
    ]
    return {
        "nngp": tuple(b[0] for b in blocks),
        "ntk": tuple(b[1] for b in blocks),
    }


def _rel(a, ref):
    return np.max(np.abs(np.asarray(a) - ref)) / (np.max(np.abs(ref)) or 1.0)


# ---------------------------------------------------------------------------
# Means against neural-tangents
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", INDEX["predictions"], ids=lambda c: c["id"])
@pytest.mark.parametrize("name", ["ntk", "nngp"])
def test_means_match_neural_tangents(case, name):
    """Test, t = inf and training means equal the stored gradient-descent means."""
    y = REF[f"pred/{case['y']}"]
    stored = _stored_kernels(case["kernel"], name)
    computed = _computed_kernels(case["kernel"])[name]
    prefix = f"pred/{case['id']}/{name}_"
    lr = case["learning_rate"]
    for (K, Ks, _), rtol in ((stored, RTOL_STORED), (computed, RTOL_END_TO_END)):
        ridge = diag_reg_to_ridge(
            K, case["diag_reg"], absolute_scale=case["diag_reg_absolute_scale"]
        )
        assert ridge == pytest.approx(case[f"{name}_reg_abs"], rel=rtol)
        means = gradient_flow_predict(K, Ks, y, TIMES, ridge, lr)
        assert means.shape == REF[prefix + "mean_t"].shape
        assert _rel(means, REF[prefix + "mean_t"]) <= rtol
        mean_inf = gradient_flow_predict(K, Ks, y, math.inf, ridge, lr)
        assert _rel(mean_inf, REF[prefix + "mean_inf"]) <= rtol
        train = gradient_flow_train_predict(K, y, TIMES[:3], ridge, lr)
        assert _rel(train, REF[prefix + "train_mean_t"]) <= rtol


@pytest.mark.parametrize("case", INDEX["gp_inference"], ids=lambda c: c["id"])
def test_posteriors_match_neural_tangents(case):
    """NNGP posterior and NTK ensemble mean/covariance equal ``gp_inference``."""
    y = REF["pred/y_train"]
    pk = case["kernel"]
    sources = (
        ({n: _stored_kernels(pk, n) for n in ("nngp", "ntk")}, RTOL_STORED),
        (_computed_kernels(pk), RTOL_END_TO_END),
    )
    prefix = f"gp/{case['id']}/"
    absolute = case["diag_reg_absolute_scale"]
    # A posterior covariance is K_** minus terms of the same size, so its
    # rounding floor is eps * max|K_**|: errors are relative to that scale
    # (the rank-5 ``identity`` kernel leaves covariances of 1e-9 * K_**).
    scale = np.max(np.abs(REF[f"pred/{pk}/nngp_test_test"]))

    def cov_err(cov, ref):
        return np.max(np.abs(np.asarray(cov) - ref)) / max(scale, np.abs(ref).max())

    for kernels, rtol in sources:
        K, Ks, Kss = kernels["nngp"]
        Th, Ths, _ = kernels["ntk"]
        ridge = diag_reg_to_ridge(K, case["diag_reg"], absolute_scale=absolute)
        mean, cov = gp_posterior(K, Ks, Kss, y, ridge)
        assert _rel(mean, REF[prefix + "nngp_mean"]) <= rtol
        assert cov_err(cov, REF[prefix + "nngp_cov"]) <= rtol
        _, var = gp_posterior(K, Ks, np.diag(Kss), None, ridge)
        assert cov_err(var, np.diag(REF[prefix + "nngp_cov"])) <= rtol

        ridge = diag_reg_to_ridge(Th, case["diag_reg"], absolute_scale=absolute)
        assert ridge == pytest.approx(case["ntk_reg_abs"], rel=rtol)
        mean = gradient_flow_predict(Th, Ths, y, math.inf, ridge)
        assert _rel(mean, REF[prefix + "ntk_mean"]) <= rtol
        cov = ensemble_covariance(
            K, Ks, Kss, ntk_train_train=Th, ntk_test_train=Ths, ridge=ridge
        )
        assert cov_err(cov, REF[prefix + "ntk_cov"]) <= rtol
        var = ensemble_covariance(
            K, Ks, np.diag(Kss), ntk_train_train=Th, ntk_test_train=Ths, ridge=ridge
        )
        assert cov_err(var, np.diag(REF[prefix + "ntk_cov"])) <= rtol


# ---------------------------------------------------------------------------
# Finite-time covariance: two independent computations
# ---------------------------------------------------------------------------
def _small_problem(seed=0, n=12, m=5, d=3):
    rng = np.random.default_rng(seed)
    X, X_test = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    kw = dict(depth=2, weight_std=1.4, bias_std=0.3)
    K, Th = nngp_ntk_kernels(X, **kw)
    Ks, Ths = nngp_ntk_kernels(X_test, X, **kw)
    Kss, _ = nngp_ntk_kernels(X_test, **kw)
    y = np.sin(2 * X[:, 0]) + X[:, 1]
    return K, Ks, Kss, Th, Ths, y


def _expm_moments(K, Ks, Kss, Th, Ths, y, t, ridge, lr, n_total):
    """Mean and covariance from ``T = A^{-1} (I - expm(-A eta t / N))``."""
    n = K.shape[0]
    A = Th + ridge * np.eye(n)
    T = np.linalg.solve(A, np.eye(n) - expm(-A * lr * t / n_total))
    P = Ths @ T
    return P @ y, Kss - P @ Ks.T - Ks @ P.T + P @ K @ P.T


def _ode_moments(K, Ks, Kss, Th, Ths, y, t, ridge, lr, n_total):
    """Integrate the gradient-flow ODE for the linear map ``(f_0, y) -> f_t``.

    With residual ``r = f(X) - y`` the linearised network obeys
    ``dr/dt = -(eta/N) (Theta + ridge I) r`` and
    ``df_*/dt = -(eta/N) Theta_* r``; ``f_*(t) = f_*(0) + L_r f(X)(0) + L_y y``
    is integrated numerically column by column, then pushed through the
    joint NNGP prior of ``(f(X), f_*)``.
    """
    n, m = K.shape[0], Ks.shape[0]
    A = Th + ridge * np.eye(n)
    c = lr / n_total

    def rhs(_, state):
        S = state.reshape(n + m, -1)
        R = S[:n]
        return np.vstack([-c * A @ R, -c * Ths @ R]).ravel()

    # Columns: unit initial residual for each training row (f(X)(0) = e_j,
    # y = 0), then the column for y (f(X)(0) = 0 so r(0) = -y).
    start = np.vstack([np.hstack([np.eye(n), -y[:, None]]), np.zeros((m, n + 1))])
    sol = solve_ivp(
        rhs, (0.0, t), start.ravel(), method="DOP853", rtol=1e-11, atol=1e-13
    )
    end = sol.y[:, -1].reshape(n + m, n + 1)
    L_train = end[n:, :n]  # d f_*(t) / d f(X)(0)
    mean = end[n:, n]
    # f_*(t) = f_*(0) + L_train f(X)(0) + mean: covariance under the prior.
    cov = Kss + L_train @ Ks.T + Ks @ L_train.T + L_train @ K @ L_train.T
    return mean, cov


@pytest.mark.parametrize("ridge", [0.0, 0.05])
@pytest.mark.parametrize("readout_only", [False, True])
def test_finite_time_covariance_matches_expm_and_ode(ridge, readout_only):
    """Finite-t mean and covariance equal expm and ODE-integration references."""
    K, Ks, Kss, Th, Ths, y = _small_problem()
    if readout_only:
        Th, Ths = K, Ks
    lr, n_total = 0.7, y.size
    times = [0.5, 5.0, 40.0]
    ntk = {} if readout_only else dict(ntk_train_train=Th, ntk_test_train=Ths)
    covs = ensemble_covariance(
        K, Ks, Kss, t=times, ridge=ridge, learning_rate=lr, **ntk
    )
    variances = ensemble_covariance(
        K, Ks, np.diag(Kss), t=times, ridge=ridge, learning_rate=lr, **ntk
    )
    means = gradient_flow_predict(Th, Ths, y, times, ridge, lr)
    for i, t in enumerate(times):
        ref_mean, ref_cov = _expm_moments(K, Ks, Kss, Th, Ths, y, t, ridge, lr, n_total)
        assert _rel(means[i], ref_mean) <= 1e-9
        assert _rel(covs[i], ref_cov) <= 1e-9
        assert _rel(variances[i], np.diag(ref_cov)) <= 1e-9
        ode_mean, ode_cov = _ode_moments(K, Ks, Kss, Th, Ths, y, t, ridge, lr, n_total)
        assert _rel(means[i], ode_mean) <= 1e-7
        assert _rel(covs[i], ode_cov) <= 1e-7


def test_covariance_limits():
    """t = 0 gives the prior; large t approaches the t = inf covariance."""
    K, Ks, Kss, Th, Ths, _ = _small_problem(seed=1)
    kw = dict(ntk_train_train=Th, ntk_test_train=Ths, ridge=1e-3)
    cov = ensemble_covariance(K, Ks, Kss, t=[0.0, 1e9, math.inf], **kw)
    np.testing.assert_allclose(cov[0], Kss, rtol=0, atol=1e-14)
    assert _rel(cov[1], cov[2]) <= 1e-8
    # Psd up to rounding: the ensemble is a genuine Gaussian distribution.
    for c in cov:
        assert np.linalg.eigvalsh(c).min() >= -1e-10 * np.abs(c).max()


def test_multi_output_time_scale():
    """Several outputs train together: N = n_train * n_targets, per column."""
    K, Ks, _, Th, Ths, y = _small_problem(seed=2)
    Y = np.column_stack([y, -2 * y, np.cos(y)])
    t = 3.0
    joint = gradient_flow_predict(Th, Ths, Y, t, 0.01)
    for j in range(3):
        # One column alone has N = n; the same trajectory at time t / 3.
        alone = gradient_flow_predict(Th, Ths, Y[:, j], t / 3, 0.01)
        np.testing.assert_allclose(joint[:, j], alone, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# Weights, degenerate kernels, reuse of the decomposition
# ---------------------------------------------------------------------------
def test_weighted_converged_mean_equals_kernel_ridge():
    """t = inf with sample weights equals weighted ``KernelRidge``."""
    K, Ks, _, Th, Ths, y = _small_problem(seed=3)
    w = np.random.default_rng(3).uniform(0.0, 3.0, size=y.size)
    w[2] = 0.0
    ridge = 0.1
    ref = KernelRidge(alpha=ridge, kernel="precomputed").fit(Th, y, sample_weight=w)
    mean = gradient_flow_predict(Th, Ths, y, math.inf, ridge, sample_weight=w)
    np.testing.assert_allclose(mean, ref.predict(Ths), rtol=1e-9, atol=1e-12)
    c = gradient_flow_dual_coef(Th, y, math.inf, ridge, sample_weight=w)
    np.testing.assert_allclose(c, ref.dual_coef_, rtol=1e-9, atol=1e-12)


def test_integer_weights_equal_repeated_rows_in_time():
    """Weight k equals k copies of the row, the time rescaled by sum(w) / n."""
    K, Ks, _, Th, Ths, y = _small_problem(seed=4)
    w = np.array([0, 1, 2, 3, 1, 1, 2, 0, 1, 4, 1, 1])
    idx = np.repeat(np.arange(y.size), w)
    t = 7.0
    weighted = gradient_flow_predict(Th, Ths, y, t, sample_weight=w)
    repeated = gradient_flow_predict(
        Th[np.ix_(idx, idx)], Ths[:, idx], y[idx], t * w.sum() / y.size
    )
    np.testing.assert_allclose(weighted, repeated, rtol=1e-9, atol=1e-12)
    var_w = ensemble_covariance(
        K,
        Ks,
        np.ones(Ks.shape[0]),
        ntk_train_train=Th,
        ntk_test_train=Ths,
        t=t,
        sample_weight=w,
    )
    var_r = ensemble_covariance(
        K[np.ix_(idx, idx)],
        Ks[:, idx],
        np.ones(Ks.shape[0]),
        ntk_train_train=Th[np.ix_(idx, idx)],
        ntk_test_train=Ths[:, idx],
        t=t * w.sum() / y.size,
    )
    np.testing.assert_allclose(var_w, var_r, rtol=1e-9, atol=1e-12)


def test_singular_kernel_gives_minimum_norm_solution():
    """Duplicated rows and no ridge: finite, the pseudo-inverse solution."""
    K, Ks, Kss, Th, Ths, y = _small_problem(seed=5)
    idx = np.r_[np.arange(y.size), 0, 1]  # two exact duplicates
    Th2, Ths2, y2 = Th[np.ix_(idx, idx)], Ths[:, idx], y[idx]
    y2[-1] += 0.5  # inconsistent targets for a duplicated row
    mean = gradient_flow_predict(Th2, Ths2, y2, math.inf)
    ref = Ths2 @ np.linalg.pinv(Th2, rcond=1e-10, hermitian=True) @ y2
    np.testing.assert_allclose(mean, ref, rtol=1e-7, atol=1e-10)
    for t in (1.0, 1e12, math.inf):
        out = gradient_flow_predict(Th2, Ths2, y2, t)
        assert np.all(np.isfinite(out))
    zero = gradient_flow_predict(np.zeros((3, 3)), np.zeros((2, 3)), np.ones(3))
    np.testing.assert_array_equal(zero, np.zeros(2))


def test_eigh_reuse_and_time_stacking():
    """A precomputed eigh and a sequence of times give the single-call values."""
    K, Ks, Kss, Th, Ths, y = _small_problem(seed=6)
    times = [0.0, 2.0, math.inf]
    eig = kernel_eigh(Th)
    many = gradient_flow_predict(None, Ths, y, times, 0.2, eigh=eig)
    assert many.shape == (3, Ks.shape[0])
    for i, t in enumerate(times):
        np.testing.assert_allclose(
            many[i], gradient_flow_predict(Th, Ths, y, t, 0.2), rtol=1e-12, atol=1e-14
        )
    np.testing.assert_array_equal(many[0], 0.0)
    coef = gradient_flow_dual_coef(Th, y, times, 0.2)
    np.testing.assert_allclose(Ths @ coef[1], many[1], rtol=1e-12)
    # learning_rate only enters through eta * t.
    np.testing.assert_allclose(
        gradient_flow_predict(Th, Ths, y, 4.0, 0.2, learning_rate=0.5),
        gradient_flow_predict(Th, Ths, y, 2.0, 0.2),
        rtol=1e-13,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(t=-1.0), "t must hold times"),
        (dict(t=[1.0, float("nan")]), "t must hold times"),
        (dict(t=[[1.0]]), "1-D sequence"),
        (dict(ridge=-1.0), "ridge"),
        (dict(ridge=float("inf")), "ridge"),
        (dict(learning_rate=0.0), "learning_rate"),
    ],
)
def test_invalid_arguments(kwargs, message):
    """Bad times, ridges and learning rates raise a clear ValueError."""
    K = np.eye(3)
    with pytest.raises(ValueError, match=message):
        gradient_flow_predict(K, K, np.ones(3), **kwargs)


def test_shape_errors():
    """Mismatched shapes are refused with the expected shape in the message."""
    K = np.eye(3)
    with pytest.raises(ValueError, match="square"):
        gradient_flow_predict(np.ones((3, 2)), K, np.ones(3))
    with pytest.raises(ValueError, match="K_test_train"):
        gradient_flow_predict(K, np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="y must have shape"):
        gradient_flow_predict(K, K, np.ones(4))
    with pytest.raises(ValueError, match="sample_weight"):
        gradient_flow_predict(K, K, np.ones(3), sample_weight=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="K_test_test"):
        gp_posterior(K, K, np.ones((3, 2)))


# ---------------------------------------------------------------------------
# Array namespaces
# ---------------------------------------------------------------------------
def _namespace(name):
    if name == "array_api_strict":
        return pytest.importorskip("array_api_strict")
    from sknetk._device import gpu_available

    if not gpu_available():
        pytest.skip("CuPy with a CUDA device is not available")
    import cupy

    return cupy


@pytest.mark.parametrize(
    "name", ["array_api_strict", pytest.param("cupy", marks=pytest.mark.gpu)]
)
def test_array_namespaces(name):
    """Non-NumPy inputs stay in their namespace and give NumPy's values."""
    xp = _namespace(name)
    from sknetk._array_api import get_namespace, to_numpy

    K, Ks, Kss, Th, Ths, y = _small_problem(seed=7)
    w = np.linspace(0.5, 2.0, y.size)
    conv = [xp.asarray(a) for a in (K, Ks, Kss, Th, Ths, y, w)]
    cK, cKs, cKss, cTh, cThs, cy, cw = conv
    times = [1.0, math.inf]
    checks = [
        (
            gradient_flow_predict(cTh, cThs, cy, times, 0.1, sample_weight=cw),
            gradient_flow_predict(Th, Ths, y, times, 0.1, sample_weight=w),
        ),
        (
            gradient_flow_train_predict(cTh, cy, times, 0.1),
            gradient_flow_train_predict(Th, y, times, 0.1),
        ),
        (gp_posterior(cK, cKs, cKss, cy, 0.1)[1], gp_posterior(K, Ks, Kss, y, 0.1)[1]),
        (
            ensemble_covariance(
                cK,
                cKs,
                cKss,
                ntk_train_train=cTh,
                ntk_test_train=cThs,
                t=times,
                ridge=0.1,
            ),
            ensemble_covariance(
                K, Ks, Kss, ntk_train_train=Th, ntk_test_train=Ths, t=times, ridge=0.1
            ),
        ),
    ]
    ns = get_namespace(cK)
    for out, ref in checks:
        assert get_namespace(out) is ns
        np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-10, atol=1e-13)
    assert isinstance(diag_reg_to_ridge(cTh, 0.1), float)
