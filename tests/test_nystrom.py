"""Tests of the Nystrom + preconditioned-CG solver (sknetk._nystrom)."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge

from sknetk._nystrom import (
    kernel_block_function,
    nystrom_fit,
    nystrom_predict,
    sample_centers,
)
from sknetk.kernels import ntk_kernel

KERNEL = dict(depth=2, activation="relu", weight_std=1.0, bias_std=0.1)
STRATEGIES = ["cache", "gram", "stream"]


def teacher_data(n, d=5, n_test=0, noise=0.1, seed=0):
    """Targets of a random two-layer tanh teacher network plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(d, 16)) / np.sqrt(d)
    a = rng.normal(size=16) / 4
    X = rng.normal(size=(n + n_test, d))
    f = np.tanh(X @ U) @ a
    y = f + noise * rng.normal(size=n + n_test)
    return X[:n], y[:n], X[n:], f[n:]


def exact_predictions(X, y, Xt, alpha, sample_weight=None):
    """scikit-learn's KernelRidge on the precomputed NTK: the exact reference."""
    kr = KernelRidge(alpha=alpha, kernel="precomputed")
    kr.fit(ntk_kernel(X, **KERNEL), y, sample_weight=sample_weight)
    return kr.predict(ntk_kernel(Xt, X, **KERNEL))


class CountingKernel:
    """A kernel function that records the shape of every block it computes."""

    def __init__(self, **kwargs):
        self.fn = kernel_block_function("ntk", **KERNEL, **kwargs)
        self.shapes = []

    def __call__(self, A, B=None):
        self.shapes.append((A.shape[0], A.shape[0] if B is None else B.shape[0]))
        return self.fn(A, B)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_all_centres_equal_kernel_ridge(strategy):
    """With every row as a centre, predictions equal KernelRidge's (multi-output)."""
    X, y, Xt, _ = teacher_data(150, n_test=40)
    Y = np.c_[y, np.cos(X[:, 0])]
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    centers, coef, n_iter, info = nystrom_fit(
        X, Y, kernel_fn=kernel_fn, n_centers=150, alpha=0.05, tol=1e-12,
        max_iter=50, strategy=strategy, working_memory=0.05,
    )
    assert info["strategy"] == strategy
    assert coef.shape == (150, 2)
    pred = nystrom_predict(Xt, centers, coef, kernel_fn)
    np.testing.assert_allclose(
        pred, exact_predictions(X, Y, Xt, 0.05), rtol=1e-8, atol=1e-10
    )
    # the preconditioner is exact when the centres are all the rows
    assert n_iter <= 3


def test_all_centres_with_sample_weight():
    """Weighted fit with all centres equals KernelRidge(sample_weight=...)."""
    X, y, Xt, _ = teacher_data(120, n_test=30, seed=1)
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=120)
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    centers, coef, _, _ = nystrom_fit(
        X, y, kernel_fn=kernel_fn, n_centers=500, alpha=0.1, tol=1e-12,
        max_iter=50, sample_weight=w,
    )
    np.testing.assert_allclose(
        nystrom_predict(Xt, centers, coef, kernel_fn),
        exact_predictions(X, y, Xt, 0.1, sample_weight=w),
        rtol=1e-8, atol=1e-10,
    )


