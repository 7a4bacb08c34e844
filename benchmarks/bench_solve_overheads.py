"""The exact solve's and the classifier's overheads against an older revision.

Two rows of the "no speed regression vs e304cea" comparison of issue 12
(``bench_revisions.py``), timed on their own, old and new tree in the same
run:

``solve``
    ``solve_kernel_ridge(K, y, alpha)`` at ``n = 1600``: ``K`` is
    ``ntk_kernel(X, depth=3)`` of ``1600 x 20`` standard normal rows,
    ``y = X[:, 0]``, ``alpha = effective_alpha(1e-2, "mean_diag", diag(K))``
    (the "one pass over the folds: 50 solves" row of
    ``bench_model_selection.py``). ``K`` is C-ordered and not overwritten.
``classifier``
    ``NTKClassifier().fit(X, y).predict(X)`` at ``n = 2000`` (``X``:
    ``2000 x 20`` standard normal, ``y = X[:, 0] + 0.5 noise > 0``),
    default parameters: in the new tree ``fit`` also calibrates the
    probabilities (leave-one-out temperature scaling), which ``e304cea`` did
    not do.

Each measurement is one subprocess with ``PYTHONPATH`` set to the tree (the
scripts are this file, which uses only API both trees have) and
``OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = --threads`` (2). A subprocess
builds its data, runs the timed call once untimed (numba compiles or loads its
cache, BLAS threads start), then times it ``--inner`` times and reports the
median. The trees alternate (old, new, new, old, ...) for ``--repeat``
rounds; the table gives the median over rounds per tree and its ratio to
``old`` (``ratios_over_old`` in the JSON: ``<row>_new``, ``<row>_candidate``),
the median of the per-round ratios (``paired``: the trees of one round run
back to back, so a load change between rounds cancels) and the fastest round
per tree with its ratio, and the ratio of the median CPU times of the
processes (``cpu/old``: all threads; less sensitive to other processes taking
the cores than the wall clock, more to spinning BLAS threads).
``--candidate`` adds a third tree to the same rounds. ``--calls S C`` also
keeps one process per tree alive and alternates ``S`` single solves (``C``
classifier fits) between them, ``--pause`` seconds apart: each call's ratio
to the neighbouring old call (``paired``) is then taken within a second or
two, which a shared machine's changing load disturbs least.
The machine may be shared: its load average at the start and the end is in
the JSON line.

Usage::

    python benchmarks/bench_solve_overheads.py --old /work/wt/e304cea
    python benchmarks/bench_solve_overheads.py --old /work/wt/e304cea --save
    python benchmarks/bench_solve_overheads.py --candidate /tmp/patched  # 3 trees

Prints a table and one JSON line (machine, sizes, dtype, device, times,
ratios new/old); ``--save`` appends the JSON line to
``benchmarks/results/solve_overheads_<date>_cpu.jsonl``.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
RESULTS_DIR = HERE.parent / "results"
NEW_TREE = HERE.parent.parent
N_FEATURES = 20
ROWS = ("solve", "classifier")


# -- the timed work (runs in a subprocess with PYTHONPATH = a tree) ----------
def _solve_case(n):
    from sknetk._solver import effective_alpha, solve_kernel_ridge
    from sknetk.kernels import ntk_kernel

    X = np.random.default_rng(0).standard_normal((n, N_FEATURES))
    K = ntk_kernel(X, depth=3)
    alpha = effective_alpha(1e-2, "mean_diag", np.diagonal(K).copy())
    y = X[:, 0].copy()
    return lambda: solve_kernel_ridge(K, y, alpha)


def _classifier_case(n):
    from sknetk import NTKClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, N_FEATURES))
    y = (X[:, 0] + 0.5 * rng.standard_normal(n) > 0).astype(int)
    NTKClassifier().fit(X[:200], y[:200]).predict(X[:200])  # numba, threads
    return lambda: NTKClassifier().fit(X, y).predict(X)


def worker(row, n, inner):
    """Median seconds of ``inner`` timed calls of ``row`` (after one untimed)."""
    import sknetk

    run = _solve_case(n) if row == "solve" else _classifier_case(n)
    run()
    times, cpu = [], []
    for _ in range(inner):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median_s": statistics.median(times),
        "cpu_median_s": statistics.median(cpu),
        "times_s": times,
        "sknetk": str(Path(sknetk.__file__).resolve().parent),
    }


def worker_loop(row, n):
    """Serve timed calls: one line per ``go`` on stdin (``wall cpu`` seconds)."""
    import sknetk

    run = _solve_case(n) if row == "solve" else _classifier_case(n)
    run()
    print(str(Path(sknetk.__file__).resolve().parent), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        print(f"{wall!r} {cpu!r}", flush=True)


# -- the driver ---------------------------------------------------------------
def _env(tree, threads):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def interleaved(trees, row, n, calls, threads, pause):
    """``{tree: [(wall, cpu), ...]}``: one live process per tree, single calls
    alternating between them (the order reversed every round), ``pause``
    seconds between calls so that idle BLAS threads stop spinning."""
    procs = {}
    try:
        for name, tree in trees.items():
            proc = subprocess.Popen(
                [sys.executable, str(HERE), "--worker-loop", row, "--n", str(n)],
                env=_env(tree, threads),
                cwd=str(tree),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs[name] = proc
            imported = proc.stdout.readline().strip()
            if Path(imported) != (Path(tree) / "sknetk").resolve():
                raise RuntimeError(f"imported {imported}, not the tree {tree}")
        out = {name: [] for name in trees}
        for r in range(calls):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for name in order:
                time.sleep(pause)
                procs[name].stdin.write("go\n")
                procs[name].stdin.flush()
                wall, cpu = map(float, procs[name].stdout.readline().split())
                out[name].append((wall, cpu))
        return out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.stdin.close()
                proc.wait(timeout=60)


def git_commit(tree):
    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tree), *args], capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "sknetk"))
    return commit + ("+dirty" if dirty else "")


def machine_info(threads):
    import scipy

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas_threads": threads,
    }


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def measure(tree, row, n, inner, threads):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    out = subprocess.run(
        [sys.executable, str(HERE), "--worker", row, "--n", str(n)]
        + ["--inner", str(inner)],
        env=env,
        cwd=str(tree),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if Path(result["sknetk"]) != (Path(tree) / "sknetk").resolve():
        raise RuntimeError(f"imported {result['sknetk']}, not the tree {tree}")
    return result["median_s"], result["cpu_median_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", default="/work/wt/e304cea", help="old tree")
    parser.add_argument("--new", default=str(NEW_TREE), help="new tree")
    parser.add_argument(
        "--candidate",
        help="a third tree timed in the same rounds (e.g. new plus a proposed edit)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds per tree")
    parser.add_argument("--solve-n", type=int, default=1600)
    parser.add_argument("--clf-n", type=int, default=2000)
    parser.add_argument("--solve-inner", type=int, default=15)
    parser.add_argument("--clf-inner", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--save", action="store_true")
    parser.add_argument(
        "--calls",
        type=int,
        nargs=2,
        default=None,
        metavar=("SOLVE", "CLASSIFIER"),
        help="also time single calls alternating between live processes",
    )
    parser.add_argument("--pause", type=float, default=0.3)
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-loop", choices=ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.inner)))
        return
    if args.worker_loop:
        worker_loop(args.worker_loop, args.n)
        return

    trees = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    if args.candidate:
        trees["candidate"] = Path(args.candidate).resolve()
    sizes = {"solve": args.solve_n, "classifier": args.clf_n}
    inner = {"solve": args.solve_inner, "classifier": args.clf_inner}
    load_start, uptime_start = load_average(), _uptime()
    rounds = {row: {name: [] for name in trees} for row in args.rows}
    cpu_rounds = {row: {name: [] for name in trees} for row in args.rows}
    for r in range(args.repeat):
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]
        for row in args.rows:
            for name in order:
                wall, cpu = measure(
                    trees[name], row, sizes[row], inner[row], args.threads
                )
                rounds[row][name].append(wall)
                cpu_rounds[row][name].append(cpu)
    alternating = {}
    if args.calls:
        calls = dict(zip(ROWS, args.calls, strict=True))
        for row in args.rows:
            got = interleaved(
                trees, row, sizes[row], calls[row], args.threads, args.pause
            )
            walls = {name: [w for w, _ in v] for name, v in got.items()}
            alternating[row] = {
                "calls": calls[row],
                "median_s": {k: statistics.median(v) for k, v in walls.items()},
                "cpu_median_s": {
                    k: statistics.median(c for _, c in v) for k, v in got.items()
                },
                "paired_ratio_over_old": {
                    k: statistics.median(
                        a / b for a, b in zip(v, walls["old"], strict=True)
                    )
                    for k, v in walls.items()
                    if k != "old"
                },
                "wall_s": walls,
            }
    load_end = load_average()

    times = {
        row: {name: statistics.median(v) for name, v in per.items()}
        for row, per in rounds.items()
    }
    ratios = {
        f"{row}_{name}": t[name] / t["old"]
        for row, t in times.items()
        for name in trees
        if name != "old"
    }
    # Each round's own ratio (the trees run back to back within a round, so
    # a load change between rounds cancels), and the fastest round per tree.
    paired = {
        f"{row}_{name}": statistics.median(
            a / b for a, b in zip(per[name], per["old"], strict=True)
        )
        for row, per in rounds.items()
        for name in trees
        if name != "old"
    }
    fastest = {
        row: {name: min(v) for name, v in per.items()} for row, per in rounds.items()
    }
    # CPU time of the process (all its threads): less sensitive than the wall
    # clock to other processes taking the cores, more to spinning BLAS threads.
    cpu_times = {
        row: {name: statistics.median(v) for name, v in per.items()}
        for row, per in cpu_rounds.items()
    }
    labels = {
        "solve": f"solve_kernel_ridge n={args.solve_n}",
        "classifier": f"NTKClassifier fit+predict n={args.clf_n}",
    }
    header = f"{'row':<36} {'tree':<10} {'median (ms)':>12} {'/ old':>7}"
    print(f"{header} {'paired':>7} {'min (ms)':>9} {'/ old':>7} {'cpu/old':>8}")
    for row, t in times.items():
        for name in trees:
            pair = paired.get(f"{row}_{name}", 1.0)
            low = fastest[row]
            print(
                f"{labels[row]:<36} {name:<10} {1e3 * t[name]:>12.1f} "
                f"{t[name] / t['old']:>7.3f} {pair:>7.3f} {1e3 * low[name]:>9.1f} "
                f"{low[name] / low['old']:>7.3f} "
                f"{cpu_times[row][name] / cpu_times[row]['old']:>8.3f}"
            )
    for row, alt in alternating.items():
        print(f"alternating single calls ({alt['calls']} each), {labels[row]}:")
        for name in trees:
            med = alt["median_s"][name]
            pair = alt["paired_ratio_over_old"].get(name, 1.0)
            cpu = alt["cpu_median_s"][name] / alt["cpu_median_s"]["old"]
            print(
                f"    {name:<10} median {1e3 * med:9.1f} ms   "
                f"/ old {med / alt['median_s']['old']:6.3f}   paired {pair:6.3f}   "
                f"cpu/old {cpu:6.3f}"
            )
    print(f"load average start {load_start}, end {load_end}")
    record = {
        "benchmark": "solve_overheads",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": machine_info(args.threads),
        "device": "cpu",
        "dtype": "float64",
        "sizes": {
            "solve_n": args.solve_n,
            "classifier_n": args.clf_n,
            "n_features": N_FEATURES,
        },
        "repeat": args.repeat,
        "inner": inner,
        "trees": {
            name: {"path": str(tree), "commit": git_commit(tree)}
            for name, tree in trees.items()
        },
        "load_average_start": load_start,
        "load_average_end": load_end,
        "uptime_start": uptime_start,
        "times_s": times,
        "rounds_s": rounds,
        "ratios_over_old": ratios,
        "paired_ratios_over_old": paired,
        "fastest_round_s": fastest,
        "cpu_times_s": cpu_times,
        "alternating_calls": alternating,
        "cpu_ratios_over_old": {
            f"{row}_{name}": t[name] / t["old"]
            for row, t in cpu_times.items()
            for name in trees
            if name != "old"
        },
    }
    line = json.dumps(record)
    if args.save:  # before printing, so that a closed stdout loses nothing
        RESULTS_DIR.mkdir(exist_ok=True)
        day = datetime.date.today().isoformat()
        with open(RESULTS_DIR / f"solve_overheads_{day}_cpu.jsonl", "a") as f:
            f.write(line + "\n")
    print(line)


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


if __name__ == "__main__":
    main()
