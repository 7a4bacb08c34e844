"""GPU benchmark: fused NTK kernel against a roofline, GPU fit, GPU vs CPU.

Run by ``benchmarks/gpu_check.sh`` on a CUDA machine (needs CuPy; installs
nothing). Measures, on the current device:

1. ``ntk_kernel(X)`` for n x n with n in {10000, 30000, 50000}, d = 100,
   depth 3, ReLU, float64 and float32: seconds, entries per second, and the
   fraction of a roofline made of the Gram matrix product's measured time plus
   one read-and-write pass over the output at the measured device bandwidth
   (a device-to-device copy of an array of the output's size).
2. ``NTKRegressor(device="gpu")`` fit + predict end to end for n = 50000,
   float64.
3. The same n = 10000 fit + predict on the GPU and on the CPU, as a ratio.
4. With ``--rows-sweep "float64=1;float64=2;..."``: the kernel of item 1 at
   the largest size, once per rows-per-thread setting of the fused CUDA
   kernel (``SKNETK_CUDA_ROWS_PER_THREAD``), to tune it on the device at hand.

Prints a table and one JSON line; with ``--out DIR`` also writes
``DIR/bench_gpu.json``.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np


def _sync():
    import cupy

    cupy.cuda.runtime.deviceSynchronize()


def _time_gpu(fn, repeat=3):
    """Best wall time of ``fn()`` over ``repeat`` runs, synchronised."""
    best = float("inf")
    out = None
    for _ in range(repeat):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _free_pool():
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()


def device_info():
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else name
    free, total = cupy.cuda.runtime.memGetInfo()
    return {
        "gpu": name,
        "gpu_memory_gib": round(total / 2**30, 1),
        "cupy": cupy.__version__,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
    }


def measured_bandwidth(n_bytes):
    """Device bandwidth (bytes read + written per second) of a large copy."""
    import cupy

    a = cupy.empty(n_bytes // 8, dtype=cupy.float64)
    a.fill(1.0)
    b = cupy.empty_like(a)
    t, _ = _time_gpu(lambda: cupy.copyto(b, a), repeat=5)
    a = b = None  # release before freeing the pool
    _free_pool()
    return 2 * n_bytes / t


def bench_kernel(n, d, depth, dtype, bandwidth, rng):
    import cupy

    from sknetk.kernels import ntk_kernel

    X = cupy.asarray(rng.normal(size=(n, d)), dtype=dtype)
    # roofline part 1: the Gram matrix product alone
    t_mm, G = _time_gpu(lambda: X @ X.T)
    del G
    _free_pool()
    itemsize = np.dtype(dtype).itemsize
    out_bytes = n * n * itemsize
    t_rw = 2 * out_bytes / bandwidth
    wm = 4096  # MiB of Gram scratch per row block

    def run():
        return ntk_kernel(X, depth=depth, dtype=np.dtype(dtype).name, working_memory=wm)

    run()  # compile the fused kernel
    t, K = _time_gpu(run)
    finite = bool(cupy.isfinite(K[:: max(1, n // 64)]).all())
    del K
    _free_pool()
    roofline = t_mm + t_rw
    return {
        "n": n,
        "d": d,
        "depth": depth,
        "dtype": np.dtype(dtype).name,
        "seconds": t,
        "entries_per_s": n * n / t,
        "matmul_s": t_mm,
        "rw_pass_s": t_rw,
        "roofline_s": roofline,
        "fraction_of_roofline": roofline / t,
        "finite": finite,
    }


def _problem(n, d, rng, n_test=2000):
    X = rng.normal(size=(n + n_test, d))
    y = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + 0.1 * rng.normal(size=n + n_test)
    return X[:n], y[:n], X[n:], y[n:]


def bench_fit(n, d, device, rng, dtype=np.float64):
    from sknetk import NTKRegressor

    X, y, Xt, yt = _problem(n, d, rng)
    model = NTKRegressor(
        alpha=1e-2, alpha_scale="mean_diag", depth=3, solver="cholesky", device=device
    )
    t0 = time.perf_counter()
    model.fit(X, y)
    if device == "gpu":
        _sync()
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(Xt)
    t_pred = time.perf_counter() - t0
    r2 = 1 - np.mean((pred - yt) ** 2) / np.var(yt)
    if device == "gpu":
        _free_pool()
    return {
        "n": n,
        "d": d,
        "device": device,
        "fit_s": t_fit,
        "predict_s": t_pred,
        "n_test": len(yt),
        "r2": float(r2),
        "finite": bool(np.all(np.isfinite(pred))),
    }, pred


def rows_sweep(settings, n, d, bandwidth, rng):
    """Time the fused kernel at ``n`` once per rows-per-thread setting."""
    from sknetk import _cuda

    results = []
    saved = os.environ.get(_cuda.ROWS_ENV)
    parsed = []
    try:
        for setting in [s.strip() for s in settings.split(";") if s.strip()]:
            os.environ[_cuda.ROWS_ENV] = setting
            parsed.append((setting, _cuda.rows_per_thread()))  # fail fast
        for setting, rows in parsed:
            os.environ[_cuda.ROWS_ENV] = setting
            for dtype in (np.float64, np.float32):
                try:
                    r = bench_kernel(n, d, 3, dtype, bandwidth, rng)
                except Exception as exc:  # report and go on
                    r = {"n": n, "dtype": np.dtype(dtype).name, "error": repr(exc)}
                r["rows_per_thread"] = rows[np.dtype(dtype).name]
                r["setting"] = setting
                results.append(r)
                print("rows sweep", json.dumps(r), flush=True)
    finally:
        if saved is None:
            os.environ.pop(_cuda.ROWS_ENV, None)
        else:
            os.environ[_cuda.ROWS_ENV] = saved
    if results:
        print(f"\n{'setting':>22} {'dtype':>8} {'rows':>5} {'seconds':>9} {'frac':>6}")
        for r in results:
            if "error" in r:
                print(f"{r['setting']:>22} {r['dtype']:>8}  ERROR {r['error']}")
                continue
            print(
                f"{r['setting']:>22} {r['dtype']:>8} {r['rows_per_thread']:>5} "
                f"{r['seconds']:9.4f} {r['fraction_of_roofline']:6.2f}"
            )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT"))
    parser.add_argument("--sizes", default="10000,30000,50000")
    parser.add_argument("--fit-n", type=int, default=50000)
    parser.add_argument("--compare-n", type=int, default=10000)
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument(
        "--rows-sweep",
        default="",
        help="';'-separated SKNETK_CUDA_ROWS_PER_THREAD settings "
        "to time the largest kernel with (both dtypes)",
    )
    args = parser.parse_args(argv)

    import cupy  # noqa: F401  (fail early and clearly without CuPy)

    rng = np.random.default_rng(0)
    info = device_info()
    print("device:", info, flush=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    bw = measured_bandwidth(min(max(sizes) ** 2 * 8, 8 * 2**30))
    print(f"measured copy bandwidth: {bw / 1e12:.2f} TB/s (read + write)")

    rows = []
    for dtype in (np.float64, np.float32):
        for n in sizes:
            try:
                r = bench_kernel(n, args.d, 3, dtype, bw, rng)
            except Exception as exc:  # report and go on
                r = {"n": n, "dtype": np.dtype(dtype).name, "error": repr(exc)}
            rows.append(r)
            print(json.dumps(r), flush=True)
    print()
    print(
        f"{'n':>7} {'dtype':>8} {'seconds':>9} {'entries/s':>11} "
        f"{'roofline s':>11} {'frac':>6}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['n']:>7} {r['dtype']:>8}  ERROR {r['error']}")
            continue
        print(
            f"{r['n']:>7} {r['dtype']:>8} {r['seconds']:9.4f} "
            f"{r['entries_per_s']:11.3e} {r['roofline_s']:11.4f} "
            f"{r['fraction_of_roofline']:6.2f}"
        )

    sweep = rows_sweep(args.rows_sweep, max(sizes), args.d, bw, rng)

    fits = {}
    for key, (n, device) in {
        "fit_gpu_large": (args.fit_n, "gpu"),
        "fit_gpu_compare": (args.compare_n, "gpu"),
        "fit_cpu_compare": (args.compare_n, "cpu"),
    }.items():
        try:
            fits[key], pred = bench_fit(n, 20, device, np.random.default_rng(1))
            fits[key + "_pred"] = pred
        except Exception as exc:
            fits[key] = {"n": n, "device": device, "error": repr(exc)}
        print(key, json.dumps(fits[key]), flush=True)
    ratio = None
    agree = None
    g, c = fits.get("fit_gpu_compare"), fits.get("fit_cpu_compare")
    if g and c and "error" not in g and "error" not in c:
        ratio = (c["fit_s"] + c["predict_s"]) / (g["fit_s"] + g["predict_s"])
        pg, pc = fits["fit_gpu_compare_pred"], fits["fit_cpu_compare_pred"]
        agree = float(np.max(np.abs(pg - pc)) / max(np.max(np.abs(pc)), 1e-300))
    print(f"\nGPU/CPU speed ratio at n={args.compare_n} (fit + predict): {ratio}")
    print(f"max relative difference of GPU and CPU predictions: {agree}")

    record = {
        "benchmark": "bench_gpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            **info,
        },
        "device": "gpu",
        "bandwidth_bytes_per_s": bw,
        "kernel": rows,
        "fit": {k: v for k, v in fits.items() if not k.endswith("_pred")},
        "rows_sweep": sweep,
        "gpu_vs_cpu_ratio": ratio,
        "gpu_cpu_prediction_rel_diff": agree,
        "baseline": "roofline (matmul + one read/write pass); CPU for the ratio",
        "targets": {
            "fraction_of_roofline": ">= 0.5",
            "fit_50000_s": "< 5",
            "gpu_vs_cpu": ">= 50",
        },
    }
    print(json.dumps(record))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_gpu.json"), "w") as fh:
            json.dump(record, fh, indent=1)


if __name__ == "__main__":
    main()