def test_fewer_centres_approach_exact():
    """Predictions and test error approach the exact solver's as m grows."""
    X, y, Xt, ft = teacher_data(2000, n_test=500, seed=2)
    alpha = 0.5
    exact = exact_predictions(X, y, Xt, alpha)
    exact_mse = np.mean((exact - ft) ** 2)
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    gaps, mses = [], []
    for m in (25, 100, 400, 1600):
        centers, coef, _, info = nystrom_fit(
            X, y, kernel_fn=kernel_fn, n_centers=m, alpha=alpha, tol=1e-8,
            max_iter=200, random_state=0,
        )
        assert info["converged"]
        pred = nystrom_predict(Xt, centers, coef, kernel_fn)
        gaps.append(np.sqrt(np.mean((pred - exact) ** 2)))
        mses.append(np.mean((pred - ft) ** 2))
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.05 * np.std(exact)
    assert abs(mses[-1] - exact_mse) < 0.02 * exact_mse
    assert mses[0] > mses[-1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ill_conditioned_kernel_converges(strategy):
    """A numerically rank-deficient kernel (erf, standard, width 64) still converges.

    Its spectrum spans 1e4 to 1e-13: a Gram matrix K_nm^T K_nm formed in the
    plain basis would carry errors that the preconditioner magnifies past
    the identity, and CG would diverge.
    """
    from sklearn.datasets import make_blobs

    X, labels = make_blobs(n_samples=300, random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    Y = 2.0 * np.eye(3)[labels] - 1.0
    kw = dict(activation="erf", parameterization="standard", width=64)
    kernel_fn = kernel_block_function("ntk", **kw)
    centers, coef, n_iter, info = nystrom_fit(
        X, Y, kernel_fn=kernel_fn, n_centers=300, alpha=1.0, tol=1e-8,
        max_iter=30, strategy=strategy, working_memory=0.05,
    )
    assert info["converged"] and n_iter <= 3
    K = ntk_kernel(X, **kw)
    ref = KernelRidge(alpha=1.0, kernel="precomputed").fit(K, Y).predict(K)
    np.testing.assert_allclose(nystrom_predict(X, centers, coef, kernel_fn), ref,
                               rtol=1e-6, atol=1e-6)


def test_solution_solves_normal_equations():
    """The CG solution solves (K_nm^T K_nm + alpha K_mm) b = K_nm^T y (dense)."""
    X, y, _, _ = teacher_data(300, seed=3)
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    centers, coef, _, _ = nystrom_fit(
        X, y, kernel_fn=kernel_fn, n_centers=60, alpha=0.3, tol=1e-12,
        max_iter=300, random_state=3,
    )
    Knm, Kmm = ntk_kernel(X, centers, **KERNEL), ntk_kernel(centers, **KERNEL)
    # predictions are unique even where b is not (K_mm may be near-singular)
    b_dense = np.linalg.lstsq(Knm.T @ Knm + 0.3 * Kmm, Knm.T @ y, rcond=None)[0]
    np.testing.assert_allclose(Knm @ coef, Knm @ b_dense, rtol=1e-6, atol=1e-8)


def test_cg_stops_on_tol_and_reports_iterations():
    """CG stops at the first iteration under tol; n_iter counts the iterations."""
    X, y, _, _ = teacher_data(400, seed=4)
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    runs = {}
    for tol in (1e-2, 1e-5, 1e-9):
        _, coef, n_iter, info = nystrom_fit(
            X, y, kernel_fn=kernel_fn, n_centers=80, alpha=1e-3, tol=tol,
            max_iter=500, random_state=0,
        )
        res = info["residuals"]
        assert len(res) == n_iter + 1
        assert res[-1] <= tol < min(res[:-1])
        assert info["converged"]
        runs[tol] = n_iter, coef
    assert runs[1e-2][0] < runs[1e-5][0] < runs[1e-9][0]
    # the looser solution is the tighter one up to roughly its tolerance
    rel = np.linalg.norm(runs[1e-5][1] - runs[1e-9][1]) / np.linalg.norm(runs[1e-9][1])
    assert rel < 1e-2


def test_max_iter_warns_and_tol_zero_runs_max_iter():
    """Hitting max_iter warns (ConvergenceWarning); tol=0 runs exactly max_iter."""
    X, y, _, _ = teacher_data(200, seed=5)
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    kwargs = dict(kernel_fn=kernel_fn, n_centers=50, alpha=1e-4, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        _, _, n_iter, info = nystrom_fit(X, y, max_iter=2, tol=1e-14, **kwargs)
    assert n_iter == 2 and not info["converged"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, coef, n_iter, _ = nystrom_fit(X, y, max_iter=4, tol=0.0, **kwargs)
    assert n_iter == 4 and np.all(np.isfinite(coef))


@pytest.mark.parametrize("alpha", [0.0, 1e-6, 1.0])
def test_degenerate_data_is_finite(alpha):
    """Zero rows, duplicates, constant and zero targets give finite answers."""
    rng = np.random.default_rng(6)
    X = np.zeros((60, 3))
    X[20:40] = 1.0
    X[40:] = rng.normal(size=(20, 3))
    X = np.vstack([X, X[40:50]])
    kernel_fn = kernel_block_function("ntk", depth=2)  # bias 0: K(0, x) = 0
    targets = [np.ones(70), np.zeros(70), np.c_[np.ones(70), rng.normal(size=70)]]
    for y in targets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            centers, coef, _, _ = nystrom_fit(
                X, y, kernel_fn=kernel_fn, n_centers=70, alpha=alpha, tol=1e-10,
                max_iter=50,
            )
        pred = nystrom_predict(X, centers, coef, kernel_fn)
        assert np.all(np.isfinite(coef)) and np.all(np.isfinite(pred))
        if alpha > 0:
            K = ntk_kernel(X, depth=2)
            ref = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, y).predict(K)
            np.testing.assert_allclose(pred, ref, rtol=1e-7, atol=1e-9)
        else:  # interpolation: the duplicated rows are fitted by their mean
            np.testing.assert_allclose(pred[20:40], np.mean(y[20:40], axis=0)
                                       * np.ones_like(pred[20:40]), rtol=1e-3)


def test_small_working_memory_streams_blocks():
    """A small budget streams K(X_block, centres) in bounded blocks, same result."""
    X, y, Xt, _ = teacher_data(500, n_test=100, seed=7)
    m, budget = 40, 0.02  # MiB: blocks of 0.25 * budget / (m * 8) = 16 rows
    big = CountingKernel()
    ref = nystrom_fit(X, y, kernel_fn=big, n_centers=m, alpha=0.01, tol=1e-10,
                      max_iter=200, random_state=0)
    assert ref[3]["strategy"] == "cache"
    small = CountingKernel()
    centers, coef, n_iter, info = nystrom_fit(
        X, y, kernel_fn=small, n_centers=m, alpha=0.01, tol=1e-10, max_iter=200,
        random_state=0, working_memory=budget, strategy="stream",
    )
    rows = info["block_rows"]
    assert rows == int(0.25 * budget * 2**20 / (m * 8))
    blocks = [s for s in small.shapes if s != (m, m)]
    assert max(r for r, _ in blocks) == rows
    n_blocks = -(-500 // rows)
    assert len(blocks) == n_blocks * (1 + n_iter)  # one pass per iteration
    np.testing.assert_allclose(coef, ref[1], rtol=1e-8, atol=1e-10)
    small.shapes.clear()
    pred = nystrom_predict(Xt, centers, coef, small, working_memory=budget)
    assert max(r for r, _ in small.shapes) == rows
    np.testing.assert_allclose(pred, nystrom_predict(Xt, *ref[:2], big), rtol=1e-7,
                               atol=1e-9)


def test_auto_strategy_from_budget():
    """'auto' caches K_nm when it fits half the budget, else uses one Gram pass."""
    X, y, _, _ = teacher_data(400, seed=8)
    m = 50  # K_nm takes 400 * 50 * 8 B = 0.153 MiB
    kwargs = dict(n_centers=m, alpha=0.1, tol=1e-10, random_state=0)
    fits = {}
    for budget, expected in ((0.4, "cache"), (0.2, "gram")):
        counting = CountingKernel()
        fits[expected] = nystrom_fit(X, y, kernel_fn=counting,
                                     working_memory=budget, **kwargs)
        assert fits[expected][3]["strategy"] == expected
        n_blocks = len([s for s in counting.shapes if s != (m, m)])
        assert n_blocks == -(-400 // fits[expected][3]["block_rows"])  # one pass
    np.testing.assert_allclose(fits["gram"][1], fits["cache"][1], rtol=1e-7)


@pytest.mark.parametrize("on_gpu, m, expected", [
    (False, 5000, "gram"), (False, 20000, "gram"),
    (True, 5000, "gram"), (True, 20000, "stream"),
])
def test_auto_strategy_cost_model(on_gpu, m, expected):
    """Past the cache: one Gram pass on the CPU, streaming on a GPU at large m."""
    from sknetk._nystrom import _choose_strategy

    n, budget = 10**6, 2.0**30  # K_nm of 1e6 x m floats never fits 1 GiB
    assert _choose_strategy("auto", n, m, 8, budget, on_gpu=on_gpu) == expected
    assert _choose_strategy("auto", 100, m, 8, budget, on_gpu=on_gpu) == "cache"
    assert _choose_strategy("stream", 100, m, 8, budget) == "stream"


def test_memmap_larger_than_budget(tmp_path):
    """fit/predict on a np.memmap larger than working_memory stream through it."""
    n, d, m, budget = 3000, 20, 30, 0.25  # X is 0.46 MiB
    X, y, _, _ = teacher_data(n, d=d, seed=9)
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=(n, d))
    mm[:] = X
    mm.flush()
    Xmm = np.memmap(path, dtype=np.float64, mode="r", shape=(n, d))
    assert Xmm.nbytes > budget * 2**20
    counting = CountingKernel()
    kwargs = dict(n_centers=m, alpha=0.1, tol=1e-10, max_iter=200, random_state=0)
    centers, coef, _, info = nystrom_fit(Xmm, y, kernel_fn=counting,
                                         working_memory=budget, **kwargs)
    assert info["strategy"] != "cache"
    limit = 0.25 * budget * 2**20
    assert all(r * c * 8 <= limit for r, c in counting.shapes if c == m and r != m)
    ref = nystrom_fit(X, y, kernel_fn=kernel_block_function("ntk", **KERNEL),
                      **kwargs)
    np.testing.assert_allclose(centers, ref[0])
    np.testing.assert_allclose(coef, ref[1], rtol=1e-7, atol=1e-10)
    counting.shapes.clear()
    pred = nystrom_predict(Xmm, centers, coef, counting, working_memory=budget)
    assert len(counting.shapes) > 1
    assert all(r * c * 8 <= limit for r, c in counting.shapes)
    np.testing.assert_allclose(pred, ntk_kernel(X, centers, **KERNEL) @ coef,
                               rtol=1e-10)


def test_array_api_strict_input():
    """array_api_strict in gives array_api_strict out, equal to the NumPy fit."""
    xps = pytest.importorskip("array_api_strict")
    X, y, Xt, _ = teacher_data(200, n_test=30, seed=10)
    Y = np.c_[y, -y]
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    kwargs = dict(kernel_fn=kernel_fn, n_centers=40, alpha=0.1, tol=1e-10,
                  max_iter=200, random_state=0)
    ref = nystrom_fit(X, Y, **kwargs)
    centers, coef, n_iter, _ = nystrom_fit(
        xps.asarray(X), xps.asarray(Y), working_memory=0.02,
        sample_weight=xps.ones(200, dtype=xps.float64), **kwargs,
    )
    assert type(coef) is type(xps.asarray(1.0)) and type(centers) is type(coef)
    assert abs(n_iter - ref[2]) <= 1
    # the two kernel code paths agree to ~1e-8 (the arc-cosine near 1)
    np.testing.assert_allclose(np.asarray(coef), ref[1], rtol=1e-5, atol=1e-7)
    pred = nystrom_predict(xps.asarray(Xt), centers, coef, kernel_fn,
                           working_memory=0.02)
    assert type(pred) is type(coef)
    np.testing.assert_allclose(np.asarray(pred), nystrom_predict(Xt, *ref[:2],
                               kernel_fn), rtol=1e-5, atol=1e-7)


def test_sample_centers_uniform_without_replacement():
    """Centres are distinct rows, reproducible by seed, and cover rows evenly."""
    X = np.arange(200.0)[:, None] * np.ones((1, 2))
    c1, i1 = sample_centers(X, 20, random_state=0)
    c2, i2 = sample_centers(X, 20, random_state=0)
    np.testing.assert_array_equal(i1, i2)
    assert len(set(i1)) == 20 and np.all(np.diff(i1) > 0)
    np.testing.assert_array_equal(c1, X[i1])
    _, i_all = sample_centers(X, 500, random_state=0)
    np.testing.assert_array_equal(i_all, np.arange(200))
    rng = np.random.RandomState(0)
    counts = np.zeros(200)
    for _ in range(500):
        counts[sample_centers(X, 20, random_state=rng)[1]] += 1
    # each row is drawn with probability 0.1: 50 expected, sd ~ 6.7
    assert counts.min() > 20 and counts.max() < 85


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=-1.0), "alpha"),
        (dict(n_centers=0), "n_centers"),
        (dict(max_iter=-1), "max_iter"),
        (dict(tol=-1.0), "tol"),
        (dict(strategy="dense"), "strategy"),
        (dict(sample_weight=-np.ones(20)), "non-negative"),
        (dict(sample_weight=np.ones(3)), "sample_weight"),
        (dict(y=np.ones(5)), "rows"),
    ],
)
def test_invalid_parameters(kwargs, match):
    """Invalid parameters raise a ValueError naming the parameter."""
    params = dict(X=np.ones((20, 2)), y=np.ones(20), n_centers=5, alpha=1.0,
                  kernel_fn=kernel_block_function())
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nystrom_fit(**params)


