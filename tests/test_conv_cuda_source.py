"""The fused CUDA conv kernels' C++ source, compiled for the host, equal NumPy.

The GPU is not needed: the device code of :mod:`sknetk._conv_cuda` is plain
C++ templates, so a host compiler builds the whole RawModule source (every
``__global__`` kernel) into a shared library whose launches are emulated
(every block and thread of the grid the driver asks for, run in turn), and
the driver :func:`sknetk._conv_cuda.conv_kernels` runs on NumPy arrays
through ctypes. It is checked against sknetk.conv's NumPy recursion and
against neural-tangents' stored CNTK values. The ``gpu`` tests at the end run
the CuPy driver itself (skipped without a CUDA device).
"""

import ctypes
import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from sknetk import _conv_cuda
from sknetk.conv import ConvKernelSpec, nngp_ntk_kernels

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
DATA = Path(__file__).parent / "data" / "cntk_reference.npz"


def _require_compiler():
    """Skip without a C++ compiler, except in CI (``CI=true``), where it fails."""
    if CXX is not None:
        return
    message = "no C++ compiler (g++, c++ or clang++) on this machine"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}: CI must run the host-compiled CUDA-source tests")
    pytest.skip(message)


HARNESS = r"""
#include <cmath>
#include <cstddef>
using std::sqrt; using std::atan2; using std::exp;
#define __device__
#define __host__
#define __global__
#define __launch_bounds__(...)
struct sknetk_dim3 { unsigned x, y, z; };
%(threading)s
%(kernel)s
// kernel<<<gx, bx>>>(...) emulated: every block and thread in turn (the
// kernels use no shared memory and read no output of their own launch)
#define EMULATE(NAME, PARAMS, ARGS)                                            \
  extern "C" void launch_##NAME(unsigned gx, unsigned bx, PARAMS) {            \
    gridDim = {gx, 1, 1};                                                      \
    blockDim = {bx, 1, 1};                                                     \
    for (unsigned b = 0; b < gx; ++b)                                          \
      for (unsigned t = 0; t < bx; ++t) {                                      \
        blockIdx = {b, 0, 0};                                                  \
        threadIdx = {t, 0, 0};                                                 \
        NAME(ARGS);                                                            \
      }                                                                        \
  }
#define C_ ,
#define LAYER_PARAMS(T)                                                        \
  const long long *geo C_ const double *cst C_ const T *ap C_ const T *sig C_  \
  const T *th C_ const T *A C_ const T *B C_ const long long *pair_i C_        \
  const long long *pair_j C_ const T *sa C_ const T *ia C_ const T *sb C_      \
  const T *ib C_ T *sig_out C_ T *th_out C_ double *part_s C_                  \
  double *part_t C_ long long groups C_ long long lanes
#define LAYER_ARGS                                                             \
  geo C_ cst C_ ap C_ sig C_ th C_ A C_ B C_ pair_i C_ pair_j C_ sa C_ ia C_   \
  sb C_ ib C_ sig_out C_ th_out C_ part_s C_ part_t C_ groups C_ lanes
#define VAR_PARAMS(T)                                                          \
  const long long *geo C_ const double *cst C_ const T *sig C_ const T *A C_   \
  const long long *pair_i C_ T *S C_ T *INV C_ long long groups
#define VAR_ARGS geo C_ cst C_ sig C_ A C_ pair_i C_ S C_ INV C_ groups
#define SLICE_PARAMS(T)                                                        \
  const long long *geo_all C_ const double *cst_all C_ const T *ap C_          \
  const T *A C_ const T *B C_ const long long *pair_i C_                       \
  const long long *pair_j C_ const T *maps_a C_ const T *maps_b C_             \
  double *part_s C_ double *part_t C_ long long n_slices C_ long long depth C_  \
  long long n_col C_ long long pmax
#define SLICE_ARGS                                                             \
  geo_all C_ cst_all C_ ap C_ A C_ B C_ pair_i C_ pair_j C_ maps_a C_ maps_b C_ \
  part_s C_ part_t C_ n_slices C_ depth C_ n_col C_ pmax
%(launchers)s
"""

