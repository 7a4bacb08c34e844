"""GPU benchmark of the fused convolutional (CNTK) kernels (sknetk._conv_cuda).

Run by ``benchmarks/gpu_check.sh`` on a CUDA machine (needs CuPy; installs
nothing; without CuPy or a device it prints a message and exits 0). On the
current device, ReLU, 3x3 SAME convolutions, ``weight_std=1``,
``bias_std=0``, "ntk" parameterization, the NTK ``K(X, Y)`` of random N(0, 1)
images (the cost does not depend on the pixel values):

1. **32x32x3, depth 21, GAP, float32**: milliseconds per kernel entry (wall
   time of the whole call, per-image recursions included, over ``n1 * n2``
   entries). Baseline: neural-tangents' 2.7 ms per entry on a V100 (its
   README's figure, quoted, not measured here); goal <= 0.1 ms on one H200.
2. **28x28x1, depth 5, GAP**, float32 and float64: ms per entry (goal <= 0.01
   ms). GAP without pooling runs the offset-slice kernel; the same network
   with it turned off (``SKNETK_CONV_CUDA_SLICES=0``: the layer-by-layer
   kernels through device memory) on ``--layer-n`` images (row
   ``layer_path``); and sknetk.conv's array path on the GPU (the NumPy-style
   recursion on CuPy arrays, ``sknetk._conv.compute_kernels``) on
   ``--compare-n`` images, float64, in the same run: the measured ratio and
   the largest relative difference of the two.
3. **The 5,000-image Gram matrix of MNIST-size images** (28x28x1, depth 5,
   GAP, float32, symmetric ``K(X, X)``): timed in full with ``--full-gram``;
   by default extrapolated from a timed block ``K(X[:m], X)`` of ``m x 5000``
   entries (``m = --gram-block``, fewer when case 2 predicts that the block
   would take more than half of the time left) to the ``5000 * 4999 / 2``
   image pairs the symmetric Gram computes (the output says which). Goal:
   under 10 minutes.
4. Optional ``--sweep "THREADS:PAIRS:MIN_BLOCKS:SLICES;..."``: case 2
   (float32) again once per setting of the developer knobs
   ``SKNETK_CONV_CUDA_THREADS``, ``SKNETK_CONV_CUDA_PAIRS``,
   ``SKNETK_CONV_CUDA_MIN_BLOCKS`` (0 = the default) and
   ``SKNETK_CONV_CUDA_SLICES`` (0 = off; see sknetk/_conv_cuda.py).

Prints a table and one JSON line; with ``--out DIR`` also writes
``DIR/bench_conv_gpu.json``. ``--budget-s`` (default 200) skips the cases
that would start after that many seconds.
"""

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NT_V100_MS = 2.7  # neural-tangents README: 21-layer GAP CNTK, 32x32x3, V100
GOAL_CIFAR_MS, GOAL_MNIST_MS, GOAL_GRAM_S = 0.1, 0.01, 600.0


def _cupy_or_none():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "no CUDA device"
        cupy.zeros(1).sum()  # a context and a kernel launch work
        return cupy, None
    except Exception as exc:  # ImportError, CUDA errors
        return None, repr(exc)


def _sync(cupy):
    cupy.cuda.runtime.deviceSynchronize()


