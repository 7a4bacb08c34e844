"""The ``sknetk`` command line: ``sknetk compare`` and ``sknetk info``.

``sknetk compare`` cross-validates infinite-width network models (NTK, NNGP)
next to scikit-learn baselines on a bundled data set or a CSV file and prints
a table; ``sknetk info`` reports versions, GPU availability and the memory
budget and the BLAS in use. Both need only sknetk's core dependencies (CSV
files are read with the standard library's ``csv``; matplotlib only for
``--plot``). Bad input (a missing file, a missing target column, a target with
a single class, an invalid option or output path, ...) ends with a one-line
message on standard error and exit code 2, and options and output paths are
checked before any data is loaded.
"""

import argparse
import importlib
import json
import math
import numbers
import os
import platform
import sys
import time
import warnings

from . import __version__
from ._base import plain_labels
from ._cv import NTKClassifierCV, NTKRegressorCV
from ._device import _probe_cupy, check_device, gpu_available
from ._progress import progress

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
# Data (NumPy and the standard library only: pandas is not a dependency)
# ---------------------------------------------------------------------------
# Cells that pandas.read_csv reads as missing by default; the same here.
_NA_TOKENS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
# A numeric column whose largest magnitude is outside 2**-256 .. 2**256 (about
# 1e-77 .. 1e77) is rescaled by a power of two before standardization: the
# squares in the variance would otherwise overflow (1e200**2 is inf, and the
# features become NaN) or lose their digits to underflow.
_MAX_EXPONENT = 256
# Regression targets are scored on their own scale, where squares must stay
# finite and normal: magnitudes outside 1e-100 .. 1e100 are rejected.
_TARGET_RANGE = (1e-100, 1e100)


class _Table:
    """Named feature columns of one length.

    A column is float64 (numbers; ``NaN`` marks a missing value) or object
    (text; ``float("nan")`` marks a missing value, as scikit-learn's imputers
    expect).
    """

    def __init__(self, names, columns, n_rows):
        self.names = list(names)
        self.columns = list(columns)
        self.n_rows = int(n_rows)

    def is_numeric(self, j):
        return self.columns[j].dtype.kind == "f"

    def take(self, rows):
        """The table restricted to ``rows`` (a boolean mask or indices)."""
        columns = [col[rows] for col in self.columns]
        n = int(rows.sum()) if rows.dtype == bool else len(rows)
        return _Table(self.names, columns, n)

    def to_array(self):
        """A 2-D float64 array, or an object array when a column is text."""
        import numpy as np

        if all(self.is_numeric(j) for j in range(len(self.columns))):
            return np.column_stack(self.columns).astype(np.float64, copy=False)
        out = np.empty((self.n_rows, len(self.columns)), dtype=object)
        for j, col in enumerate(self.columns):
            out[:, j] = col
        return out


def _is_missing(values):
    """Boolean mask of the missing entries of a float or object array."""
    import numpy as np

    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.array([v != v for v in values], dtype=bool)  # NaN != NaN


def _parse_cells(cells):
    """Type one CSV column as pandas would: ``(values, kind)``.

    ``kind`` is ``"bool"`` (True/False in any case; values 1.0 and 0.0),
    ``"numeric"`` (every present cell is a number) or ``"text"``. Cells
    in ``_NA_TOKENS`` are missing. A column with no values is numeric.
    """
    import numpy as np

    tokens = np.char.strip(np.asarray(cells, dtype=str).reshape(-1))
    missing = np.isin(tokens, sorted(_NA_TOKENS))
    present = tokens[~missing]
    if present.size and present[0].lower() in ("true", "false"):
        lowered = np.char.lower(present)
        if np.isin(lowered, ["true", "false"]).all():
            values = np.full(tokens.shape, np.nan)
            values[~missing] = lowered == "true"
            return values, "bool"
    # NumPy parses strings as float() does, which accepts "1_000": not here.
    if not (np.char.find(present, "_") >= 0).any():
        try:
            return np.where(missing, "nan", tokens).astype(np.float64), "numeric"
        except ValueError:
            pass
    values = np.empty(tokens.shape, dtype=object)
    values[:] = tokens.tolist()
    values[missing] = math.nan
    return values, "text"


def _load_bundled(name):
    """Return ``(table, y, kind, task, description)`` for a bundled data set."""
    if name not in DATASETS:
        raise CLIError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))} "
            "or pass --csv PATH --target COLUMN."
        )
    import numpy as np
    import sklearn.datasets

    loader, task = DATASETS[name]
    bunch = getattr(sklearn.datasets, loader)()
    X = np.asarray(bunch.data, dtype=np.float64)
    names = [str(n) for n in bunch.feature_names]
    table = _Table(names, [X[:, j] for j in range(X.shape[1])], X.shape[0])
    return table, np.asarray(bunch.target), "numeric", task, name


