"""Speed of two revisions of sknetk in the same run: new/old time ratios.

Runs three benchmark scripts of this directory against two source trees,
``old`` (default: commit ``e304cea``, the last commit before the internal
redesign) and ``new`` (default: the checkout this script lives in, with its
uncommitted changes), each run in its own subprocess with ``PYTHONPATH`` set
to that tree (the child checks that ``sknetk`` is imported from it):

``kernels``
    ``bench_kernels.py --sizes small`` (n = 2,000, d = 20, depth 3; the best
    of 3 calls per process) or, with ``--kernel-sizes all``, its three sizes
    up to n = 10,000 (1 call per process; the naive NumPy reference needs
    about 5.6 GB there). Metric: ``seconds_sknetk``. Its
    ``seconds_naive_numpy`` does not depend on the tree and is reported as a
    control: its new/old ratio is the noise of the machine in this run.
``model_selection``
    ``bench_model_selection.py --part regression --n 2000`` (plain fit,
    NTKRegressorCV LOO and 5-fold over 50 candidates, a 250-fit
    GridSearchCV, GridSearchCV with and without ``memory``). Metric: each
    timed row, and their sum.
``fit_predict``
    ``bench_fit_predict.py --repeat 1`` (NTKRegressor at n = 2,000 and
    10,000, NTKClassifier at 2,000; ``like`` and ``defaults``
    configurations). Metric: fit + predict seconds per row.

The scripts are those of the new tree for both revisions. Where the two
revisions differ in API or in defaults, the child process adjusts:

* ``--configs like`` (the default, the headline), for ``model_selection``
  only: the estimators' defaults
  that changed behaviour after ``e304cea`` are set back in the new tree,
  in the child process only, by editing ``__init__.__kwdefaults__``:
  ``normalize_y=False`` and ``output_scale=1.0`` (``NTKRegressor``,
  ``NTKRegressorCV``), ``max_search_samples=None`` (the CV estimators: the
  search on every row). ``bench_model_selection.py`` builds its estimators
  with only ``alpha_scale``, ``device`` and ``n_jobs``, so this is the one
  way to make both revisions do the same work there. ``bench_fit_predict.py``
  passes its own explicit parameters and reports both configurations
  itself, so it (and ``bench_kernels.py``) always runs unpatched.
  ``--configs defaults`` runs ``model_selection`` as written.
* ``e304cea``'s CV estimators name the chosen relative ridge ``alpha_``
  where the new ones say ``alpha_relative_``; ``bench_model_selection.py``
  reads the latter for its table only, so the child gives the old class a
  read-only ``alpha_relative_`` property returning ``alpha_``. No timed
  code changes.

Before the rounds, and at the start of every child, the same small untimed
calls run in both trees (kernels, a regressor, a classifier, a CV fit on 120
rows): ``NUMBA_CACHE_DIR`` points at one folder per run, so the new tree's
compiled tiles are built once, in that warm-up, and only loaded later.

Rounds are interleaved: round ``r`` runs every benchmark once per tree, old
then new in even rounds and new then old in odd rounds (A B B A ...), so slow
drifts of the machine's load fall on both. Each metric's median over the
``--repeat`` rounds is taken per tree, and the table gives new/old (above 1:
the new tree is slower; the issue's bound is 1.05). The machine's load
average is recorded at the start and the end and before each subprocess: on
a shared machine the ratios are only as good as the control says.

Usage::

    python benchmarks/bench_revisions.py --quick                 # smoke test
    python benchmarks/bench_revisions.py --new HEAD --quick      # committed HEAD
    python benchmarks/bench_revisions.py --repeat 3 --save       # ~15 min idle
    python benchmarks/bench_revisions.py --kernel-sizes all --save

Options: ``--old REV`` (default ``e304cea``; extracted with ``git archive``
into a temporary folder) or ``--old-tree PATH`` (a checkout of it),
``--new REV`` (a committed revision, extracted the same way: what to use
while others edit the working tree) or ``--new-tree PATH`` (default: this
checkout as it is), ``--repeat R`` (rounds, default 3), ``--benchmarks``
(comma-separated subset), ``--configs {like,defaults}``, ``--quick``
(tiny sizes, one round: checks that everything runs), ``--save`` (append
the JSON line to ``results/revisions_<date>_cpu.jsonl`` and the table to
``results/revisions_<date>_cpu.txt``).
"""

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
BENCHMARKS = ("kernels", "model_selection", "fit_predict")
THRESHOLD = 1.05

# Defaults changed after e304cea that change the work done; set back in the
# new tree for the like-for-like configuration (child process only).
LIKE_DEFAULTS = {
    "NTKRegressor": {"normalize_y": False, "output_scale": 1.0},
    "NTKRegressorCV": {
        "normalize_y": False,
        "output_scale": 1.0,
        "max_search_samples": None,
    },
    "NTKClassifierCV": {"max_search_samples": None},
}


