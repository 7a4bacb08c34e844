"""The fused CUDA kernel's C++ source, compiled for the host, equals the NumPy path.

The GPU is not needed: the device functions are plain C++ templates, so a host
compiler builds them into a small shared library driven by ctypes. This checks
the text that CuPy compiles on a GPU machine against the independent NumPy
implementation, for every activation, both parameterizations, frozen layers
and every depth.
"""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from sknetk import _cuda
from sknetk.kernels import KernelSpec, _variance_path, nngp_ntk_kernels

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _require_compiler():
    """Skip without a C++ compiler, except in CI (``CI=true``), where it fails.

    CI must exercise the CUDA source; a silent skip there would hide it.
    """
    if CXX is not None:
        return
    message = "no C++ compiler (g++, c++ or clang++) on this machine"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}: CI must run the host-compiled CUDA-source tests")
    pytest.skip(message)


HARNESS = r"""
#include <cmath>
#include <cstddef>
using std::sqrt; using std::acos; using std::atan2; using std::exp; using std::cos;
#define __device__
#define __host__
%(dual)s
extern "C" void run(const double* G, const double* ra, const double* cb,
                    const double* lc, const double* ap, int act, long long n1,
                    long long n2, int depth, int all_depths, int want_nngp,
                    int want_ntk, double* nngp, double* ntk) {
  for (long long r = 0; r < n1; ++r)
    for (long long c = 0; c < n2; ++c)
      sknetk_entry<double>(G[r * n2 + c], r, c, n1, n2, ra, cb, lc, ap, act,
                           depth, all_depths, want_nngp, want_ntk, n1 * n2,
                           nngp, ntk);
}
"""


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    _require_compiler()
    folder = tmp_path_factory.mktemp("cuda_source")
    src = folder / "recursion.cpp"
    lib = folder / "recursion.so"
    src.write_text(HARNESS % {"dual": _cuda.DUAL_SOURCE})
    subprocess.run(
        [
            CXX,
            "-O1",
            "-shared",
            "-fPIC",
            "-std=c++14",
            "-Werror=double-promotion",
            str(src),
            "-o",
            str(lib),
        ],
        check=True,
        capture_output=True,
    )
    fn = ctypes.CDLL(str(lib)).run
    dptr = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
    fn.argtypes = [dptr] * 5 + [
        ctypes.c_int,
        ctypes.c_longlong,
        ctypes.c_longlong,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        dptr,
        dptr,
    ]
    return fn


def _run_host(fn, X, Y, spec, all_depths):
    d = X.shape[1]
    act_id, params = _cuda.fused_activation(spec)
    qa = np.ascontiguousarray(_cuda.row_data(np, _variance_path(np, X, spec)[0]))
    qb = np.ascontiguousarray(_cuda.row_data(np, _variance_path(np, Y, spec)[0]))
    lc = np.ascontiguousarray(_cuda.layer_constants(spec, d).ravel())
    G = np.ascontiguousarray(X @ Y.T / d)
    n_out = spec.depth if all_depths else 1
    nngp = np.zeros((n_out, X.shape[0], Y.shape[0]))
    ntk = np.zeros_like(nngp)
    fn(
        G,
        qa,
        qb,
        lc,
        np.asarray(params, dtype=np.float64),
        act_id,
        X.shape[0],
        Y.shape[0],
        spec.depth,
        all_depths,
        True,
        True,
        nngp,
        ntk,
    )
    return nngp, ntk


CASES = [
    ("relu", {}, "ntk", 0.1),
    ("relu", {}, "standard", None),
    ("abs", {}, "ntk", 0.0),
    ("leaky_relu", {"alpha": 0.2}, "standard", 0.3),
    ("abrelu", {"a": 0.3, "b": -1.1}, "ntk", 0.5),
    ("erf", {"a": 2.0, "b": 0.5, "c": 0.3}, "ntk", 0.2),
    ("sigmoid_like", {}, "standard", 0.1),
    ("gelu", {}, "ntk", 0.4),
    ("sin", {"a": 1.3, "b": 0.7, "c": 0.4}, "ntk", 0.1),
    ("cos", {"a": 0.8, "b": 1.5, "c": -0.2}, "standard", 0.2),
    ("rbf", {"gamma": 0.3}, "ntk", 0.5),
    ("sign", {}, "ntk", 0.2),
    ("identity", {}, "standard", 0.0),
]