def _read_header_and_rows(path):
    """The header and data rows of a CSV file, with each row's line number."""
    import csv

    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank lines are skipped, as pandas does
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise CLIError(
            f"could not parse {path} as CSV: it is not UTF-8 text "
            f"(byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    except csv.Error as exc:
        raise CLIError(f"could not parse {path} as CSV: {exc}") from None
    except OSError as exc:
        raise CLIError(f"could not read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise CLIError(f"{path} is empty")
    header = []
    for i, name in enumerate(rows[0]):
        name = name or f"Unnamed: {i}"
        base, k = name, 0
        while name in header:  # duplicates become a, a.1, a.2 (as in pandas)
            k += 1
            name = f"{base}.{k}"
        header.append(name)
    width = len(header)
    data = []
    for row, line in zip(rows[1:], lines[1:]):
        if len(row) > width:
            if any(cell.strip() for cell in row[width:]):
                raise CLIError(
                    f"could not parse {path} as CSV: line {line} has {len(row)} "
                    f"fields, the header has {width}"
                )
            row = row[:width]  # trailing empty fields (a trailing comma)
        data.append(row + [""] * (width - len(row)))
    return header, data, lines[1:]


def _read_csv(path, target, drop):
    """Read a CSV file; return ``(table, y, kind)`` (see ``_parse_cells``)."""
    import numpy as np

    if not os.path.exists(path):
        raise CLIError(f"file not found: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a CSV file")
    header, data, lines = _read_header_and_rows(path)
    if target not in header:
        shown = ", ".join(header[:10])
        more = ", ..." if len(header) > 10 else ""
        raise CLIError(
            f"target column {target!r} not found in {path}; columns are: {shown}{more}"
        )
    missing = [c for c in drop if c not in header]
    if missing:
        raise CLIError(f"--drop: column(s) not found in {path}: {', '.join(missing)}")
    names, columns, y, kind = [], [], None, None
    cells_by_column = list(zip(*data)) if data else [()] * len(header)
    for j, name in enumerate(header):
        if name in drop and name != target:
            continue
        values, col_kind = _parse_cells(cells_by_column[j])
        if col_kind != "text" and np.isinf(values).any():
            i = int(np.flatnonzero(np.isinf(values))[0])
            raise CLIError(
                f"column {name!r} of {path} has an infinite value "
                f"({data[i][j].strip()!r} on line {lines[i]}); replace it, or "
                f"leave the cell empty to have it imputed."
            )
        if name == target:
            y, kind = values, col_kind
        else:
            names.append(name)
            columns.append(values)
    return _Table(names, columns, len(data)), y, kind


def _infer_task(y, kind):
    """``"classification"`` or ``"regression"`` from the target's values."""
    import numpy as np
    from sklearn.utils.multiclass import type_of_target

    if kind != "numeric":
        return "classification"
    if len(y) == 0:
        return "regression"
    with np.errstate(invalid="ignore", over="ignore"):  # huge floats cast to int
        target_type = type_of_target(y)
    if target_type == "continuous":
        return "regression"
    n_values = len(np.unique(y))
    return "classification" if n_values <= _MAX_AUTO_CLASSES else "regression"


def _check_target(y, kind, target, task, cv):
    """Validate the target for ``task``; return it as a NumPy array."""
    import numpy as np

    if task == "regression":
        if kind != "numeric":
            raise CLIError(
                f"target {target!r} is not numeric, so it cannot be used for "
                "regression; use --task classification."
            )
        y = y.astype(np.float64)
        big = float(np.max(np.abs(y)))
        low, high = _TARGET_RANGE
        if big > high or 0 < big < low:
            raise CLIError(
                f"target {target!r} has magnitudes up to {big:.3g}, outside "
                f"{low:g} .. {high:g}: the squared errors of the scores would "
                "overflow or underflow float64; rescale the column first."
            )
        return y
    if kind == "bool":
        labels = y == 1.0
    elif kind == "numeric":
        labels = y
        integral = np.all(y == np.round(y))
        if integral and np.max(np.abs(y)) < 2**53:
            labels = y.astype(np.int64)
    else:
        labels = y.astype(str)
    classes, counts = np.unique(labels, return_counts=True)
    classes = plain_labels(classes)  # 1, not np.int64(1)
    if len(classes) < 2:
        raise CLIError(
            f"target {target!r} has a single class ({classes[0]!r}); "
            "classification needs at least two."
        )
    if kind == "numeric" and not np.all(y == np.round(y)):
        raise CLIError(
            f"target {target!r} has non-integer numbers, which look like a "
            "regression target; use --task regression."
        )
    if counts.min() < cv:
        raise CLIError(
            f"class {classes[int(counts.argmin())]!r} of target {target!r} has "
            f"only {counts.min()} samples, fewer than --cv={cv} folds; lower --cv."
        )
    return labels


def _prepare(args):
    """Load the data named by ``args``; return ``(table, y, task, info)``."""
    import numpy as np

    if args.csv is not None:
        if args.dataset is not None:
            raise CLIError("pass either --dataset or --csv, not both.")
        if args.target is None:
            raise CLIError("--csv needs --target COLUMN (the column to predict).")
        table, y, kind = _read_csv(args.csv, args.target, args.drop)
        keep = ~_is_missing(y)
        inferred, name, target = _infer_task(y[keep], kind), args.csv, args.target
    else:
        if args.target is not None or args.drop:
            raise CLIError("--target and --drop go with --csv.")
        table, y, kind, inferred, name = _load_bundled(args.dataset or DEFAULT_DATASET)
        keep, target = np.ones(len(y), dtype=bool), "target"
    task = inferred if args.task == "auto" else args.task
    notes = []
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} rows with a missing target")
        table, y = table.take(keep), y[keep]
    if len(y) == 0:
        raise CLIError(f"{name} has no rows with a target value.")
    if not table.columns:
        raise CLIError(f"{name} has no feature columns besides the target.")
    if args.max_samples is not None and len(y) > args.max_samples:
        notes.append(f"subsampled {args.max_samples} of {len(y)} rows")
        # The rows pandas' DataFrame.sample(n, random_state=seed) takes.
        rng = np.random.RandomState(args.random_state)
        rows = rng.choice(len(y), size=args.max_samples, replace=False)
        table, y = table.take(rows), y[rows]
    if len(y) < args.cv:
        raise CLIError(f"{name} has {len(y)} rows, fewer than --cv={args.cv} folds.")
    y = _check_target(y, kind, target, task, args.cv)
    table, column_notes = _check_features(table, args.max_categories)
    notes.extend(column_notes)
    info = {
        "dataset": name,
        "task": task,
        "n_samples": int(table.n_rows),
        "n_columns": len(table.columns),
        "notes": notes,
    }
    if task == "classification":
        info["n_classes"] = int(len(np.unique(y)))
    return table, y, task, info


def _check_features(table, max_categories):
    """Reject unusable columns; return the table and notes on what will be done."""
    import numpy as np

    notes = []
    missing = [_is_missing(col) for col in table.columns]
    categorical = [j for j in range(len(table.columns)) if not table.is_numeric(j)]
    for j in categorical:
        n = len(set(table.columns[j][~missing[j]].tolist()))
        if n > max_categories:
            col = table.names[j]
            raise CLIError(
                f"column {col!r} is not numeric and has {n} distinct values, more "
                f"than --max-categories={max_categories}; drop it with --drop "
                f"{col!r}, encode it yourself, or raise --max-categories."
            )
    all_missing = [name for name, m in zip(table.names, missing) if m.all()]
    if all_missing:
        raise CLIError(
            f"column(s) with no values at all: {', '.join(all_missing)}; "
            "drop them with --drop."
        )
    if categorical:
        notes.append(f"one-hot encoded {len(categorical)} non-numeric column(s)")
    n_missing = int(sum(m.sum() for m in missing))
    if n_missing:
        notes.append(f"imputed {n_missing} missing feature values")
    # Standardizing is invariant to scaling a column, and scaling by a power of
    # two is exact, so columns whose squares would overflow (or underflow) are
    # brought to magnitude 1 first: the standardized values are the same.
    columns, rescaled = list(table.columns), 0
    for j, col in enumerate(columns):
        if not table.is_numeric(j):
            continue
        biggest = float(np.max(np.abs(col[~missing[j]])))
        exponent = math.frexp(biggest)[1]
        if biggest > 0 and abs(exponent) > _MAX_EXPONENT:
            columns[j] = np.ldexp(col, -exponent)
            rescaled += 1
    if rescaled:
        notes.append(
            f"rescaled {rescaled} column(s) of magnitude beyond 1e77 or below "
            "1e-77 by a power of two before standardizing (exact; the "
            "standardized values are unchanged)"
        )
    return _Table(table.names, columns, table.n_rows), notes


def _preprocessor(table):
    """Column-wise preprocessing fitted inside each fold: impute, scale, one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [j for j in range(len(table.columns)) if table.is_numeric(j)]
    categorical = [j for j in range(len(table.columns)) if j not in numeric]
    has_missing = any(_is_missing(col).any() for col in table.columns)
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


def _ntk_estimator(kernel, task, args):
    """The cross-validated NTK estimator for ``task``, and its class name."""
    cls = NTKClassifierCV if task == "classification" else NTKRegressorCV
    # The CV estimators search ridges relative to the kernel's scale (which
    # grows with depth) over five orders of magnitude, and depths 1 to 5.
    estimator = cls(
        kernel=kernel,
        bias_std=_NTK_BIAS_STD,
        alphas=_NTK_ALPHAS,
        alpha_scale="mean_diag",
        device=args.device,
        n_jobs=args.n_jobs,
    )
    return estimator, cls.__name__


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


def _evaluate(models, table, y, task, scorer, args):
    """Cross-validate every model; return one result dict per model."""
    from sklearn.base import clone
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = table.to_array()
    splits = list(_splitter(task, args.cv, args.random_state).split(X, y))
    pre = _preprocessor(table)
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
        X_train, X_test = X[train], X[test]
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


def _plot_formats():
    """File extensions matplotlib can write; CLIError when it is missing."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    return FigureCanvasBase.get_supported_filetypes()


def _plot(results, info, scoring, fmt):
    """The chart of the successful models as bytes; None when every model failed."""
    import io

    # A Figure without pyplot: no global backend or figure registry is touched.
    from matplotlib.figure import Figure

    ok = [r for r in results if r["error"] is None]
    if not ok:
        return None
    names = [r["model"] for r in ok]
    fig = Figure(figsize=(9, 0.5 * len(ok) + 1.8))
    ax1, ax2 = fig.subplots(1, 2)
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
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Checks made before any data is loaded or any model runs
# ---------------------------------------------------------------------------
def _check_args(args):
    """Reject invalid options in one line (CLIError) before any work starts."""
    if args.cv < 2:
        raise CLIError(f"--cv must be at least 2, got {args.cv}.")
    if args.max_samples is not None and args.max_samples < args.cv:
        raise CLIError(
            f"--max-samples must be at least --cv={args.cv} (rows to keep, at "
            f"least one per fold), got {args.max_samples}."
        )
    if args.max_categories < 0:
        raise CLIError(f"--max-categories must be >= 0, got {args.max_categories}.")
    if args.n_jobs == 0:
        raise CLIError(
            "--n-jobs must not be 0: give a number of threads, or -1 for all cores."
        )
    if not 0 <= args.random_state < 2**32:
        raise CLIError(
            f"--random-state must be in 0 .. 2**32 - 1, got {args.random_state}."
        )
    try:
        check_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.device == "gpu" and not gpu_available():
        raise CLIError('--device gpu needs CuPy and a CUDA device; see "sknetk info".')
    if args.json is not None:
        _check_output(args.json, "--json", args)
    if args.plot is not None:
        _check_output(args.plot, "--plot", args)
        if args.json is not None and os.path.abspath(args.json) == os.path.abspath(
            args.plot
        ):
            raise CLIError("--json and --plot name the same file.")
        formats = _plot_formats()
        ext = os.path.splitext(args.plot)[1][1:].lower()
        known = ", ".join(sorted(formats))
        if not ext:
            raise CLIError(
                f"--plot {args.plot} has no file extension, which names the "
                f"format: e.g. {args.plot}.png (matplotlib writes {known})."
            )
        if ext not in formats:
            raise CLIError(
                f"--plot {args.plot}: matplotlib cannot write .{ext} files; "
                f"use one of {known}."
            )
        _try_format(ext, args.plot)


def _try_format(fmt, path):
    """Draw an empty figure as ``fmt`` in memory: a format that needs more than
    matplotlib (Pillow, LaTeX for .pgf) fails here rather than after the run."""
    import io

    from matplotlib.figure import Figure

    try:
        fig = Figure(figsize=(1, 1))
        fig.text(0.5, 0.5, "sknetk")  # text needs LaTeX in .pgf
        fig.savefig(io.BytesIO(), format=fmt)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CLIError(
            f"--plot {path}: matplotlib cannot write .{fmt} here: "
            f"{type(exc).__name__}: {first}"
        ) from None


def _check_output(path, option, args):
    """An output path must be new (or --force), writable, and not the input."""
    if not path:
        raise CLIError(f"{option} needs a file name.")
    if os.path.isdir(path):
        raise CLIError(f"{option} {path} is a directory; give a file name.")
    data = args.csv
    if data is not None and os.path.exists(path) and os.path.exists(data):
        if os.path.samefile(path, data):
            raise CLIError(
                f"{option} {path} is the input file of --csv; refusing to write "
                "over the data (even with --force)."
            )
    if os.path.lexists(path):
        if not args.force:
            raise CLIError(
                f"{option} {path} already exists; pass --force to overwrite it."
            )
        if not os.access(path, os.W_OK):
            raise CLIError(f"{option} {path} exists and is not writable.")
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"{option} {path}: directory {parent} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path}: directory {parent} is not writable.")