SEQUENTIAL = """
static sknetk_dim3 blockIdx, blockDim, threadIdx, gridDim;
#define EMULATE_BLOCKS EMULATE
"""

# Real threads for the blocks of the slice kernel, with a barrier for
# __syncthreads(): checks the barriers and the block's tree sum with several
# threads per block (the launcher's ``block_threads``).
THREADED = r"""
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
struct sknetk_barrier {
  std::mutex m;
  std::condition_variable cv;
  unsigned n = 1, count = 0, gen = 0;
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    const unsigned g = gen;
    if (++count == n) {
      count = 0;
      ++gen;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return g != gen; });
    }
  }
};
static sknetk_barrier sknetk_bar;
#define SKNETK_SYNC() sknetk_bar.wait()
static thread_local sknetk_dim3 blockIdx, threadIdx;
static sknetk_dim3 blockDim, gridDim;
#define EMULATE_BLOCKS(NAME, PARAMS, ARGS)                                     \
  extern "C" void launch_##NAME(unsigned gx, unsigned bx, PARAMS) {            \
    gridDim = {gx, 1, 1};                                                      \
    blockDim = {bx, 1, 1};                                                     \
    sknetk_bar.n = bx;                                                         \
    for (unsigned b = 0; b < gx; ++b) {                                        \
      std::vector<std::thread> pool;                                           \
      for (unsigned t = 0; t < bx; ++t)                                        \
        pool.emplace_back([=] {                                                \
          blockIdx = {b, 0, 0};                                                \
          threadIdx = {t, 0, 0};                                               \
          NAME(ARGS);                                                          \
        });                                                                    \
      for (auto& th : pool) th.join();                                         \
    }                                                                          \
  }
"""


def _launchers():
    lines = []
    for t in ("double", "float"):
        for act in range(7):
            lines.append(
                f"EMULATE(sknetk_conv_layer_{t}_{act}, LAYER_PARAMS({t}), LAYER_ARGS)"
            )
            lines.append(
                f"EMULATE_BLOCKS(sknetk_conv_slices_{t}_{act}, SLICE_PARAMS({t}), "
                "SLICE_ARGS)"
            )
        lines.append(f"EMULATE(sknetk_conv_variance_{t}, VAR_PARAMS({t}), VAR_ARGS)")
    return "\n".join(lines)


def _build(folder, threading, extra_flags=()):
    src, lib = folder / "conv_kernels.cpp", folder / "conv_kernels.so"
    src.write_text(
        HARNESS
        % {
            "threading": threading,
            "kernel": _conv_cuda.kernel_source(0),
            "launchers": _launchers(),
        }
    )
    subprocess.run(
        [
            CXX,
            "-O1",
            "-shared",
            "-fPIC",
            "-std=c++14",
            "-Werror=double-promotion",
            *extra_flags,
            str(src),
            "-o",
            str(lib),
        ],
        check=True,
        capture_output=True,
    )
    return ctypes.CDLL(str(lib))


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    """The RawModule source built for the host, with emulated launchers."""
    _require_compiler()
    return _build(tmp_path_factory.mktemp("conv_cuda_source"), SEQUENTIAL)


@pytest.fixture(scope="module")
def threaded_lib(tmp_path_factory):
    """The same, each block of the slice kernel run by real threads."""
    _require_compiler()
    return _build(tmp_path_factory.mktemp("conv_cuda_threads"), THREADED, ["-pthread"])