def _timed(cupy, fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        _sync(cupy)
        t0 = time.perf_counter()
        out = fn()
        _sync(cupy)
        best = min(best, time.perf_counter() - t0)
    return best, out


def device_info(cupy):
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else name
    _, total = cupy.cuda.runtime.memGetInfo()
    return {
        "gpu": name,
        "gpu_memory_gib": round(total / 2**30, 1),
        "l2_cache_mib": round(props.get("l2CacheSize", 0) / 2**20, 1),
        "cupy": cupy.__version__,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
    }


def _spec(depth, readout="gap"):
    from sknetk.conv import ConvKernelSpec

    return ConvKernelSpec.from_params(depth=depth, readout=readout)


def fused(cupy, X, Y, spec, budget, want=("ntk",), repeat=1):
    from sknetk._conv_cuda import conv_kernels_cupy

    def run():
        return conv_kernels_cupy(X, Y, spec, want, False, budget)

    return _timed(cupy, run, repeat)


def array_path(cupy, X, Y, spec, budget):
    from sknetk._conv import compute_kernels

    return _timed(cupy, lambda: compute_kernels(X, Y, spec, ("ntk",), False, budget, 1))


def _images(cupy, rng, n, shape, dtype):
    return cupy.asarray(rng.normal(size=(n, *shape)), dtype=dtype)


def bench_entries(cupy, rng, name, n, shape, depth, dtype, budget):
    X = _images(cupy, rng, n, shape, dtype)
    Y = _images(cupy, rng, n, shape, dtype)
    spec = _spec(depth)
    t, out = fused(cupy, X, Y, spec, budget)
    finite = bool(cupy.isfinite(out["ntk"]).all())
    ms = 1e3 * t / (n * n)
    return {
        "case": name,
        "image": "x".join(map(str, shape)),
        "depth": depth,
        "readout": "gap",
        "dtype": np.dtype(dtype).name,
        "n1": n,
        "n2": n,
        "seconds": t,
        "ms_per_entry": ms,
        "finite": finite,
    }


def bench_vs_array_path(cupy, rng, n, shape, depth, budget):
    """Fused vs sknetk.conv's array path on CuPy (float64): time and agreement."""
    X = _images(cupy, rng, n, shape, np.float64)
    Y = _images(cupy, rng, n, shape, np.float64)
    spec = _spec(depth)
    t_f, out = fused(cupy, X, Y, spec, budget)
    t_a, ref = array_path(cupy, X, Y, spec, budget)
    a, b = cupy.asnumpy(out["ntk"][0]), cupy.asnumpy(ref["ntk"][0])
    return {
        "case": "vs_array_path",
        "image": "x".join(map(str, shape)),
        "depth": depth,
        "dtype": "float64",
        "n1": n,
        "n2": n,
        "fused_ms_per_entry": 1e3 * t_f / (n * n),
        "array_path_ms_per_entry": 1e3 * t_a / (n * n),
        "speedup_vs_array_path": t_a / t_f,
        "max_rel_diff": float(np.abs(a - b).max() / np.abs(b).max()),
    }


def bench_gram(cupy, rng, n, m, depth, budget, full):
    X = _images(cupy, rng, n, (28, 28, 1), np.float32)
    spec = _spec(depth)
    if full:
        t, out = fused(cupy, X, None, spec, budget)
        return {
            "case": "gram_5000",
            "n": n,
            "depth": depth,
            "dtype": "float32",
            "method": "timed in full (symmetric K(X, X))",
            "seconds": t,
            "finite": bool(cupy.isfinite(out["ntk"]).all()),
        }
    t, out = fused(cupy, X[:m], X, spec, budget)
    pairs = n * (n - 1) / 2
    return {
        "case": "gram_5000",
        "n": n,
        "depth": depth,
        "dtype": "float32",
        "method": (
            f"extrapolated from a timed block K(X[:{m}], X) of {m}x{n} entries "
            f"to the {int(pairs)} image pairs of the symmetric Gram"
        ),
        "block_seconds": t,
        "seconds": t * pairs / (m * n),
        "finite": bool(cupy.isfinite(out["ntk"]).all()),
    }


def _swept(
    cupy, rng, args, budget, threads, pairs, min_blocks, slices="1", n=None, name=None
):
    """Case 2 (float32) under one setting of the developer knobs."""

    def knob(v):
        return None if v in ("", "0") else v

    env = {
        "SKNETK_CONV_CUDA_THREADS": knob(threads),
        "SKNETK_CONV_CUDA_PAIRS": knob(pairs),
        "SKNETK_CONV_CUDA_MIN_BLOCKS": knob(min_blocks),
        "SKNETK_CONV_CUDA_SLICES": "0" if slices == "0" else None,
    }
    old = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        r = bench_entries(
            cupy,
            rng,
            name or "sweep",
            n or args.mnist_n,
            (28, 28, 1),
            5,
            np.float32,
            budget,
        )
        r.update(threads=threads, pairs=pairs, min_blocks=min_blocks, slices=slices)
        return r
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _gram_block(args, rows, start):
    """Rows of the timed Gram block: ``--gram-block``, fewer where the float32
    28x28 time per entry predicts that the block would take more than half of
    what is left of ``--budget-s``."""
    m = args.gram_block
    per_entry = next(
        (
            r["ms_per_entry"] * 1e-3
            for r in rows
            if r.get("case") == "mnist_depth5" and r.get("dtype") == "float32"
        ),
        None,
    )
    left = args.budget_s - (time.perf_counter() - start)
    if per_entry and not args.full_gram:
        m = min(m, max(1, int(0.5 * left / (per_entry * args.gram_n))))
    return m


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT"))
    parser.add_argument("--cifar-n", type=int, default=32)
    parser.add_argument("--mnist-n", type=int, default=192)
    parser.add_argument("--compare-n", type=int, default=16)
    parser.add_argument("--gram-n", type=int, default=5000)
    parser.add_argument("--layer-n", type=int, default=48)
    parser.add_argument("--gram-block", type=int, default=500)
    parser.add_argument("--full-gram", action="store_true")
    parser.add_argument("--working-memory", type=float, default=4096, help="MiB")
    parser.add_argument("--budget-s", type=float, default=200)
    parser.add_argument(
        "--sweep", default="", help='"THREADS:PAIRS:MIN_BLOCKS:SLICES;..." (0: default)'
    )
    args = parser.parse_args(argv)

    cupy, reason = _cupy_or_none()
    if cupy is None:
        print(f"bench_conv_gpu: no CuPy/CUDA device ({reason}); nothing measured.")
        return 0
    start = time.perf_counter()
    budget = int(args.working_memory * 2**20)
    rng = np.random.default_rng(0)
    info = device_info(cupy)
    print("device:", info, flush=True)
    # compile the RawModule (NVRTC) outside the timings
    t_compile, _ = fused(
        cupy, _images(cupy, rng, 2, (4, 4, 1), np.float32), None, _spec(2), budget
    )
    print(f"first call (NVRTC compile included): {t_compile:.1f} s", flush=True)

    rows = []
    cases = [
        lambda: bench_entries(
            cupy,
            rng,
            "cifar_depth21",
            args.cifar_n,
            (32, 32, 3),
            21,
            np.float32,
            budget,
        ),
        lambda: bench_entries(
            cupy, rng, "mnist_depth5", args.mnist_n, (28, 28, 1), 5, np.float32, budget
        ),
        lambda: bench_entries(
            cupy, rng, "mnist_depth5", args.mnist_n, (28, 28, 1), 5, np.float64, budget
        ),
        lambda: bench_vs_array_path(cupy, rng, args.compare_n, (28, 28, 1), 5, budget),
        lambda: bench_gram(
            cupy,
            rng,
            args.gram_n,
            _gram_block(args, rows, start),
            5,
            budget,
            args.full_gram,
        ),
    ]
    for item in filter(None, args.sweep.split(";")):
        given = [v.strip() for v in item.split(":")][:4]
        knobs = given + ["0", "0", "0", "1"][len(given) :]
        cases.append(functools.partial(_swept, cupy, rng, args, budget, *knobs))
    # the layer-by-layer kernels on the same network (the slice kernel off)
    cases.insert(
        3,
        functools.partial(
            _swept,
            cupy,
            rng,
            args,
            budget,
            "0",
            "0",
            "0",
            "0",
            args.layer_n,
            "layer_path",
        ),
    )

    for case in cases:
        if time.perf_counter() - start > args.budget_s:
            rows.append(
                {"case": "skipped", "reason": f"past --budget-s {args.budget_s}"}
            )
            continue
        try:
            r = case()
        except Exception as exc:  # report and go on
            r = {"case": "error", "error": repr(exc)}
        cupy.get_default_memory_pool().free_all_blocks()
        rows.append(r)
        print(json.dumps(r), flush=True)

    print()
    print(
        f"{'case':>15} {'image':>8} {'depth':>5} {'dtype':>8} {'n1 x n2':>11} "
        f"{'seconds':>9} {'ms/entry':>10} {'goal ms':>8}"
    )
    for r in rows:
        if "ms_per_entry" not in r:
            continue
        goal = GOAL_CIFAR_MS if r["depth"] == 21 else GOAL_MNIST_MS
        print(
            f"{r['case']:>15} {r['image']:>8} {r['depth']:>5} {r['dtype']:>8} "
            f"{r['n1']:>5}x{r['n2']:<5} {r['seconds']:>9.3f} "
            f"{r['ms_per_entry']:>10.5f} {goal:>8}"
        )
    for r in rows:
        if r.get("case") == "vs_array_path":
            print(
                f"\n28x28x1 depth 5 float64, {r['n1']}x{r['n2']}: fused "
                f"{r['fused_ms_per_entry']:.4f} ms/entry, array path on the GPU "
                f"{r['array_path_ms_per_entry']:.4f} ms/entry "
                f"({r['speedup_vs_array_path']:.1f}x), max rel diff "
                f"{r['max_rel_diff']:.1e}"
            )
        if r.get("case") == "gram_5000":
            print(
                f"\n{r['n']}-image Gram, 28x28x1, depth 5, GAP, float32: "
                f"{r['seconds']:.1f} s ({r['method']}); goal {GOAL_GRAM_S:.0f} s"
            )
        if r.get("case") in ("error", "skipped"):
            print(r)
    cifar = next((r for r in rows if r.get("case") == "cifar_depth21"), None)
    record = {
        "benchmark": "bench_conv_gpu",
        "date": datetime.date.today().isoformat(),
        "machine": platform.node(),
        "device": "gpu",
        **info,
        "baseline": (
            f"neural-tangents {NT_V100_MS} ms/entry on a V100 (README figure, not "
            "measured here); sknetk.conv array path on the same GPU (measured)"
        ),
        "ratio_vs_nt_v100": (
            NT_V100_MS / cifar["ms_per_entry"]
            if cifar and cifar["ms_per_entry"]
            else None
        ),
        "nvrtc_first_call_s": t_compile,
        "working_memory_mib": args.working_memory,
        "rows": rows,
    }
    line = json.dumps(record)
    print(line)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with open(Path(args.out) / "bench_conv_gpu.json", "w") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