def _write_output(path, option, data, force):
    """Write bytes to ``path``, which must not exist unless ``force``."""
    try:
        with open(path, "wb" if force else "xb") as fh:
            fh.write(data)
    except FileExistsError:
        raise CLIError(
            f"{option} {path} was created during the run; not overwritten "
            "(pass --force to overwrite it)."
        ) from None
    except OSError as exc:
        raise CLIError(f"could not write {path}: {exc.strerror or exc}") from None


def _json_safe(obj):
    """``obj`` with non-finite floats as None (JSON null) and NumPy scalars plain."""
    if isinstance(obj, dict):
        return {str(key): _json_safe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(value) for value in obj]
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    return str(obj)


def _compare(args, out):
    _check_args(args)
    table, y, task, info = _prepare(args)
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
    results = _evaluate(models, table, y, task, scorer, args)
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
    status = 1 if any(r["error"] is not None for r in results) else 0
    if args.json is not None:
        # Strict JSON: a failed model's NaN mean is written as null.
        payload = _json_safe({**info, "results": results})
        text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
        _write_output(args.json, "--json", text.encode(), args.force)
    if args.plot is not None:
        fmt = os.path.splitext(args.plot)[1][1:].lower()
        try:
            image = _plot(results, info, scoring, fmt)
        except Exception as exc:  # e.g. .pgf without a LaTeX installation
            first = (str(exc).strip().splitlines() or [""])[0]
            raise CLIError(
                f"could not draw --plot {args.plot}: {type(exc).__name__}: {first}"
            ) from None
        if image is None:
            print(
                f"sknetk compare: no plot written to {args.plot}: no model succeeded",
                file=sys.stderr,
            )
            status = 1
        else:
            _write_output(args.plot, "--plot", image, args.force)
    return status


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
        ("threadpoolctl", "threadpoolctl"),
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
    rows.extend(_thread_libraries())
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


