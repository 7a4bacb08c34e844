"""One working copy, one factor: the exact solve and the leave-one-out values
built on it.

The exact solver factorises one Fortran-ordered copy of the kernel (a
``memcpy`` of a C-ordered kernel's transpose), reads it once for both its
1-norm and its finiteness, and can hand its Cholesky factor on; the
leave-one-out predictions then need only a triangular inverse of that factor.
Every value is checked against an independent computation: NumPy's inverse,
explicit column sums, scipy's Cholesky, and refits without each row.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.linalg import cholesky

import sknetk._linalg as linalg_module
from sknetk._calibration import loo_decision_values, loo_from_factor
from sknetk._linalg import (
    cholesky_inplace,
    fortran_working_copy,
    inverse_diagonal_inplace,
    norm1_symmetric,
)
from sknetk._solver import cholesky_solve, solve_kernel_ridge
from sknetk._solvers import ExecutionContext, Kernel, Ridge, solve_cholesky
from sknetk.exceptions import IllConditionedKernelWarning
from sknetk.kernels import ntk_diag, ntk_kernel


def _spd(rng, n, shift=1.0):
    G = rng.standard_normal((n, n))
    return G @ G.T / n + shift * np.eye(n)


def _kernel(rng, n, d=4):
    X = rng.standard_normal((n, d))
    return X, ntk_kernel(X, depth=2)


# -- inverse_diagonal_inplace -------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 64])
@pytest.mark.parametrize("slab_columns", [1, 3, None])
def test_inverse_diagonal_equals_numpy_inverse(n, slab_columns, monkeypatch):
    """diag(A^-1) from the factor, over one or many column slabs, equals
    NumPy's inverse; the strict upper triangle (here NaN) is never read."""
    if slab_columns is not None:
        monkeypatch.setattr(linalg_module, "_SLAB_ENTRIES", 8 * n * slab_columns)
    rng = np.random.default_rng(n)
    A = _spd(rng, n)
    F = np.array(A, order="F")  # a copy, also for n = 1
    assert cholesky_inplace(F) == 0
    upper = np.triu_indices(n, 1)
    F[upper] = np.nan
    diag = inverse_diagonal_inplace(F)
    assert_allclose(diag, np.diag(np.linalg.inv(A)), rtol=1e-12)
    # L^-1 in the lower triangle, the strict upper one untouched
    L = cholesky(A, lower=True)
    assert_allclose(np.tril(F), np.linalg.inv(L), rtol=1e-10, atol=1e-12)
    assert np.isnan(F[upper]).all()


def test_inverse_diagonal_of_a_singular_factor_is_none():
    F = np.asfortranarray(np.diag([1.0, 0.0, 2.0]))
    assert inverse_diagonal_inplace(F) is None


def test_inverse_diagonal_refuses_a_c_ordered_matrix():
    with pytest.raises(ValueError, match="Fortran-ordered"):
        inverse_diagonal_inplace(np.ascontiguousarray(np.eye(3)[::-1] + np.eye(3)))


