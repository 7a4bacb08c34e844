"""The array-API code that the GPU runs, on ``array_api_strict``.

The kernels (every activation's generic path, float32), the GPU ridge solve
and its fallbacks, and the estimators' GPU fit (with ``array_api_strict``
standing in for CuPy) give NumPy's results and follow the CPU solver's rules:
the same warnings, the same pseudo-inverse fallback, the same refusal of a
non-finite kernel. ``"auto"`` computes non-NumPy input where it lives. The
references are the NumPy code path and SciPy's LAPACK through
:func:`sknetk._solver.solve_kernel_ridge`.
"""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sknetk import _base
from sknetk._array_api import get_namespace
from sknetk._gpu_solve import cholesky_solve_inplace, eigh_solve, solve_ridge_gpu
from sknetk._nystrom import kernel_block_function, nystrom_predict
from sknetk._regression import NTKRegressor
from sknetk._solver import solve_kernel_ridge
from sknetk.exceptions import IllConditionedKernelWarning
from sknetk.kernels import (
    ACTIVATION_NAMES,
    kernel_matvec,
    nngp_diag,
    nngp_kernel,
    nngp_ntk_kernels,
    ntk_diag,
    ntk_kernel,
)


def _data(n=30, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)
    return X, y


def _strict_to_numpy(a):
    return np.from_dlpack(a)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_every_activation_on_array_api_strict(xps, activation):
    """Every activation's generic path (the one without a fused form) runs on
    array_api_strict, keeps the namespace and equals NumPy to 1e-12."""
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    X[1] = 0.0
    X[4] = 2.0 * X[3]
    kw = dict(depth=2, activation=activation, bias_std=0.2, frozen_layers=1)
    Xs, Ys = xps.asarray(X), xps.asarray(Y)
    pairs = [
        (
            nngp_ntk_kernels(Xs, Ys, all_depths=True, **kw),
            nngp_ntk_kernels(X, Y, all_depths=True, **kw),
        ),
        ((ntk_kernel(Xs, **kw),), (ntk_kernel(X, **kw),)),
        (
            (ntk_diag(Xs, **kw), nngp_diag(Xs, **kw)),
            (ntk_diag(X, **kw), nngp_diag(X, **kw)),
        ),
        (
            (
                kernel_matvec(
                    Xs,
                    Ys,
                    xps.ones((5, 2), dtype=xps.float64),
                    working_memory=0.0005,
                    **kw,
                ),
            ),
            (kernel_matvec(X, Y, np.ones((5, 2)), working_memory=0.0005, **kw),),
        ),
    ]
    for strict, ref in pairs:
        for a, b in zip(strict, ref):
            assert get_namespace(a) is xps
            assert_allclose(
                _strict_to_numpy(a), b, rtol=1e-12, atol=1e-13 * np.max(np.abs(b))
            )


def test_float32_on_array_api_strict(xps):
    """float32 array_api_strict input with dtype="float32" computes and returns
    float32 in its namespace, equal to float64 within float32 rounding away
    from the diagonal."""
    X = np.random.default_rng(4).normal(size=(40, 5))
    Xs = xps.asarray(X, dtype=xps.float32)
    ref = ntk_kernel(X)
    K = ntk_kernel(Xs, dtype="float32")
    nngp, ntk = nngp_ntk_kernels(
        Xs, xps.asarray(X[:7], dtype=xps.float32), dtype="float32"
    )
    for out in (
        K,
        nngp,
        ntk,
        ntk_diag(Xs, dtype="float32"),
        kernel_matvec(Xs, Xs, xps.ones(40, dtype=xps.float32), dtype="float32"),
    ):
        assert get_namespace(out) is xps and out.dtype == xps.float32
    # Pairs of identical rows (correlation 1 up to float32 rounding, where the
    # arc-cosine loses half the digits) are left out here; see
    # test_kernel_numerics.py::test_float32_duplicates_agree_with_float64.
    off = ~np.eye(40, dtype=bool)
    assert_allclose(
        _strict_to_numpy(K)[off], ref[off], rtol=2e-5, atol=1e-6 * np.abs(ref).max()
    )
    assert_allclose(
        _strict_to_numpy(ntk)[off[:, :7]],
        ref[:, :7][off[:, :7]],
        rtol=2e-5,
        atol=1e-6 * np.abs(ref).max(),
    )
    assert_allclose(
        _strict_to_numpy(ntk_diag(Xs, dtype="float32")), np.diag(ref), rtol=2e-6
    )


