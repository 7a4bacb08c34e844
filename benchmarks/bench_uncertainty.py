"""Calibration of NTKRegressor's predictive intervals against a fitted GP.

On regression data sets that are available offline (scikit-learn's bundled
ones, and those shipped inside the ``statsmodels`` and ``mlxtend`` wheels;
a set whose package is missing is skipped and the JSON says so), with
``KFold(5, shuffle=True, random_state=0)`` and ``StandardScaler`` on ``X``
(fitted on each training fold), every model predicts a mean and a standard
deviation on the test fold. Per data set and on average over the sets:

* ``coverage``: the fraction of test targets inside the nominal 95%
  interval ``mean +- 1.96 std`` (target for the NTK: 92% to 97% on average);
* ``nlpd``: the mean negative log predictive density of the test targets
  under ``N(mean, std^2)``, in the units of ``y`` (lower is better; target:
  within 5% of the GP's on average);
* ``nlpd_z``: the same with ``y`` divided by its training-fold standard
  deviation (``nlpd`` minus ``log(std_train)``): comparable across data sets,
  so its average is the stricter comparison (in nats, not in percent);
* ``r2``: the test R^2 of the mean.

Models (in one run):

* ``ntk``: ``NTKRegressor()`` with its defaults (``alpha=1.0``,
  ``normalize_y=True``, ``output_scale="fit"``): predictive ``return_std``;
* ``nngp``: ``NTKRegressor(kernel="nngp")``, the same otherwise;
* ``ntk_evidence``: ``NTKRegressor(alpha=a)`` with ``a`` the maximiser of the
  exact log marginal likelihood of ``z ~ N(0, c (K + a I))`` (``c`` profiled
  out) over ``ALPHAS`` on the training fold, from one eigendecomposition of
  the training kernel (what ``NTKRegressorCV``'s evidence selection does);
* ``gpr``: the baseline,
  ``GaussianProcessRegressor(ConstantKernel() * RBF() + WhiteKernel(),
  normalize_y=True)`` (one optimizer start, scikit-learn's defaults).

Data (rows capped at ``--max-rows``, a fixed random subsample): diabetes
(sklearn), linnerud (sklearn, 3 targets), Boston housing and auto-mpg
(mlxtend), fair, randhie, grunfeld, star98, engel, ccard and statecrime
(statsmodels).

Then, in the same run (``--no-probabilities`` skips it), the classification
part of ``bench_probabilities.py``: the log loss of ``NTKClassifierCV()``'s
``predict_proba`` against ``CalibratedClassifierCV(SVC())`` on 8 offline
classification sets (target: no worse than 5% above on average); its table
and JSON line are printed, and its summary is copied into this JSON line
(``log_loss``).

Usage::

    python benchmarks/bench_uncertainty.py            # about 6 minutes
    python benchmarks/bench_uncertainty.py --save     # append the JSON lines

Prints a table and one JSON line; ``--save`` appends it to
``benchmarks/results/uncertainty_<date>_cpu.jsonl`` and the table to the
``.txt`` beside it.
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
Z95 = 1.959963984540054
ALPHAS = np.logspace(-3, 2, 26)


# -- data ---------------------------------------------------------------------
def _statsmodels(name, target, drop=(), transform=None):
    def load():
        import statsmodels.api as sm

        data = getattr(sm.datasets, name).load_pandas().data
        if transform is not None:
            data = transform(data)
        y = data[target].to_numpy(dtype=float)
        X = data.drop(columns=[target, *drop])
        import pandas as pd

        X = pd.get_dummies(X, dtype=float).to_numpy(dtype=float)
        return X, y

    return load


def _star98(data):
    data = data.copy()
    data["prop_above"] = data["NABOVE"] / (data["NABOVE"] + data["NBELOW"])
    return data.drop(columns=["NABOVE", "NBELOW"])


def _sklearn(name):
    def load():
        from sklearn import datasets

        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        return np.asarray(X, dtype=float), np.asarray(y, dtype=float)

    return load


def _mlxtend(name):
    def load():
        import mlxtend.data

        X, y = getattr(mlxtend.data, f"{name}_data")()
        return np.asarray(X, dtype=float), np.asarray(y, dtype=float)

    return load


DATASETS = {
    "diabetes": _sklearn("diabetes"),
    "linnerud": _sklearn("linnerud"),
    "boston": _mlxtend("boston_housing"),
    "autompg": _mlxtend("autompg"),
    "fair": _statsmodels("fair", "affairs"),
    "randhie": _statsmodels("randhie", "mdvis"),
    "grunfeld": _statsmodels("grunfeld", "invest"),
    "star98": _statsmodels("star98", "prop_above", transform=_star98),
    "engel": _statsmodels("engel", "foodexp"),
    "ccard": _statsmodels("ccard", "AVGEXP"),
    "statecrime": _statsmodels("statecrime", "murder"),
}


# -- models -------------------------------------------------------------------
def evidence_alpha(K, z, alphas=ALPHAS):
    """The ridge maximising the evidence of ``z ~ N(0, c (K + a I))``, ``c`` profiled.

    ``log p = -n/2 log(c) - 1/2 sum log(l_i + a) - n/2`` with
    ``c = sum_i (u_i^T z)^2 / (l_i + a) / n``; one eigendecomposition serves
    every ``a`` (summed over the targets' columns).
    """
    evals, evecs = np.linalg.eigh((K + K.T) / 2)
    proj = (evecs.T @ z.reshape(len(z), -1)) ** 2
    n = len(z)
    best, best_ll = alphas[0], -np.inf
    for a in alphas:
        denom = np.maximum(evals + a, 1e-300)
        c = (proj / denom[:, None]).sum(axis=0) / n
        ll = np.sum(-0.5 * n * np.log(c) - 0.5 * np.sum(np.log(denom)))
        if ll > best_ll:
            best, best_ll = a, ll
    return float(best)


def fit_predict(name, X_train, y_train, X_test):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    from sknetk import NTKRegressor
    from sknetk.kernels import ntk_kernel

    if name == "ntk":
        model = NTKRegressor(device="cpu", n_jobs=1)
    elif name == "nngp":
        model = NTKRegressor(kernel="nngp", device="cpu", n_jobs=1)
    elif name == "ntk_evidence":
        mean = y_train.mean(axis=0)
        std = y_train.std(axis=0)
        z = (y_train - mean) / np.where(std > 0, std, 1.0)
        alpha = evidence_alpha(ntk_kernel(X_train, device="cpu", n_jobs=1), z)
        model = NTKRegressor(alpha=alpha, device="cpu", n_jobs=1)
    else:
        kernel = ConstantKernel() * RBF() + WhiteKernel()
        model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPR's convergence warnings at bounds
        model.fit(X_train, y_train)
        return model.predict(X_test, return_std=True)


def scores(y, mean, std, y_scale):
    """coverage, nlpd (units of y), nlpd_z (standardized), squared errors."""
    y, mean = y.reshape(len(y), -1), mean.reshape(len(y), -1)
    std = np.maximum(std.reshape(len(y), -1), 1e-300)
    inside = np.abs(y - mean) <= Z95 * std
    nlpd = 0.5 * np.log(2 * np.pi * std**2) + 0.5 * ((y - mean) / std) ** 2
    nlpd_z = nlpd - np.log(np.reshape(y_scale, (1, -1)))
    return inside.ravel(), nlpd.ravel(), nlpd_z.ravel()


def run(names, models, max_rows, n_folds=5):
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    rows, skipped = {}, {}
    for name in names:
        try:
            X, y = DATASETS[name]()
        except ImportError as exc:
            skipped[name] = str(exc)
            continue
        rng = np.random.default_rng(0)
        if len(y) > max_rows:
            keep = rng.choice(len(y), size=max_rows, replace=False)
            X, y = X[keep], y[keep]
        X = X[:, np.std(X, axis=0) > 0]
        acc = {
            m: {"inside": [], "nlpd": [], "nlpd_z": [], "se": [], "sst": []}
            for m in models
        }
        seconds = dict.fromkeys(models, 0.0)
        for train, test in KFold(n_folds, shuffle=True, random_state=0).split(X):
            scaler = StandardScaler().fit(X[train])
            X_train, X_test = scaler.transform(X[train]), scaler.transform(X[test])
            y_scale = np.std(y[train], axis=0)
            for m in models:
                start = time.perf_counter()
                mean, std = fit_predict(m, X_train, y[train], X_test)
                seconds[m] += time.perf_counter() - start
                inside, nlpd, nlpd_z = scores(y[test], mean, std, y_scale)
                a = acc[m]
                a["inside"].append(inside)
                a["nlpd"].append(nlpd)
                a["nlpd_z"].append(nlpd_z)
                a["se"].append(((y[test] - mean) ** 2).reshape(len(test), -1))
                a["sst"].append(
                    ((y[test] - y[train].mean(axis=0)) ** 2).reshape(len(test), -1)
                )
        rows[name] = {"n": int(len(y)), "d": int(X.shape[1])}
        for m in models:
            a = acc[m]
            se, sst = np.concatenate(a["se"]), np.concatenate(a["sst"])
            rows[name][m] = {
                "coverage": float(np.mean(np.concatenate(a["inside"]))),
                "nlpd": float(np.mean(np.concatenate(a["nlpd"]))),
                "nlpd_z": float(np.mean(np.concatenate(a["nlpd_z"]))),
                "r2": float(np.mean(1 - se.sum(axis=0) / sst.sum(axis=0))),
                "seconds": round(seconds[m], 3),
            }
    return rows, skipped


def summary(rows, models):
    out = {}
    for m in models:
        out[m] = {
            key: float(np.mean([rows[d][m][key] for d in rows]))
            for key in ("coverage", "nlpd", "nlpd_z", "r2", "seconds")
        }
    base = out.get("gpr")
    if base is not None:
        for m in models:
            out[m]["nlpd_vs_gpr"] = out[m]["nlpd"] / base["nlpd"]
            out[m]["nlpd_z_minus_gpr"] = out[m]["nlpd_z"] - base["nlpd_z"]
    return out


def table(rows, means, models):
    lines = []
    head = f"{'data set':<12}{'n':>6}{'d':>4}"
    for m in models:
        head += f" | {m + ' cov':>15}{'nlpd':>9}{'nlpd_z':>8}{'r2':>7}"
    lines.append(head)
    lines.append("-" * len(head))
    for d, row in rows.items():
        line = f"{d:<12}{row['n']:>6}{row['d']:>4}"
        for m in models:
            r = row[m]
            line += (
                f" | {r['coverage']:>15.3f}{r['nlpd']:>9.3f}"
                f"{r['nlpd_z']:>8.3f}{r['r2']:>7.3f}"
            )
        lines.append(line)
    lines.append("-" * len(head))
    line = f"{'mean':<12}{'':>6}{'':>4}"
    for m in models:
        r = means[m]
        line += (
            f" | {r['coverage']:>15.3f}{r['nlpd']:>9.3f}"
            f"{r['nlpd_z']:>8.3f}{r['r2']:>7.3f}"
        )
    lines.append(line)
    if "gpr" in means:
        for m in models:
            if m != "gpr":
                ratio, diff = means[m]["nlpd_vs_gpr"], means[m]["nlpd_z_minus_gpr"]
                lines.append(
                    f"{m}: mean NLPD / GPR's = {ratio:.3f}; "
                    f"standardized NLPD - GPR's = {diff:+.3f} nats"
                )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument(
        "--models", nargs="*", default=["ntk", "nngp", "ntk_evidence", "gpr"]
    )
    parser.add_argument("--max-rows", type=int, default=1000)
    parser.add_argument("--save", action="store_true")
    parser.add_argument(
        "--no-probabilities",
        action="store_true",
        help="skip the classification part (log loss of NTKClassifierCV against "
        "CalibratedClassifierCV(SVC()), bench_probabilities.py) run after the "
        "regression part",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import sklearn

    import sknetk

    start = time.perf_counter()
    rows, skipped = run(args.datasets, args.models, args.max_rows)
    means = summary(rows, args.models)
    text = table(rows, means, args.models)
    print(text)
    record = {
        "benchmark": "uncertainty",
        "date": datetime.date.today().isoformat(),
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "sknetk": getattr(sknetk, "__version__", "?"),
        "sklearn": sklearn.__version__,
        "device": "cpu",
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "dtype": "float64",
        "cv": "KFold(5, shuffle=True, random_state=0)",
        "max_rows": args.max_rows,
        "baseline": "GaussianProcessRegressor(ConstantKernel()*RBF()+WhiteKernel(), "
        "normalize_y=True)",
        "datasets": rows,
        "skipped": skipped,
        "mean": means,
    }
    if not args.no_probabilities:
        # the same run: coverage and NLPD above, log loss of the probabilities
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_probabilities

        probabilities = bench_probabilities.main(["--save"] if args.save else [])
        record["log_loss"] = probabilities["summary"]
        record["log_loss_baseline"] = probabilities["baseline"]
    record["seconds"] = round(time.perf_counter() - start, 1)
    line = json.dumps(record)
    print(line)
    if args.save:
        stem = f"uncertainty_{datetime.date.today().isoformat()}_cpu"
        with open(RESULTS_DIR / f"{stem}.jsonl", "a") as f:
            f.write(line + "\n")
        with open(RESULTS_DIR / f"{stem}.txt", "a") as f:
            f.write(text + "\n\n")
    return record


if __name__ == "__main__":
    main()