class HostLauncher:
    """Runs the driver's launches on the host-compiled source (NumPy arrays)."""

    xp = np

    def __init__(self, lib, block_threads=1):
        self.lib = lib
        self.block_threads = block_threads
        self.launches = []

    def launch(self, name, n_threads, args):
        blocks = (n_threads + _conv_cuda._BLOCK - 1) // _conv_cuda._BLOCK
        self._call(name, blocks, _conv_cuda._BLOCK, args)

    def launch_blocks(self, name, n_blocks, threads, shared_bytes, args):
        # one thread per block (the kernel's thread loops cover the block's
        # work, __syncthreads() is a no-op), or ``block_threads`` real threads
        # with a barrier; the static host buffer stands in for the dynamic
        # shared memory
        assert shared_bytes <= 8 * 2**20
        self._call(name, n_blocks, self.block_threads, args)

    def _call(self, name, blocks, threads, args):
        converted = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, name
                converted.append(ctypes.c_void_p(a.ctypes.data))
            else:
                assert isinstance(a, np.int64), (name, type(a))
                converted.append(ctypes.c_longlong(int(a)))
        self.launches.append(name)
        getattr(self.lib, "launch_" + name)(
            ctypes.c_uint(blocks), ctypes.c_uint(threads), *converted
        )

    def check_fits(self, n_bytes, what):
        pass

    def budget(self, working_memory_bytes):
        return working_memory_bytes


def _host(lib, X, Y, kw, dtype=np.float64, want=("nngp", "ntk"), budget=2**20):
    spec = ConvKernelSpec.from_params(**kw)
    out = _conv_cuda.conv_kernels(
        HostLauncher(lib),
        np.asarray(X, dtype=dtype),
        None if Y is None else np.asarray(Y, dtype=dtype),
        spec,
        want,
        True,
        budget,
    )
    for name, K in out.items():
        assert K.dtype == dtype
        assert np.all(np.isfinite(K)), name
    return out


