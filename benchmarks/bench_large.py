"""Large-scale benchmark: the Nystrom + preconditioned-CG solver past the n x n wall.

The problem (``make_teacher``): ``X ~ N(0, I_d)``, ``d = 20``; targets from a
fixed random two-layer teacher network ``f(x) = tanh(x U / sqrt(d)) a`` with
``U ~ N(0, 1)^{d x 64}`` and ``a ~ N(0, 1/64)^{64}`` (seed 0; ``Var f ~ 0.24``),
plus Gaussian noise of standard deviation ``--noise`` (0.5: a signal-to-noise
ratio near 1). The test set is 10,000 fresh rows; test RMSE is measured
against the noiseless ``f``. The model is the NTK of a depth-3 ReLU network
(``weight_std=1``, ``bias_std=0.1``) with a ridge ``alpha = ALPHA_REL * n *
mean diag(K)``, ``ALPHA_REL = 1e-3``: a per-row ridge (that of a mean squared
loss), the best of {1e-6, ..., 1e-3} for the exact solver at n = 4000 with
this noise. The gap between Nystrom and exact grows as the noise and the
ridge shrink (fewer centres capture a less regularised fit): with noise 0.1
and its best ridge (1e-6) the gap at n = 4000, m = 1000 is about 20%, against
1% here.

For each ``n`` (``--sizes full``: 20k, 50k, 100k, 200k; ``--sizes small``:
1k, 2k, 4k) and ``m = --centers`` centres (default 5000; 500 with ``small``)
it reports:

* ``fit s``: wall time of :func:`sknetk._nystrom.nystrom_fit` (strategy
  ``auto`` within ``--working-memory``, CG ``tol=1e-6``), and ``n_iter``;
* ``peak MiB``: the peak of the arrays allocated during that fit, from
  :mod:`tracemalloc` (NumPy reports every array buffer to it, from every
  thread; the input arrays are allocated before tracing starts, BLAS scratch
  is not included). Tracing runs during the timed fit; its cost is that of a
  few thousand large allocations, well under a percent here;
* ``test RMSE`` and, where the exact solver fits (``n <= --exact-max``,
  default 20000), the exact kernel ridge RMSE and the ratio
  ``nystrom / exact - 1`` (target: within 2% at n = 20k, m = 5000);
* ``time per doubling``: ``2 ** slope`` of log(fit seconds) against log(n),
  over the sizes run (O(n) work gives 2);
* at ``--dask-n`` (default 100k; 4k with ``small``) the same fit on a dask
  array on a ``LocalCluster`` of 2 worker processes (1 thread each) next to
  the in-process fit (``--no-dask`` skips it; needs ``dask[array]`` and
  ``distributed``).

Prints a table and one JSON line with the machine; ``--save`` appends the JSON
line to ``benchmarks/results/large_<date>_cpu.jsonl``.

``--gpu`` runs instead the GPU case (n = 1,000,000, d = 20, m = 20,000 by
default; target under 60 s on an H100) with CuPy arrays, and writes
``bench_large_gpu.json`` under ``--out`` (as ``gpu_check.sh`` calls it).

Usage::

    python benchmarks/bench_large.py --sizes small            # seconds
    python benchmarks/bench_large.py --save                   # the full run
    python benchmarks/bench_large.py --gpu --out /tmp/gpu     # CUDA machine
"""

import argparse
import datetime
import gc
import json
import math
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = {
    "small": dict(ns=[1000, 2000, 4000], centers=500, dask_n=4000),
    "full": dict(ns=[20_000, 50_000, 100_000, 200_000], centers=5000, dask_n=100_000),
}
KERNEL = dict(depth=3, activation="relu", weight_std=1.0, bias_std=0.1)
# Ridge per row relative to the kernel's mean diagonal.
ALPHA_REL = 1e-3
N_TEST = 10_000
NOISE = 0.5

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def make_teacher(n, d=20, n_test=N_TEST, noise=None, seed=0, xp=np):
    """Teacher-network regression data (see the module docstring).

    Returns ``X, y, X_test, f_test`` as arrays of ``xp`` (NumPy or CuPy); the
    teacher's weights come from NumPy's generator with ``seed`` so that both
    give the same function.
    """
    noise = NOISE if noise is None else noise
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(d, 64))
    a = rng.normal(size=64) / 8.0
    if xp is np:
        X = rng.normal(size=(n + n_test, d))
        eps = rng.normal(size=n)
    else:  # CuPy: draw on the device
        g = xp.random.default_rng(seed)
        X = g.standard_normal((n + n_test, d), dtype=xp.float64)
        eps = g.standard_normal(n, dtype=xp.float64)
        U, a = xp.asarray(U), xp.asarray(a)
    f = xp.tanh(X @ U / math.sqrt(d)) @ a
    y = f[:n] + noise * eps
    return X[:n], y, X[n:], f[n:]