# -- norm1_symmetric and the working copy -------------------------------------
@pytest.mark.parametrize("layout", ["F", "C", "strided", "float32"])
def test_norm1_is_the_largest_absolute_column_sum(layout):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((30, 30))
    A = A + A.T
    M = {
        "F": np.asfortranarray(A),
        "C": np.ascontiguousarray(A),
        "strided": np.asfortranarray(np.kron(A, np.ones((2, 2))))[::2, ::2],
        "float32": A.astype(np.float32),
    }[layout]
    ref = np.abs(M.astype(np.float64)).sum(axis=0).max()
    assert norm1_symmetric(M) == pytest.approx(
        ref, rel=1e-6 if "32" in layout else 1e-14
    )


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("where", [(0, 0), (2, 9), (9, 2), (11, 11)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_norm1_is_not_finite_when_one_entry_is_not(order, where, bad):
    """The one pass is also the finiteness check: NaN and infinities propagate
    from any column (LAPACK dlange), a NaN beats a larger later column."""
    A = np.ones((12, 12), order=order)
    A[:, -1] = 1e3  # a larger column after the bad one
    A[where] = bad
    value = norm1_symmetric(A)
    if np.isnan(bad):
        assert np.isnan(value)
    else:
        assert value == np.inf


def test_working_copy_is_fortran_ordered_and_equal():
    rng = np.random.default_rng(2)
    K = _spd(rng, 9)
    for M in (np.ascontiguousarray(K), np.asfortranarray(K), K.astype(np.float32)):
        F = fortran_working_copy(M)
        assert F.flags.f_contiguous and F.dtype == np.float64
        assert not np.shares_memory(F, M)
        assert_array_equal(F, M.astype(np.float64))
    C = np.ascontiguousarray(K)
    assert np.shares_memory(fortran_working_copy(C, overwrite=True), C)
    read_only = C.copy()
    read_only.flags.writeable = False
    assert not np.shares_memory(fortran_working_copy(read_only, overwrite=True), C)


# -- the solver: one pass refuses a non-finite kernel anywhere ----------------
@pytest.mark.parametrize("where", [(1, 4), (4, 1), (3, 3)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_solver_refuses_a_non_finite_entry_anywhere(
    where, bad, order, overwrite, weighted, alpha
):
    K = np.array(_spd(np.random.default_rng(3), 6), order=order)
    K[where] = bad
    w = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 3.0]) if weighted else None
    with pytest.raises(ValueError, match="NaN or infinity"):
        solve_kernel_ridge(K, np.ones(6), alpha, w, overwrite_K=overwrite)


def test_finite_kernel_whose_norm_overflows_is_not_refused():
    """Only the column sum overflows: every entry is finite, so the kernel is
    accepted (and the solve stays finite), as with an entrywise check."""
    K = np.array([[1e308, 0.9e308], [0.9e308, 1e308]])
    with pytest.warns(IllConditionedKernelWarning):
        x = solve_kernel_ridge(K, np.ones(2), 0.0)
    assert np.isfinite(x).all()


@pytest.mark.parametrize("order", ["C", "F"])
def test_solver_leaves_its_input_untouched(order):
    K = np.array(_spd(np.random.default_rng(4), 20), order=order)
    before = K.copy()
    solve_kernel_ridge(K, np.ones(20), 0.1, np.linspace(0, 2, 20))
    assert_array_equal(K, before)


# -- cholesky_solve: the factor it hands on ------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("targets", [None, 3])
def test_cholesky_solve_returns_its_factor(weighted, targets):
    rng = np.random.default_rng(5)
    n, alpha = 25, 0.3
    K = _spd(rng, n, shift=0.0)
    y = rng.standard_normal(n if targets is None else (n, targets))
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    out = cholesky_solve(K, y, alpha, w)
    assert_allclose(out.dual, solve_kernel_ridge(K, y, alpha, w), rtol=1e-13)
    root = np.ones(n) if w is None else np.sqrt(w)
    A = root[:, None] * K * root[None, :] + alpha * np.eye(n)
    # lower triangle: L; strict upper triangle: A itself
    assert_allclose(
        np.tril(out.factor), cholesky(A, lower=True), rtol=1e-12, atol=1e-14
    )
    upper = np.triu_indices(n, 1)
    assert_allclose(out.factor[upper], A[upper], rtol=1e-15)
    # scaled = A^-1 W^1/2 y, so that dual = W^1/2 scaled
    Y = y.reshape(n, -1)
    assert_allclose(out.scaled, np.linalg.solve(A, root[:, None] * Y), rtol=1e-10)
    assert_allclose(out.dual.reshape(n, -1), root[:, None] * out.scaled, rtol=1e-15)


def test_cholesky_solve_has_no_factor_after_the_fallback():
    with pytest.warns(IllConditionedKernelWarning):
        out = cholesky_solve(np.ones((3, 3)), np.ones(3), 0.0)
    assert out.factor is None and out.scaled is None
    assert np.isfinite(out.dual).all()


# -- leave-one-out values from the factor --------------------------------------
def _refit_loo(K, Y, ridge, w):
    """Brute force: refit without one observation of each row (weights count
    observations: one unit of a weight above 1, all of a smaller one);
    a zero-weight row gets the full model's prediction."""
    n = K.shape[0]
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)

    def predict(weights, i):
        root = np.sqrt(weights)
        A = root[:, None] * K * root[None, :] + ridge * np.eye(n)
        c = root[:, None] * np.linalg.solve(A, root[:, None] * Y)
        return K[i] @ c

    out = np.empty_like(Y)
    for i in range(n):
        if w[i] == 0:
            out[i] = predict(w, i)
            continue
        left = w.copy()
        left[i] = w[i] - 1.0 if w[i] > 1 else 0.0
        out[i] = predict(left, i)
    return out


@pytest.mark.parametrize(
    "weights", [None, "positive", "with zeros"], ids=["unweighted", "weighted", "zeros"]
)
def test_loo_from_factor_equals_refits(weights):
    rng = np.random.default_rng(6)
    n, ridge = 30, 0.2
    _, K = _kernel(rng, n)
    Y = np.sign(rng.standard_normal((n, 2)))
    w = {
        None: None,
        "positive": rng.uniform(0.3, 3.0, n),
        "with zeros": np.where(np.arange(n) % 5 == 0, 0.0, rng.uniform(0.3, 3.0, n)),
    }[weights]
    root = np.ones(n) if w is None else np.sqrt(w)
    F = np.asfortranarray(root[:, None] * K * root[None, :] + ridge * np.eye(n))
    assert cholesky_inplace(F) == 0
    loo = loo_from_factor(F, Y, ridge, w, kernel_rows=K)
    assert_allclose(loo, _refit_loo(K, Y, ridge, w), rtol=1e-8, atol=1e-10)
    assert_allclose(loo, loo_decision_values(K, Y, ridge, w), rtol=1e-10, atol=1e-12)


def test_loo_from_factor_declines_what_the_eigen_path_handles():
    n = 4
    F = np.asfortranarray(np.diag([1.0, 1.0, 1e-9, 1.0]))  # a tiny pivot
    assert (
        loo_from_factor(F.copy(order="F"), np.ones((n, 1)), 0.1, kernel_rows=F) is None
    )
    F = np.asfortranarray(np.eye(n))
    assert loo_from_factor(F, np.ones((n, 1)), 0.0, kernel_rows=F) is None  # no ridge


def test_loo_decision_values_leave_the_kernel_untouched():
    rng = np.random.default_rng(7)
    _, K = _kernel(rng, 40)
    before = K.copy()
    loo_c = loo_decision_values(K, np.ones((40, 1)), 0.1, np.linspace(0, 1, 40))
    assert_array_equal(K, before)
    loo_f = loo_decision_values(
        np.asfortranarray(K), np.ones((40, 1)), 0.1, np.linspace(0, 1, 40)
    )
    assert_allclose(loo_c, loo_f, rtol=1e-10, atol=1e-12)


# -- the exact solver hands its LOO values on (ExecutionContext.loo) ----------
def _ntk():
    return Kernel("ntk", {"depth": 2}, ntk_kernel, ntk_diag)


@pytest.mark.parametrize("weights", [None, "with zeros"], ids=["unweighted", "zeros"])
@pytest.mark.parametrize("targets", [1, 3])
def test_exact_solver_returns_the_loo_values_of_its_fit(weights, targets):
    rng = np.random.default_rng(8)
    n = 40
    X = rng.standard_normal((n, 4))
    y = np.sign(rng.standard_normal((n, targets)))
    y = y[:, 0] if targets == 1 else y
    w = None if weights is None else np.where(np.arange(n) % 7 == 0, 0.0, 1.5)
    ridge = Ridge(0.1, "mean_diag", w)
    plain = solve_cholesky(_ntk(), X, y, w, ridge, None, ExecutionContext())
    fit = solve_cholesky(_ntk(), X, y, w, ridge, None, ExecutionContext(loo=True))
    assert plain.loo is None
    assert fit.alpha == plain.alpha
    assert_allclose(fit.dual_coef, plain.dual_coef, rtol=1e-14)
    K = ntk_kernel(X, depth=2)
    Y = y.reshape(n, -1)
    assert_allclose(fit.loo, _refit_loo(K, Y, fit.alpha, w), rtol=1e-7, atol=1e-9)
    assert_allclose(
        fit.loo, loo_decision_values(K, Y, fit.alpha, w), rtol=1e-10, atol=1e-12
    )


def test_exact_solver_gives_no_loo_values_after_the_fallback():
    """Duplicate rows and no ridge: the solve falls back to the
    eigendecomposition, so there is no factor and the caller computes the LOO
    values itself."""
    X = np.repeat(np.random.default_rng(9).standard_normal((5, 3)), 2, axis=0)
    y = np.arange(10.0)
    with pytest.warns(IllConditionedKernelWarning):
        fit = solve_cholesky(
            _ntk(), X, y, None, Ridge(0.0, "absolute"), None, ExecutionContext(loo=True)
        )
    assert fit.loo is None
    assert np.isfinite(fit.dual_coef).all()


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_calibrates_on_the_loo_values_of_its_own_fit(n_classes):
    """Weighted (with zero weights) classifier: its slope is the one fitted on
    the LOO values of a kernel computed afresh, however the fit obtained them
    (from the solver's factor, or by factorising again)."""
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import LabelBinarizer

    from sknetk import NTKClassifier
    from sknetk._calibration import fit_temperature

    X, y = make_classification(
        n_samples=40, n_features=5, n_informative=3, n_redundant=0,
        n_classes=n_classes, random_state=1,
    )  # fmt: skip
    w = np.where(np.arange(40) % 9 == 0, 0.0, np.linspace(0.5, 2.0, 40))
    model = NTKClassifier(alpha=0.2, depth=2).fit(X, y, sample_weight=w)
    Y = LabelBinarizer(pos_label=1, neg_label=-1).fit_transform(y).astype(float)
    K = ntk_kernel(X, depth=2)
    loo = loo_decision_values(K, Y, model.alpha_, w)
    assert_allclose(loo, _refit_loo(K, Y, model.alpha_, w), rtol=1e-7, atol=1e-9)
    expected = fit_temperature(loo, Y, w).slope
    assert model.calibration_slope_ == pytest.approx(expected, rel=1e-9)