def _images(seed=0, n1=5, n2=4, shape=(8, 7, 2)):
    """Random images with a zero image, an antipodal pair and a scaled copy."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n1, *shape))
    Y = rng.normal(size=(n2, *shape))
    X[0] = 0.0
    X[1] = -X[2]
    Y[0] = X[3]  # copy
    Y[1] = 2.5 * X[4]
    return X, Y


def _max_rel(got, ref):
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-300))


def _check(lib, X, Y, kw, rtol64, rtol32=None):
    """K(X, X) and K(X, Y) of every depth (all_depths), float64 (and float32)."""
    for B in (None, Y):
        ref = nngp_ntk_kernels(X, B, all_depths=True, **kw)
        got = _host(lib, X, B, kw)
        for name, R in zip(("nngp", "ntk"), ref):
            assert _max_rel(got[name], R) <= rtol64, (name, B is None)
        if rtol32 is not None:
            got = _host(lib, X, B, kw, dtype=np.float32)
            for name, R in zip(("nngp", "ntk"), ref):
                assert _max_rel(got[name], R) <= rtol32, (name, B is None, "float32")


#: float32 storage against the float64 NumPy kernels: the dense float32
#: tolerance (tests/test_cuda_source.py), relative to max |K|
RTOL_FLOAT32 = 2e-4


@pytest.mark.parametrize("padding", ["SAME", "CIRCULAR", "VALID"])
@pytest.mark.parametrize("readout", ["gap", "flatten"])
@pytest.mark.parametrize("filter_shape", [(3, 3), (2, 3)])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("bias_std", [0.0, 0.3])
def test_relu_matches_numpy(
    host_lib, padding, readout, filter_shape, parameterization, bias_std
):
    """ReLU, depths 1 to 3 (all_depths), every padding, two filters, both
    parameterizations, bias on/off: float64 to 1e-12, float32 to 2e-4."""
    X, Y = _images()
    kw = dict(
        depth=3,
        activation="relu",
        weight_std=1.3,
        bias_std=bias_std,
        parameterization=parameterization,
        width=16,
        filter_shape=filter_shape,
        padding=padding,
        readout=readout,
    )
    _check(host_lib, X, Y, kw, 1e-12, RTOL_FLOAT32)


@pytest.mark.parametrize(
    "kw",
    [
        dict(pool_after=[0], readout="flatten"),
        dict(pool_after=[0, 1], readout="gap", padding="CIRCULAR"),
        dict(pool_after=[1], readout="flatten", pool_window=(2, 3), bias_std=None),
        dict(pool_after=[2], readout="gap", parameterization="standard", width=8),
    ],
    ids=["flatten-pool0", "gap-pool01", "flatten-pool1-2x3", "gap-pool-last-std"],
)
def test_pooling_matches_numpy(host_lib, kw):
    """AvgPool between blocks (pooled readouts and the full-to-diagonal switch)."""
    X, Y = _images(seed=1, shape=(8, 8, 2))
    kw = {"depth": 3, "weight_std": 1.2, "bias_std": 0.2, **kw}
    _check(host_lib, X, Y, kw, 1e-12, RTOL_FLOAT32)


@pytest.mark.parametrize(
    "act, params",
    [
        ("leaky_relu", {"alpha": 0.2}),
        ("abrelu", {"a": -0.3, "b": 1.2}),
        ("abs", {}),
        ("erf", {"a": 2.0, "b": 0.5, "c": 0.3}),
        ("gelu", {}),
        ("sin", {"a": 1.3, "b": 0.7, "c": 0.4}),
        ("rbf", {"gamma": 0.3}),
        ("sign", {}),
        ("identity", {}),
    ],
)
def test_other_activations_match_numpy(host_lib, act, params):
    """Every activation family is fused (the duals of sknetk._cuda)."""
    X, Y = _images(seed=2, shape=(5, 5, 1))
    kw = dict(
        depth=3,
        activation=act,
        activation_params=params,
        bias_std=0.2,
        readout="gap" if act != "sin" else "flatten",
    )
    slopes = act in ("leaky_relu", "abrelu", "abs")
    _check(host_lib, X, Y, kw, 1e-12 if slopes else 1e-10)


@pytest.mark.parametrize("readout", ["gap", "flatten"])
@pytest.mark.parametrize("slices", ["1", "0"])
@pytest.mark.parametrize("padding", ["SAME", "CIRCULAR", "VALID"])
def test_slice_kernel_and_layer_path(host_lib, monkeypatch, slices, padding, readout):
    """Without pooling the offset-slice kernel runs (all blocks of a pair in
    shared memory; Flatten: the zero offset only); with
    SKNETK_CONV_CUDA_SLICES=0 the layer-by-layer kernels. Both equal NumPy."""
    monkeypatch.setenv(_conv_cuda.SLICES_ENV, slices)
    X, Y = _images(seed=8, n1=5, n2=3, shape=(7, 6, 2))
    kw = dict(
        depth=2,
        padding=padding,
        filter_shape=(3, 2),
        bias_std=0.2,
        parameterization="standard",
        width=5,
        readout=readout,
    )
    spec = ConvKernelSpec.from_params(**kw)
    launcher = HostLauncher(host_lib)
    out = _conv_cuda.conv_kernels(launcher, X, Y, spec, ("nngp", "ntk"), True, 2**20)
    used = {name.split("_")[2] for name in launcher.launches}
    expected = (
        {"variance", "layer", "slices"} if slices == "1" else {"variance", "layer"}
    )
    assert used == expected
    for name, R in zip(("nngp", "ntk"), nngp_ntk_kernels(X, Y, all_depths=True, **kw)):
        assert _max_rel(out[name], R) <= 1e-12


@pytest.mark.parametrize("block_threads", [2, 8])
def test_slice_kernel_with_threads_and_barriers(threaded_lib, block_threads):
    """Several threads per block: the strided pixel loops, the barriers
    between layers and the block's tree sum give the NumPy kernels."""
    X, Y = _images(seed=9, n1=5, n2=3, shape=(5, 6, 2))
    kw = dict(depth=3, bias_std=0.3, weight_std=1.2, padding="SAME")
    spec = ConvKernelSpec.from_params(**kw)
    launcher = HostLauncher(threaded_lib, block_threads)
    out = _conv_cuda.conv_kernels(launcher, X, Y, spec, ("nngp", "ntk"), True, 2**20)
    assert any("slices" in name for name in launcher.launches)
    for name, R in zip(("nngp", "ntk"), nngp_ntk_kernels(X, Y, all_depths=True, **kw)):
        assert _max_rel(out[name], R) <= 1e-12


