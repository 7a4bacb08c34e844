"""Tests of the Nystrom + preconditioned-CG solver (sknetk._nystrom)."""

import tracemalloc
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from joblib import Memory
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge

from sknetk._classification import NTKClassifier
from sknetk._nystrom import (
    kernel_block_function,
    nystrom_fit,
    nystrom_predict,
    sample_centers,
)
from sknetk._regression import NTKRegressor
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
        X,
        Y,
        kernel_fn=kernel_fn,
        n_centers=150,
        alpha=0.05,
        tol=1e-12,
        max_iter=50,
        strategy=strategy,
        working_memory=0.05,
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
        X,
        y,
        kernel_fn=kernel_fn,
        n_centers=500,
        alpha=0.1,
        tol=1e-12,
        max_iter=50,
        sample_weight=w,
    )
    np.testing.assert_allclose(
        nystrom_predict(Xt, centers, coef, kernel_fn),
        exact_predictions(X, y, Xt, 0.1, sample_weight=w),
        rtol=1e-8,
        atol=1e-10,
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
            X,
            y,
            kernel_fn=kernel_fn,
            n_centers=m,
            alpha=alpha,
            tol=1e-8,
            max_iter=200,
            random_state=0,
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
@pytest.mark.slow  # a subprocess or many rows: seconds
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
        X,
        Y,
        kernel_fn=kernel_fn,
        n_centers=300,
        alpha=1.0,
        tol=1e-8,
        max_iter=30,
        strategy=strategy,
        working_memory=0.05,
    )
    assert info["converged"] and n_iter <= 3
    K = ntk_kernel(X, **kw)
    ref = KernelRidge(alpha=1.0, kernel="precomputed").fit(K, Y).predict(K)
    np.testing.assert_allclose(
        nystrom_predict(X, centers, coef, kernel_fn), ref, rtol=1e-6, atol=1e-6
    )


def test_solution_solves_normal_equations():
    """The CG solution solves (K_nm^T K_nm + alpha K_mm) b = K_nm^T y (dense)."""
    X, y, _, _ = teacher_data(300, seed=3)
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    centers, coef, _, _ = nystrom_fit(
        X,
        y,
        kernel_fn=kernel_fn,
        n_centers=60,
        alpha=0.3,
        tol=1e-12,
        max_iter=300,
        random_state=3,
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
            X,
            y,
            kernel_fn=kernel_fn,
            n_centers=80,
            alpha=1e-3,
            tol=tol,
            max_iter=500,
            random_state=0,
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
                X,
                y,
                kernel_fn=kernel_fn,
                n_centers=70,
                alpha=alpha,
                tol=1e-10,
                max_iter=50,
            )
        pred = nystrom_predict(X, centers, coef, kernel_fn)
        assert np.all(np.isfinite(coef)) and np.all(np.isfinite(pred))
        if alpha > 0:
            K = ntk_kernel(X, depth=2)
            ref = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, y).predict(K)
            np.testing.assert_allclose(pred, ref, rtol=1e-7, atol=1e-9)
        else:  # interpolation: the duplicated rows are fitted by their mean
            np.testing.assert_allclose(
                pred[20:40],
                np.mean(y[20:40], axis=0) * np.ones_like(pred[20:40]),
                rtol=1e-3,
            )