def _thread_libraries():
    """``(label, text)`` rows for the BLAS and OpenMP libraries in use.

    From threadpoolctl, after NumPy and SciPy have loaded theirs: which BLAS
    (OpenBLAS, MKL, BLIS), its version, CPU architecture, threads and file,
    which bug reports about speed or crashes need.
    """
    try:
        import numpy  # noqa: F401
        import scipy.linalg  # noqa: F401
        from threadpoolctl import threadpool_info

        libraries = threadpool_info()
    except Exception as exc:  # threadpoolctl missing or failing
        return [("BLAS", f"unknown ({type(exc).__name__}: {exc})")]
    rows = []
    for lib in libraries:
        api = lib.get("user_api")
        version = lib.get("version")
        parts = [f"{lib.get('internal_api')}" + (f" {version}" if version else "")]
        if lib.get("architecture"):
            parts.append(f"architecture {lib['architecture']}")
        if lib.get("threading_layer"):
            parts.append(f"threading layer {lib['threading_layer']}")
        parts.append(f"{lib.get('num_threads')} threads")
        parts.append(f"{lib.get('prefix')} at {lib.get('filepath')}")
        label = {"blas": "BLAS", "openmp": "OpenMP"}.get(api, str(api))
        rows.append((label, ", ".join(parts)))
    if not any(api == "BLAS" for api, _ in rows):
        rows.append(("BLAS", "none found by threadpoolctl"))
    return rows


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
            "comma-separated models from: "
            + ", ".join(MODELS)
            + " (default "
            + ",".join(DEFAULT_MODELS["classification"])
            + " for classification, "
            + ",".join(DEFAULT_MODELS["regression"])
            + " for regression)"
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
    output.add_argument(
        "--plot",
        metavar="FILE.png",
        help="save a chart; the extension names the format (.png, .pdf, .svg, ...)",
    )
    output.add_argument("--json", metavar="FILE", help="save the results as JSON")
    output.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing --plot and --json files (never the --csv input)",
    )
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
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