# ---------------------------------------------------------------------------
# Child: one benchmark script against one tree
# ---------------------------------------------------------------------------
def run_child(argv):
    """``--child TREE CONFIG SCRIPT ARGS...``: run SCRIPT with sknetk from TREE."""
    import runpy

    tree, config, script, *args = argv
    tree = Path(tree).resolve()
    sys.path.insert(0, str(tree))
    import sknetk

    found = Path(sknetk.__file__).resolve().parent
    if found != tree / "sknetk":
        raise SystemExit(f"sknetk imported from {found}, expected {tree / 'sknetk'}")
    import sknetk._cv as cv

    patched = []
    if config == "like":
        for name, defaults in LIKE_DEFAULTS.items():
            cls = getattr(sknetk, name, None) or getattr(cv, name, None)
            kwdefaults = getattr(getattr(cls, "__init__", None), "__kwdefaults__", None)
            for key, value in defaults.items():
                if kwdefaults is not None and key in kwdefaults:
                    kwdefaults[key] = value
                    patched.append(f"{name}.{key}={value!r}")
    if "alpha_relative_" not in Path(cv.__file__).read_text():  # e304cea
        for name in ("NTKRegressorCV", "NTKClassifierCV"):
            cls = getattr(cv, name, None)
            if cls is not None:
                cls.alpha_relative_ = property(lambda self: self.alpha_)
                patched.append(f"{name}.alpha_relative_ -> alpha_ (reporting only)")
    print(f"child: sknetk from {found}; patched: {patched}", file=sys.stderr)
    warm_up()
    if script == "-":  # warm-up only (fills the numba cache)
        return
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


def warm_up():
    """Untimed: the same small calls in both trees before a script runs.

    Loads (or, in a fresh ``NUMBA_CACHE_DIR``, compiles) the new tree's numba
    tiles and starts the BLAS threads, so that no script's first timed call
    pays for that in one tree only.
    """
    import warnings

    import numpy as np

    import sknetk
    from sknetk import kernels
    from sknetk._cv import NTKRegressorCV

    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 5))
    y = X[:, 0] + 0.1 * rng.standard_normal(120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for depth in (1, 3):
            kernels.ntk_kernel(X, depth=depth)
            kernels.ntk_kernel(X[:50], X, depth=depth)
        kernels.ntk_kernel(X, depth=3, all_depths=True)
        sknetk.NTKRegressor(depth=2).fit(X, y).predict(X)
        sknetk.NTKClassifier(depth=2).fit(X, y > 0).predict(X)
        NTKRegressorCV(alphas=(0.1, 1.0), depths=(1, 2)).fit(X, y)


# ---------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------
def git(tree, *args):
    return subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def extract_revision(repo, rev, folder):
    """``git archive REV`` of ``repo`` unpacked into ``folder`` (read-only on repo)."""
    Path(folder).mkdir(parents=True)
    data = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", rev],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return Path(folder)


def tree_commit(tree, rev=None):
    try:
        commit = git(tree, "rev-parse", f"{rev or 'HEAD'}^{{commit}}")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None, None
    dirty = None
    if rev is None:
        dirty = bool(git(tree, "status", "--porcelain", "--", "sknetk"))
    return commit, dirty


def load1():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def bench_commands(args):
    """``{benchmark: (script, arguments)}`` for the chosen sizes."""
    if args.quick:
        kernels = ["--sizes", "small", "--repeat", "1"]
        model_selection = ["--part", "regression", "--n", "300"]
        fit_predict = ["--sizes", "500", "--clf-sizes", "500", "--repeat", "1"]
    else:
        repeat = "3" if args.kernel_sizes == "small" else "1"
        kernels = ["--sizes", args.kernel_sizes, "--repeat", repeat]
        model_selection = ["--part", "regression", "--n", "2000"]
        fit_predict = ["--repeat", "1"]
    commands = {
        "kernels": ("bench_kernels.py", kernels),
        "model_selection": ("bench_model_selection.py", model_selection),
        "fit_predict": ("bench_fit_predict.py", fit_predict),
    }
    return {b: commands[b] for b in args.benchmarks}


def run_one(tree, config, script, script_args, numba_cache):
    """Run one benchmark in a subprocess; its JSON record and wall time.

    ``script`` ``"-"``: only the child's warm-up (returns ``None``).
    """
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(numba_cache)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tree)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(tree),
        config,
        script if script == "-" else str(HERE / script),
        *script_args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{script} failed against {tree} (exit {proc.returncode}):\n{proc.stdout}"
        )
    if script == "-":
        return None, wall
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]), wall