@pytest.mark.parametrize("threads", ["32", "100000"])
@pytest.mark.parametrize("pairs", ["32", "64"])
def test_tiles_lanes_and_subsets(host_lib, monkeypatch, threads, pairs):
    """Several tiles (padded to 32 pairs), lanes walking many entries or one,
    and one kernel at a time, equal NumPy."""
    monkeypatch.setenv(_conv_cuda.THREADS_ENV, threads)
    monkeypatch.setenv(_conv_cuda.PAIRS_ENV, pairs)
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(13, 4, 5, 1)), rng.normal(size=(7, 4, 5, 1))
    kw = dict(depth=2, bias_std=0.1, readout="gap")
    for B in (None, Y):
        nngp, ntk = nngp_ntk_kernels(X, B, all_depths=True, **kw)
        only_ntk = _host(host_lib, X, B, kw, want=("ntk",))
        only_nngp = _host(host_lib, X, B, kw, want=("nngp",))
        assert set(only_ntk) == {"ntk"} and set(only_nngp) == {"nngp"}
        assert _max_rel(only_ntk["ntk"], ntk) <= 1e-12
        assert _max_rel(only_nngp["nngp"], nngp) <= 1e-12


def test_symmetric_output_is_exact(host_lib):
    """K(X, X) is exactly symmetric with the per-image recursion's diagonal."""
    X, _ = _images(seed=5)
    kw = dict(depth=2, bias_std=0.1, readout="gap")
    out = _host(host_lib, X, None, kw)
    from sknetk.conv import ntk_diag

    for K in out.values():
        np.testing.assert_array_equal(K, np.swapaxes(K, 1, 2))
    np.testing.assert_allclose(
        np.diagonal(out["ntk"], axis1=1, axis2=2),
        ntk_diag(X, all_depths=True, **kw),
        rtol=1e-13,
    )


@pytest.mark.parametrize("readout", ["gap", "flatten"])
def test_diagonals_alone(host_lib, readout):
    """conv_diagonals equals sknetk.conv's nngp_diag and ntk_diag."""
    from sknetk.conv import nngp_diag, ntk_diag

    X, _ = _images(seed=10, shape=(6, 5, 2))
    kw = dict(depth=3, bias_std=0.2, readout=readout, pool_after=[1])
    spec = ConvKernelSpec.from_params(**kw)
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, RTOL_FLOAT32)):
        out = _conv_cuda.conv_diagonals(
            HostLauncher(host_lib),
            X.astype(dtype),
            spec,
            ("nngp", "ntk"),
            True,
            2**20,
        )
        assert out["ntk"].dtype == dtype and out["ntk"].shape == (3, len(X))
        assert _max_rel(out["nngp"], nngp_diag(X, all_depths=True, **kw)) <= rtol
        assert _max_rel(out["ntk"], ntk_diag(X, all_depths=True, **kw)) <= rtol


def test_pair_enumeration():
    """The linear pair index covers the strict upper triangle (or all pairs)."""
    i, j = _conv_cuda._pairs(True, 7, 7, 0, 21)
    ti, tj = np.triu_indices(7, k=1)
    np.testing.assert_array_equal(i, ti)
    np.testing.assert_array_equal(j, tj)
    i, j = _conv_cuda._pairs(True, 7, 7, 5, 12)
    np.testing.assert_array_equal(i, ti[5:12])
    np.testing.assert_array_equal(j, tj[5:12])
    i, j = _conv_cuda._pairs(False, 3, 4, 2, 9)
    np.testing.assert_array_equal(i * 4 + j, np.arange(2, 9))


