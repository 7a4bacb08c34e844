"""CPU benchmark of ``sknetk.kernels.ntk_kernel`` against a naive NumPy version.

For each size ``(n, d, depth)`` this times ``ntk_kernel(X)`` (``X`` with
itself; ReLU, float64, ``weight_std=1``, ``bias_std=0``, ``device="cpu"``) and,
in the same run, :func:`naive_ntk`: the textbook recursion in NumPy with one
full ``n x n`` temporary per operation, no tiling and no symmetry trick. Both
results are compared (max |difference| / max |K|, overall and off the
diagonal: on the diagonal the angle is 0, where arccos has an infinite slope,
so two correct implementations differ there by ~1e-8).

Reported per size: best wall time of each over ``--repeat`` runs, their ratio
(naive / sknetk, the speed-up), kernel entries x depth per second, and the peak
memory of each call relative to the size of the output matrix (``8 n^2``
bytes).

Peak memory is measured with :mod:`tracemalloc`, which sees every NumPy array
buffer (NumPy reports its data allocations to it), from all threads, and
nothing else: the interpreter and imported libraries are excluded, and so is
the BLAS library's own scratch space (a fixed few MiB per thread, independent
of ``n``). It is measured in a separate, untimed call, so tracing costs do not
enter the timings; the input ``X`` is allocated before tracing starts.
``resource.getrusage`` max-RSS was not used: it includes the interpreter and
the libraries (tens of MiB, as large as the whole output at n = 2000) and
cannot be reset between the two calls of one process.

Usage::

    python benchmarks/bench_kernels.py                 # all three sizes
    python benchmarks/bench_kernels.py --sizes small   # n = 2000 only (seconds)
    python benchmarks/bench_kernels.py --repeat 5 --save

Prints a table and one JSON line; ``--save`` appends the JSON line to
``benchmarks/results/kernels_<date>_cpu.jsonl``. The large sizes need about
``7 * 8 n^2`` bytes for the naive version (5.6 GB at n = 10000).
"""

import argparse
import datetime
import gc
import json
import math
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