def metrics(benchmark, record):
    """``{metric: (seconds, is_control)}`` from one script's JSON record."""
    out = {}
    if benchmark == "kernels":
        for r in record["results"]:
            size = f"n={r['n']} d={r['d']} depth={r['depth']}"
            out[f"kernels ntk_kernel {size}"] = (r["seconds_sknetk"], False)
            out[f"kernels naive NumPy {size} (control)"] = (
                r["seconds_naive_numpy"],
                True,
            )
    elif benchmark == "model_selection":
        total = 0.0
        for r in record["results"]:
            out[f"model_selection {r['name']}"] = (r["seconds"], False)
            total += r["seconds"]
        out["model_selection total of the rows"] = (total, False)
    else:
        for r in record["results"]:
            # one name across trees: whether the new tree's classifier
            # calibration was stubbed is in each run's record
            key = f"fit_predict {r['estimator']} {r['config']} n={r['n_train']}"
            out[key] = (r["seconds_fit_predict"], False)
    return out


def summarize(samples):
    """Median per tree and new/old ratio per metric."""
    rows = []
    for name, per_tree in samples.items():
        old, new = per_tree.get("old", []), per_tree.get("new", [])
        if not old or not new:
            continue
        m_old, m_new = statistics.median(old), statistics.median(new)
        rows.append(
            {
                "metric": name,
                "control": per_tree["control"],
                "old_median_s": m_old,
                "new_median_s": m_new,
                "ratio_new_over_old": m_new / m_old if m_old > 0 else float("nan"),
                "old_s": old,
                "new_s": new,
            }
        )
    return rows


