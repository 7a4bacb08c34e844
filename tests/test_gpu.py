"""GPU (CuPy) paths against the NumPy reference implementation.

Every test here is marked ``gpu`` and is skipped when CuPy or a CUDA device is
missing (see ``conftest.py``); ``benchmarks/gpu_check.sh`` runs them on a GPU
machine.
"""

import numpy as np
import pytest

from sknetk.kernels import (
    ACTIVATION_NAMES,
    kernel_matvec,
    nngp_ntk_kernels,
    ntk_kernel,
)

pytestmark = pytest.mark.gpu

PARAMS = {
    "leaky_relu": {"alpha": 0.2},
    "abrelu": {"a": 0.3, "b": -1.1},
    "erf": {"a": 2.0, "b": 0.5, "c": 0.3},
    "sin": {"a": 1.3, "b": 0.7, "c": 0.4},
    "cos": {"a": 0.8, "b": 1.5, "c": -0.2},
    "rbf": {"gamma": 0.3},
}


def _data(n1=40, n2=30, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n1, d))
    X[0] = 0.0
    X[1] = X[2]
    Y = rng.normal(size=(n2, d))
    return X, Y


@pytest.fixture(scope="module")
def cupy():
    return pytest.importorskip("cupy")


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_fused_kernel_equals_numpy(cupy, activation, parameterization):
    """CuPy in, CuPy out, equal to NumPy within float64 rounding (all depths)."""
    X, Y = _data()
    kw = dict(
        depth=3,
        activation=activation,
        activation_params=PARAMS.get(activation),
        weight_std=1.2,
        bias_std=0.2,
        parameterization=parameterization,
        width=128,
        all_depths=True,
    )
    ref = nngp_ntk_kernels(X, Y, **kw)
    got = nngp_ntk_kernels(cupy.asarray(X), cupy.asarray(Y), **kw)
    for r, g in zip(ref, got):
        assert isinstance(g, cupy.ndarray)
        scale = np.abs(r).max() or 1.0
        np.testing.assert_allclose(cupy.asnumpy(g), r, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("rows", ["float64=2,float32=2", "float64=4,float32=1"])
def test_rows_per_thread_settings_equal_numpy(cupy, monkeypatch, rows):
    """Other rows-per-thread settings (a tuning knob) give the same kernels."""
    from sknetk import _cuda

    monkeypatch.setenv(_cuda.ROWS_ENV, rows)
    X, Y = _data(n1=37, n2=300)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
        kw = dict(depth=4, bias_std=0.1, all_depths=True)
        ref = nngp_ntk_kernels(X, Y, **kw)
        got = nngp_ntk_kernels(
            cupy.asarray(X, dtype=dtype),
            cupy.asarray(Y, dtype=dtype),
            dtype=np.dtype(dtype).name,
            **kw,
        )
        for r, g in zip(ref, got):
            np.testing.assert_allclose(
                cupy.asnumpy(g), r, rtol=0, atol=tol * np.abs(r).max()
            )


def test_symmetric_and_float32(cupy):
    """K(X, X) on the GPU, float64 and float32."""
    X, _ = _data(n1=64)
    ref = ntk_kernel(X, depth=4, bias_std=0.1)
    got64 = cupy.asnumpy(ntk_kernel(cupy.asarray(X), depth=4, bias_std=0.1))
    # rows 1 and 2 are duplicates: correlation one, the fixtures' "degenerate"
    # class (1e-6); everything else, the diagonal included, to 1e-11
    plain = np.ones_like(ref, dtype=bool)
    plain[1, 2] = plain[2, 1] = False
    np.testing.assert_allclose(got64[plain], ref[plain], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(got64, ref, rtol=1e-6)
    got32 = ntk_kernel(
        cupy.asarray(X, dtype=cupy.float32), depth=4, bias_std=0.1, dtype="float32"
    )
    assert got32.dtype == cupy.float32
    np.testing.assert_allclose(
        cupy.asnumpy(got32), ref, rtol=2e-4, atol=2e-5 * np.abs(ref).max()
    )


def test_numpy_in_gpu_device_numpy_out(cupy):
    """device="gpu" with NumPy input computes on the GPU and returns NumPy."""
    X, Y = _data()
    got = ntk_kernel(X, Y, depth=2, device="gpu")
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(
        got, ntk_kernel(X, Y, depth=2, device="cpu"), rtol=1e-11, atol=1e-13
    )


def test_cupy_in_cpu_device_cupy_out(cupy):
    """device="cpu" with CuPy input computes on the host, output stays CuPy."""
    X, Y = _data()
    got = ntk_kernel(cupy.asarray(X), cupy.asarray(Y), depth=2, device="cpu")
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(
        cupy.asnumpy(got), ntk_kernel(X, Y, depth=2), rtol=1e-11, atol=1e-13
    )


def test_small_budget_streams_row_blocks(cupy):
    """A tiny working_memory gives many Gram row blocks and the same kernels."""
    X, Y = _data(n1=300, n2=50)
    ref = ntk_kernel(X, Y, depth=3)
    got = ntk_kernel(cupy.asarray(X), cupy.asarray(Y), depth=3, working_memory=0.01)
    np.testing.assert_allclose(cupy.asnumpy(got), ref, rtol=1e-11, atol=1e-13)
    v = np.linspace(-1, 1, 50)
    mv = kernel_matvec(
        cupy.asarray(X), cupy.asarray(Y), cupy.asarray(v), depth=3, working_memory=0.01
    )
    assert isinstance(mv, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(mv), ref @ v, rtol=1e-10)


def test_too_large_raises_memory_error_before_allocating(cupy):
    """A kernel that cannot fit raises MemoryError naming the memory needed."""
    X = cupy.zeros((3_000_000, 2))
    free_before = cupy.cuda.runtime.memGetInfo()[0]
    with pytest.raises(MemoryError, match="GiB of GPU memory"):
        ntk_kernel(X, depth=1)
    assert cupy.cuda.runtime.memGetInfo()[0] >= free_before - 2**28


def test_gpu_cholesky_solve_and_fallback(cupy):
    """In-place cuSOLVER solve equals NumPy; a singular system warns, stays finite."""
    from sknetk._gpu_solve import cholesky_solve_inplace, solve_ridge_gpu
    from sknetk.exceptions import IllConditionedKernelWarning

    X, _ = _data(n1=50)
    K = ntk_kernel(X, depth=2)
    y = np.sin(X[:, 0])
    ref = np.linalg.solve(K + 0.1 * np.eye(50), y)
    Kg = cupy.asarray(K + 0.1 * np.eye(50))
    np.testing.assert_allclose(
        cupy.asnumpy(cholesky_solve_inplace(Kg, cupy.asarray(y))), ref, rtol=1e-8
    )
    # a matrix that is not positive definite: potrf must fail, not return NaN
    bad = K.copy()
    bad[0, 0] = -1.0
    with pytest.warns(IllConditionedKernelWarning):
        sol = solve_ridge_gpu(lambda: cupy.asarray(bad), cupy.asarray(y), 0.0)
    assert bool(cupy.isfinite(sol).all())


def test_gpu_eigh_fallback_is_minimum_norm_lstsq(cupy):
    """The eigh fallback on a singular kernel equals NumPy's lstsq solution."""
    from sknetk._gpu_solve import eigh_solve

    X, _ = _data(n1=50)
    X[3] = X[4]
    K = ntk_kernel(X, depth=2)
    y = np.cos(X[:, 1])
    sol = cupy.asnumpy(eigh_solve(cupy.asarray(K), cupy.asarray(y), 0.0))
    lstsq = np.linalg.lstsq(K, y, rcond=None)[0]
    np.testing.assert_allclose(K @ sol, K @ lstsq, atol=1e-6 * np.abs(y).max())
    # the NumPy path of the same function agrees too
    np.testing.assert_allclose(eigh_solve(K, y, 0.0), sol, atol=1e-6)


# ---------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------
def _regression(n=300, d=5, seed=0, n_targets=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n)
    if n_targets:
        y = np.column_stack([y * (k + 1) for k in range(n_targets)])
    return X, y


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("weighted", [False, True])
def test_regressor_gpu_equals_cpu(cupy, kernel, weighted):
    """fit/predict on the GPU equal the CPU within float64 rounding."""
    from sknetk import NTKRegressor

    X, y = _regression(n_targets=2)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y)) if weighted else None
    kw = dict(alpha=1e-3, alpha_scale="mean_diag", kernel=kernel, depth=3, bias_std=0.1)
    gpu = NTKRegressor(device="gpu", **kw).fit(X, y, sample_weight=sw)
    cpu = NTKRegressor(device="cpu", **kw).fit(X, y, sample_weight=sw)
    assert isinstance(gpu.dual_coef_, np.ndarray)
    assert gpu.alpha_ == pytest.approx(cpu.alpha_, rel=1e-12)
    Xt = _regression(n=77, seed=2)[0]
    pg, pc = gpu.predict(Xt), cpu.predict(Xt)
    assert isinstance(pg, np.ndarray)
    np.testing.assert_allclose(pg, pc, rtol=1e-8, atol=1e-10 * np.abs(pc).max())


