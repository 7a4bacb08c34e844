"""The exact kernel ridge solver: Cholesky, its fallback, weights, namespaces."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model._ridge import _solve_cholesky_kernel

from sknetk._solver import blas_matmul, effective_alpha, solve_kernel_ridge
from sknetk.exceptions import IllConditionedKernelWarning


def _spd_kernel(n, rng, d=4):
    """An RBF Gram matrix of random points: symmetric positive definite."""
    X = rng.normal(size=(n, d))
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * sq)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("y_shape", [(30,), (30, 1), (30, 3)])
def test_matches_scikit_learn_kernel_ridge_solver(rng, weighted, y_shape):
    """Equal to scikit-learn's ``_solve_cholesky_kernel`` (KernelRidge's solver)."""
    K = _spd_kernel(30, rng)
    y = rng.normal(size=y_shape)
    sw = rng.uniform(0.1, 3.0, size=30) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        coef = solve_kernel_ridge(K, y, 0.3, sw)
    expected = _solve_cholesky_kernel(
        K.copy(), y.reshape(30, -1), np.array([0.3]), sw, copy=True
    ).reshape(y_shape)
    assert coef.shape == y_shape
    assert coef.dtype == np.float64
    assert_allclose(coef, expected, rtol=1e-10, atol=1e-12)


def test_solution_satisfies_the_normal_equations(rng):
    """The duals solve ``(K + alpha I) c = y`` (checked by the residual)."""
    K = _spd_kernel(40, rng)
    y = rng.normal(size=(40, 2))
    coef = solve_kernel_ridge(K, y, 1e-3)
    assert_allclose((K + 1e-3 * np.eye(40)) @ coef, y, atol=1e-9)


def test_inputs_are_not_modified_and_overwrite_gives_same_result(rng):
    """``overwrite_K=False`` leaves K, y and weights intact; True gives the same."""
    K = _spd_kernel(25, rng)
    y = rng.normal(size=25)
    sw = rng.uniform(0.5, 2.0, size=25)
    K0, y0, sw0 = K.copy(), y.copy(), sw.copy()
    coef = solve_kernel_ridge(K, y, 0.1, sw)
    assert_allclose(K, K0, rtol=0, atol=0)
    assert_allclose(y, y0, rtol=0, atol=0)
    assert_allclose(sw, sw0, rtol=0, atol=0)
    for layout in (np.ascontiguousarray, np.asfortranarray):
        coef2 = solve_kernel_ridge(layout(K0.copy()), y, 0.1, sw, overwrite_K=True)
        assert_allclose(coef2, coef, rtol=1e-12)


def test_float32_kernel_is_solved_in_float64(rng):
    """A float32 kernel gives float64 duals equal to the float64 solve of it."""
    K32 = _spd_kernel(20, rng).astype(np.float32)
    y = rng.normal(size=20).astype(np.float32)
    coef = solve_kernel_ridge(K32, y, 0.5)
    assert coef.dtype == np.float64
    expected = np.linalg.solve(K32.astype(np.float64) + 0.5 * np.eye(20), y)
    assert_allclose(coef, expected, rtol=1e-12)


def test_duplicate_rows_without_ridge_warn_and_give_min_norm_solution(rng):
    """alpha=0 and duplicated rows: a warning and the pseudo-inverse solution."""
    X = rng.normal(size=(8, 3))
    X = np.vstack([X, X[:3]])  # rows 8, 9, 10 duplicate rows 0, 1, 2
    K = (X @ X.T + 1.0) ** 2  # polynomial kernel: PD on distinct points
    y = rng.normal(size=11)
    with pytest.warns(IllConditionedKernelWarning, match="eigendecomposition"):
        coef = solve_kernel_ridge(K, y, 0.0)
    assert np.isfinite(coef).all()
    assert_allclose(coef, np.linalg.pinv(K, rcond=1e-12) @ y, rtol=1e-6, atol=1e-8)
    # The fitted values are y projected on range(K): duplicates get their mean.
    fitted = K @ coef
    expected = y.copy()
    for i, j in [(0, 8), (1, 9), (2, 10)]:
        expected[i] = expected[j] = (y[i] + y[j]) / 2
    assert_allclose(fitted, expected, atol=1e-6)


def test_numerically_singular_matrix_that_cholesky_accepts_falls_back(rng):
    """Cholesky succeeds on diag(2, 1, 1e-18, 0.5), but the pivot test catches it.

    The fallback drops the eigenvalue below ``n * eps`` times the largest, so
    that coordinate's dual is zero instead of ``y / 1e-18``.
    """
    d = np.array([2.0, 1.0, 1e-18, 0.5])
    y = rng.normal(size=4)
    with pytest.warns(IllConditionedKernelWarning, match="working precision"):
        coef = solve_kernel_ridge(np.diag(d), y, 0.0)
    expected = y / d
    expected[2] = 0.0
    assert_allclose(coef, expected, rtol=1e-14)


def test_zero_kernel_gives_zero_duals():
    """K = 0 and alpha = 0: warning and zero duals, never NaN."""
    with pytest.warns(IllConditionedKernelWarning):
        coef = solve_kernel_ridge(np.zeros((4, 4)), np.ones(4), 0.0)
    assert_allclose(coef, np.zeros(4), atol=0)


def test_indefinite_but_invertible_matrix_is_solved_exactly(rng):
    """Cholesky fails on an indefinite matrix; the fallback solves it exactly."""
    Q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    K = Q @ np.diag([3.0, 2.0, 1.0, 0.5, -0.5, -1.0, -2.0]) @ Q.T
    y = rng.normal(size=7)
    with pytest.warns(IllConditionedKernelWarning, match="not positive definite"):
        coef = solve_kernel_ridge(K, y, 0.0)
    assert_allclose(coef, np.linalg.solve(K, y), rtol=1e-10)


def test_well_conditioned_problem_does_not_warn(rng):
    """No warning for an ordinary positive definite system."""
    K = _spd_kernel(50, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        solve_kernel_ridge(K, rng.normal(size=50), 1e-6)


def test_zero_weight_removes_the_sample(rng):
    """A zero weight gives a zero dual and the duals of the fit without it."""
    K = _spd_kernel(20, rng)
    y = rng.normal(size=(20, 2))
    sw = rng.uniform(0.5, 2.0, size=20)
    sw[[3, 11]] = 0.0
    coef = solve_kernel_ridge(K, y, 0.2, sw)
    keep = sw > 0
    sub = solve_kernel_ridge(K[np.ix_(keep, keep)], y[keep], 0.2, sw[keep])
    assert_allclose(coef[~keep], 0.0, atol=0)
    assert_allclose(coef[keep], sub, rtol=1e-10)


def test_integer_weight_equals_repetition(rng):
    """Weight 2 gives the same fitted function as repeating the sample."""
    X = rng.normal(size=(12, 3))
    k = lambda A, B: np.exp(-0.5 * ((A[:, None] - B[None]) ** 2).sum(-1))  # noqa: E731
    y = rng.normal(size=12)
    sw = np.ones(12)
    sw[[2, 5]] = 2.0
    coef = solve_kernel_ridge(k(X, X), y, 0.3, sw)
    Xr = np.vstack([X, X[[2, 5]]])
    yr = np.concatenate([y, y[[2, 5]]])
    coef_r = solve_kernel_ridge(k(Xr, Xr), yr, 0.3)
    X_test = rng.normal(size=(9, 3))
    assert_allclose(k(X_test, X) @ coef, k(X_test, Xr) @ coef_r, rtol=1e-9)


def test_empty_problem():
    """Zero samples give zero-length duals."""
    coef = solve_kernel_ridge(np.zeros((0, 0)), np.zeros((0, 2)), 1.0)
    assert coef.shape == (0, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(K=np.full((3, 3), np.nan)), "NaN or infinity"),
        (dict(K=np.diag([1.0, np.inf, 1.0])), "NaN or infinity"),
        (dict(y=np.array([1.0, np.nan, 0.0])), "y contains NaN"),
        (dict(y=np.ones(4)), "must match"),
        (dict(K=np.eye(3)[:, :2]), "square"),
        (dict(alpha=-1.0), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(alpha="a"), "alpha"),
        (dict(sample_weight=np.array([1.0, -1.0, 1.0])), "non-negative"),
        (dict(sample_weight=np.array([1.0, np.nan, 1.0])), "finite"),
        (dict(sample_weight=np.ones(2)), "shape"),
    ],
)
def test_invalid_input_raises(kwargs, match):
    """Non-finite or mismatched input raises a clear ValueError."""
    args = dict(K=np.eye(3), y=np.ones(3), alpha=1.0, sample_weight=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        solve_kernel_ridge(args["K"], args["y"], args["alpha"], args["sample_weight"])


def test_effective_alpha(rng):
    """``mean_diag`` is alpha times the (weighted) mean diagonal."""
    diag = rng.uniform(1, 5, size=10)
    assert effective_alpha(0.3, "absolute", diag) == 0.3
    assert_allclose(effective_alpha(0.3, "mean_diag", diag), 0.3 * diag.mean())
    sw = rng.integers(0, 4, size=10).astype(float)
    sw[0] = 1.0
    repeated = np.repeat(diag, sw.astype(int))
    assert_allclose(
        effective_alpha(0.3, "mean_diag", diag, sw), 0.3 * repeated.mean(), rtol=1e-12
    )
    with pytest.raises(ValueError, match="alpha_scale"):
        effective_alpha(0.3, "trace", diag)
    with pytest.raises(ValueError, match="diagonal"):
        effective_alpha(0.3, "mean_diag")


# ---------------------------------------------------------------------------
# Array-API path (array_api_strict runs the non-NumPy code on the CPU)
# ---------------------------------------------------------------------------
@pytest.fixture
def xp(xps):
    return xps


@pytest.mark.parametrize("weighted", [False, True])
def test_array_api_strict_matches_numpy(rng, xp, weighted):
    """The xp path returns the input's namespace and the NumPy path's values."""
    K = _spd_kernel(15, rng)
    y = rng.normal(size=(15, 2))
    sw = rng.uniform(0.0, 2.0, size=15) if weighted else None
    expected = solve_kernel_ridge(K, y, 0.1, sw)
    coef = solve_kernel_ridge(
        xp.asarray(K), xp.asarray(y), 0.1, None if sw is None else xp.asarray(sw)
    )
    assert type(coef).__module__.startswith("array_api_strict")
    assert coef.dtype == xp.float64
    assert_allclose(np.asarray(coef), expected, rtol=1e-10, atol=1e-13)


def test_array_api_strict_fallback(rng, xp):
    """The xp path falls back like the NumPy path on a singular matrix."""
    X = rng.normal(size=(5, 2))
    X = np.vstack([X, X[:1]])
    K = (X @ X.T + 1.0) ** 2
    y = rng.normal(size=6)
    with pytest.warns(IllConditionedKernelWarning):
        expected = solve_kernel_ridge(K, y, 0.0)
    with pytest.warns(IllConditionedKernelWarning):
        coef = solve_kernel_ridge(xp.asarray(K), xp.asarray(y), 0.0)
    assert coef.shape == (6,)
    assert_allclose(np.asarray(coef), expected, rtol=1e-7, atol=1e-9)


def test_array_api_strict_rejects_non_finite(xp):
    """Non-finite kernels are refused on the xp path too."""
    with pytest.raises(ValueError, match="NaN or infinity"):
        solve_kernel_ridge(xp.asarray(np.full((2, 2), np.nan)), xp.ones(2), 1.0)


@pytest.mark.parametrize("b_shape", [(6,), (6, 1), (6, 3)])
def test_blas_matmul_equals_matmul(rng, b_shape):
    A = rng.normal(size=(5, 6))
    B = rng.normal(size=b_shape)
    got = blas_matmul(A, B)
    assert got.shape == (A @ B).shape
    assert_allclose(got, A @ B, rtol=1e-13)
    # Inputs the BLAS path does not take fall back to ``@``.
    assert_allclose(blas_matmul(np.asfortranarray(A), B), A @ B, rtol=1e-13)
    assert_allclose(blas_matmul(A.astype(np.float32), B), A @ B, rtol=1e-6)
    assert blas_matmul(A[:0], B).shape == (0,) + b_shape[1:]


# ---------------------------------------------------------------------------
# Blocked Cholesky (the factorisation used at every size; small blocks here)
# ---------------------------------------------------------------------------
def _spd(n, rng):
    G = rng.normal(size=(n, n))
    return G @ G.T / n + 0.5 * np.eye(n)


@pytest.mark.parametrize("n", [1, 2, 7, 33, 130])
@pytest.mark.parametrize("block", [1, 5, 16, 4096])
def test_blocked_cholesky_equals_cho_factor(rng, n, block):
    """The in-place blocked factor equals LAPACK's to rounding, any block size.

    The strict upper triangle is left holding the matrix (the fallback reads
    it).
    """
    from scipy.linalg import cho_factor

    from sknetk._linalg import cholesky_inplace

    A = _spd(n, rng)
    F = np.asfortranarray(A.copy())
    assert cholesky_inplace(F, block=block) == 0
    expected, _ = cho_factor(A, lower=True)
    assert_allclose(np.tril(F), np.tril(expected), rtol=1e-12, atol=1e-13)
    assert_allclose(np.triu(F, 1), np.triu(A, 1), rtol=0, atol=0)


@pytest.mark.parametrize("block", [3, 4, 64])
def test_blocked_cholesky_reports_lapack_info(rng, block):
    """A matrix whose leading minor of order 10 is not PD gives info = 10."""
    from scipy.linalg import lapack

    from sknetk._linalg import cholesky_inplace

    A = _spd(17, rng)
    A[9, 9] = -1.0
    _, expected = lapack.dpotrf(A, lower=1)
    assert expected == 10
    assert cholesky_inplace(np.asfortranarray(A.copy()), block=block) == 10


@pytest.mark.parametrize("k", [1, 4])
def test_blocked_solve_equals_cho_solve(rng, k):
    """``cho_solve_inplace`` solves ``A X = B`` like ``scipy.linalg.cho_solve``."""
    from scipy.linalg import cho_factor, cho_solve

    from sknetk._linalg import cho_solve_inplace, cholesky_inplace

    A = _spd(45, rng)
    B = rng.normal(size=(45, k))
    F = np.asfortranarray(A.copy())
    cholesky_inplace(F, block=8)
    X = cho_solve_inplace(F, np.asfortranarray(B.copy()))
    assert_allclose(X, cho_solve(cho_factor(A), B), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("n", [37, 101])
@pytest.mark.parametrize("y_shape", [(), (3,)])
@pytest.mark.parametrize("weighted", [False, True])
def test_solver_with_small_blocks_matches_scikit_learn(
    rng, monkeypatch, n, y_shape, weighted
):
    """The solver through several blocks (odd sizes, several targets, weights)."""
    import sknetk._linalg

    monkeypatch.setattr(sknetk._linalg, "BLOCK", 16)
    K = _spd_kernel(n, rng)
    y = rng.normal(size=(n,) + y_shape)
    sw = rng.uniform(0.1, 3.0, size=n) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        coef = solve_kernel_ridge(K, y, 0.05, sw)
    expected = _solve_cholesky_kernel(
        K.copy(), y.reshape(n, -1), np.array([0.05]), sw, copy=True
    ).reshape(y.shape)
    assert_allclose(coef, expected, rtol=1e-9, atol=1e-11)


def test_not_positive_definite_with_small_blocks_falls_back(rng, monkeypatch):
    """A failure in a later block still restores the matrix for the fallback."""
    import sknetk._linalg

    monkeypatch.setattr(sknetk._linalg, "BLOCK", 8)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    d = np.linspace(3.0, 0.5, 30)
    d[-4:] = -d[-4:]
    K = Q @ np.diag(d) @ Q.T
    y = rng.normal(size=30)
    with pytest.warns(IllConditionedKernelWarning, match="not positive definite"):
        coef = solve_kernel_ridge(K, y, 0.0)
    assert_allclose(coef, np.linalg.solve(K, y), rtol=1e-9)


# ---------------------------------------------------------------------------
# Condition estimate (pocon on NumPy, Hager/Higham on other namespaces)
# ---------------------------------------------------------------------------
def _graded_spd(n, rng, cond):
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (Q * np.geomspace(1.0, 1.0 / cond, n)) @ Q.T


@pytest.mark.parametrize("cond", [10.0, 1e6, 1e12])
def test_condition_estimates_match_the_true_condition_number(rng, cond):
    """pocon and the array-API estimator bracket ``1 / cond_1`` closely.

    Both estimate ``||A^-1||_1`` from below, so their reciprocal condition is
    at least the true one, and in practice within a small factor of it.
    """
    from scipy.linalg import cho_factor, cho_solve

    from sknetk._linalg import (
        cholesky_inplace,
        norm1_symmetric,
        pocon,
        reciprocal_condition,
    )

    A = _graded_spd(60, rng, cond)
    A = (A + A.T) / 2
    true = 1.0 / np.linalg.cond(A, 1)
    F = np.asfortranarray(A.copy())
    cholesky_inplace(F)
    est_lapack = pocon(F, norm1_symmetric(A))
    c = cho_factor(A)
    est_xp = reciprocal_condition(np, lambda B: cho_solve(c, B), norm1_symmetric(A), 60)
    for est in (est_lapack, est_xp):
        # (the computed inverse itself carries cond * eps relative error)
        assert true * (1 - 1e-3) <= est <= 3 * true


def _near_duplicates(seed, n, offset, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X = np.vstack([X, X[:10] + offset * rng.normal(size=(10, d))])
    y = np.clip(np.sin(X[:, 0]) + 0.3 * rng.normal(size=n + 10), -2, 2)
    return X, y, rng.normal(size=(50, d))


@pytest.mark.parametrize(
    "kernel, activation, offset",
    [
        ("nngp", "relu", 1e-6),
        ("nngp", "relu", 1e-7),
        ("nngp", "erf", 1e-6),
        ("ntk", "erf", 1e-6),
        ("ntk", "erf", 1e-7),
        ("ntk", "relu", 1e-12),
    ],
)
@pytest.mark.parametrize("seed, n", [(0, 100), (1, 60), (2, 150)])
def test_near_duplicate_rows_warn_and_predict_like_the_pseudo_inverse(
    kernel, activation, offset, seed, n
):
    """Near-duplicate rows and alpha=0: a warning, bounded predictions.

    The kernel's condition number exceeds ``1 / (n eps)``; the Cholesky solve
    then carries no guaranteed digit (the old pivot test let such systems
    through, with test predictions up to 1e5 for |y| <= 2). The estimator
    must warn and predict as the brute-force pseudo-inverse does.
    """
    from scipy.linalg import pinvh

    from sknetk import NTKRegressor
    from sknetk.kernels import nngp_kernel, ntk_kernel

    X, y, X_test = _near_duplicates(seed, n, offset)
    # (Cholesky either fails or passes with a tiny condition estimate.)
    with pytest.warns(IllConditionedKernelWarning):
        model = NTKRegressor(
            alpha=0.0, kernel=kernel, activation=activation, normalize_y=False
        ).fit(X, y)
    pred = model.predict(X_test)
    fn = nngp_kernel if kernel == "nngp" else ntk_kernel
    K = fn(X, activation=activation)
    expected = fn(X_test, X, activation=activation) @ (pinvh(K) @ y)
    assert np.abs(pred).max() <= 5 * np.abs(y).max()
    assert_allclose(pred, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_well_separated_rows_without_ridge_do_not_warn(kernel):
    """Distinct rows (offset 1e-2) with alpha=0 are solved exactly, silently."""
    from sknetk import NTKRegressor

    X, y, _ = _near_duplicates(0, 100, 1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        model = NTKRegressor(alpha=0.0, kernel=kernel).fit(X, y)
    assert_allclose(model.predict(X), y, atol=1e-6)


def test_array_api_path_uses_the_same_condition_rule(rng, xp):
    """array_api_strict: the Hager/Higham estimate warns where pocon does."""
    from sknetk.kernels import nngp_kernel

    X, y, _ = _near_duplicates(0, 100, 1e-6)
    K = nngp_kernel(X)
    with pytest.warns(IllConditionedKernelWarning, match="working precision"):
        expected = solve_kernel_ridge(K, y, 0.0)
    with pytest.warns(IllConditionedKernelWarning, match="working precision"):
        coef = solve_kernel_ridge(xp.asarray(K), xp.asarray(y), 0.0)
    assert_allclose(K @ np.asarray(coef), K @ expected, atol=1e-8)
    # Well separated: neither path warns.
    X, y, _ = _near_duplicates(0, 100, 1e-2)
    K = nngp_kernel(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        coef = solve_kernel_ridge(xp.asarray(K), xp.asarray(y), 0.0)
    assert_allclose(np.asarray(coef), solve_kernel_ridge(K, y, 0.0), rtol=1e-6)


def test_gpu_solver_on_array_api_uses_the_condition_rule(xp):
    """The GPU solver's code path (run on array_api_strict) falls back too."""
    from scipy.linalg import pinvh

    from sknetk._gpu_solve import solve_ridge_gpu
    from sknetk.kernels import nngp_kernel

    X, y, _ = _near_duplicates(1, 100, 1e-6)
    K = nngp_kernel(X)
    with pytest.warns(IllConditionedKernelWarning, match="working precision"):
        coef = solve_ridge_gpu(lambda: xp.asarray(K), xp.asarray(y), 0.0)
    assert_allclose(K @ np.asarray(coef), K @ (pinvh(K) @ y), atol=1e-7)
    X, y, _ = _near_duplicates(1, 100, 1e-2)
    K = nngp_kernel(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        coef = solve_ridge_gpu(lambda: xp.asarray(K), xp.asarray(y), 0.0)
    assert_allclose(np.asarray(coef), np.linalg.solve(K, y), rtol=1e-6)


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("y_shape", [(30,), (30, 2)])
def test_gpu_solver_weights_like_scikit_learn(rng, namespace, y_shape):
    """The GPU solver's weighted solve (run on NumPy and array_api_strict)
    equals scikit-learn's weighted kernel ridge; a zero weight removes its row."""
    from sknetk._gpu_solve import solve_ridge_gpu

    xp = np if namespace == "numpy" else pytest.importorskip(namespace)
    K = _spd_kernel(30, rng)
    y = rng.normal(size=y_shape)
    sw = rng.uniform(0.2, 3.0, size=30)
    sw[3] = 0.0
    expected = _solve_cholesky_kernel(K.copy(), y.reshape(30, -1), np.array([0.3]), sw)
    coef = solve_ridge_gpu(
        lambda: xp.asarray(K.copy()), xp.asarray(y), 0.3, xp.asarray(sw)
    )
    assert_allclose(np.asarray(coef), expected.reshape(y_shape), rtol=1e-10)
    assert float(np.asarray(coef)[3].sum()) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        solve_ridge_gpu(
            lambda: xp.asarray(K.copy()), xp.asarray(y), 0.3, xp.asarray(-sw)
        )


def test_read_only_kernel_with_overwrite_is_copied(rng):
    """``overwrite_K=True`` on a read-only kernel (a cache's memory map) copies."""
    K = _spd_kernel(20, rng)
    y = rng.normal(size=20)
    expected = solve_kernel_ridge(K, y, 0.1)
    K.setflags(write=False)
    coef = solve_kernel_ridge(K, y, 0.1, overwrite_K=True)
    assert_allclose(coef, expected, rtol=1e-12)