def alpha_for(X, n):
    """``ALPHA_REL * n * mean diag K`` (the diagonal in O(n))."""
    from sknetk.kernels import ntk_diag

    rows = X[: min(n, 10_000)]
    return ALPHA_REL * n * float(ntk_diag(rows, **KERNEL).mean())


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------
def kernel_fn(working_memory, n_jobs=-1):
    from sknetk._nystrom import kernel_block_function

    return kernel_block_function(
        "ntk", working_memory=working_memory, n_jobs=n_jobs, **KERNEL
    )


def run_nystrom(X, y, Xt, ft, m, alpha, working_memory, trace=True):
    from sknetk._nystrom import nystrom_fit, nystrom_predict

    fn = kernel_fn(working_memory)
    gc.collect()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    centers, coef, n_iter, info = nystrom_fit(
        X,
        y,
        kernel_fn=fn,
        n_centers=m,
        alpha=alpha,
        tol=1e-6,
        max_iter=200,
        random_state=0,
        working_memory=working_memory,
    )
    fit_s = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if trace else float("nan")
    if trace:
        tracemalloc.stop()
    t0 = time.perf_counter()
    pred = nystrom_predict(Xt, centers, coef, fn, working_memory=working_memory)
    predict_s = time.perf_counter() - t0
    return {
        "fit_s": round(fit_s, 3),
        "predict_s": round(predict_s, 3),
        "n_iter": n_iter,
        "strategy": info["strategy"],
        "peak_mib": round(peak / 2**20, 1),
        "rmse": rmse(pred, ft),
    }


def run_exact(X, y, Xt, ft, alpha, working_memory):
    """Exact kernel ridge: n x n NTK, Cholesky (LAPACK, in place)."""
    from scipy.linalg import cho_factor, cho_solve

    from sknetk.kernels import kernel_matvec, ntk_kernel

    t0 = time.perf_counter()
    K = ntk_kernel(X, **KERNEL)
    K[np.diag_indices_from(K)] += alpha
    dual = cho_solve(
        cho_factor(K, lower=True, overwrite_a=True, check_finite=False),
        y,
        check_finite=False,
    )
    del K
    fit_s = time.perf_counter() - t0
    pred = kernel_matvec(Xt, X, dual, **KERNEL, working_memory=working_memory)
    return {"exact_fit_s": round(fit_s, 3), "exact_rmse": rmse(pred, ft)}