def test_auto_keeps_other_array_libraries_where_they_are(xps, monkeypatch):
    """On a machine with a GPU, "auto" computes array_api_strict input where
    it lives (only NumPy input is moved to the GPU), whatever its size."""
    import sknetk._device as device_module

    monkeypatch.setattr(device_module, "gpu_available", lambda: True)
    monkeypatch.setattr(device_module, "AUTO_GPU_MIN_ENTRIES", 1)
    X, _ = _data(n=6)
    Xs = xps.asarray(X)
    for out, ref in (
        (ntk_kernel(Xs, device="auto"), ntk_kernel(X, device="cpu")),
        (
            nngp_ntk_kernels(Xs, Xs[:2, :], device="auto")[1],
            nngp_ntk_kernels(X, X[:2], device="cpu")[1],
        ),
        (
            kernel_matvec(Xs, Xs, xps.ones(6, dtype=xps.float64), device="auto"),
            kernel_matvec(X, X, np.ones(6), device="cpu"),
        ),
    ):
        assert get_namespace(out) is xps
        assert_allclose(_strict_to_numpy(out), ref, rtol=1e-12, atol=1e-14)


def _duplicated_rows_kernel():
    X, _ = _data(n=40, seed=5)
    X = np.vstack([X, X[:5]])
    y = np.random.default_rng(5).normal(size=45)
    return ntk_kernel(X), y