@pytest.mark.gpu
def test_cupy_input_matches_numpy():
    """CuPy in gives CuPy out, equal to the NumPy fit (needs a CUDA device)."""
    cupy = pytest.importorskip("cupy")
    from sknetk._device import gpu_available

    if not gpu_available():
        pytest.skip("no CUDA device")
    X, y, Xt, _ = teacher_data(1500, n_test=200, seed=11)
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    for strategy in STRATEGIES:
        kwargs = dict(kernel_fn=kernel_fn, n_centers=300, alpha=0.1, tol=1e-10,
                      max_iter=300, random_state=0, strategy=strategy,
                      working_memory=0.5)
        ref = nystrom_fit(X, y, **kwargs)
        centers, coef, _, _ = nystrom_fit(cupy.asarray(X), cupy.asarray(y), **kwargs)
        assert isinstance(coef, cupy.ndarray) and isinstance(centers, cupy.ndarray)
        pred = nystrom_predict(cupy.asarray(Xt), centers, coef, kernel_fn,
                               working_memory=0.5)
        assert isinstance(pred, cupy.ndarray)
        np.testing.assert_allclose(
            cupy.asnumpy(pred), nystrom_predict(Xt, *ref[:2], kernel_fn),
            rtol=1e-6, atol=1e-8,
        )
    # n_centers = n on the GPU equals exact kernel ridge (CPU reference)
    Xs, ys = X[:400], y[:400]
    centers, coef, _, _ = nystrom_fit(cupy.asarray(Xs), cupy.asarray(ys),
                                      kernel_fn=kernel_fn, n_centers=400, alpha=0.05,
                                      tol=1e-12, max_iter=50)
    np.testing.assert_allclose(
        cupy.asnumpy(nystrom_predict(cupy.asarray(Xt), centers, coef, kernel_fn)),
        exact_predictions(Xs, ys, Xt, 0.05), rtol=1e-7, atol=1e-9,
    )