def test_small_working_memory_streams_blocks():
    """A small budget streams K(X_block, centres) in bounded blocks, same result."""
    X, y, Xt, _ = teacher_data(500, n_test=100, seed=7)
    m, budget = 40, 0.02  # MiB: blocks of 0.25 * budget / (m * 8) = 16 rows
    big = CountingKernel()
    ref = nystrom_fit(
        X,
        y,
        kernel_fn=big,
        n_centers=m,
        alpha=0.01,
        tol=1e-10,
        max_iter=200,
        random_state=0,
    )
    assert ref[3]["strategy"] == "cache"
    small = CountingKernel()
    centers, coef, n_iter, info = nystrom_fit(
        X,
        y,
        kernel_fn=small,
        n_centers=m,
        alpha=0.01,
        tol=1e-10,
        max_iter=200,
        random_state=0,
        working_memory=budget,
        strategy="stream",
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
    np.testing.assert_allclose(
        pred, nystrom_predict(Xt, *ref[:2], big), rtol=1e-7, atol=1e-9
    )


def test_auto_strategy_from_budget():
    """'auto' caches K_nm when it fits half the budget, else uses one Gram pass."""
    X, y, _, _ = teacher_data(400, seed=8)
    m = 50  # K_nm takes 400 * 50 * 8 B = 0.153 MiB
    kwargs = dict(n_centers=m, alpha=0.1, tol=1e-10, random_state=0)
    fits = {}
    for budget, expected in ((0.4, "cache"), (0.2, "gram")):
        counting = CountingKernel()
        fits[expected] = nystrom_fit(
            X, y, kernel_fn=counting, working_memory=budget, **kwargs
        )
        assert fits[expected][3]["strategy"] == expected
        n_blocks = len([s for s in counting.shapes if s != (m, m)])
        assert n_blocks == -(-400 // fits[expected][3]["block_rows"])  # one pass
    np.testing.assert_allclose(fits["gram"][1], fits["cache"][1], rtol=1e-7)


@pytest.mark.parametrize(
    "on_gpu, m, expected",
    [
        (False, 5000, "gram"),
        (False, 20000, "gram"),
        (True, 5000, "gram"),
        (True, 20000, "stream"),
    ],
)
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
    centers, coef, _, info = nystrom_fit(
        Xmm, y, kernel_fn=counting, working_memory=budget, **kwargs
    )
    assert info["strategy"] != "cache"
    limit = 0.25 * budget * 2**20
    assert all(r * c * 8 <= limit for r, c in counting.shapes if c == m and r != m)
    ref = nystrom_fit(X, y, kernel_fn=kernel_block_function("ntk", **KERNEL), **kwargs)
    np.testing.assert_allclose(centers, ref[0])
    np.testing.assert_allclose(coef, ref[1], rtol=1e-7, atol=1e-10)
    counting.shapes.clear()
    pred = nystrom_predict(Xmm, centers, coef, counting, working_memory=budget)
    assert len(counting.shapes) > 1
    assert all(r * c * 8 <= limit for r, c in counting.shapes)
    np.testing.assert_allclose(
        pred, ntk_kernel(X, centers, **KERNEL) @ coef, rtol=1e-10
    )


def test_array_api_strict_input():
    """array_api_strict in gives array_api_strict out, equal to the NumPy fit."""
    xps = pytest.importorskip("array_api_strict")
    X, y, Xt, _ = teacher_data(200, n_test=30, seed=10)
    Y = np.c_[y, -y]
    kernel_fn = kernel_block_function("ntk", **KERNEL)
    kwargs = dict(
        kernel_fn=kernel_fn,
        n_centers=40,
        alpha=0.1,
        tol=1e-10,
        max_iter=200,
        random_state=0,
    )
    ref = nystrom_fit(X, Y, **kwargs)
    centers, coef, n_iter, _ = nystrom_fit(
        xps.asarray(X),
        xps.asarray(Y),
        working_memory=0.02,
        sample_weight=xps.ones(200, dtype=xps.float64),
        **kwargs,
    )
    assert type(coef) is type(xps.asarray(1.0)) and type(centers) is type(coef)
    assert abs(n_iter - ref[2]) <= 1
    # the two kernel code paths agree to ~1e-8 (the arc-cosine near 1)
    np.testing.assert_allclose(np.asarray(coef), ref[1], rtol=1e-5, atol=1e-7)
    pred = nystrom_predict(
        xps.asarray(Xt), centers, coef, kernel_fn, working_memory=0.02
    )
    assert type(pred) is type(coef)
    np.testing.assert_allclose(
        np.asarray(pred), nystrom_predict(Xt, *ref[:2], kernel_fn), rtol=1e-5, atol=1e-7
    )


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
    params = dict(
        X=np.ones((20, 2)),
        y=np.ones(20),
        n_centers=5,
        alpha=1.0,
        kernel_fn=kernel_block_function(),
    )
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
        kwargs = dict(
            kernel_fn=kernel_fn,
            n_centers=300,
            alpha=0.1,
            tol=1e-10,
            max_iter=300,
            random_state=0,
            strategy=strategy,
            working_memory=0.5,
        )
        ref = nystrom_fit(X, y, **kwargs)
        centers, coef, _, _ = nystrom_fit(cupy.asarray(X), cupy.asarray(y), **kwargs)
        assert isinstance(coef, cupy.ndarray) and isinstance(centers, cupy.ndarray)
        pred = nystrom_predict(
            cupy.asarray(Xt), centers, coef, kernel_fn, working_memory=0.5
        )
        assert isinstance(pred, cupy.ndarray)
        np.testing.assert_allclose(
            cupy.asnumpy(pred),
            nystrom_predict(Xt, *ref[:2], kernel_fn),
            rtol=1e-6,
            atol=1e-8,
        )
    # n_centers = n on the GPU equals exact kernel ridge (CPU reference)
    Xs, ys = X[:400], y[:400]
    centers, coef, _, _ = nystrom_fit(
        cupy.asarray(Xs),
        cupy.asarray(ys),
        kernel_fn=kernel_fn,
        n_centers=400,
        alpha=0.05,
        tol=1e-12,
        max_iter=50,
    )
    np.testing.assert_allclose(
        cupy.asnumpy(nystrom_predict(cupy.asarray(Xt), centers, coef, kernel_fn)),
        exact_predictions(Xs, ys, Xt, 0.05),
        rtol=1e-7,
        atol=1e-9,
    )


# ---------------------------------------------------------------------------
# Through the estimators
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel, frozen_layers", [("ntk", 0), ("ntk", 1), ("nngp", 0)])
def test_estimator_nystrom_all_centres_equals_cholesky(kernel, frozen_layers):
    """solver='nystrom' with n_centers >= n predicts as solver='cholesky'."""
    X, y, Xt, _ = teacher_data(200, n_test=50, seed=12)
    w = np.random.default_rng(0).uniform(0.0, 2.0, size=200)
    params = dict(
        alpha=0.1,
        depth=2,
        bias_std=0.1,
        alpha_scale="mean_diag",
        kernel=kernel,
        frozen_layers=frozen_layers,
    )
    exact = NTKRegressor(solver="cholesky", **params).fit(X, y, sample_weight=w)
    approx = NTKRegressor(solver="nystrom", n_centers=500, tol=1e-12, **params).fit(
        X, y, sample_weight=w
    )
    assert approx.solver_ == "nystrom" and exact.solver_ == "cholesky"
    assert exact.n_iter_ == 1 and approx.n_iter_ >= 1
    assert approx.alpha_ == pytest.approx(exact.alpha_, rel=1e-12)
    np.testing.assert_allclose(
        approx.predict(Xt), exact.predict(Xt), rtol=1e-7, atol=1e-9
    )
    # without weights the preconditioner is exact: CG needs one or two steps
    unweighted = clone(approx).fit(X, y)
    assert 1 <= unweighted.n_iter_ <= 3
    np.testing.assert_allclose(
        unweighted.predict(Xt), clone(exact).fit(X, y).predict(Xt), rtol=1e-7, atol=1e-9
    )
    labels = np.array(["a", "b", "c"])[np.digitize(y, np.quantile(y, [0.3, 0.6]))]
    clf_exact = NTKClassifier(solver="cholesky", **params).fit(X, labels)
    clf = NTKClassifier(solver="nystrom", n_centers=500, tol=1e-12, **params)
    clf.fit(X, labels)
    np.testing.assert_allclose(
        clf.decision_function(Xt), clf_exact.decision_function(Xt), rtol=1e-7, atol=1e-9
    )
    np.testing.assert_array_equal(clf.predict(Xt), clf_exact.predict(Xt))


def test_estimator_nystrom_equals_solver_function():
    """With fewer centres, the estimator is nystrom_fit on the same kernel."""
    X, y, Xt, _ = teacher_data(300, n_test=40, seed=15)
    model = NTKRegressor(
        alpha=0.05,
        depth=2,
        bias_std=0.1,
        solver="nystrom",
        n_centers=40,
        random_state=3,
        tol=1e-10,
        normalize_y=False,  # nystrom_fit's raw targets
    ).fit(X, y)
    centers, coef, n_iter, _ = nystrom_fit(
        X,
        y,
        kernel_fn=kernel_block_function("ntk", **KERNEL),
        n_centers=40,
        alpha=0.05,
        random_state=3,
        tol=1e-10,
    )
    np.testing.assert_array_equal(model.X_fit_, centers)
    assert model.n_iter_ == n_iter
    np.testing.assert_allclose(model.dual_coef_, coef, rtol=1e-12)
    np.testing.assert_allclose(
        model.predict(Xt), ntk_kernel(Xt, centers, **KERNEL) @ coef, rtol=1e-10
    )
    other = clone(model).set_params(random_state=4).fit(X, y)
    assert not np.array_equal(other.X_fit_, model.X_fit_)


def test_estimator_auto_solver_follows_budget(capsys):
    """solver='auto' is exact while the n x n kernel fits working_memory."""
    X, y, _, _ = teacher_data(300, seed=13)  # the kernel takes 0.69 MiB
    small = NTKRegressor(working_memory=0.5, n_centers=100, verbose=1).fit(X, y)
    assert small.solver_ == "nystrom" and small.X_fit_.shape == (100, 5)
    out = capsys.readouterr().out
    assert "solver='auto'" in out and "using 'nystrom'" in out
    assert "[nystrom] CG:" in out  # the solver's own summary
    big = NTKRegressor(working_memory=1.0).fit(X, y)
    assert big.solver_ == "cholesky" and big.n_iter_ == 1
    assert big.X_fit_.shape == X.shape
    assert capsys.readouterr().out == ""  # verbose=0 prints nothing
    # A finite t and memory need the exact kernel: "auto" keeps it.
    for extra in (dict(t=10.0), dict(memory=Memory(None, verbose=0))):
        model = NTKRegressor(working_memory=0.5, verbose=1, **extra).fit(X, y)
        assert model.solver_ == "cholesky"
        assert "needs the exact kernel: using 'cholesky'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra", [dict(t=10.0), dict(memory=Memory(None))], ids=["t", "memory"]
)
def test_estimator_nystrom_refuses_exact_only_options(extra):
    """A finite t and memory with solver='nystrom' raise a ValueError at fit."""
    X, y, _, _ = teacher_data(50, seed=16)
    for Estimator in (NTKRegressor, NTKClassifier):
        target = y if Estimator is NTKRegressor else y > 0
        with pytest.raises(ValueError, match="exact training kernel"):
            Estimator(solver="nystrom", **extra).fit(X, target)
    # t=inf is the converged model: allowed
    NTKRegressor(solver="nystrom", t=np.inf, n_centers=10).fit(X, y)


def test_estimator_nystrom_refuses_uncertainty_and_trajectory():
    """return_std, return_cov and predict_trajectory need the exact solver."""
    X, y, Xt, _ = teacher_data(60, n_test=5, seed=17)
    model = NTKRegressor(solver="nystrom", n_centers=20, random_state=0).fit(X, y)
    for kwargs in (dict(return_std=True), dict(return_cov=True)):
        with pytest.raises(ValueError, match='solver="cholesky"'):
            model.predict(Xt, **kwargs)
    with pytest.raises(ValueError, match='solver="cholesky"'):
        model.predict_trajectory(Xt, [1.0])


@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_estimator_nystrom_degenerate_data_is_finite(alpha):
    """Duplicate and all-zero rows give finite fits and predictions."""
    rng = np.random.default_rng(18)
    X = np.repeat(rng.normal(size=(10, 3)), 6, axis=0)
    X[:7] = 0.0
    y = rng.normal(size=60)
    model = NTKRegressor(
        alpha=alpha, solver="nystrom", n_centers=30, random_state=0
    ).fit(X, y)
    assert np.isfinite(model.dual_coef_).all()
    assert np.isfinite(model.predict(np.vstack([X, np.zeros((1, 3))]))).all()


def test_estimator_memmap_is_not_copied(tmp_path):
    """fit/predict stream a memmap: peak memory stays below the size of X."""
    n, d = 20_000, 50  # X takes 8 MB
    X, y, _, _ = teacher_data(n, d=d, seed=14)
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=(n, d))
    mm[:] = X
    mm.flush()
    del mm
    Xmm = np.memmap(path, dtype=np.float64, mode="r", shape=(n, d))
    params = dict(
        solver="nystrom",
        n_centers=50,
        working_memory=0.5,
        random_state=0,
        tol=1e-10,
        n_jobs=1,
    )
    ref = NTKRegressor(**params).fit(X, y)
    ref_pred = ref.predict(X)
    tracemalloc.start()
    try:
        model = NTKRegressor(**params).fit(Xmm, y)
        pred = model.predict(Xmm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 2, f"peak {peak} B for X of {X.nbytes} B"
    np.testing.assert_allclose(pred, ref_pred, rtol=1e-8)
    # the exact solver copies X (it keeps X_fit_): same validation, copy=True
    exact = NTKRegressor(solver="cholesky").fit(Xmm[:100], y[:100])
    assert not np.shares_memory(exact.X_fit_, Xmm)


def test_estimator_nystrom_gpu_branch_with_array_api_strict(monkeypatch):
    """The GPU branch of the Nystrom fit, array_api_strict standing in for CuPy.

    The data go to the stand-in namespace, the whole solve runs there, and the
    fitted attributes come back as NumPy, equal to the CPU fit.
    """
    xps = pytest.importorskip("array_api_strict")
    import sknetk._base as base

    moved = []

    def asarray(a):
        moved.append(a.shape)
        return xps.asarray(np.asarray(a))

    fake_cupy = SimpleNamespace(
        asarray=asarray,
        get_default_memory_pool=lambda: SimpleNamespace(free_all_blocks=lambda: None),
    )
    X, y, Xt, _ = teacher_data(200, n_test=20, seed=20)
    params = dict(
        alpha=0.05,
        depth=2,
        bias_std=0.1,
        solver="nystrom",
        n_centers=40,
        random_state=0,
        tol=1e-10,
        alpha_scale="mean_diag",
    )
    cpu = NTKRegressor(device="cpu", **params).fit(X, y)
    monkeypatch.setattr(base, "cupy_or_error", lambda: fake_cupy)
    monkeypatch.setattr(NTKRegressor, "_compute_device", lambda self, n: "gpu")
    gpu = NTKRegressor(device="gpu", **params).fit(X, y)
    assert moved == [X.shape]
    assert type(gpu.X_fit_) is np.ndarray and type(gpu.dual_coef_) is np.ndarray
    np.testing.assert_array_equal(gpu.X_fit_, cpu.X_fit_)
    assert gpu.alpha_ == cpu.alpha_
    # the two kernel code paths agree to ~1e-8 (the arc-cosine near 1)
    np.testing.assert_allclose(gpu.dual_coef_, cpu.dual_coef_, rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
def test_estimator_nystrom_on_gpu_matches_cpu():
    """device='gpu' runs the Nystrom solver on CuPy; NumPy attributes, same fit."""
    cupy = pytest.importorskip("cupy")
    from sknetk._device import gpu_available

    if not gpu_available():
        pytest.skip("no CUDA device")
    X, y, Xt, _ = teacher_data(2000, n_test=100, seed=19)
    params = dict(
        alpha=0.05,
        depth=2,
        bias_std=0.1,
        solver="nystrom",
        n_centers=300,
        random_state=0,
        tol=1e-10,
    )
    cpu = NTKRegressor(device="cpu", **params).fit(X, y)
    gpu = NTKRegressor(device="gpu", **params).fit(X, y)
    assert isinstance(gpu.X_fit_, np.ndarray) and isinstance(gpu.dual_coef_, np.ndarray)
    np.testing.assert_array_equal(gpu.X_fit_, cpu.X_fit_)
    np.testing.assert_allclose(gpu.predict(Xt), cpu.predict(Xt), rtol=1e-7, atol=1e-9)
    out = gpu.predict(cupy.asarray(Xt))
    assert isinstance(out, cupy.ndarray)