def test_gpu_solve_follows_the_cpu_rules_when_well_posed(xps):
    """The GPU solve's array-API path equals the CPU solver, without warning."""
    K, y = _duplicated_rows_kernel()
    Y = np.stack([y, -2 * y], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        for rhs in (y, Y):
            ref = solve_kernel_ridge(K, rhs, 0.1)
            out = solve_ridge_gpu(lambda: xps.asarray(K), xps.asarray(rhs), 0.1)
            assert get_namespace(out) is xps and tuple(out.shape) == rhs.shape
            assert_allclose(_strict_to_numpy(out), ref, rtol=1e-10, atol=1e-12)
            direct = cholesky_solve_inplace(
                xps.asarray(K + 0.1 * np.eye(45)), xps.asarray(rhs)
            )
            assert_allclose(_strict_to_numpy(direct), ref, rtol=1e-10, atol=1e-12)


def test_gpu_solve_falls_back_as_the_cpu_does(xps):
    """A ridge below rounding level with duplicated rows: LAPACK's Cholesky
    succeeds with a pivot ~1e-15 times the largest. The CPU solver warns and
    returns the pseudo-inverse solution; so must the GPU solve (it returned
    the Cholesky solution, of norm ~1e15, without a warning)."""
    K, y = _duplicated_rows_kernel()
    alpha = 1e-15
    with pytest.warns(IllConditionedKernelWarning, match="singular to working"):
        ref = solve_kernel_ridge(K, y, alpha)
    calls = []

    def make_kernel():
        calls.append(1)
        return xps.asarray(K)

    with pytest.warns(IllConditionedKernelWarning, match="singular to working"):
        out = solve_ridge_gpu(make_kernel, xps.asarray(y), alpha)
    assert len(calls) == 2  # the factorised kernel is recomputed for eigh
    assert get_namespace(out) is xps
    assert_allclose(_strict_to_numpy(out), ref, rtol=1e-7, atol=1e-9)
    with pytest.raises(np.linalg.LinAlgError, match="singular to working"):
        cholesky_solve_inplace(xps.asarray(K + alpha * np.eye(45)), xps.asarray(y))


def test_gpu_eigh_fallback_is_the_cpu_pseudo_inverse(xps):
    """eigh_solve keeps every eigenvalue the CPU solver keeps, negative ones
    included (it dropped them), so both return the same solution."""
    K = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    y = np.array([1.0, -1.0, 3.0])
    with pytest.warns(IllConditionedKernelWarning):
        ref = solve_kernel_ridge(K, y, 0.0)
    assert_allclose(K @ ref, [1.0, -1.0, 0.0], atol=1e-12)  # pinv: least squares
    out = eigh_solve(xps.asarray(K), xps.asarray(y), 0.0)
    assert get_namespace(out) is xps
    assert_allclose(_strict_to_numpy(out), ref, rtol=1e-12, atol=1e-14)
    with pytest.warns(IllConditionedKernelWarning):
        out = solve_ridge_gpu(lambda: xps.asarray(K), xps.asarray(y), 0.0)
    assert_allclose(_strict_to_numpy(out), ref, rtol=1e-12, atol=1e-14)


def test_gpu_solve_refuses_a_non_finite_kernel(xps):
    """NaN in the kernel: the CPU's ValueError, not a fallback warning."""
    K = np.eye(3)
    K[1, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        with pytest.raises(ValueError, match="NaN or infinity"):
            solve_kernel_ridge(K, np.ones(3), 0.1)
        with pytest.raises(ValueError, match="NaN or infinity"):
            solve_ridge_gpu(lambda: xps.asarray(K), xps.asarray(np.ones(3)), 0.1)


def _strict_gpu(monkeypatch, xps):
    """Run the estimators' GPU fit with array_api_strict standing in for CuPy.

    ``cupy.asarray``/``asnumpy`` move between NumPy and array_api_strict, and
    the kernel functions asked for ``device="gpu"`` compute on the stand-in
    arrays where they are (the generic array-API path).
    """
    fake = SimpleNamespace(
        asarray=lambda a: xps.asarray(np.asarray(a)),
        asnumpy=lambda a: np.asarray(a),
        get_default_memory_pool=lambda: SimpleNamespace(free_all_blocks=lambda: None),
    )

    def on_stand_in(function):
        def run(X, *args, device, **kwargs):
            assert device == "gpu" and get_namespace(X) is xps
            return function(X, *args, device="cpu", **kwargs)

        return run

    monkeypatch.setattr(_base, "cupy_or_error", lambda: fake)
    monkeypatch.setattr(_base, "ntk_kernel", on_stand_in(ntk_kernel))
    monkeypatch.setattr(_base, "nngp_kernel", on_stand_in(nngp_kernel))
    monkeypatch.setattr(
        NTKRegressor, "_compute_device", lambda self, n, **kwargs: "gpu"
    )


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_estimator_gpu_fit_logic_on_array_api_strict(xps, monkeypatch, kernel):
    """The exact GPU fit (kernel, weights, in-place solve) with array_api_strict
    standing in for CuPy gives the CPU fit's NumPy attributes."""
    X, y = _data(n=40, seed=6)
    w = np.random.default_rng(6).uniform(0.0, 2.0, size=40)
    w[3] = 0.0
    Y = np.stack([y, y**2], axis=1)
    params = dict(alpha=0.05, kernel=kernel, depth=2, bias_std=0.1, solver="cholesky")
    refs = [NTKRegressor(device="cpu", **params).fit(X, t, w) for t in (y, Y)]
    _strict_gpu(monkeypatch, xps)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        fits = [NTKRegressor(device="gpu", **params).fit(X, t, w) for t in (y, Y)]
    monkeypatch.undo()
    for fit, ref in zip(fits, refs):
        fit.set_params(device="cpu")  # no GPU here to predict on
        assert type(fit.dual_coef_) is np.ndarray and type(fit.X_fit_) is np.ndarray
        assert fit.dual_coef_.shape == ref.dual_coef_.shape
        assert fit.alpha_ == ref.alpha_
        assert_allclose(fit.dual_coef_, ref.dual_coef_, rtol=1e-9, atol=1e-11)
        assert_allclose(fit.predict(X), ref.predict(X), rtol=1e-9, atol=1e-11)


def test_estimator_gpu_fit_falls_back_as_the_cpu_does(xps, monkeypatch):
    """Duplicated rows and alpha=0: the GPU fit warns and gives the CPU's
    minimum-norm fit."""
    X, y = _data(n=40, seed=7)
    X = np.vstack([X, X[:6]])
    y = np.concatenate([y, y[:6] + 0.3])
    params = dict(alpha=0.0, depth=2, solver="cholesky")
    with pytest.warns(IllConditionedKernelWarning):
        ref = NTKRegressor(device="cpu", **params).fit(X, y)
    _strict_gpu(monkeypatch, xps)
    with pytest.warns(IllConditionedKernelWarning):
        fit = NTKRegressor(device="gpu", **params).fit(X, y)
    monkeypatch.undo()
    fit.set_params(device="cpu")
    assert np.isfinite(fit.dual_coef_).all()
    assert_allclose(fit.predict(X), ref.predict(X), rtol=1e-6, atol=1e-8)


def test_nystrom_predict_empty_keeps_the_device(xps):
    """No rows to predict: an empty result on the centres' device."""
    device = xps.Device("device1")
    C = xps.asarray(np.ones((4, 3)), device=device)
    coef = xps.ones(4, dtype=xps.float64, device=device)
    out = nystrom_predict(C[:0, :], C, coef, kernel_block_function())
    assert tuple(out.shape) == (0,)
    assert out.device == device