def test_classifier_gpu_equals_cpu(cupy):
    """String labels, multiclass: same decisions on the GPU and the CPU."""
    from sknetk import NTKClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    labels = np.array(["a", "b", "c"])[np.argmax(X[:, :3], axis=1)]
    gpu = NTKClassifier(alpha=0.1, device="gpu").fit(X, labels)
    cpu = NTKClassifier(alpha=0.1, device="cpu").fit(X, labels)
    # kernels agree to ~1e-12; the solve amplifies that by the condition number
    np.testing.assert_allclose(
        gpu.decision_function(X), cpu.decision_function(X), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


def test_cupy_input_gives_cupy_output(cupy):
    """Estimators take CuPy arrays and predict CuPy arrays."""
    from sknetk import NTKRegressor

    X, y = _regression()
    model = NTKRegressor(device="gpu").fit(cupy.asarray(X), cupy.asarray(y))
    pred = model.predict(cupy.asarray(X[:20]))
    assert isinstance(pred, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(pred), model.predict(X[:20]), rtol=1e-12)


def test_gpu_fit_singular_kernel_warns_and_is_finite(cupy):
    """alpha = 0 with duplicated rows: a warning and finite predictions."""
    from sknetk import NTKRegressor
    from sknetk.exceptions import IllConditionedKernelWarning

    X, y = _regression(n=60)
    X = np.vstack([X, X[:10]])
    y = np.concatenate([y, y[:10] + 0.5])
    model = NTKRegressor(alpha=0.0, device="gpu", activation="identity")
    with pytest.warns(IllConditionedKernelWarning):
        model.fit(X, y)
    assert np.isfinite(model.predict(X)).all()


def test_gpu_model_pickles_and_predicts_without_cupy(cupy, tmp_path):
    """A model fitted on the GPU loads and predicts where CuPy is absent."""
    import pickle
    import subprocess
    import sys

    from sknetk import NTKRegressor

    X, y = _regression()
    model = NTKRegressor(alpha=1e-2, device="gpu", depth=2).fit(X, y)
    Xt = _regression(n=50, seed=3)[0]
    expected = model.predict(Xt)  # on the GPU
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    np.save(tmp_path / "Xt.npy", Xt)
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import sys
sys.modules["cupy"] = None  # any `import cupy` now raises ImportError
sys.modules["cupyx"] = None
import pickle, numpy as np
model = pickle.loads(open({str(tmp_path / "model.pkl")!r}, "rb").read())
assert isinstance(model.dual_coef_, np.ndarray)
# device="gpu" was asked at fit time; here it predicts on the CPU, warning
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pred = model.predict(np.load({str(tmp_path / "Xt.npy")!r}))
assert any("no GPU is usable" in str(w.message) for w in caught), caught
assert model.device == "gpu"
expected = np.load({str(tmp_path / "expected.npy")!r})
# same dual coefficients; only the test kernel is recomputed on the CPU
np.testing.assert_allclose(pred, expected, rtol=1e-9, atol=1e-10)
from sknetk._device import gpu_available
assert not gpu_available()
print("OK")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
