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
    kw = dict(depth=3, activation=activation,
              activation_params=PARAMS.get(activation), weight_std=1.2,
              bias_std=0.2, parameterization=parameterization, width=128,
              all_depths=True)
    ref = nngp_ntk_kernels(X, Y, **kw)
    got = nngp_ntk_kernels(cupy.asarray(X), cupy.asarray(Y), **kw)
    for r, g in zip(ref, got):
        assert isinstance(g, cupy.ndarray)
        scale = np.abs(r).max() or 1.0
        np.testing.assert_allclose(cupy.asnumpy(g), r, rtol=0, atol=1e-10 * scale)


def test_symmetric_and_float32(cupy):
    """K(X, X) on the GPU, float64 and float32."""
    X, _ = _data(n1=64)
    ref = ntk_kernel(X, depth=4, bias_std=0.1)
    got64 = ntk_kernel(cupy.asarray(X), depth=4, bias_std=0.1)
    np.testing.assert_allclose(cupy.asnumpy(got64), ref, rtol=1e-11, atol=1e-12)
    got32 = ntk_kernel(cupy.asarray(X, dtype=cupy.float32), depth=4,
                       bias_std=0.1, dtype="float32")
    assert got32.dtype == cupy.float32
    np.testing.assert_allclose(cupy.asnumpy(got32), ref, rtol=2e-4,
                               atol=2e-5 * np.abs(ref).max())


def test_numpy_in_gpu_device_numpy_out(cupy):
    """device="gpu" with NumPy input computes on the GPU and returns NumPy."""
    X, Y = _data()
    got = ntk_kernel(X, Y, depth=2, device="gpu")
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, ntk_kernel(X, Y, depth=2, device="cpu"),
                               rtol=1e-11, atol=1e-13)


def test_cupy_in_cpu_device_cupy_out(cupy):
    """device="cpu" with CuPy input computes on the host, output stays CuPy."""
    X, Y = _data()
    got = ntk_kernel(cupy.asarray(X), cupy.asarray(Y), depth=2, device="cpu")
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got), ntk_kernel(X, Y, depth=2),
                               rtol=1e-11, atol=1e-13)


def test_small_budget_streams_row_blocks(cupy):
    """A tiny working_memory gives many Gram row blocks and the same kernels."""
    X, Y = _data(n1=300, n2=50)
    ref = ntk_kernel(X, Y, depth=3)
    got = ntk_kernel(cupy.asarray(X), cupy.asarray(Y), depth=3,
                     working_memory=0.01)
    np.testing.assert_allclose(cupy.asnumpy(got), ref, rtol=1e-11, atol=1e-13)
    v = np.linspace(-1, 1, 50)
    mv = kernel_matvec(cupy.asarray(X), cupy.asarray(Y), cupy.asarray(v),
                       depth=3, working_memory=0.01)
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