def test_every_activation_has_a_fused_form():
    """Each registered activation maps to a branch of the CUDA switch."""
    from sknetk._activations import ACTIVATIONS

    assert set(_cuda._FUSED) == set(ACTIVATIONS)


@pytest.mark.parametrize("act, params, parameterization, bias_std", CASES)
@pytest.mark.parametrize("frozen", [0, 2])
def test_cuda_source_matches_numpy(
    host_kernel, act, params, parameterization, bias_std, frozen
):
    """Host-compiled fused kernel == NumPy recursion, every depth (all_depths)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 4))
    X[0] = 0.0  # zero row
    X[1] = X[2]  # duplicate
    X[3] = -X[4]  # antipodal
    Y = np.vstack([rng.normal(size=(6, 4)), X[5:6] * 2.5, np.zeros((1, 4))])
    spec = KernelSpec.from_params(
        depth=3,
        activation=act,
        activation_params=params,
        weight_std=1.3,
        bias_std=bias_std,
        parameterization=parameterization,
        width=64,
        frozen_layers=frozen,
    )
    nngp, ntk = _run_host(host_kernel, X, Y, spec, all_depths=True)
    ref_nngp, ref_ntk = nngp_ntk_kernels(
        X,
        Y,
        depth=3,
        activation=act,
        activation_params=params,
        weight_std=1.3,
        bias_std=bias_std,
        parameterization=parameterization,
        width=64,
        all_depths=True,
        frozen_layers=frozen,
    )
    scale = max(np.abs(ref_ntk).max(), np.abs(ref_nngp).max(), 1e-300)
    np.testing.assert_allclose(nngp, ref_nngp, rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(ntk, ref_ntk, rtol=0, atol=1e-7 * scale)


LAUNCH_HARNESS = r"""
#include <cmath>
#include <cstddef>
using std::sqrt; using std::acos; using std::atan2; using std::exp; using std::cos;
#define __device__
#define __host__
#define __global__
struct sknetk_dim3 { unsigned x, y, z; };
static sknetk_dim3 blockIdx, blockDim, threadIdx, gridDim;
%(kernel)s
// Emulates kernel<<<grid, block>>>(...) for the kernel of ``act`` in type T;
// ``launch`` (double) and ``launch_f`` (float).
#define SKNETK_LAUNCH(NAME, T)                                                 \
  extern "C" void NAME(int act, unsigned gx, unsigned gy, unsigned bx,         \
                       const T* gram, T scale, const T* ra, const T* cb,       \
                       const T* lc, const T* ap, long long rows, long long n2, \
                       int depth, int all_depths, int want_nngp, int want_ntk, \
                       long long out_stride, T* nngp, T* ntk) {                \
    typedef void (*kernel_t)(const T*, T, const T*, const T*, const T*,        \
                             const T*, long long, long long, int, int, int,    \
                             int, long long, T*, T*);                          \
    const kernel_t kernels[7] = {                                              \
        sknetk_recursion_##T##_0, sknetk_recursion_##T##_1,                    \
        sknetk_recursion_##T##_2, sknetk_recursion_##T##_3,                    \
        sknetk_recursion_##T##_4, sknetk_recursion_##T##_5,                    \
        sknetk_recursion_##T##_6};                                             \
    gridDim = {gx, gy, 1};                                                     \
    blockDim = {bx, 1, 1};                                                     \
    for (unsigned by = 0; by < gy; ++by)                                       \
      for (unsigned b = 0; b < gx; ++b)                                        \
        for (unsigned t = 0; t < bx; ++t) {                                    \
          blockIdx = {b, by, 0};                                               \
          threadIdx = {t, 0, 0};                                               \
          kernels[act](gram, scale, ra, cb, lc, ap, rows, n2, depth,           \
                       all_depths, want_nngp, want_ntk, out_stride, nngp,      \
                       ntk);                                                   \
        }                                                                      \
  }
SKNETK_LAUNCH(launch, double)
SKNETK_LAUNCH(launch_f, float)
"""


# Rows per thread to emulate: the defaults (KERNEL_SOURCE) and the settings
# a benchmark may try through SKNETK_CUDA_ROWS_PER_THREAD.
ROW_SETTINGS = [None, {"float64": 2, "float32": 3}, {"float64": 4, "float32": 1}]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "act, params, parameterization, bias_std, rows",
    [case + (None,) for case in CASES[::2]]
    + [CASES[0] + (rows,) for rows in ROW_SETTINGS[1:]]
    + [CASES[7] + (rows,) for rows in ROW_SETTINGS[1:]],
)
def test_whole_kernel_source_emulated_launch(
    tmp_path, act, params, parameterization, bias_std, rows, dtype
):
    """The full RawModule source (all 14 kernels) compiles; an emulated launch
    with the grid the Python side uses, Gram scaling folded in, equals NumPy,
    for the default rows per thread and other settings."""
    _require_compiler()
    src, lib = tmp_path / "kernels.cpp", tmp_path / "kernels.so"
    source = _cuda.KERNEL_SOURCE if rows is None else _cuda.kernel_source(rows)
    src.write_text(LAUNCH_HARNESS % {"kernel": source})
    subprocess.run(
        [
            CXX,
            "-O1",
            "-shared",
            "-fPIC",
            "-std=c++14",
            "-Werror=double-promotion",
            str(src),
            "-o",
            str(lib),
        ],
        check=True,
        capture_output=True,
    )
    single = dtype == np.float32
    fn = ctypes.CDLL(str(lib)).launch_f if single else ctypes.CDLL(str(lib)).launch
    dptr = np.ctypeslib.ndpointer(dtype=dtype, flags="C_CONTIGUOUS")
    scalar = ctypes.c_float if single else ctypes.c_double
    fn.argtypes = [
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_uint,
        dptr,
        scalar,
        dptr,
        dptr,
        dptr,
        dptr,
        ctypes.c_longlong,
        ctypes.c_longlong,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_longlong,
        dptr,
        dptr,
    ]
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(13, 5)), rng.normal(size=(300, 5))
    spec = KernelSpec.from_params(
        depth=3,
        activation=act,
        activation_params=params,
        weight_std=1.1,
        bias_std=bias_std,
        parameterization=parameterization,
        width=32,
    )
    act_id, ap = _cuda.fused_activation(spec)

    def prep(a):
        return np.ascontiguousarray(a, dtype=dtype)

    ra = prep(_cuda.row_data(np, _variance_path(np, X, spec)[0]))
    cb = prep(_cuda.row_data(np, _variance_path(np, Y, spec)[0]))
    lc = prep(_cuda.layer_constants(spec, 5).ravel())
    gram = prep(X @ Y.T)
    nngp = np.zeros((3, 13, 300), dtype=dtype)
    ntk = np.zeros_like(nngp)
    threads = _cuda._THREADS
    # grid.y = 2 < 13 rows: rows are strided, and with several rows per
    # thread the last group is partial
    fn(
        act_id,
        (300 + threads - 1) // threads,
        2,
        threads,
        gram,
        1 / 5,
        ra,
        cb,
        lc,
        prep(ap),
        13,
        300,
        3,
        1,
        1,
        1,
        13 * 300,
        nngp,
        ntk,
    )
    ref_nngp, ref_ntk = nngp_ntk_kernels(
        X,
        Y,
        depth=3,
        activation=act,
        activation_params=params,
        weight_std=1.1,
        bias_std=bias_std,
        parameterization=parameterization,
        width=32,
        all_depths=True,
    )
    scale = max(np.abs(ref_ntk).max(), np.abs(ref_nngp).max())
    tol = 2e-4 if single else 1e-10
    np.testing.assert_allclose(nngp, ref_nngp, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(ntk, ref_ntk, rtol=0, atol=tol * scale)


def test_rows_per_thread_setting(monkeypatch):
    """Defaults, the environment override, and a clear error for bad values."""
    monkeypatch.delenv(_cuda.ROWS_ENV, raising=False)
    assert _cuda.rows_per_thread() == {"float64": 1, "float32": 4}
    assert _cuda.kernel_source() == _cuda.KERNEL_SOURCE
    monkeypatch.setenv(_cuda.ROWS_ENV, " float64=2 ")
    assert _cuda.rows_per_thread() == {"float64": 2, "float32": 4}
    assert "SKNETK_KERNEL(double, A, 2)" in _cuda.kernel_source()
    monkeypatch.setenv(_cuda.ROWS_ENV, "float32=1,float64=3")
    assert _cuda.rows_per_thread() == {"float64": 3, "float32": 1}
    for bad in ["float64=0", "float64=9", "float16=2", "float64", "float64=x"]:
        monkeypatch.setenv(_cuda.ROWS_ENV, bad)
        with pytest.raises(ValueError, match=_cuda.ROWS_ENV):
            _cuda.rows_per_thread()