def format_table(rows, header_lines):
    width = max([len(r["metric"]) for r in rows] + [20])
    lines = list(header_lines)
    head = f"{'metric':<{width}} {'old s':>9} {'new s':>9} {'new/old':>8}"
    lines += [head, "-" * len(head)]
    for r in rows:
        flag = ""
        if r["control"]:
            flag = "  control (tree-independent)"
        elif r["ratio_new_over_old"] > THRESHOLD:
            flag = f"  > {THRESHOLD}"
        lines.append(
            f"{r['metric']:<{width}} {r['old_median_s']:>9.3f} "
            f"{r['new_median_s']:>9.3f} {r['ratio_new_over_old']:>8.3f}{flag}"
        )
    return "\n".join(lines)


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return run_child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="e304cea", help="old revision (git)")
    parser.add_argument(
        "--old-tree",
        type=Path,
        default=None,
        help="a checkout of the old revision (default: git archive into a temp dir)",
    )
    parser.add_argument(
        "--new",
        default=None,
        help="new revision (git archive of it; default: the --new-tree folder "
        "as it is, uncommitted changes included)",
    )
    parser.add_argument(
        "--new-tree",
        type=Path,
        default=HERE.parent,
        help="the new tree (default: this checkout, uncommitted changes included)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--kernel-sizes",
        choices=("small", "all"),
        default="small",
        help="bench_kernels.py sizes: 'small' (n = 2000) or 'all' (up to 10000)",
    )
    parser.add_argument(
        "--configs",
        choices=("like", "defaults"),
        default="like",
        help="'like': post-e304cea behaviour defaults set back in the new tree "
        "(child process only); 'defaults': the scripts as written",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one round: a smoke test"
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="append the JSON line and the table to benchmarks/results/",
    )
    args = parser.parse_args(argv)
    args.benchmarks = [b for b in args.benchmarks.split(",") if b]
    if not args.benchmarks or any(b not in BENCHMARKS for b in args.benchmarks):
        parser.error(f"--benchmarks must be a subset of {','.join(BENCHMARKS)}")
    if args.quick:
        args.repeat = 1
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    repo = HERE.parent
    with tempfile.TemporaryDirectory(prefix="sknetk_revisions_") as tmp:
        if args.new is None:
            new_tree = args.new_tree.resolve()
            new_commit, new_dirty = tree_commit(new_tree)
        else:
            new_tree = extract_revision(repo, args.new, Path(tmp) / "new")
            new_commit, new_dirty = tree_commit(repo, args.new)[0], False
        if args.old_tree is None:
            old_tree = extract_revision(repo, args.old, Path(tmp) / "old")
            old_commit, _ = tree_commit(repo, args.old)
        else:
            old_tree = args.old_tree.resolve()
            old_commit, _ = tree_commit(old_tree, "HEAD")
        trees = {"old": old_tree, "new": new_tree}
        commands = bench_commands(args)
        # one numba cache for the run: compiled once, in the untimed warm-up
        numba_cache = Path(tmp) / "numba_cache"
        for which in ("old", "new"):
            _, wall = run_one(trees[which], args.configs, "-", [], numba_cache)
            print(f"warm-up {which}: {wall:.1f} s", file=sys.stderr, flush=True)
        load_start = os.getloadavg()
        t_start = time.perf_counter()
        samples, runs, machine = {}, [], None
        for rnd in range(args.repeat):
            order = ("old", "new") if rnd % 2 == 0 else ("new", "old")
            for bench, (script, script_args) in commands.items():
                for which in order:
                    load_before = load1()
                    # only model_selection needs the defaults set back:
                    # bench_fit_predict passes its own parameters per row
                    config = args.configs if bench == "model_selection" else "defaults"
                    record, wall = run_one(
                        trees[which], config, script, script_args, numba_cache
                    )
                    if which == "new" and machine is None:
                        machine = record.get("machine")
                    found = metrics(bench, record)
                    for name, (seconds, control) in found.items():
                        entry = samples.setdefault(name, {"control": control})
                        entry.setdefault(which, []).append(seconds)
                    runs.append(
                        {
                            "round": rnd,
                            "benchmark": bench,
                            "tree": which,
                            "wall_s": round(wall, 3),
                            "load1_before": load_before,
                        }
                    )
                    print(
                        f"round {rnd} {bench} {which}: {wall:.1f} s "
                        f"(load {load_before})",
                        file=sys.stderr,
                        flush=True,
                    )
        load_end = os.getloadavg()
        elapsed = time.perf_counter() - t_start

    rows = summarize(samples)
    now = datetime.datetime.now(datetime.timezone.utc)
    header = [
        f"bench_revisions {now.isoformat(timespec='seconds')}: new/old time "
        f"(median of {args.repeat} interleaved rounds per tree)",
        f"old: {args.old} {old_commit}"
        f"  ({old_tree if args.old_tree else 'git archive'})",
        f"new: {new_commit}{' + uncommitted sknetk/ changes' if new_dirty else ''}"
        f"  ({'git archive of ' + args.new if args.new else new_tree})",
        f"configs: {args.configs}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS')}, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}; load average start "
        f"{[round(v, 2) for v in load_start]}, end "
        f"{[round(v, 2) for v in load_end]}; {os.cpu_count()} CPUs; "
        f"{elapsed / 60:.1f} min in all",
        "",
    ]
    table = format_table(rows, header)
    print(table)
    flagged = [
        r["metric"]
        for r in rows
        if not r["control"] and r["ratio_new_over_old"] > THRESHOLD
    ]
    record = {
        "benchmark": "bench_revisions",
        "date": now.isoformat(timespec="seconds"),
        "device": "cpu",
        "dtype": "float64",
        "old": {"rev": args.old, "commit": old_commit},
        "new": {
            "rev": args.new,
            "commit": new_commit,
            "uncommitted_sknetk_changes": new_dirty,
        },
        "configs": args.configs,
        "like_defaults": LIKE_DEFAULTS if args.configs == "like" else None,
        "like_defaults_applied_to": ["model_selection"],
        "quick": args.quick,
        "rounds": args.repeat,
        "order": "interleaved: old,new in even rounds, new,old in odd rounds",
        "statistic": "median per tree; ratio = new / old",
        "threshold": THRESHOLD,
        "commands": {b: [s, *a] for b, (s, a) in commands.items()},
        "sizes": {
            "kernels": "n=2000 d=20 depth=3"
            if args.quick or args.kernel_sizes == "small"
            else "(2000,20,3) (5000,50,3) (10000,50,5)",
            "model_selection": f"regression n={300 if args.quick else 2000}",
            "fit_predict": "regressor 500, classifier 500, d=20"
            if args.quick
            else "regressor 2000 and 10000, classifier 2000, d=20, n_test=n_train",
        },
        "thread_env": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "load_average_start": [round(v, 2) for v in load_start],
        "load_average_end": [round(v, 2) for v in load_end],
        "shared_machine_note": "load averages recorded; the control rows "
        "(naive NumPy kernel, tree-independent) give the noise of this run",
        "elapsed_s": round(elapsed, 1),
        "host": platform.node(),
        "machine": machine,
        "ratios": {r["metric"]: r["ratio_new_over_old"] for r in rows},
        "above_threshold": flagged,
        "results": rows,
        "runs": runs,
    }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stem = f"revisions_{now.date().isoformat()}_cpu"
        with (RESULTS_DIR / f"{stem}.jsonl").open("a") as fh:
            fh.write(line + "\n")
        with (RESULTS_DIR / f"{stem}.txt").open("a") as fh:
            fh.write(table + "\n\n")
        print(f"appended to {RESULTS_DIR / stem}.jsonl and .txt", file=sys.stderr)


if __name__ == "__main__":
    main()
