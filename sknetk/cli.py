"""The ``sknetk`` command line: ``sknetk compare`` and ``sknetk info``.

``sknetk compare`` cross-validates infinite-width network models (NTK, NNGP)
next to scikit-learn baselines on a bundled data set or a CSV file and prints
a table; ``sknetk info`` reports versions, GPU availability and the memory
budget. Bad input (a missing file, a missing target column, a target with a
single class, ...) ends with a one-line message on standard error and exit
code 2.
"""

import argparse
import importlib
import inspect
import json
import math
import platform
import sys
import time
import warnings

__all__ = ["main", "DATASETS", "MODELS"]

#: Data sets that ship with scikit-learn (no download): name -> (loader, task).
DATASETS = {
    "breast_cancer": ("load_breast_cancer", "classification"),
    "iris": ("load_iris", "classification"),
    "wine": ("load_wine", "classification"),
    "digits": ("load_digits", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
DEFAULT_DATASET = "breast_cancer"

#: Model names accepted by ``--models`` and what they stand for.
MODELS = {
    "ntk": "NTK of a wide ReLU network; ridge and depth chosen by leave-one-out",
    "nngp": "the same with the NNGP kernel (only the readout layer trained)",
    "rf": "RandomForest (100 trees)",
    "mlp": "MLP (one hidden layer of 100 ReLU units, Adam, up to 500 epochs)",
    "svm": "RBF support vector machine (SVC or SVR, C=1)",
    "krr-rbf": "RBF KernelRidge (alpha=1; regression only)",
    "ridge": "linear Ridge / RidgeClassifier (alpha=1)",
    "knn": "5 nearest neighbours",
    "dummy": "predicts the mean / the most frequent class",
}
_ALIASES = {"svc": "svm", "svr": "svm", "krr": "krr-rbf", "random_forest": "rf"}
DEFAULT_MODELS = {
    "classification": ("ntk", "nngp", "rf", "svm", "mlp"),
    "regression": ("ntk", "nngp", "rf", "svm", "krr-rbf", "mlp"),
}
_DEFAULT_SCORING = {"classification": "accuracy", "regression": "r2"}
_NTK_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
# Without biases a ReLU network is positively homogeneous, f(c x) = c f(x),
# which hurts on low-dimensional standardized data (iris: 0.90 vs 0.95).
_NTK_BIAS_STD = 0.1
# A numeric target with more distinct integer values than this is regression.
_MAX_AUTO_CLASSES = 20


class CLIError(Exception):
    """A problem with the user's input: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def _load_bundled(name):
    """Return ``(X, y, task, description)`` for a bundled scikit-learn set."""
    if name not in DATASETS:
        raise CLIError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))} "
            "or pass --csv PATH --target COLUMN."
        )
    import sklearn.datasets

    loader, task = DATASETS[name]
    X, y = getattr(sklearn.datasets, loader)(return_X_y=True, as_frame=True)
    return X, y, task, name


def _read_csv(path, target, drop):
    """Read a CSV file and split off the target column."""
    import os

    if not os.path.exists(path):
        raise CLIError(f"file not found: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a CSV file")
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise CLIError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CLIError(f"could not parse {path} as CSV: {first}") from None
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:10]))
        more = ", ..." if frame.shape[1] > 10 else ""
        raise CLIError(
            f"target column {target!r} not found in {path}; columns are: "
            f"{shown}{more}"
        )
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise CLIError(f"--drop: column(s) not found in {path}: {', '.join(missing)}")
    y = frame[target]
    X = frame.drop(columns=[target, *drop])
    return X, y


def _infer_task(y):
    """``"classification"`` or ``"regression"`` from the target's values."""
    import pandas as pd
    from sklearn.utils.multiclass import type_of_target

    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    kind = type_of_target(y.to_numpy())
    if kind == "continuous":
        return "regression"
    return "classification" if y.nunique() <= _MAX_AUTO_CLASSES else "regression"


def _check_target(y, task, cv):
    """Validate the target for ``task``; return it as a NumPy array."""
    import pandas as pd

    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
            raise CLIError(
                f"target {y.name!r} is not numeric, so it cannot be used for "
                "regression; use --task classification."
            )
        return y.to_numpy(dtype=float)
    from ._base import plain_labels

    counts = y.value_counts()
    labels = plain_labels(counts.index)  # 1, not np.int64(1)
    if len(counts) < 2:
        raise CLIError(
            f"target {y.name!r} has a single class ({labels[0]!r}); "
            "classification needs at least two."
        )
    if pd.api.types.is_float_dtype(y) and not (y == y.round()).all():
        raise CLIError(
            f"target {y.name!r} has non-integer numbers, which look like a "
            "regression target; use --task regression."
        )
    if counts.min() < cv:
        raise CLIError(
            f"class {labels[int(counts.argmin())]!r} of target {y.name!r} has only "
            f"{counts.min()} samples, fewer than --cv={cv} folds; lower --cv."
        )
    return y.to_numpy()


def _prepare(args):
    """Load the data named by ``args``; return ``(X, y, task, info)``."""
    if args.csv is not None:
        if args.dataset is not None:
            raise CLIError("pass either --dataset or --csv, not both.")
        if args.target is None:
            raise CLIError("--csv needs --target COLUMN (the column to predict).")
        X, y = _read_csv(args.csv, args.target, args.drop)
        inferred, name = _infer_task(y.dropna()), args.csv
    else:
        if args.target is not None or args.drop:
            raise CLIError("--target and --drop go with --csv.")
        X, y, inferred, name = _load_bundled(args.dataset or DEFAULT_DATASET)
    task = inferred if args.task == "auto" else args.task
    notes = []
    keep = y.notna().to_numpy()
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} rows with a missing target")
        X, y = X.loc[keep], y.loc[keep]
    if len(y) == 0:
        raise CLIError(f"{name} has no rows with a target value.")
    if X.shape[1] == 0:
        raise CLIError(f"{name} has no feature columns besides the target.")
    if args.max_samples is not None and len(y) > args.max_samples:
        notes.append(f"subsampled {args.max_samples} of {len(y)} rows")
        X = X.sample(n=args.max_samples, random_state=args.random_state)
        y = y.loc[X.index]
    if len(y) < args.cv:
        raise CLIError(f"{name} has {len(y)} rows, fewer than --cv={args.cv} folds.")
    y = _check_target(y, task, args.cv)
    X, column_notes = _check_features(X, args.max_categories)
    notes.extend(column_notes)
    info = {
        "dataset": name,
        "task": task,
        "n_samples": int(X.shape[0]),
        "n_columns": int(X.shape[1]),
        "notes": notes,
    }
    if task == "classification":
        info["n_classes"] = int(len(set(y.tolist())))
    return X, y, task, info


def _check_features(X, max_categories):
    """Reject unusable columns; return X and notes on what will be done."""
    import pandas as pd

    notes = []
    categorical = [c for c in X.columns if not _is_numeric(X[c])]
    for col in categorical:
        n = X[col].nunique()
        if n > max_categories:
            raise CLIError(
                f"column {col!r} is not numeric and has {n} distinct values, more "
                f"than --max-categories={max_categories}; drop it with --drop "
                f"{col!r}, encode it yourself, or raise --max-categories."
            )
    all_missing = [c for c in X.columns if X[c].isna().all()]
    if all_missing:
        raise CLIError(
            f"column(s) with no values at all: {', '.join(map(str, all_missing))}; "
            "drop them with --drop."
        )
    if categorical:
        notes.append(f"one-hot encoded {len(categorical)} non-numeric column(s)")
    n_missing = int(X.isna().to_numpy().sum())
    if n_missing:
        notes.append(f"imputed {n_missing} missing feature values")
    # Booleans become numbers so that they are scaled like other numeric columns.
    X = X.apply(lambda s: s.astype(float) if pd.api.types.is_bool_dtype(s) else s)
    return X, notes


def _is_numeric(series):
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _preprocessor(X):
    """Column-wise preprocessing fitted inside each fold: impute, scale, one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if _is_numeric(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    has_missing = bool(X.isna().to_numpy().any())
    num_steps = [SimpleImputer(strategy="median")] if has_missing else []
    transformers = [("num", make_pipeline(*num_steps, StandardScaler()), numeric)]
    if categorical:
        cat = make_pipeline(
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        )
        transformers.append(("cat", cat, categorical))
    return ColumnTransformer(transformers, verbose_feature_names_out=False)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
def _parse_models(text, task):
    if text is None:
        return list(DEFAULT_MODELS[task])
    names = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        name = _ALIASES.get(name, name)
        if name not in MODELS:
            raise CLIError(
                f"unknown model {raw.strip()!r}; choose from {', '.join(MODELS)}."
            )
        if name == "krr-rbf" and task == "classification":
            raise CLIError(
                "krr-rbf (KernelRidge) is a regressor; for classification use svm."
            )
        if name not in names:
            names.append(name)
    if not names:
        raise CLIError("--models is empty.")
    return names


def _accepted(cls, **params):
    """Keep the keyword arguments that ``cls.__init__`` accepts."""
    signature = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in params.items() if k in signature})


def _ntk_estimator(kernel, task, args):
    """The CV estimator when it exists, else the plain estimator."""
    classification = task == "classification"
    cv_name = "NTKClassifierCV" if classification else "NTKRegressorCV"
    plain_name = "NTKClassifier" if classification else "NTKRegressor"
    params = {
        "kernel": kernel,
        "bias_std": _NTK_BIAS_STD,
        "device": args.device,
        "n_jobs": args.n_jobs,
    }
    # The CV estimators search ridges relative to the kernel's scale (which
    # grows with depth) over five orders of magnitude, and depths 1 to 5.
    cv_params = {"alphas": _NTK_ALPHAS, "alpha_scale": "mean_diag"}
    plain_module = "sknetk._classification" if classification else "sknetk._regression"
    for module, name in (("sknetk._cv", cv_name), (plain_module, plain_name)):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        extra = cv_params if name == cv_name else {}
        return _accepted(cls, **params, **extra), name
    raise CLIError(f"model {kernel!r} needs sknetk.{plain_name}, which is missing.")


def _make_model(name, task, args):
    """Return ``(estimator, description)`` for a model name."""
    from sklearn import (
        dummy,
        ensemble,
        kernel_ridge,
        linear_model,
        neighbors,
        neural_network,
        svm,
    )

    classification = task == "classification"
    seed = args.random_state
    if name in ("ntk", "nngp"):
        est, cls_name = _ntk_estimator(name, task, args)
        return est, f"{cls_name}(kernel={name!r})"
    if name == "rf":
        cls = (
            ensemble.RandomForestClassifier
            if classification
            else ensemble.RandomForestRegressor
        )
        est = cls(n_estimators=100, random_state=seed, n_jobs=args.n_jobs)
    elif name == "mlp":
        cls = (
            neural_network.MLPClassifier
            if classification
            else neural_network.MLPRegressor
        )
        est = cls(hidden_layer_sizes=(100,), max_iter=500, random_state=seed)
    elif name == "svm":
        est = svm.SVC() if classification else svm.SVR()
    elif name == "krr-rbf":
        est = kernel_ridge.KernelRidge(alpha=1.0, kernel="rbf")
    elif name == "ridge":
        est = linear_model.RidgeClassifier() if classification else linear_model.Ridge()
    elif name == "knn":
        est = (
            neighbors.KNeighborsClassifier()
            if classification
            else neighbors.KNeighborsRegressor()
        )
    else:  # dummy
        est = (
            dummy.DummyClassifier(strategy="most_frequent")
            if classification
            else dummy.DummyRegressor()
        )
    return est, type(est).__name__


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------
def _splitter(task, cv, seed):
    from sklearn.model_selection import KFold, StratifiedKFold

    cls = StratifiedKFold if task == "classification" else KFold
    return cls(n_splits=cv, shuffle=True, random_state=seed)


def _evaluate(models, X, y, task, scorer, args):
    """Cross-validate every model; return one result dict per model."""
    from sklearn.base import clone
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ._progress import progress

    splits = list(_splitter(task, args.cv, args.random_state).split(X, y))
    pre = _preprocessor(X)
    results = {
        name: {
            "model": name,
            "estimator": desc,
            "scores": [],
            "fit_time": [],
            "predict_time": [],
            "error": None,
            "warnings": 0,
        }
        for name, (_, desc) in models.items()
    }
    jobs = [(name, fold) for name in models for fold in range(len(splits))]
    for name, fold in progress(jobs, desc="compare", verbose=args.verbose):
        res = results[name]
        if res["error"] is not None:
            continue
        train, test = splits[fold]
        est = make_pipeline(clone(pre), clone(models[name][0]))
        if task == "regression":
            # Standardized targets: kernel models have no intercept, and the
            # MLP and SVR defaults assume targets of unit scale.
            est = TransformedTargetRegressor(est, transformer=StandardScaler())
        X_train, X_test = X.iloc[train], X.iloc[test]
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                start = time.perf_counter()
                est.fit(X_train, y[train])
                fitted = time.perf_counter()
                score = scorer(est, X_test, y[test])
                done = time.perf_counter()
        except Exception as exc:  # report the model's failure, go on with others
            msg = str(exc).strip().splitlines()
            res["error"] = f"{type(exc).__name__}: {msg[0] if msg else ''}"
            continue
        res["warnings"] += sum(
            issubclass(w.category, ConvergenceWarning) for w in caught
        )
        res["scores"].append(float(score))
        res["fit_time"].append(fitted - start)
        res["predict_time"].append(done - fitted)
    out = []
    for res in results.values():
        scores = res["scores"]
        res["mean"] = _mean(scores)
        res["std"] = _std(scores)
        res["mean_fit_time"] = _mean(res.pop("fit_time"))
        res["mean_predict_time"] = _mean(res.pop("predict_time"))
        out.append(res)
    return out


def _mean(values):
    return sum(values) / len(values) if values else math.nan


def _std(values):
    if not values:
        return math.nan
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def _format_table(results, scoring):
    """Plain-text table, one row per model."""
    header = ["model", "estimator", f"{scoring} mean", "std", "fit (s)", "predict (s)"]
    rows = []
    for r in results:
        if r["error"] is not None:
            rows.append([r["model"], r["estimator"], "failed", "", "", ""])
            continue
        rows.append(
            [
                r["model"],
                r["estimator"],
                f"{r['mean']:.4f}",
                f"{r['std']:.4f}",
                f"{r['mean_fit_time']:.3f}",
                f"{r['mean_predict_time']:.3f}",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {0, 1}

    def fmt(row):
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    return "\n".join(lines)


def _plot(results, info, scoring, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    ok = [r for r in results if r["error"] is None]
    names = [r["model"] for r in ok]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 0.5 * len(ok) + 1.8))
    pos = list(range(len(ok)))
    ax1.errorbar(
        [r["mean"] for r in ok], pos, xerr=[r["std"] for r in ok], fmt="o", capsize=4
    )
    ax1.set_yticks(pos, names)
    ax1.set_ylim(len(ok) - 0.5, -0.5)
    ax1.grid(axis="x", alpha=0.3)
    ax1.set_xlabel(f"{scoring} ({info['cv']}-fold CV, mean and std)")
    ax2.barh(pos, [r["mean_fit_time"] for r in ok], color="C1")
    ax2.set_ylim(len(ok) - 0.5, -0.5)
    ax2.set_xlabel("fit time per fold (s)")
    ax2.set_xscale("log")
    ax2.set_yticks(pos, [""] * len(ok))
    fig.suptitle(f"{info['dataset']}: {info['n_samples']} samples, {info['task']}")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise CLIError(f"could not write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _compare(args, out):
    if args.cv < 2:
        raise CLIError(f"--cv must be at least 2, got {args.cv}.")
    from ._device import check_device, gpu_available

    try:
        check_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.device == "gpu" and not gpu_available():
        raise CLIError(
            '--device gpu needs CuPy and a CUDA device; see "sknetk info".'
        )
    X, y, task, info = _prepare(args)
    from sklearn.metrics import get_scorer

    scoring = args.scoring or _DEFAULT_SCORING[task]
    try:
        scorer = get_scorer(scoring)
    except ValueError:
        raise CLIError(
            f"unknown --scoring {scoring!r}; see sklearn.metrics.get_scorer_names()."
        ) from None
    names = _parse_models(args.models, task)
    models = {name: _make_model(name, task, args) for name in names}
    info.update(cv=args.cv, scoring=scoring)
    classes = f", {info['n_classes']} classes" if "n_classes" in info else ""
    print(
        f"Dataset: {info['dataset']} ({info['n_samples']} samples, "
        f"{info['n_columns']} columns, {task}{classes})",
        file=out,
    )
    if {"ntk", "nngp"} & set(names):
        # The leave-one-out search holds max(depths) + 3 kernels of n x n.
        n_train = info["n_samples"] * (args.cv - 1) // args.cv
        gib = (5 + 3) * 8 * n_train**2 / 2**30
        if gib > 2:
            info["notes"].append(
                f"the ntk/nngp models need about {gib:.0f} GiB per fold; "
                "lower it with --max-samples"
            )
    for note in info["notes"]:
        print(f"Note: {note}", file=out)
    print(
        f"{args.cv}-fold cross-validation, scoring={scoring}, features "
        + ("and target " if task == "regression" else "")
        + "standardized inside each fold",
        file=out,
    )
    start = time.perf_counter()
    results = _evaluate(models, X, y, task, scorer, args)
    info["total_seconds"] = time.perf_counter() - start
    print(file=out)
    print(_format_table(results, scoring), file=out)
    for r in results:
        if r["warnings"]:
            print(
                f"Note: {r['model']}: {r['warnings']} ConvergenceWarning(s) "
                "in the folds (not shown)",
                file=out,
            )
        if r["error"] is not None:
            print(f"Error: {r['model']} failed: {r['error']}", file=out)
    print(f"Total time: {info['total_seconds']:.1f} s", file=out)
    if args.json is not None:
        payload = {**info, "results": results}
        try:
            with open(args.json, "w") as fh:
                json.dump(payload, fh, indent=2, default=_json_default)
        except OSError as exc:
            raise CLIError(f"could not write {args.json}: {exc.strerror}") from None
    if args.plot is not None:
        _plot(results, info, scoring, args.plot)
    return 1 if any(r["error"] is not None for r in results) else 0


def _json_default(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return str(obj)


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
def _version(module):
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return "not installed"
    except Exception as exc:  # a broken install (e.g. CuPy without CUDA libraries)
        return f"fails to import ({type(exc).__name__})"
    return str(getattr(mod, "__version__", "unknown"))


def _info(args, out):
    from sklearn import get_config

    from . import __version__
    from ._device import _probe_cupy

    rows = [
        ("sknetk", __version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
    ]
    for module, label in (
        ("numpy", "numpy"),
        ("scipy", "scipy"),
        ("sklearn", "scikit-learn"),
        ("joblib", "joblib"),
        ("array_api_compat", "array-api-compat"),
        ("tqdm", "tqdm"),
        ("cupy", "cupy"),
    ):
        rows.append((label, _version(module)))
    cupy, reason = _probe_cupy()
    if cupy is None:
        rows.append(("GPU", f"not available: {reason}"))
    else:
        try:
            props = cupy.cuda.runtime.getDeviceProperties(0)
            name = props["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            n = cupy.cuda.runtime.getDeviceCount()
            rows.append(("GPU", f"available: {n} device(s), device 0 is {name}"))
        except Exception:  # pragma: no cover - depends on the machine
            rows.append(("GPU", "available"))
    import joblib

    rows.append(("CPU cores", str(joblib.cpu_count())))
    rows.append(
        (
            "memory budget",
            f"{get_config()['working_memory']} MiB per kernel computation "
            "(sklearn.set_config(working_memory=...) or working_memory=...)",
        )
    )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}", file=out)
    return 0


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def _parser():
    parser = argparse.ArgumentParser(
        prog="sknetk",
        description=(
            "Infinite-width neural network kernels (NTK, NNGP) as scikit-learn "
            "estimators."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="{compare,info}")
    models = "\n".join(f"  {name:8s} {text}" for name, text in MODELS.items())
    cmp = sub.add_parser(
        "compare",
        help="cross-validate NTK/NNGP models next to scikit-learn baselines",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Cross-validate infinite-width network models next to scikit-learn\n"
            "baselines; print the mean and std of the score and the fit and\n"
            f"predict times. Without --dataset or --csv, runs on {DEFAULT_DATASET}."
        ),
        epilog=(
            f"models (NTK/NNGP tune themselves; baselines keep their defaults):\n"
            f"{models}\n\n"
            "examples:\n"
            "  sknetk compare\n"
            "  sknetk compare --dataset diabetes --cv 10 --plot compare.png\n"
            "  sknetk compare --csv data.csv --target price --drop id\n"
            "  sknetk compare --dataset digits --models ntk,svm --device gpu"
        ),
    )
    data = cmp.add_argument_group("data")
    data.add_argument(
        "--dataset",
        metavar="NAME",
        help=f"bundled data set: {', '.join(DATASETS)} (default {DEFAULT_DATASET})",
    )
    data.add_argument("--csv", metavar="PATH", help="a CSV file with a header row")
    data.add_argument("--target", metavar="COLUMN", help="the CSV column to predict")
    data.add_argument(
        "--drop",
        metavar="COLUMNS",
        default="",
        type=lambda s: [c for c in s.split(",") if c],
        help="comma-separated CSV columns to ignore (e.g. identifiers)",
    )
    data.add_argument(
        "--task",
        choices=("auto", "classification", "regression"),
        default="auto",
        help=(
            "auto: classification for non-numeric targets and integer targets "
            f"with at most {_MAX_AUTO_CLASSES} values, else regression"
        ),
    )
    data.add_argument(
        "--max-categories",
        type=int,
        default=30,
        metavar="N",
        help="reject non-numeric columns with more distinct values (default 30)",
    )
    data.add_argument(
        "--max-samples",
        type=int,
        default=None,
        metavar="N",
        help="randomly subsample this many rows (kernel models need O(n^2) memory)",
    )
    run = cmp.add_argument_group("evaluation")
    run.add_argument(
        "--models",
        metavar="LIST",
        help=(
            "comma-separated models from: " + ", ".join(MODELS) + " (default "
            + ",".join(DEFAULT_MODELS["classification"]) + " for classification, "
            + ",".join(DEFAULT_MODELS["regression"]) + " for regression)"
        ),
    )
    run.add_argument("--cv", type=int, default=5, help="number of folds (default 5)")
    run.add_argument(
        "--scoring", help="a scikit-learn scorer name (default accuracy or r2)"
    )
    run.add_argument(
        "--device",
        default="auto",
        help="auto, cpu or gpu: where NTK/NNGP kernels are computed (default auto)",
    )
    run.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        help="threads for the kernels and the random forest (default -1: all)",
    )
    run.add_argument(
        "--random-state", type=int, default=0, help="seed for folds and models"
    )
    output = cmp.add_argument_group("output")
    output.add_argument("--plot", metavar="FILE.png", help="save a bar chart")
    output.add_argument("--json", metavar="FILE", help="save the results as JSON")
    verbosity = output.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-q",
        "--quiet",
        dest="verbose",
        action="store_const",
        const=0,
        help="no progress bar",
    )
    verbosity.add_argument(
        "-v",
        "--verbose",
        dest="verbose",
        action="store_const",
        const=1,
        help="progress bar on standard error (the default)",
    )
    cmp.set_defaults(verbose=1, handler=_compare)
    info = sub.add_parser(
        "info", help="versions, GPU availability and the memory budget"
    )
    info.set_defaults(handler=_info)
    return parser


def main(argv=None):
    """Run the ``sknetk`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 1 when a model failed during
        ``compare``, 2 for invalid input (reported in one line on stderr).

    Examples
    --------
    >>> from sknetk.cli import main
    >>> main(["info"])
    sknetk ...
    0
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args, sys.stdout)
    except CLIError as exc:
        print(f"sknetk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sknetk {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. ``sknetk compare | head``: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