def run_dask(X, y, m, alpha, working_memory):
    """The same fit on a 2-process LocalCluster vs in this process."""
    try:
        import dask.array as da
        from distributed import Client, LocalCluster
    except ImportError as exc:
        return {"dask_error": f"dask not installed: {exc}"}
    from sknetk._nystrom import nystrom_fit

    kwargs = dict(
        n_centers=m,
        alpha=alpha,
        tol=1e-6,
        max_iter=200,
        random_state=0,
        working_memory=working_memory,
    )
    t0 = time.perf_counter()
    _, coef_local, iters_local, info_local = nystrom_fit(
        X, y, kernel_fn=kernel_fn(working_memory), **kwargs
    )
    local_s = time.perf_counter() - t0
    # blocks within the budget, and at least 4 per worker to balance the load
    rows = max(1, int(0.25 * working_memory * 2**20 / (m * 8)))
    rows = min(rows, -(-X.shape[0] // 8))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        Xd = da.from_array(X, chunks=(rows, X.shape[1]))
        t0 = time.perf_counter()
        _, coef, iters, info = nystrom_fit(
            Xd, y, kernel_fn=kernel_fn(working_memory, n_jobs=1), **kwargs
        )
        dask_s = time.perf_counter() - t0
    diff = float(np.max(np.abs(coef - coef_local)) / np.max(np.abs(coef_local)))
    return {
        "dask_n": int(X.shape[0]),
        "one_process_fit_s": round(local_s, 3),
        "one_process_strategy": info_local["strategy"],
        "local_cluster_2_workers_fit_s": round(dask_s, 3),
        "local_cluster_strategy": info["strategy"],
        "dask_chunks": len(Xd.chunks[0]),
        "n_iter": [iters_local, iters],
        "max_rel_coef_diff": diff,
    }


def machine_info():
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        import scipy
        import sklearn

        info["scipy"], info["sklearn"] = scipy.__version__, sklearn.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        info["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "num_threads", "version")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:  # pragma: no cover
        pass
    return info


def doubling_factor(ns, seconds):
    """``2 ** slope`` of the least-squares line of log(seconds) on log(n)."""
    if len(ns) < 2:
        return None
    slope = np.polyfit(np.log2(ns), np.log2(seconds), 1)[0]
    return round(float(2**slope), 2)


def main_cpu(args):
    preset = SIZES[args.sizes]
    ns = args.n or preset["ns"]
    m = args.centers or preset["centers"]
    dask_n = args.dask_n or preset["dask_n"]
    # warm-up (imports, BLAS threads) outside the timings
    X, y, Xt, ft = make_teacher(500, d=args.d, n_test=10)
    run_nystrom(X, y, Xt, ft, 100, 1.0, args.working_memory, trace=False)
    rows = []
    for n in ns:
        X, y, Xt, ft = make_teacher(n, d=args.d, noise=args.noise)
        alpha = alpha_for(X, n)
        row = {"n": n, "d": args.d, "m": m, "alpha": alpha}
        row.update(run_nystrom(X, y, Xt, ft, m, alpha, args.working_memory))
        if n <= args.exact_max:
            row.update(run_exact(X, y, Xt, ft, alpha, args.working_memory))
            row["rmse_vs_exact"] = round(row["rmse"] / row["exact_rmse"] - 1, 4)
        rows.append(row)
        print_row(row, header=len(rows) == 1)
        del X, y, Xt, ft
        gc.collect()
    result = {
        "benchmark": "bench_large",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "device": "cpu",
        "dtype": "float64",
        "kernel": KERNEL,
        "alpha_rel": ALPHA_REL,
        "noise": args.noise,
        "working_memory_mib": args.working_memory,
        "sizes": args.sizes,
        "rows": rows,
        "time_per_doubling": doubling_factor(
            [r["n"] for r in rows], [r["fit_s"] for r in rows]
        ),
        "max_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "machine": machine_info(),
    }
    print(f"time per doubling of n: {result['time_per_doubling']}")
    if not args.no_dask:
        X, y, _, _ = make_teacher(dask_n, d=args.d, n_test=0, noise=args.noise)
        result["dask"] = run_dask(X, y, m, alpha_for(X, dask_n), args.working_memory)
        print("dask:", json.dumps(result["dask"]))
    print(json.dumps(result))
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"large_{datetime.date.today().isoformat()}_cpu.jsonl"
        with open(path, "a") as fh:
            fh.write(json.dumps(result) + "\n")
        print(f"appended to {path}")
    return result


def print_row(row, header=False):
    cols = [
        "n",
        "m",
        "strategy",
        "fit_s",
        "n_iter",
        "peak_mib",
        "predict_s",
        "rmse",
        "exact_rmse",
        "rmse_vs_exact",
        "exact_fit_s",
    ]
    if header:
        print(" ".join(f"{c:>13}" for c in cols))
    cells = []
    for c in cols:
        v = row.get(c, "")
        cells.append(f"{v:>13.4g}" if isinstance(v, float) else f"{v!s:>13}")
    print(" ".join(cells), flush=True)


# ---------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------
def main_gpu(args):
    """n = 1,000,000, d = 20, m = 20,000 with CuPy arrays (target < 60 s, H100)."""
    import cupy

    from sknetk._nystrom import nystrom_fit, nystrom_predict

    n = args.n[0] if args.n else 1_000_000
    m = args.centers or 20_000
    wm = args.working_memory if args.working_memory_set else 16384
    X, y, Xt, ft = make_teacher(n, d=args.d, noise=args.noise, xp=cupy)
    alpha = ALPHA_REL * n * float(cupy.asnumpy(ntk_diag_gpu(X[:10_000])).mean())
    fn = kernel_fn(wm, n_jobs=1)
    # warm-up: compile the fused kernel and load cuBLAS/cuSOLVER on a tiny fit
    nystrom_fit(
        X[:2000],
        y[:2000],
        kernel_fn=fn,
        n_centers=200,
        alpha=alpha,
        random_state=0,
        working_memory=wm,
    )
    cupy.cuda.runtime.deviceSynchronize()
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    results = []
    for strategy in args.strategy:
        t0 = time.perf_counter()
        centers, coef, n_iter, info = nystrom_fit(
            X,
            y,
            kernel_fn=fn,
            n_centers=m,
            alpha=alpha,
            tol=1e-6,
            max_iter=200,
            random_state=0,
            working_memory=wm,
            strategy=strategy,
            verbose=args.verbose,
        )
        cupy.cuda.runtime.deviceSynchronize()
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = nystrom_predict(Xt, centers, coef, fn, working_memory=wm)
        cupy.cuda.runtime.deviceSynchronize()
        predict_s = time.perf_counter() - t0
        row = {
            "n": n,
            "d": args.d,
            "m": m,
            "alpha": alpha,
            "strategy": info["strategy"],
            "fit_s": round(fit_s, 3),
            "predict_s": round(predict_s, 3),
            "n_iter": n_iter,
            "converged": info["converged"],
            "rmse": rmse(cupy.asnumpy(pred), cupy.asnumpy(ft)),
            "pool_total_gib": round(pool.total_bytes() / 2**30, 2),
            "outputs_are_cupy": isinstance(coef, cupy.ndarray),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
        del centers, coef, pred
        pool.free_all_blocks()
    from bench_gpu import device_info  # noqa: E402  (same folder)

    result = {
        "benchmark": "bench_large_gpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "device": "gpu",
        "dtype": "float64",
        "kernel": KERNEL,
        "working_memory_mib": wm,
        "target": "fit under 60 s on an H100 at n=1e6, d=20, m=2e4",
        "rows": results,
        "machine": {**machine_info(), **device_info()},
    }
    print(json.dumps(result))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with open(Path(args.out) / "bench_large_gpu.json", "w") as fh:
            fh.write(json.dumps(result) + "\n")
    return result


def ntk_diag_gpu(X):
    from sknetk.kernels import ntk_diag

    return ntk_diag(X, **KERNEL)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", choices=sorted(SIZES), default="full")
    p.add_argument("--n", type=int, nargs="+", help="override the list of n")
    p.add_argument("--centers", type=int, help="number of centres m")
    p.add_argument("--d", type=int, default=20)
    p.add_argument(
        "--noise",
        type=float,
        default=NOISE,
        help="standard deviation of the target noise",
    )
    p.add_argument(
        "--working-memory",
        type=float,
        default=None,
        help="budget in MiB (default: scikit-learn's, 1024; GPU: 16384)",
    )
    p.add_argument(
        "--exact-max", type=int, default=20_000, help="largest n for the exact solver"
    )
    p.add_argument("--dask-n", type=int)
    p.add_argument("--no-dask", action="store_true")
    p.add_argument("--save", action="store_true")
    p.add_argument("--gpu", action="store_true", help="the CuPy run at n = 1e6")
    p.add_argument(
        "--strategy",
        nargs="+",
        default=["auto"],
        choices=["auto", "cache", "gram", "stream"],
        help="GPU run: the strategies to time",
    )
    p.add_argument("--out", help="GPU run: folder for bench_large_gpu.json")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)
    args.working_memory_set = args.working_memory is not None
    if args.working_memory is None:
        from sklearn import get_config

        args.working_memory = float(get_config()["working_memory"])
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.gpu:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        return main_gpu(args)
    return main_cpu(args)


if __name__ == "__main__":
    main()