# ---------------------------------------------------------------------------
# Through the estimators (skipped until they take solver="nystrom")
# ---------------------------------------------------------------------------
def _estimators_with_solver():
    from sknetk._classification import NTKClassifier
    from sknetk._regression import NTKRegressor

    if "solver" not in NTKRegressor().get_params():
        pytest.skip("the estimators do not take solver= yet")
    return NTKRegressor, NTKClassifier


def test_estimator_nystrom_all_centres_equals_cholesky():
    """NTKRegressor(solver='nystrom', n_centers >= n) predicts as 'cholesky'."""
    NTKRegressor, NTKClassifier = _estimators_with_solver()
    X, y, Xt, _ = teacher_data(200, n_test=50, seed=12)
    params = dict(alpha=0.1, depth=2, bias_std=0.1, alpha_scale="mean_diag")
    exact = NTKRegressor(solver="cholesky", **params).fit(X, y)
    approx = NTKRegressor(solver="nystrom", n_centers=500, tol=1e-12,
                          **params).fit(X, y)
    assert approx.solver_ == "nystrom" and exact.solver_ == "cholesky"
    assert approx.alpha_ == pytest.approx(exact.alpha_)
    assert 1 <= approx.n_iter_ <= 3
    np.testing.assert_allclose(approx.predict(Xt), exact.predict(Xt), rtol=1e-7,
                               atol=1e-9)
    labels = (y > np.median(y)).astype(int)
    clf_exact = NTKClassifier(solver="cholesky", **params).fit(X, labels)
    clf = NTKClassifier(solver="nystrom", n_centers=500, tol=1e-12, **params)
    clf.fit(X, labels)
    np.testing.assert_allclose(clf.decision_function(Xt),
                               clf_exact.decision_function(Xt), rtol=1e-7, atol=1e-9)


