"""Fit + predict micro-benchmark of ``NTKRegressor`` and ``NTKClassifier`` on the CPU.

Times one ``fit`` and one ``predict`` of

* ``NTKRegressor(solver="cholesky", depth=3)`` on synthetic regression data
  (``n_train`` rows, ``d = 20`` features, ``n_test = n_train``) for
  ``n_train`` in ``--sizes`` (default 2,000 and 10,000);
* ``NTKClassifier(solver="cholesky", depth=3)`` on a three-class
  ``make_classification`` set at ``n_train = 2,000`` (``--clf-sizes``),

each in two configurations:

``like``
    The same work in every revision (the headline). The regressor gets
    ``normalize_y=False`` and ``output_scale=1.0`` where the installed version
    has those parameters (releases before them neither standardized the
    targets nor fitted an output scale). ``NTKClassifier.fit`` calibrates its
    probabilities by leave-one-out temperature scaling in releases after
    ``e304cea``, with no parameter to turn it off; for this configuration the
    script replaces that step by a no-op (``calibration_stubbed`` in the
    JSON: the private hooks ``NTKClassifier._loo_decision`` and
    ``sknetk._classification.fit_temperature``), so both revisions time the
    one-vs-all ridge fit and ``predict`` only. Where a version has no such hooks
    (``e304cea``), nothing is replaced.
``defaults``
    Default parameters (plus ``solver="cholesky"``, ``depth=3``): what a
    user gets, behaviour changes included.

Every other parameter is left at its default (ReLU, ``weight_std=1``,
``bias_std=0``, ``alpha=1``, ``n_jobs=-1``, ``device="auto"``, which is the
CPU without CuPy). Only API that ``e304cea`` already had is used, so the
script runs against both revisions (``bench_revisions.py`` does that).

Before timing, each configuration is fitted and predicted once on 200 rows
(the numba tile compiles or loads its cache, BLAS threads start). Reported
per row: the median over ``--repeat`` runs of ``fit``, ``predict`` and their
sum (``fit+predict``, the median of the per-run sums), and the load average
of the machine at the start and the end.

Usage::

    python benchmarks/bench_fit_predict.py                  # 2,000 and 10,000
    python benchmarks/bench_fit_predict.py --sizes 2000 --repeat 5
    python benchmarks/bench_fit_predict.py --save

Prints a table and one JSON line; ``--save`` appends the JSON line to
``benchmarks/results/fit_predict_<date>_cpu.jsonl``. Memory: the n x n
training kernel and its factor (``8 n^2`` bytes each, 0.8 GB at n = 10,000)
plus the test kernel in tiles of ``working_memory``.
"""

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
N_FEATURES = 20
DEPTH = 3
N_CLASSES = 3
N_WARMUP = 200
CONFIGS = ("like", "defaults")

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def machine_info():
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import sknetk

    np.ones((2, 2)) @ np.ones((2, 2))  # load BLAS
    blas = [
        {
            k: lib.get(k)
            for k in ("internal_api", "version", "num_threads", "architecture")
        }
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "numba": numba_version,
        "sknetk": sknetk.__version__,
        "sknetk_path": str(Path(sknetk.__file__).resolve().parent),
        "blas": blas,
    }


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def regression_data(n, seed=0):
    """``2n`` rows: ``y = sin(X w) + 0.1 noise``, split in halves."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2 * n, N_FEATURES))
    w = rng.standard_normal(N_FEATURES) / np.sqrt(N_FEATURES)
    y = np.sin(X @ w) + 0.1 * rng.standard_normal(2 * n)
    return X[:n], y[:n], X[n:], y[n:]


def classification_data(n, seed=0):
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=2 * n,
        n_features=N_FEATURES,
        n_informative=10,
        n_classes=N_CLASSES,
        random_state=seed,
    )
    return X[:n], y[:n], X[n:], y[n:]


def estimator_params(cls, config):
    """Explicit parameters of ``cls`` for ``config`` (only those it accepts)."""
    params = {"solver": "cholesky", "depth": DEPTH}
    if config == "like" and cls.__name__ == "NTKRegressor":
        known = cls().get_params()
        params.update(
            {
                k: v
                for k, v in (("normalize_y", False), ("output_scale", 1.0))
                if k in known
            }
        )
    return params


@contextlib.contextmanager
def calibration_stubbed(cls, active):
    """Make ``NTKClassifier.fit``'s LOO calibration a no-op, if it has one.

    Yields whether anything was replaced. Restores the hooks on exit.
    """
    import importlib

    module = importlib.import_module(cls.__module__)
    hooks = hasattr(cls, "_loo_decision") and hasattr(module, "fit_temperature")
    if not (active and hooks):
        yield False
        return
    original_loo = cls.__dict__.get("_loo_decision")
    original_fit = module.fit_temperature

    def no_loo(self, X, Y, sample_weight):
        return None, Y, sample_weight

    def no_temperature(loo, Y, w):
        return types.SimpleNamespace(slope=1.0)

    cls._loo_decision = no_loo
    module.fit_temperature = no_temperature
    try:
        yield True
    finally:
        if original_loo is None:
            del cls._loo_decision
        else:
            cls._loo_decision = original_loo
        module.fit_temperature = original_fit


def time_once(make, X, y, X_test):
    gc.collect()
    t0 = time.perf_counter()
    model = make().fit(X, y)
    t1 = time.perf_counter()
    pred = model.predict(X_test)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, model, pred


def bench_row(task, cls, n, config, repeat):
    data = regression_data if task == "regression" else classification_data
    X, y, X_test, y_test = data(n)
    params = estimator_params(cls, config)

    def make():
        return cls(**params)

    with calibration_stubbed(cls, config == "like") as stubbed:
        Xw, yw, Xw_test, _ = data(N_WARMUP, seed=1)
        time_once(make, Xw, yw, Xw_test)  # warm up: numba, BLAS threads
        fits, predicts, totals = [], [], []
        for _ in range(repeat):
            t_fit, t_pred, model, pred = time_once(make, X, y, X_test)
            fits.append(t_fit)
            predicts.append(t_pred)
            totals.append(t_fit + t_pred)
            del model
    if task == "regression":
        resid, spread = y_test - pred, y_test - y_test.mean()
        score = 1.0 - float(resid @ resid) / float(spread @ spread)
    else:
        score = float(np.mean(pred == y_test))
    return {
        "estimator": cls.__name__,
        "config": config,
        "n_train": n,
        "n_test": n,
        "d": N_FEATURES,
        "params": params,
        "calibration_stubbed": stubbed,
        "seconds_fit": statistics.median(fits),
        "seconds_predict": statistics.median(predicts),
        "seconds_fit_predict": statistics.median(totals),
        "seconds_fit_predict_all": totals,
        "score": score,
        "score_name": "r2" if task == "regression" else "accuracy",
    }


def print_table(rows):
    header = (
        f"{'estimator':<14} {'config':<9} {'n':>6} {'fit s':>8} "
        f"{'predict s':>9} {'fit+predict s':>13} {'score':>7}  notes"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        notes = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        if r["calibration_stubbed"]:
            notes += ", calibration stubbed"
        print(
            f"{r['estimator']:<14} {r['config']:<9} {r['n_train']:>6} "
            f"{r['seconds_fit']:>8.3f} {r['seconds_predict']:>9.3f} "
            f"{r['seconds_fit_predict']:>13.3f} {r['score']:>7.4f}  {notes}"
        )


def parse_sizes(text):
    sizes = [int(s) for s in text.split(",") if s.strip()]
    if any(s < 10 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be >= 10")
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[2000, 10000],
        help="NTKRegressor training sizes, comma-separated (default 2000,10000)",
    )
    parser.add_argument(
        "--clf-sizes",
        type=parse_sizes,
        default=[2000],
        help="NTKClassifier training sizes (default 2000; '' for none)",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help="comma-separated subset of 'like,defaults' (default both)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per row; the median counts"
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="append the JSON line to benchmarks/results/",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    configs = [c for c in args.configs.split(",") if c]
    if not configs or any(c not in CONFIGS for c in configs):
        parser.error(f"--configs must be a subset of {','.join(CONFIGS)}")

    from sknetk import NTKClassifier, NTKRegressor

    load_start = load_average()
    rows = []
    jobs = [("regression", NTKRegressor, n) for n in args.sizes]
    jobs += [("classification", NTKClassifier, n) for n in args.clf_sizes]
    for task, cls, n in jobs:
        for config in configs:
            rows.append(bench_row(task, cls, n, config, args.repeat))
            print(
                f"done {cls.__name__} {config} n={n} "
                f"({rows[-1]['seconds_fit_predict']:.2f} s)",
                file=sys.stderr,
                flush=True,
            )
    print_table(rows)
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {
        "benchmark": "bench_fit_predict",
        "date": now.isoformat(timespec="seconds"),
        "device": "cpu",
        "dtype": "float64",
        "d": N_FEATURES,
        "depth": DEPTH,
        "repeat": args.repeat,
        "statistic": "median",
        "warmup_rows": N_WARMUP,
        "data": {
            "regression": "y = sin(X w) + 0.1 noise, X ~ N(0, 1), seed 0",
            "classification": f"make_classification({N_CLASSES} classes, "
            "10 informative, random_state=0)",
        },
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "machine": machine_info(),
        "results": rows,
    }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"fit_predict_{now.date().isoformat()}_cpu.jsonl"
        with path.open("a") as fh:
            fh.write(line + "\n")
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