SIZES = {
    "small": [(2000, 20, 3)],
    "all": [(2000, 20, 3), (5000, 50, 3), (10000, 50, 5)],
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def naive_ntk(X, depth):
    """NTK of ``depth`` ReLU layers + readout, W_std = 1, b_std = 0, the plain way.

    Every line makes full ``n x n`` arrays. The recursion (neural-tangents'
    "ntk" parameterization): ``Sigma = X X^T / d``, ``Theta = 0``; per layer
    ``Theta <- Sigma + Theta`` (Dense), then with ``q`` the diagonal of
    ``Sigma`` and ``theta = arccos(Sigma / sqrt(q q^T))``:
    ``Sigma <- sqrt(q q^T) (sin theta + (pi - theta) cos theta) / (2 pi)`` and
    ``Theta <- Theta (pi - theta) / (2 pi)``; the readout adds ``Sigma``.
    Rows of X must be non-zero (a zero row gives 0 / 0 here).
    """
    d = X.shape[1]
    sigma = X @ X.T / d
    theta = np.zeros_like(sigma)
    for _ in range(depth):
        theta = sigma + theta
        q = np.diag(sigma).copy()
        norm = np.sqrt(np.outer(q, q))
        cos = np.clip(sigma / norm, -1.0, 1.0)
        angle = np.arccos(cos)
        sigma = norm * (np.sin(angle) + (np.pi - angle) * cos) / (2 * np.pi)
        theta = theta * (np.pi - angle) / (2 * np.pi)
    return sigma + theta


def sknetk_ntk(X, depth, n_jobs):
    from sknetk.kernels import ntk_kernel

    return ntk_kernel(
        X,
        depth=depth,
        activation="relu",
        weight_std=1.0,
        bias_std=0.0,
        n_jobs=n_jobs,
        device="cpu",
    )


def best_time(fn, repeat):
    """Best wall time over ``repeat`` calls, and the last result."""
    best, out = math.inf, None
    for _ in range(repeat):
        out = None
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_bytes(fn):
    """Peak of traced (NumPy) memory allocated during ``fn()``, in bytes."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del out
    return peak


def machine_info():
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import sknetk

    np.ones((2, 2)) @ np.ones((2, 2))  # make sure BLAS is loaded
    blas = [
        {
            k: lib.get(k)
            for k in (
                "internal_api",
                "version",
                "num_threads",
                "threading_layer",
                "architecture",
            )
        }
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "sknetk": sknetk.__version__,
        "blas": blas,
    }


def bench_size(n, d, depth, repeat, n_jobs, rng):
    X = rng.standard_normal((n, d))
    out_bytes = 8 * n * n
    t_sk, K = best_time(lambda: sknetk_ntk(X, depth, n_jobs), repeat)
    t_naive, K_naive = best_time(lambda: naive_ntk(X, depth), repeat)
    scale = np.max(np.abs(K_naive))
    K -= K_naive
    np.abs(K, out=K)
    diff = float(np.max(K) / scale)
    # The diagonal (angle 0) differs by ~sqrt(eps): arccos has infinite slope.
    np.fill_diagonal(K, 0.0)
    diff_off = float(np.max(K) / scale)
    del K, K_naive
    peak_sk = peak_bytes(lambda: sknetk_ntk(X, depth, n_jobs))
    peak_naive = peak_bytes(lambda: naive_ntk(X, depth))
    return {
        "n": n,
        "d": d,
        "depth": depth,
        "seconds_sknetk": t_sk,
        "seconds_naive_numpy": t_naive,
        "ratio_vs_naive_numpy": t_naive / t_sk,
        "entries_x_depth_per_s": n * n * depth / t_sk,
        "peak_memory_vs_output_sknetk": peak_sk / out_bytes,
        "peak_memory_vs_output_naive_numpy": peak_naive / out_bytes,
        "output_bytes": out_bytes,
        "max_rel_diff": diff,
        "max_rel_diff_off_diagonal": diff_off,
    }


def print_table(rows):
    header = (
        f"{'n':>6} {'d':>4} {'depth':>5} {'sknetk s':>9} {'naive s':>9} "
        f"{'ratio':>6} {'entries*depth/s':>15} {'peak/out':>8} "
        f"{'naive peak/out':>14} {'max rel diff':>12} {'off-diag':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['n']:>6} {r['d']:>4} {r['depth']:>5} "
            f"{r['seconds_sknetk']:>9.3f} {r['seconds_naive_numpy']:>9.3f} "
            f"{r['ratio_vs_naive_numpy']:>6.2f} "
            f"{r['entries_x_depth_per_s']:>15.3e} "
            f"{r['peak_memory_vs_output_sknetk']:>8.2f} "
            f"{r['peak_memory_vs_output_naive_numpy']:>14.2f} "
            f"{r['max_rel_diff']:>12.1e} "
            f"{r['max_rel_diff_off_diagonal']:>8.1e}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        choices=sorted(SIZES),
        default="all",
        help="'small': n = 2000 only; 'all': the three sizes",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs per implementation; the best counts",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        help="n_jobs passed to ntk_kernel (default: all cores)",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="append the JSON line to benchmarks/results/",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    rng = np.random.default_rng(0)
    sknetk_ntk(rng.standard_normal((300, 5)), 2, args.n_jobs)  # warm up threads
    rows = []
    for n, d, depth in SIZES[args.sizes]:
        rows.append(bench_size(n, d, depth, args.repeat, args.n_jobs, rng))
        print(f"done n={n} d={d} depth={depth}", file=sys.stderr, flush=True)
    print_table(rows)
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {
        "benchmark": "bench_kernels",
        "date": now.isoformat(timespec="seconds"),
        "device": "cpu",
        "dtype": "float64",
        "activation": "relu",
        "weight_std": 1.0,
        "bias_std": 0.0,
        "n_jobs": args.n_jobs,
        "repeat": args.repeat,
        "baseline": "naive_numpy",
        "peak_memory_method": "tracemalloc (NumPy buffers, BLAS scratch excluded)",
        "sizes": [[r["n"], r["d"], r["depth"]] for r in rows],
        "targets": {
            "ratio_vs_naive_numpy_at_n_10000": ">= 3",
            "peak_memory_vs_output_sknetk": "<= 1.5",
        },
        # Quoted from the issue (2-core machine, neural-tangents 0.6.5 jitted
        # float64 on CPU); not measured by this script.
        "quoted_neural_tangents_jax_cpu_seconds": {
            "2000,20,3": 0.65,
            "5000,50,3": 3.3,
        },
        "machine": machine_info(),
        "results": rows,
    }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"kernels_{now.date().isoformat()}_cpu.jsonl"
        with path.open("a") as fh:
            fh.write(line + "\n")
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