def _compile(tmp_path, source, command):
    src = tmp_path / "source.cu"
    src.write_text(source)
    run = subprocess.run(
        command + [str(src)], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_bounded_source_compiles(tmp_path, monkeypatch):
    """The source with ``__launch_bounds__`` (the MIN_BLOCKS knob) builds for
    the host, and with nvcc for a GPU where nvcc is installed (not in CI)."""
    _require_compiler()
    monkeypatch.setenv(_conv_cuda.MIN_BLOCKS_ENV, "3")
    source = _conv_cuda.kernel_source()
    assert "__launch_bounds__(256, 3)" in source
    assert "__launch_bounds__(128, 6)" in source
    harness = HARNESS % {
        "threading": SEQUENTIAL,
        "kernel": source,
        "launchers": _launchers(),
    }
    _compile(tmp_path, harness, [CXX, "-x", "c++", "-std=c++14", "-fsyntax-only"])
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        _compile(tmp_path, source, [nvcc, "-std=c++14", "-ptx", "-o", "out.ptx"])


def test_knobs_are_validated(monkeypatch):
    monkeypatch.setenv(_conv_cuda.THREADS_ENV, "12")
    with pytest.raises(ValueError, match=_conv_cuda.THREADS_ENV):
        _conv_cuda.threads_per_launch()
    monkeypatch.setenv(_conv_cuda.THREADS_ENV, "4096")
    assert _conv_cuda.threads_per_launch() == 4096
    monkeypatch.delenv(_conv_cuda.THREADS_ENV)
    assert _conv_cuda.threads_per_launch() == _conv_cuda._DEFAULT_THREADS
    spec = ConvKernelSpec.from_params(depth=2)
    plans = _conv_cuda._block_plan(spec, 6, 6, 1, np.float64)
    per_pair = 5 * 8 * 36**2  # five float64 arrays of the full layout
    assert _conv_cuda._tile_pairs(spec, plans, 6, 6, 8, 100 * per_pair) == 96
    monkeypatch.setenv(_conv_cuda.PAIRS_ENV, "40")
    assert _conv_cuda._tile_pairs(spec, plans, 6, 6, 8, 100 * per_pair) == 64
    for env in (_conv_cuda.PAIRS_ENV, _conv_cuda.MIN_BLOCKS_ENV):
        monkeypatch.setenv(env, "x")
        with pytest.raises(ValueError, match=env):
            _conv_cuda._tile_pairs(spec, plans, 6, 6, 8, 2**20)
            _conv_cuda.kernel_source()
        monkeypatch.delenv(env)
    assert "__launch_bounds__" not in _conv_cuda.kernel_source().splitlines()[0]


def test_overflow_raises(host_lib):
    X = np.full((2, 4, 4, 1), 1e200)
    with pytest.raises(ValueError, match="overflows"):
        _host(host_lib, X, None, dict(depth=2, readout="gap"))


def test_every_activation_has_a_layer_kernel(host_lib):
    """Each fused activation id has a layer kernel in the compiled source."""
    from sknetk import _cuda

    ids = {entry[0] for entry in _cuda._FUSED.values()}
    assert ids == set(range(7))
    for dtype in (np.float64, np.float32):
        layer, variance = _conv_cuda.kernel_names(dtype)
        assert hasattr(host_lib, "launch_" + variance)
        for act_id in ids:
            assert hasattr(host_lib, "launch_" + layer.format(act_id))


# ---------------------------------------------------------------------------
# neural-tangents' stored CNTK values
# ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _reference():
    ref = np.load(DATA)
    return {k: ref[k] for k in ref.files}, json.loads(str(ref["index_json"]))


def _fixture_kwargs(case):
    return dict(
        depth=case["depth"],
        activation=case["act"],
        activation_params=case["act_kwargs"],
        weight_std=case["W_std"],
        bias_std=case["b_std"],
        parameterization=case["parameterization"],
        width=case["width"],
        filter_shape=tuple(case["filter_shape"]),
        padding=case["padding"],
        pool_after=case["pool_after"],
        pool_window=tuple(case["pool_window"]),
        readout=case["readout"],
    )


CASES = _reference()[1]["kernel_cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_fixtures_of_neural_tangents(host_lib, case):
    """Every stored case (all activations, paddings, readouts, pooling, both
    parameterizations) in float64, in the fixtures' tolerance classes."""
    REF, _ = _reference()
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    prefix = f"kernel/{case['id']}/"
    kw = _fixture_kwargs(case)
    for tag, (A, B) in {"11": (X1, None), "12": (X1, X2)}.items():
        edge = REF[f"inputs/{S}/edge{tag}"]
        degenerate = REF[f"{prefix}degenerate{tag}"]
        out = _host(host_lib, A, B, kw)
        for name in ("nngp", "ntk"):
            R = REF[f"{prefix}{name}{tag}"]
            err = np.abs(out[name][-1] - R) / np.abs(R).max()
            plain = ~edge & ~degenerate
            assert err[plain].max(initial=0) <= 1e-10, (name, tag, "plain")
            assert err[edge & ~degenerate].max(initial=0) <= 1e-9, (name, tag)
            assert err[degenerate].max(initial=0) <= 1e-6, (name, tag)


# ---------------------------------------------------------------------------
# The CuPy driver on a GPU (skipped without one)
# ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-4)])
@pytest.mark.parametrize(
    "kw",
    [
        dict(depth=3, readout="gap", bias_std=0.1),
        dict(depth=3, readout="flatten", padding="CIRCULAR", filter_shape=(2, 3)),
        dict(
            depth=2,
            readout="gap",
            padding="VALID",
            parameterization="standard",
            width=32,
            bias_std=None,
        ),
        dict(depth=3, readout="gap", pool_after=[0], activation="erf"),
    ],
    ids=["gap", "flatten-circular", "valid-standard", "pool-erf"],
)
def test_cupy_driver_matches_numpy(kw, dtype, rtol):
    cupy = pytest.importorskip("cupy")
    X, Y = _images(seed=6, n1=9, n2=5, shape=(8, 7, 3))
    spec = ConvKernelSpec.from_params(**kw)
    for B in (None, Y):
        ref = nngp_ntk_kernels(X, B, all_depths=True, **kw)
        out = _conv_cuda.conv_kernels_cupy(
            cupy.asarray(X, dtype=dtype),
            None if B is None else cupy.asarray(B, dtype=dtype),
            spec,
            ("nngp", "ntk"),
            True,
            2**28,
        )
        for name, R in zip(("nngp", "ntk"), ref):
            got = cupy.asnumpy(out[name])
            assert got.dtype == dtype
            smooth = kw.get("activation") and dtype == np.float64
            assert _max_rel(got, R) <= (1e-10 if smooth else rtol), name


@pytest.mark.gpu
def test_cupy_driver_fixture_cases():
    """A third of the stored neural-tangents cases on the GPU, float64."""
    cupy = pytest.importorskip("cupy")
    REF, _ = _reference()
    for case in CASES[::3]:
        S = case["inputs"]
        X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
        spec = ConvKernelSpec.from_params(**_fixture_kwargs(case))
        out = _conv_cuda.conv_kernels_cupy(
            cupy.asarray(X1), cupy.asarray(X2), spec, ("nngp", "ntk"), False, 2**28
        )
        for name in ("nngp", "ntk"):
            R = REF[f"kernel/{case['id']}/{name}12"]
            err = np.abs(cupy.asnumpy(out[name][0]) - R).max() / np.abs(R).max()
            assert err <= 1e-6, (case["id"], name)


@pytest.mark.gpu
def test_cupy_diagonals_match_numpy():
    cupy = pytest.importorskip("cupy")
    from sknetk.conv import nngp_diag, ntk_diag

    X, _ = _images(seed=11, shape=(8, 7, 3))
    kw = dict(depth=3, bias_std=0.2, readout="gap")
    out = _conv_cuda.conv_diagonals_cupy(
        cupy.asarray(X), ConvKernelSpec.from_params(**kw), ("nngp", "ntk"), True, 2**28
    )
    assert (
        _max_rel(cupy.asnumpy(out["nngp"]), nngp_diag(X, all_depths=True, **kw))
        <= 1e-12
    )
    assert (
        _max_rel(cupy.asnumpy(out["ntk"]), ntk_diag(X, all_depths=True, **kw)) <= 1e-12
    )