def test_estimator_auto_solver_follows_budget(capsys):
    """solver='auto' is exact while the n x n kernel fits working_memory."""
    NTKRegressor, _ = _estimators_with_solver()
    X, y, _, _ = teacher_data(300, seed=13)  # the kernel takes 0.69 MiB
    small = NTKRegressor(working_memory=0.5, n_centers=100, verbose=1).fit(X, y)
    assert small.solver_ == "nystrom" and small.X_fit_.shape == (100, 5)
    assert "nystrom" in capsys.readouterr().out
    big = NTKRegressor(working_memory=1.0).fit(X, y)
    assert big.solver_ == "cholesky" and big.n_iter_ == 1


def test_estimator_memmap_is_not_copied(tmp_path):
    """fit/predict stream a memmap through the Nystrom solver (no full copy)."""
    NTKRegressor, _ = _estimators_with_solver()
    n, d = 2000, 20
    X, y, _, _ = teacher_data(n, d=d, seed=14)
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=(n, d))
    mm[:] = X
    mm.flush()
    Xmm = np.memmap(path, dtype=np.float64, mode="r", shape=(n, d))
    params = dict(solver="nystrom", n_centers=50, working_memory=0.2,
                  random_state=0, tol=1e-10)
    model = NTKRegressor(**params).fit(Xmm, y)
    ref = NTKRegressor(**params).fit(X, y)
    np.testing.assert_allclose(model.predict(Xmm), ref.predict(X), rtol=1e-8)


def test_estimator_nystrom_common_checks():
    """Both estimators with solver='nystrom' pass scikit-learn's common checks."""
    from sklearn.utils.estimator_checks import check_estimator

    NTKRegressor, NTKClassifier = _estimators_with_solver()
    # tol well below the checks' rtol=1e-7 (sample-weight equivalence)
    params = dict(solver="nystrom", n_centers=30, random_state=0, tol=1e-10)
    for est in (NTKRegressor(**params), NTKClassifier(**params)):
        check_estimator(est)
