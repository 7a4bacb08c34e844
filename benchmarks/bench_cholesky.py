"""The exact solver's protected Cholesky against ``scipy.linalg.cho_factor``.

sknetk never hands OpenBLAS's multithreaded ``potrf`` a matrix of more than
4,096 rows (it crashes at n = 16,000 with the stock wheels on AVX-512
machines): :func:`sknetk._linalg.cholesky_inplace` factorises by blocks
(``potrf`` on the diagonal blocks, ``trsm`` for the panel, ``syrk`` for the
trailing update), in place. This script checks that the protection costs
nothing. For each ``n`` (``--sizes``, default 2000, 4000, 8000) it builds the
regularised NTK kernel of random data (depth 3, ReLU, ``alpha = 1e-3 n``:
positive definite, condition number ~1e5) and times, best of ``--repeat``
runs, each on a fresh Fortran-ordered copy made outside the timing, the two
factorisations in alternation:

* ``cho_factor s``: ``scipy.linalg.cho_factor(A, lower=True,
  overwrite_a=True, check_finite=False)`` (one LAPACK ``potrf``);
* ``blocked s``: ``cholesky_inplace(A)`` (what the solver runs);
* ``ratio``: blocked / cho_factor (target: <= 1.15 at n = 8,000);
* ``max diff``: largest difference of the two factors, relative to the
  largest entry;
* ``pocon s``: the condition estimate the solver adds after the factor
  (LAPACK ``dpocon``), and ``solve s``: the two triangular solves for one
  right-hand side; both are O(n^2) and memory-bound.

Prints a table and one JSON line (machine, BLAS, sizes, dtype, device, ratios);
``--save`` appends the line to ``benchmarks/results/cholesky_<date>_cpu.jsonl``.
Run it with the stock OpenBLAS settings (unset ``OPENBLAS_CORETYPE``) to time
the kernels that users get.

Usage::

    python benchmarks/bench_cholesky.py                 # about a minute on 2 cores
    python benchmarks/bench_cholesky.py --sizes 2000 --repeat 2
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def machine():
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    blas = [
        {
            k: info.get(k)
            for k in ("internal_api", "version", "num_threads", "architecture")
        }
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "blas": blas,
    }


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_size(n, repeat):
    from scipy.linalg import cho_factor

    from sknetk._linalg import (
        cho_solve_inplace,
        cholesky_inplace,
        norm1_symmetric,
        pocon,
    )
    from sknetk.kernels import ntk_kernel

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 20))
    A = np.asfortranarray(ntk_kernel(X, depth=3))
    A[np.diag_indices(n)] += 1e-3 * n
    work = np.empty_like(A, order="F")
    times = {"cho_factor": [], "blocked": []}
    for _ in range(repeat):
        for name in ("cho_factor", "blocked"):
            work[...] = A
            if name == "cho_factor":
                seconds, (L_ref, _) = timed(
                    lambda: cho_factor(
                        work, lower=True, overwrite_a=True, check_finite=False
                    )
                )
                L_ref = np.tril(L_ref)
            else:
                seconds, info = timed(lambda: cholesky_inplace(work))
                assert info == 0
            times[name].append(seconds)
    diff = float(np.abs(np.tril(work) - L_ref).max() / np.abs(L_ref).max())
    anorm = norm1_symmetric(A)
    pocon_s, rcond = timed(lambda: pocon(work, anorm))
    b = np.asfortranarray(rng.normal(size=(n, 1)))
    solve_s, _ = timed(lambda: cho_solve_inplace(work, b))
    best = {k: min(v) for k, v in times.items()}
    return {
        "n": n,
        "cho_factor_s": round(best["cho_factor"], 4),
        "blocked_s": round(best["blocked"], 4),
        "ratio": round(best["blocked"] / best["cho_factor"], 4),
        "max_rel_diff": diff,
        "pocon_s": round(pocon_s, 4),
        "solve_s": round(solve_s, 4),
        "rcond": rcond,
        "all_s": {k: [round(s, 4) for s in v] for k, v in times.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    print(
        f"{'n':>6} {'cho_factor s':>12} {'blocked s':>10} {'ratio':>6} "
        f"{'max diff':>9} {'pocon s':>8} {'solve s':>8}"
    )
    for n in args.sizes:
        row = run_size(n, args.repeat)
        rows.append(row)
        print(
            f"{n:>6} {row['cho_factor_s']:>12.3f} {row['blocked_s']:>10.3f} "
            f"{row['ratio']:>6.3f} {row['max_rel_diff']:>9.1e} "
            f"{row['pocon_s']:>8.3f} {row['solve_s']:>8.3f}",
            flush=True,
        )
    from sknetk._linalg import BLOCK

    record = {
        "benchmark": "bench_cholesky",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "device": "cpu",
        "dtype": "float64",
        "block": BLOCK,
        "repeat": args.repeat,
        "matrix": "ntk_kernel(X ~ N(0, I_20), depth=3) + 1e-3 n I",
        "target": {"ratio_at_n_8000": "<= 1.15"},
        "sizes": args.sizes,
        "ratios": {str(r["n"]): r["ratio"] for r in rows},
        "rows": rows,
        "machine": machine(),
    }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"cholesky_{record['date'][:10]}_cpu.jsonl"
        with open(path, "a") as fh:
            fh.write(line + "\n")
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
