"""The ``sknetk`` command line: ``sknetk compare`` and ``sknetk info``.

``sknetk compare`` cross-validates infinite-width network models (NTK, NNGP,
and on images the convolutional NTK) next to scikit-learn baselines on a
bundled data set or a CSV file and prints a table; ``sknetk info`` reports
versions, GPU availability and the memory budget and the BLAS in use. Both
need only sknetk's core dependencies (CSV files are read with the standard
library's ``csv``; matplotlib only for ``--plot``). Bad input (a missing
file, a missing target column, a target with a single class, an invalid
option or output path, ...) ends with a one-line message on standard error
and exit code 2, and options and output paths are checked before any data is
loaded.
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

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import __version__
from ._base import plain_labels
from ._conv_estimators import CNTKClassifierCV, CNTKRegressorCV
from ._cv import NTKClassifierCV, NTKRegressorCV
from ._device import check_device, gpu_available, probe_cupy

__all__ = [
    "main",
    "DATASETS",
    "MODELS",
    "compare_schema",
    "corrected_resampled_ttest",
]

#: Data sets that ship with scikit-learn (no download): name -> (loader, task).
DATASETS = {
    "breast_cancer": ("load_breast_cancer", "classification"),
    "iris": ("load_iris", "classification"),
    "wine": ("load_wine", "classification"),
    "digits": ("load_digits", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
DEFAULT_DATASET = "breast_cancer"
# Bundled data sets whose rows are images: name -> (H, W, C), NHWC order.
_IMAGE_DATASETS = {"digits": (8, 8, 1)}

#: Model names accepted by ``--models`` and what they stand for.
MODELS = {
    "ntk": "NTK of a wide ReLU network (NTKClassifierCV / NTKRegressorCV)",
    "nngp": "the same with the NNGP kernel (only the readout layer trained)",
    "mlp": "MLP trained by Adam (MLPClassifier / MLPRegressor)",
    "mlp-after": (
        "kernel ridge with the trained MLP's own empirical NTK (its "
        "after-kernel; needs sknetk.empirical)"
    ),
    "rf": "random forest, 100 trees",
    "svm": "RBF support vector machine (SVC or SVR)",
    "krr-rbf": "RBF KernelRidge (regression only)",
    "cntk": (
        "convolutional NTK, global average pooling readout (CNTKClassifierCV / "
        "CNTKRegressorCV; image data only)"
    ),
    "cntk-flatten": "the same with the Flatten readout (image data only)",
    "ridge": "linear Ridge / RidgeClassifier",
    "knn": "nearest neighbours",
    "dummy": "predicts the mean / the most frequent class",
}
_ALIASES = {
    "svc": "svm",
    "svr": "svm",
    "krr": "krr-rbf",
    "random_forest": "rf",
    "after-kernel": "mlp-after",
    "cntk-gap": "cntk",
}
# Width of the model names in --help.
_NAME_WIDTH = max(len(name) for name in MODELS)
# The convolutional models and their readouts.
_CNTK_READOUTS = {"cntk": "gap", "cntk-flatten": "flatten"}
# mlp-after is left out of the defaults when sknetk.empirical is missing.
DEFAULT_MODELS = {
    "classification": ("ntk", "nngp", "mlp", "mlp-after", "rf", "svm"),
    "regression": ("ntk", "nngp", "mlp", "mlp-after", "rf", "svm", "krr-rbf"),
}
# On image data (digits, --image-shape) the defaults add the GAP CNTK.
_IMAGE_DEFAULT_MODELS = ("cntk",)
# Without --max-samples, image data with the GAP cntk model keep this many
# random rows: its kernel costs O(P^2) per entry (digits at 500 rows: about
# 40 s per fold on two cores, 3 minutes in all; all 1,797: about 40 minutes).
_IMAGE_MAX_SAMPLES = 500
# CPU seconds per pixel pair, layer and kernel entry of the GAP recursion
# (measured on two cores for 8x8 and 28x28 images: 6e-8 s), for the note
# on a long run.
_GAP_SECONDS_PER_PAIR_LAYER = 6e-8
_DEFAULT_SCORING = {"classification": "accuracy", "regression": "r2"}
# The ntk/nngp ridges searched by leave-one-out with --no-tune.
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
    images = _image_shape_of(args)
    if images is not None:
        _check_image_columns(table, images, name, args.image_shape is not None)
    max_samples = args.max_samples
    if max_samples is not None and len(y) > max_samples:
        notes.append(f"subsampled {max_samples} of {len(y)} rows")
    elif (
        max_samples is None
        and images is not None
        and "cntk" in _requested_models(args.models, images)
        and len(y) > _IMAGE_MAX_SAMPLES
    ):
        max_samples = _IMAGE_MAX_SAMPLES
        notes.append(
            f"subsampled {max_samples} of {len(y)} rows: the default --max-samples "
            "for image data with the cntk model, whose kernel (global average "
            "pooling) costs O(P^2) per entry for P pixels; --max-samples N "
            "changes it"
        )
    if max_samples is not None and len(y) > max_samples:
        # The rows pandas' DataFrame.sample(n, random_state=seed) takes.
        rng = np.random.RandomState(args.random_state)
        rows = rng.choice(len(y), size=max_samples, replace=False)
        table, y = table.take(rows), y[rows]
    if len(y) < args.cv:
        raise CLIError(f"{name} has {len(y)} rows, fewer than --cv={args.cv} folds.")
    y = _check_target(y, kind, target, task, args.cv)
    table, column_notes = _check_features(
        table, args.max_categories, images is not None
    )
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
    if images is not None:
        info["image_shape"] = list(images)
    return table, y, task, info


def _parse_image_shape(text):
    """``(H, W, C)`` from ``--image-shape H,W[,C]`` (CLIError if malformed)."""
    parts = [part.strip() for part in str(text).split(",")]
    ok = len(parts) in (2, 3) and all(
        part.isascii() and part.isdigit() and int(part) >= 1 for part in parts
    )
    if not ok:
        raise CLIError(
            f"--image-shape must be H,W or H,W,C (positive integers: height, "
            f"width and channels, e.g. 28,28 or 32,32,3), got {text!r}."
        )
    shape = tuple(int(part) for part in parts)
    return shape if len(shape) == 3 else (*shape, 1)


def _image_shape_of(args):
    """The ``(H, W, C)`` of the run's images, or None for tabular data.

    ``--image-shape`` when given; else the bundled image data sets
    (``digits``: 8x8); known from the options alone, before any data is read.
    """
    if getattr(args, "image_shape", None) is not None:
        return _parse_image_shape(args.image_shape)
    if getattr(args, "csv", None) is None:
        return _IMAGE_DATASETS.get(getattr(args, "dataset", None) or DEFAULT_DATASET)
    return None


def _requested_models(text, images):
    """The model names of ``--models`` (aliases resolved), or the defaults."""
    if text is None:
        names = list(DEFAULT_MODELS["classification"])
        return names + list(_IMAGE_DEFAULT_MODELS) if images is not None else names
    names = (_ALIASES.get(n, n) for n in (r.strip().lower() for r in text.split(",")))
    return [n for n in names if n]


def _check_image_columns(table, shape, name, given):
    """Every feature column is a pixel: numeric, ``H * W * C`` of them."""
    option = "--image-shape " + ",".join(map(str, shape)) if given else "the images"
    text = [
        table.names[j] for j in range(len(table.columns)) if not table.is_numeric(j)
    ]
    if text:
        shown = ", ".join(repr(c) for c in text[:5]) + (
            ", ..." if len(text) > 5 else ""
        )
        raise CLIError(
            f"{option}: feature column(s) {shown} of {name} are not numeric; "
            "every feature column must be a pixel (drop the others with --drop)."
        )
    n_pixels = math.prod(shape)
    if n_pixels != len(table.columns):
        raise CLIError(
            f"{option} holds {n_pixels} values per image, but {name} has "
            f"{len(table.columns)} numeric feature columns; drop the columns that "
            "are not pixels with --drop, or correct the shape (H,W or H,W,C, "
            "pixels in row-major NHWC order)."
        )


def _check_features(table, max_categories, images=False):
    """Reject unusable columns; return the table and notes on what will be done.

    ``images``: the columns are pixels, scaled by one global factor later, so
    no column is rescaled on its own.
    """
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
        if images or not table.is_numeric(j):
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


class _PixelScaler(TransformerMixin, BaseEstimator):
    """Divide every pixel by the largest absolute pixel of the training images.

    One factor for the whole image (not one per column, which would change
    the images a convolutional network sees): digits' 0..16 become 0..1.
    """

    def fit(self, X, y=None):
        import numpy as np

        X = validate_data(self, X, dtype=np.float64)
        biggest = float(np.max(np.abs(X))) if X.size else 0.0
        self.scale_ = biggest if biggest > 0 else 1.0
        return self

    def transform(self, X):
        import numpy as np

        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X / self.scale_


def _preprocessor(table, images=False):
    """Preprocessing fitted inside each fold.

    Tabular data: column-wise imputation, standardization and one-hot
    encoding. Images (``images=True``): median imputation of missing pixels,
    then one scale factor for all pixels (:class:`_PixelScaler`).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [j for j in range(len(table.columns)) if table.is_numeric(j)]
    categorical = [j for j in range(len(table.columns)) if j not in numeric]
    has_missing = any(_is_missing(col).any() for col in table.columns)
    if images:
        steps = [SimpleImputer(strategy="median")] if has_missing else []
        return make_pipeline(*steps, _PixelScaler())
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
# Models and their search grids
# ---------------------------------------------------------------------------
# Every model of ``sknetk compare`` is tuned the same way: a grid search,
# scored by the run's scorer, over the same inner K-fold splits of each outer
# training fold (``--inner-cv``, stratified for classification, seeded by
# ``--random-state``). ``--grid small`` (the default) keeps a default run on
# breast_cancer near a minute on two cores; ``--grid large`` is the bigger
# budget. The NTK/NNGP alphas are relative to the kernel's mean diagonal.
_GRIDS = {
    "small": {
        "ntk": {"alpha": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), "depth": (1, 2, 3, 4)},
        "nngp": {"alpha": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), "depth": (1, 2, 3, 4)},
        # Depths capped at 3: every depth of the grid comes from one pass of
        # the recursion of the deepest, whose cost grows with the depth.
        "cntk": {"alpha": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), "depth": (1, 2, 3)},
        "cntk-flatten": {
            "alpha": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
            "depth": (1, 2, 3),
        },
        "mlp": {  # a half fraction: 8 of these 16 (see _HALF_FRACTION)
            "width": (32, 128),
            "depth": (1, 2),
            "alpha": (1e-2, 10.0),
            "learning_rate_init": (3e-3, 3e-2),
        },
        "mlp-after": {"alpha": (0.1, 1.0, 10.0)},
        "svm": {"C": (0.1, 1.0, 10.0, 100.0), "gamma": (1e-3, 1e-2, 1e-1, 1.0)},
        "krr-rbf": {"alpha": (1e-3, 1e-2, 1e-1, 1.0), "gamma": (1e-3, 1e-2, 1e-1, 1.0)},
        "rf": {"max_features": (0.1, 0.3, 0.6)},
        "ridge": {"alpha": (1e-2, 1e-1, 1.0, 10.0, 100.0)},
        "knn": {"n_neighbors": (1, 3, 5, 10, 20)},
        "dummy": {},
    },
    "large": {
        "ntk": {
            "alpha": (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            "depth": (1, 2, 3, 4, 5, 6, 8),
        },
        "nngp": {
            "alpha": (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            "depth": (1, 2, 3, 4, 5, 6, 8),
        },
        "cntk": {
            "alpha": (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            "depth": (1, 2, 3, 4, 5, 6),
        },
        "cntk-flatten": {
            "alpha": (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            "depth": (1, 2, 3, 4, 5, 6),
        },
        "mlp": {
            "width": (32, 128, 512),
            "depth": (1, 2, 3),
            "alpha": (1e-5, 1e-3, 1e-1, 10.0),
            "learning_rate_init": (1e-3, 1e-2),
        },
        "mlp-after": {"alpha": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)},
        "svm": {
            "C": (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4),
            "gamma": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
        },
        "krr-rbf": {
            "alpha": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            "gamma": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
        },
        "rf": {
            "max_features": (0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
            "min_samples_leaf": (1, 2, 3, 5, 10, 20),
        },
        "ridge": {"alpha": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)},
        "knn": {"n_neighbors": (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)},
        "dummy": {},
    },
}
GRID_NAMES = tuple(_GRIDS)
# Grids of two-level factors searched as a half fraction of their factorial:
# the points whose level indices have an even sum, a 2^(4-1) design of
# resolution IV (each level of a factor is tried 4 times, and each pair of
# levels of two factors twice), which halves the costliest search.
_HALF_FRACTION = {("small", "mlp")}
# The cntk ridges and depths searched by leave-one-out with --no-tune.
_NO_TUNE_CNTK = {"alpha": _NTK_ALPHAS, "depth": (1, 2, 3)}
_MLP_MAX_ITER = 1000


def _grid_text(grid):
    """``alpha=[1e-05 .. 1] (6) x depth=[1 .. 4] (4)``-style summary of a grid."""
    if not grid:
        return "no hyper-parameters"
    parts = []
    for key, values in grid.items():
        shown = ", ".join(_fmt_value(v) for v in values)
        parts.append(f"{key}=[{shown}]")
    return " x ".join(parts)


def _candidates(grid, half=False):
    """The points of ``grid`` (dicts, in product order); ``half``: the half
    fraction of a two-level factorial (even sum of level indices)."""
    import itertools

    keys = list(grid)
    points = []
    for index in itertools.product(*(range(len(grid[k])) for k in keys)):
        if half and sum(index) % 2:
            continue
        points.append({k: grid[k][i] for k, i in zip(keys, index)})
    return points


def _n_candidates(grid, half=False):
    if not grid:
        return 1
    n = math.prod(len(v) for v in grid.values())
    return n // 2 if half else n


def _fmt_value(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):g}"


def _help_grids(budget):
    """The grids of one budget, for ``--help`` and the docs."""
    lines = []
    for name, grid in _GRIDS[budget].items():
        if grid:
            half = (budget, name) in _HALF_FRACTION
            n = _n_candidates(grid, half)
            note = ", a half fraction" if half else ""
            lines.append(f"  {name:{_NAME_WIDTH}s} {_grid_text(grid)} ({n}{note})")
    return "\n".join(lines)


def _after_kernel_classes():
    """``(AfterKernelRegressor, AfterKernelClassifier)``, or None if unavailable."""
    try:
        from .empirical import AfterKernelClassifier, AfterKernelRegressor
    except ImportError:
        return None
    return AfterKernelRegressor, AfterKernelClassifier


def _parse_models(text, task, images=None):
    """The run's model names; ``images``: the ``(H, W, C)`` of image data."""
    if text is None:
        names = list(DEFAULT_MODELS[task])
        if _after_kernel_classes() is None:
            names = [n for n in names if n != "mlp-after"]
        if images is not None:
            names.extend(_IMAGE_DEFAULT_MODELS)
        return names
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
        if name in _CNTK_READOUTS and images is None:
            raise CLIError(_cntk_needs_images(name))
        if name == "mlp-after" and _after_kernel_classes() is None:
            raise CLIError(
                "mlp-after needs sknetk.empirical (AfterKernelRegressor), which "
                "this installation of sknetk does not have."
            )
        if name not in names:
            names.append(name)
    if not names:
        raise CLIError("--models is empty.")
    if "mlp-after" in names and "mlp" in names:
        # The after-kernel row reuses the network the mlp row chose in each
        # fold, so the mlp row runs first.
        names.remove("mlp-after")
        names.insert(names.index("mlp") + 1, "mlp-after")
    return names


def _cntk_needs_images(name):
    return (
        f"{name} needs image data: --dataset digits, or --csv with --image-shape "
        "H,W[,C] (each row an image, pixels in row-major NHWC order)."
    )


def _inner_splitter(task, args):
    return _splitter(task, args.inner_cv, 1, args.random_state)


def _ntk_estimator(kernel, task, args):
    """The cross-validated NTK estimator for ``task``, and its class name.

    Tuned (the default): the alphas and depths of ``--grid``, searched over
    the run's inner folds with the run's scorer, as every other model.
    ``--no-tune``: the former defaults, leave-one-out over six alphas and
    depths 1 to 5.
    """
    cls = NTKClassifierCV if task == "classification" else NTKRegressorCV
    if getattr(args, "tune", True):
        grid = _GRIDS[args.grid][kernel]
        search = dict(
            alphas=grid["alpha"],
            depths=grid["depth"],
            cv=_inner_splitter(task, args),
            scoring=args.scoring or _DEFAULT_SCORING[task],
        )
    else:
        search = dict(alphas=_NTK_ALPHAS)
    # Ridges relative to the kernel's scale, which grows with depth.
    estimator = cls(
        kernel=kernel,
        bias_std=_NTK_BIAS_STD,
        alpha_scale="mean_diag",
        device=args.device,
        n_jobs=args.n_jobs,
        **search,
    )
    return estimator, cls.__name__


def _cntk_estimator(name, task, args):
    """The convolutional NTK with leave-one-out search, and its class name.

    ``CNTKClassifierCV`` / ``CNTKRegressorCV`` (ReLU, 3x3 SAME convolutions,
    the readout of ``name``): depth and ridge (relative to the mean diagonal)
    chosen by the estimator's exact leave-one-out over the grid, the kernels of
    every depth from one pass of the recursion.
    """
    images = getattr(args, "images", None)
    if images is None:
        raise CLIError(_cntk_needs_images(name))
    cls = CNTKClassifierCV if task == "classification" else CNTKRegressorCV
    grid = _GRIDS[args.grid][name] if getattr(args, "tune", True) else _NO_TUNE_CNTK
    estimator = cls(
        alphas=tuple(grid["alpha"]),
        depths=tuple(grid["depth"]),
        depth=max(grid["depth"]),
        image_shape=tuple(images),
        readout=_CNTK_READOUTS[name],
        alpha_scale="mean_diag",
        device=args.device,
        n_jobs=args.n_jobs,
    )
    return estimator, cls.__name__


def _mlp(classification, seed, **params):
    from sklearn import neural_network

    cls = (
        neural_network.MLPClassifier if classification else neural_network.MLPRegressor
    )
    return cls(**params, random_state=seed)


def _make_model(name, task, args):
    """Return ``(estimator, name of its class)`` for a model name.

    The estimator is the untuned model; :func:`_search` wraps it in the grid
    search of the run.
    """
    from sklearn import (
        dummy,
        ensemble,
        kernel_ridge,
        linear_model,
        neighbors,
        svm,
    )

    classification = task == "classification"
    seed = args.random_state
    tune = getattr(args, "tune", True)
    if name in ("ntk", "nngp"):
        return _ntk_estimator(name, task, args)
    if name in _CNTK_READOUTS:
        return _cntk_estimator(name, task, args)
    if name == "rf":
        cls = (
            ensemble.RandomForestClassifier
            if classification
            else ensemble.RandomForestRegressor
        )
        est = cls(n_estimators=100, random_state=seed, n_jobs=args.n_jobs)
    elif name == "mlp":
        est = _mlp(
            classification,
            seed,
            hidden_layer_sizes=(100,),
            max_iter=_MLP_MAX_ITER if tune else 500,
        )
    elif name == "mlp-after":
        regressor, classifier = _after_kernel_classes()
        cls = classifier if classification else regressor
        # Without the mlp row, a fixed network; with it, the network the mlp
        # row chose in the same fold (set in _evaluate).
        net = _mlp(
            classification,
            seed,
            hidden_layer_sizes=(128,),
            alpha=1e-4,
            learning_rate_init=1e-2,
            max_iter=_MLP_MAX_ITER,
        )
        est = cls(estimator=net, alpha=1e-3)
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


def _sklearn_grid(name, grid, half=False):
    """The ``param_grid`` of ``GridSearchCV`` for a model's displayed grid."""
    if half:
        points = []
        for point in _candidates(grid, half=True):
            point = dict(point)
            if name == "mlp":
                sizes = (point.pop("width"),) * point.pop("depth")
                point["hidden_layer_sizes"] = sizes
            points.append({key: [value] for key, value in point.items()})
        return points
    grid = dict(grid)
    if name == "mlp":
        widths, depths = grid.pop("width"), grid.pop("depth")
        grid["hidden_layer_sizes"] = [(w,) * d for d in depths for w in widths]
    return {key: list(values) for key, values in grid.items()}


def _displayed_params(name, params):
    """Chosen ``GridSearchCV`` parameters in the names of the displayed grid."""
    params = dict(params)
    if name == "mlp" and "hidden_layer_sizes" in params:
        sizes = params.pop("hidden_layer_sizes")
        params = {"width": sizes[0], "depth": len(sizes), **params}
    return params


def _search(name, task, estimator, args):
    """``(step, grid)``: the model as it runs in a fold, and its displayed grid.

    ``step`` is ``estimator`` itself for the self-tuning NTK/NNGP (the grid is
    in its ``alphas`` and ``depths``), a ``GridSearchCV`` for the other models
    when tuning, and ``estimator`` with an empty grid with ``--no-tune``.
    """
    from sklearn.model_selection import GridSearchCV

    if name in _CNTK_READOUTS:  # searched by its own leave-one-out
        return estimator, {
            "alpha": tuple(estimator.alphas),
            "depth": tuple(estimator.depths),
        }
    if name in ("ntk", "nngp"):
        if getattr(args, "tune", True):
            return estimator, dict(_GRIDS[args.grid][name])
        return estimator, {
            "alpha": tuple(estimator.alphas),
            "depth": tuple(estimator.depths),
        }
    if not getattr(args, "tune", True):
        return estimator, {}
    grid = dict(_GRIDS[args.grid].get(name, {}))
    if not grid:
        return estimator, {}
    # Process-parallel candidates only where a fit is slow (the networks);
    # the forest and the NTK use their own threads.
    n_jobs = args.n_jobs if name in ("mlp", "mlp-after") else None
    half = (args.grid, name) in _HALF_FRACTION
    search = GridSearchCV(
        estimator,
        _sklearn_grid(name, grid, half),
        scoring=args.scoring or _DEFAULT_SCORING[task],
        cv=_inner_splitter(task, args),
        n_jobs=n_jobs,
        error_score="raise",
    )
    return search, grid


def _describe(step):
    """The full configuration of ``step``: scikit-learn's repr on one line."""
    try:
        text = step.__repr__(N_CHAR_MAX=100_000)
    except TypeError:  # not a scikit-learn estimator
        text = repr(step)
    return " ".join(text.split())


def _chosen(name, step):
    """The hyper-parameters a fitted ``step`` chose, or None if it chose none."""
    if name in _CNTK_READOUTS and hasattr(step, "depth_"):
        return {"alpha": step.alpha_relative_, "depth": int(step.depth_)}
    best = getattr(step, "best_params_", None)
    if best is None:
        return None
    return _displayed_params(name, best)


def _edges(grid, chosen):
    """``{param: "lower" | "upper"}`` for chosen values on an edge of the grid.

    Only numeric grid dimensions with at least three values count: with two
    values every choice is an edge, which says nothing.
    """
    edges = {}
    for key, values in grid.items():
        if key not in chosen or len(values) < 3:
            continue
        if not all(isinstance(v, numbers.Real) for v in values):
            continue
        value = chosen[key]
        if value == min(values):
            edges[key] = "lower"
        elif value == max(values):
            edges[key] = "upper"
    return edges


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------
def _splitter(task, cv, repeats, seed):
    """Shuffled (stratified) K-fold, repeated ``repeats`` times.

    The first repeat equals ``(Stratified)KFold(cv, shuffle=True,
    random_state=seed)``; every model sees the same folds (paired).
    """
    from sklearn.model_selection import (
        KFold,
        RepeatedKFold,
        RepeatedStratifiedKFold,
        StratifiedKFold,
    )

    if repeats == 1:
        cls = StratifiedKFold if task == "classification" else KFold
        return cls(n_splits=cv, shuffle=True, random_state=seed)
    cls = RepeatedStratifiedKFold if task == "classification" else RepeatedKFold
    return cls(n_splits=cv, n_repeats=repeats, random_state=seed)


def _blas_threads(n_jobs):
    """Threads for BLAS under ``--n-jobs`` (joblib's meaning of negatives)."""
    import joblib

    n_cpus = joblib.cpu_count()
    return n_jobs if n_jobs > 0 else max(1, n_cpus + 1 + n_jobs)


class _Progress:
    """Progress of the fits on standard error, naming the model and fold.

    On a terminal one line is redrawn in place and a summary line is left at
    the end; elsewhere (logs, pipes) every finished fit is one plain line.
    """

    def __init__(self, total, verbose, file=None):
        self.total = total
        self.verbose = verbose
        self.file = sys.stderr if file is None else file
        self.tty = bool(getattr(self.file, "isatty", lambda: False)())
        self.count = 0
        self.start = time.perf_counter()
        self.width = 0

    def _write(self, text, final=False):
        if self.tty:
            pad = " " * max(0, self.width - len(text))
            self.width = len(text)
            self.file.write("\r" + text + pad + ("\n" if final else ""))
        else:
            self.file.write(text + "\n")
        self.file.flush()

    def started(self, label):
        if self.verbose and self.tty:
            self._write(f"compare [{self.count + 1}/{self.total}] {label} ...")

    def finished(self, label, result):
        self.count += 1
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self.start
        self._write(
            f"compare [{self.count}/{self.total}] {label}: {result} [{elapsed:.1f}s]"
        )

    def close(self):
        if self.verbose:
            elapsed = time.perf_counter() - self.start
            self._write(
                f"compare: {self.count}/{self.total} fits done in {elapsed:.1f} s",
                final=True,
            )


def _count_candidates(step, grid):
    """Number of candidates a model's search tries in a fold."""
    from sklearn.model_selection import ParameterGrid

    param_grid = getattr(step, "param_grid", None)
    if param_grid is not None:
        return len(ParameterGrid(param_grid))
    return _n_candidates(grid)


def _use_network(step, params):
    """Give an after-kernel model (or its search) the network ``params``."""
    inner = getattr(step, "estimator", None)
    if hasattr(inner, "estimator") and hasattr(step, "param_grid"):
        net = _clone_params(inner.estimator, params)
        step.set_params(estimator__estimator=net)
    else:
        step.set_params(estimator=_clone_params(inner, params))


def _clone_params(estimator, params):
    from sklearn.base import clone

    return clone(estimator).set_params(**params)


def _fitted_step(est):
    """The model step of a fitted pipeline (inside a TransformedTargetRegressor)."""
    pipe = getattr(est, "regressor_", est)
    return pipe.steps[-1][1]


def _evaluate(models, table, y, task, scorer, args):
    """Cross-validate every model; return one result dict per model and the folds."""
    from sklearn.base import clone
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = table.to_array()
    repeats = getattr(args, "repeats", 1)
    splitter = _splitter(task, args.cv, repeats, args.random_state)
    splits = list(splitter.split(X, y))
    pre = _preprocessor(table, getattr(args, "images", None) is not None)
    results = {}
    for name, (step, desc, grid) in models.items():
        summary = desc
        if hasattr(step, "param_grid"):  # the searched estimator and the splits
            summary = (
                f"{_describe(step.estimator)}, searched by GridSearchCV over "
                f"{_describe(step.cv)}"
            )
        if "; in each fold," in desc:
            summary += desc[desc.index("; in each fold,") :]
        results[name] = {
            "model": name,
            "estimator": desc,
            "summary": summary,
            "grid": grid,
            "n_candidates": _count_candidates(models[name][0], grid),
            "scores": [],
            "fit_time": [],
            "predict_time": [],
            "chosen": [],
            "error": None,
            "warnings": 0,
        }
    networks = {}  # (model, split) -> the parameters the MLP search chose
    jobs = [(name, i) for name in models for i in range(len(splits))]
    bar = _Progress(len(jobs), args.verbose)
    for name, i in jobs:
        res = results[name]
        repeat, fold = divmod(i, args.cv)
        label = f"{name} fold {fold + 1}/{args.cv}" + (
            f" repeat {repeat + 1}/{repeats}" if repeats > 1 else ""
        )
        if res["error"] is not None:
            bar.finished(label, "skipped (the model failed)")
            continue
        bar.started(label)
        train, test = splits[i]
        step = clone(models[name][0])
        if name == "mlp-after" and ("mlp", i) in networks:
            _use_network(step, networks["mlp", i])
        est = make_pipeline(clone(pre), step)
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
            bar.finished(label, "failed")
            continue
        res["warnings"] += sum(
            issubclass(w.category, ConvergenceWarning) for w in caught
        )
        res["scores"].append(float(score))
        res["fit_time"].append(fitted - start)
        res["predict_time"].append(done - fitted)
        fitted_step = _fitted_step(est)
        res["chosen"].append(_chosen(name, fitted_step))
        if name == "mlp" and hasattr(fitted_step, "best_params_"):
            networks[name, i] = dict(fitted_step.best_params_)
        bar.finished(label, f"{score:.4f}, fit {fitted - start:.2f} s")
    bar.close()
    out = []
    for res in results.values():
        scores = res["scores"]
        res["mean"] = _mean(scores)
        res["std"] = _std(scores)
        res["mean_fit_time"] = _mean(res["fit_time"])
        res["mean_predict_time"] = _mean(res["predict_time"])
        res["edges"] = _edge_summary(res)
        out.append(res)
    folds = [
        {
            "repeat": i // args.cv,
            "fold": i % args.cv,
            "n_train": len(train),
            "n_test": len(test),
        }
        for i, (train, test) in enumerate(splits)
    ]
    return out, folds


def _edge_summary(res):
    """Per grid parameter on an edge in some fold: value, side, count."""
    summary = []
    chosen = [c for c in res["chosen"] if c is not None]
    for key in res["grid"]:
        for side in ("lower", "upper"):
            hits = [c[key] for c in chosen if _edges(res["grid"], c).get(key) == side]
            if hits:
                summary.append(
                    {
                        "param": key,
                        "edge": side,
                        "value": hits[0],
                        "n_folds": len(hits),
                    }
                )
    return summary


def _mean(values):
    return sum(values) / len(values) if values else math.nan


def _std(values):
    if not values:
        return math.nan
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def corrected_resampled_ttest(differences, test_train_ratio):
    """Nadeau and Bengio's corrected resampled t-test of paired differences.

    Parameters
    ----------
    differences : sequence of float
        Score differences between two models on the same ``J`` train/test
        splits (folds of repeated K-fold).
    test_train_ratio : float
        ``n_test / n_train`` of the splits (``1 / (K - 1)`` for K-fold).

    Returns
    -------
    t : float
        ``mean / sqrt((1 / J + test_train_ratio) * var)``, with the sample
        variance (``ddof=1``) of the differences.
    p_value : float
        Two-sided, from Student's t with ``J - 1`` degrees of freedom; NaN
        with fewer than two differences.

    Notes
    -----
    The folds share training rows, so the differences are correlated and the
    plain paired t-test is too optimistic; the ``test_train_ratio`` term
    corrects the variance (Nadeau and Bengio, 2003, "Inference for the
    Generalization Error", Machine Learning 52; Bouckaert and Frank, 2004).
    Differences that are all equal give ``t = +-inf`` and ``p = 0``, or
    ``t = 0`` and ``p = 1`` when they are all zero.

    Examples
    --------
    >>> from sknetk.cli import corrected_resampled_ttest
    >>> t, p = corrected_resampled_ttest([0.01, 0.02, 0.0, 0.03, 0.01], 0.25)
    >>> round(t, 3), round(p, 3)
    (1.83, 0.141)
    """
    from scipy import stats

    d = [float(v) for v in differences]
    J = len(d)
    if J < 2:
        return math.nan, math.nan
    mean = sum(d) / J
    var = sum((v - mean) ** 2 for v in d) / (J - 1)
    if var == 0.0 or var < (abs(mean) * 1e-15) ** 2:
        if mean == 0.0:
            return 0.0, 1.0
        return math.copysign(math.inf, mean), 0.0
    t = mean / math.sqrt((1.0 / J + test_train_ratio) * var)
    p = 2.0 * float(stats.t.sf(abs(t), J - 1))
    return t, p


def _verdict(results, folds, level):
    """Mark the best model; test each other one against it (paired folds)."""
    ok = [r for r in results if r["error"] is None and r["scores"]]
    for r in results:
        r["comparison"] = None
    if not ok:
        return None
    best = max(ok, key=lambda r: r["mean"])
    ratio = _mean([f["n_test"] / f["n_train"] for f in folds])
    for r in ok:
        if r is best:
            r["comparison"] = {
                "best": True,
                "difference": 0.0,
                "t": None,
                "p_value": None,
                "significant": None,
            }
            continue
        if len(r["scores"]) != len(best["scores"]):
            continue  # cannot pair
        diffs = [a - b for a, b in zip(r["scores"], best["scores"])]
        t, p = corrected_resampled_ttest(diffs, ratio)
        r["comparison"] = {
            "best": False,
            "difference": _mean(diffs),
            "t": t,
            "p_value": p,
            "significant": bool(p < level) if p == p else None,
        }
    return best["model"]


def _format_table(results, scoring):
    """Plain-text table, one row per model, with the verdict against the best."""
    header = [
        "model",
        f"{scoring} mean",
        "std",
        "vs best",
        "p-value",
        "verdict",
        "fit (s)",
        "predict (s)",
    ]
    rows = []
    for r in results:
        if r["error"] is not None:
            rows.append([r["model"], "failed", "", "", "", "", "", ""])
            continue
        c = r.get("comparison")
        if c is None:
            vs, p, verdict = "", "", ""
        elif c["best"]:
            vs, p, verdict = "", "", "best"
        else:
            vs = f"{c['difference']:+.4f}"
            p = "" if c["p_value"] is None else f"{c['p_value']:.3f}"
            verdict = {True: "significant", False: "not significant", None: ""}[
                c["significant"]
            ]
        rows.append(
            [
                r["model"],
                f"{r['mean']:.4f}",
                f"{r['std']:.4f}",
                vs,
                p,
                verdict,
                f"{r['mean_fit_time']:.3f}",
                f"{r['mean_predict_time']:.3f}",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {0, 5}

    def fmt(row):
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    return "\n".join(lines)


def _format_chosen(results):
    """Lines of the hyper-parameters each model chose per fold (``*`` = edge)."""
    lines = []
    width = max((len(r["model"]) for r in results), default=0)
    for r in results:
        chosen = [c for c in r["chosen"] if c is not None]
        if not chosen or not r["grid"]:
            continue
        keys = [k for k in r["grid"] if any(k in c for c in chosen)]
        key_width = max(len(k) for k in keys)
        cells = {
            key: [
                _fmt_value(c.get(key, "-"))
                + ("*" if key in _edges(r["grid"], c) else "")
                for c in chosen
            ]
            for key in keys
        }
        cell_width = max(len(c) for row in cells.values() for c in row)
        for j, key in enumerate(keys):
            head = r["model"].ljust(width) if j == 0 else " " * width
            row = " ".join(c.rjust(cell_width) for c in cells[key])
            lines.append(f"  {head}  {key.ljust(key_width)}  {row}")
    return lines


def _edge_warnings(results, n_splits):
    """One warning line per model that chose an edge of its grid."""
    lines = []
    for r in results:
        parts = []
        for e in r.get("edges", []):
            side = "smallest" if e["edge"] == "lower" else "largest"
            parts.append(
                f"{e['param']}={_fmt_value(e['value'])} ({side}) in "
                f"{e['n_folds']}/{n_splits} folds"
            )
        if parts:
            lines.append(
                f"Warning: {r['model']} chose an edge of its grid: "
                + ", ".join(parts)
                + "; the best value may lie beyond it (try --grid large)."
            )
    return lines


def _plot_formats():
    """File extensions matplotlib can write; CLIError when it is missing."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    return FigureCanvasBase.get_supported_filetypes()


def _time_axis(ax, times):
    """Scale the fit-time axis so that it is readable for any range of times.

    Times within about one decade (largest / smallest < 20) get a linear axis
    from zero with plain ticks; wider ranges a log axis with a labelled tick
    at every power of ten (and at 2 and 5 times it when the range is at most
    two decades). Returns ``"linear"`` or ``"log"``.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [t for t in times if t > 0]
    low = min(positive) if positive else 1.0
    high = max(positive) if positive else 1.0
    if high / low < 20:
        ax.set_xscale("linear")
        ax.set_xlim(0, high * 1.15)
        return "linear"
    ax.set_xscale("log")
    decades = math.log10(high / low)
    ax.set_xlim(low / 2, high * 2)
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    return "log"


def _plot_title(info):
    name = os.path.splitext(os.path.basename(str(info["dataset"])))[0]
    return name or str(info["dataset"])


def _plot_figure(results, info, scoring, kind="summary"):
    """The matplotlib Figure of the successful models, or None if none."""
    from matplotlib.figure import Figure

    ok = [r for r in results if r["error"] is None and r["scores"]]
    if not ok:
        return None
    names = [r["model"] for r in ok]
    best = next((r for r in ok if (r.get("comparison") or {}).get("best")), None)
    folds_text = f"{info['cv']}-fold CV" + (
        f" x {info['repeats']}" if info.get("repeats", 1) > 1 else ""
    )
    if kind == "paired":
        fig = Figure(figsize=(max(5.0, 1.1 * len(ok) + 2), 4.5))
        ax = fig.subplots()
        pos = list(range(len(ok)))
        n = min(len(r["scores"]) for r in ok)
        for j in range(n):
            ax.plot(pos, [r["scores"][j] for r in ok], color="0.6", lw=0.8, marker=".")
        ax.plot(pos, [r["mean"] for r in ok], "o", color="C0", ms=8, label="mean")
        if best is not None:
            k = names.index(best["model"])
            ax.plot([k], [best["mean"]], "*", color="C3", ms=16, label="best")
        ax.set_xticks(pos, names)
        ax.set_ylabel(f"{scoring} per fold (lines join the same fold)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        ax.set_title(f"{folds_text}, paired folds", fontsize="medium")
    else:
        fig = Figure(figsize=(9, 0.5 * len(ok) + 1.8))
        ax1, ax2 = fig.subplots(1, 2)
        pos = list(range(len(ok)))
        ax1.errorbar(
            [r["mean"] for r in ok],
            pos,
            xerr=[r["std"] for r in ok],
            fmt="o",
            capsize=4,
        )
        if best is not None:
            k = names.index(best["model"])
            ax1.plot([best["mean"]], [k], "*", color="C3", ms=14)
        labels = [r["model"] + (" (best)" if r is best else "") for r in ok]
        ax1.set_yticks(pos, labels)
        ax1.set_ylim(len(ok) - 0.5, -0.5)
        ax1.grid(axis="x", alpha=0.3)
        ax1.set_xlabel(f"{scoring} ({folds_text}, mean and std)")
        times = [r["mean_fit_time"] for r in ok]
        ax2.barh(pos, times, color="C1")
        ax2.set_ylim(len(ok) - 0.5, -0.5)
        ax2.set_xlabel("fit time per fold (s)")
        _time_axis(ax2, times)
        ax2.grid(axis="x", alpha=0.3)
        ax2.set_yticks(pos, [""] * len(ok))
    fig.suptitle(_plot_title(info))
    fig.tight_layout()
    return fig


def _plot(results, info, scoring, fmt, kind="summary"):
    """The chart of the successful models as bytes; None when every model failed."""
    import io

    fig = _plot_figure(results, info, scoring, kind)
    if fig is None:
        return None
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
    if args.repeats < 1:
        raise CLIError(f"--repeats must be at least 1, got {args.repeats}.")
    if args.inner_cv < 2:
        raise CLIError(f"--inner-cv must be at least 2, got {args.inner_cv}.")
    if not 0 < args.significance < 1:
        raise CLIError(
            f"--significance must be between 0 and 1, got {args.significance}."
        )
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
    images = _image_shape_of(args)  # checks the --image-shape syntax
    if images is None and args.models is not None:
        for name in _requested_models(args.models, None):
            if name in _CNTK_READOUTS:
                raise CLIError(_cntk_needs_images(name))
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


#: Version of the layout of ``sknetk compare --json`` (see ``compare_schema.json``).
JSON_SCHEMA_VERSION = 1


def compare_schema():
    """The JSON schema of ``sknetk compare --json`` files, as a dict.

    Returns
    -------
    dict
        A JSON Schema (draft 2020-12) document; the file ships with sknetk as
        ``sknetk/compare_schema.json``.

    Examples
    --------
    >>> from sknetk.cli import compare_schema
    >>> compare_schema()["properties"]["schema_version"]["const"]
    1
    """
    from importlib import resources

    text = resources.files("sknetk").joinpath("compare_schema.json").read_text()
    return json.loads(text)


def _versions():
    versions = {"python": platform.python_version(), "sknetk": __version__}
    for module, label in (
        ("numpy", "numpy"),
        ("scipy", "scipy"),
        ("sklearn", "sklearn"),
        ("joblib", "joblib"),
        ("threadpoolctl", "threadpoolctl"),
    ):
        versions[label] = _version(module)
    return versions


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine():
    import joblib

    return {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": int(joblib.cpu_count()),
    }


def _gap_cpu_minutes(info, args):
    """Rough CPU-minutes of the GAP cntk row over all folds."""
    n = info["n_samples"]
    n_train = n * (args.cv - 1) // args.cv
    entries = n_train * (n_train + 1) / 2 + (n - n_train) * n_train
    grid = _GRIDS[args.grid]["cntk"] if args.tune else _NO_TUNE_CNTK
    pairs = math.prod(args.images[:2]) ** 2
    seconds = entries * pairs * max(grid["depth"]) * _GAP_SECONDS_PER_PAIR_LAYER
    return seconds * args.cv * args.repeats / 60


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
    images = info.get("image_shape")
    args.images = tuple(images) if images is not None else None
    names = _parse_models(args.models, task, args.images)
    models, params = {}, {}
    for name in names:
        est, _ = _make_model(name, task, args)
        step, grid = _search(name, task, est, args)
        desc = _describe(step)
        if name == "mlp-after" and "mlp" in names:
            desc += (
                "; in each fold, with the network the mlp row chose there "
                "(the same trained net)"
            )
        if name in _CNTK_READOUTS:
            desc += (
                "; depth and alpha chosen in each fold by the estimator's exact "
                "leave-one-out on the training rows"
            )
        models[name] = (step, desc, grid)
        params[name] = _json_safe(est.get_params(deep=False))
    info.update(
        cv=args.cv,
        repeats=args.repeats,
        inner_cv=args.inner_cv if args.tune else None,
        tuned=bool(args.tune),
        grid=args.grid if args.tune else None,
        scoring=scoring,
        seed=args.random_state,
        n_jobs=args.n_jobs,
        blas_threads=_blas_threads(args.n_jobs),
        significance_level=args.significance,
    )
    classes = f", {info['n_classes']} classes" if "n_classes" in info else ""
    print(
        f"Dataset: {info['dataset']} ({info['n_samples']} samples, "
        f"{info['n_columns']} columns, {task}{classes})",
        file=out,
    )
    if {"ntk", "nngp", *_CNTK_READOUTS} & set(names):
        # The kernel search holds max(depths) + 3 kernels of n x n.
        n_train = info["n_samples"] * (args.cv - 1) // args.cv
        gib = (5 + 3) * 8 * n_train**2 / 2**30
        if gib > 2:
            info["notes"].append(
                f"the kernel models need about {gib:.0f} GiB per fold; "
                "lower it with --max-samples"
            )
    if "cntk" in names and args.device != "gpu":
        minutes = _gap_cpu_minutes(info, args)
        if minutes > 10:
            info["notes"].append(
                f"the cntk model (global average pooling, "
                f"{math.prod(args.images[:2])}^2 pixel pairs per kernel entry) "
                f"needs roughly {minutes:.0f} CPU-minutes over the folds on a "
                "CPU; --max-samples, cntk-flatten or --device gpu shorten it"
            )
    for note in info["notes"]:
        print(f"Note: {note}", file=out)
    repeats = f", repeated {args.repeats} times" if args.repeats > 1 else ""
    if args.images is not None:
        scaled = (
            "images of "
            + "x".join(map(str, args.images))
            + " pixels divided by the largest pixel of each training fold (one "
            "factor, not standardized per column)"
            + (", target standardized" if task == "regression" else "")
        )
    else:
        scaled = (
            "features "
            + ("and target " if task == "regression" else "")
            + "standardized inside each fold"
        )
    print(
        f"{args.cv}-fold cross-validation{repeats} (paired folds), "
        f"scoring={scoring}, {scaled}",
        file=out,
    )
    if args.tune:
        cntk = [n for n in names if n in _CNTK_READOUTS]
        print(
            f"Every model tuned by grid search ({args.grid} grids) over the "
            f"same inner {args.inner_cv}-fold splits of each training fold"
            + (
                f"; {', '.join(cntk)}: over the same grid by exact "
                "leave-one-out on the training fold"
                if cntk
                else ""
            ),
            file=out,
        )
    else:
        print(
            "--no-tune: baselines keep scikit-learn's defaults; ntk/nngp"
            + ("/cntk" if any(n in _CNTK_READOUTS for n in names) else "")
            + " tune ridge and depth by leave-one-out",
            file=out,
        )
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    with threadpool_limits(limits=info["blas_threads"], user_api="blas"):
        results, folds = _evaluate(models, table, y, task, scorer, args)
    info["total_seconds"] = time.perf_counter() - start
    best = _verdict(results, folds, args.significance)
    for r in results:
        r["params"] = params.get(r["model"], {})
    print(file=out)
    print(_format_table(results, scoring), file=out)
    if best is not None and len(folds) > 1:
        print(
            f"vs best: mean paired difference to {best} over the {len(folds)} "
            "folds; p-value: corrected resampled t-test (Nadeau and Bengio "
            f"2003), {len(folds) - 1} degrees of freedom; significant if p < "
            f"{args.significance:g}",
            file=out,
        )
    print(file=out)
    print("Models (configuration, search and grid of each row):", file=out)
    for r in results:
        grid = ""
        if r["grid"]:
            full = _n_candidates(r["grid"])
            half = f", a half fraction of {full}" if r["n_candidates"] < full else ""
            grid = (
                f"  grid: {_grid_text(r['grid'])} ({r['n_candidates']} "
                f"candidates{half})"
            )
        print(f"  {r['model']}: {r['summary']}{grid}", file=out)
    chosen = _format_chosen(results)
    if chosen:
        print(file=out)
        print(
            "Hyper-parameters chosen in each fold (* = on an edge of the grid):",
            file=out,
        )
        for line in chosen:
            print(line, file=out)
    for line in _edge_warnings(results, len(folds)):
        print(line, file=out)
    for r in results:
        if r["warnings"]:
            print(
                f"Note: {r['model']}: {r['warnings']} ConvergenceWarning(s) "
                "in the folds (not shown)",
                file=out,
            )
        if r["error"] is not None:
            print(f"Error: {r['model']} failed: {r['error']}", file=out)
    print(
        f"Total time: {info['total_seconds']:.1f} s "
        f"({info['blas_threads']} BLAS thread(s))",
        file=out,
    )
    status = 1 if any(r["error"] is not None for r in results) else 0
    if args.json is not None:
        payload = {
            "schema_version": JSON_SCHEMA_VERSION,
            "versions": _versions(),
            "machine": _machine(),
            **info,
            "best_model": best,
            "folds": folds,
            "results": results,
        }
        # Strict JSON: a failed model's NaN mean is written as null.
        text = json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"
        _write_output(args.json, "--json", text.encode(), args.force)
    if args.plot is not None:
        fmt = os.path.splitext(args.plot)[1][1:].lower()
        try:
            image = _plot(results, info, scoring, fmt, args.plot_kind)
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
    cupy, reason = probe_cupy()
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
    parser.add_argument("--version", action="version", version=f"sknetk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{compare,info}")
    models = "\n".join(
        f"  {name:{_NAME_WIDTH}s} {text}" for name, text in MODELS.items()
    )
    cmp = sub.add_parser(
        "compare",
        help="cross-validate NTK/NNGP models next to tuned scikit-learn baselines",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Cross-validate infinite-width network models next to scikit-learn\n"
            "baselines, every model tuned by the same inner grid search; print\n"
            "the mean and std of the score, the fit and predict times, the best\n"
            "model and, for each other model, whether its difference to the best\n"
            "is significant (corrected resampled t-test over paired folds), and\n"
            "the hyper-parameters chosen in each fold.\n"
            f"Without --dataset or --csv, runs on {DEFAULT_DATASET}."
        ),
        epilog=(
            f"models:\n{models}\n\n"
            "grids (--grid small, the default; candidates in parentheses; every\n"
            "model searched by the same inner K-fold splits and scorer, the cntk\n"
            "models by exact leave-one-out; ntk/nngp/cntk alphas are relative to\n"
            "the kernel's mean diagonal; MLP: Adam, ReLU, up to "
            f"{_MLP_MAX_ITER} epochs):\n"
            f"{_help_grids('small')}\n\n"
            f"grids (--grid large):\n{_help_grids('large')}\n\n"
            "--no-tune: the former protocol; baselines keep scikit-learn's\n"
            "defaults (MLP: 100 units, 500 epochs) and ntk/nngp tune six alphas\n"
            "and depths 1-5 by leave-one-out.\n\n"
            "examples:\n"
            "  sknetk compare\n"
            "  sknetk compare --dataset diabetes --repeats 5 --plot compare.png\n"
            "  sknetk compare --csv data.csv --target price --drop id\n"
            "  sknetk compare --dataset digits --models ntk,svm --device gpu\n"
            "  sknetk compare --dataset digits   # adds the cntk model, 500 rows\n"
            "  sknetk compare --csv mnist.csv --target label --image-shape 28,28 "
            "--models cntk-flatten,ntk,svm"
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
        "--image-shape",
        metavar="H,W[,C]",
        help=(
            "the feature columns are images of H x W pixels and C channels "
            "(default 1), in row-major NHWC order: enables the cntk models and "
            "scales pixels by one factor instead of standardizing columns "
            "(digits is 8,8 without it)"
        ),
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
            + " for regression; "
            + ",".join(_IMAGE_DEFAULT_MODELS)
            + " added on image data)"
        ),
    )
    run.add_argument("--cv", type=int, default=5, help="number of folds (default 5)")
    run.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="R",
        help="repeat the K-fold split R times with new shuffles (default 1)",
    )
    run.add_argument(
        "--grid",
        choices=GRID_NAMES,
        default="small",
        help="search budget: the grids listed below (default small)",
    )
    run.add_argument(
        "--inner-cv",
        type=int,
        default=3,
        metavar="K",
        help="folds of the inner search in each training fold (default 3)",
    )
    run.add_argument(
        "--no-tune",
        dest="tune",
        action="store_false",
        help="baselines with scikit-learn's defaults, ntk/nngp by leave-one-out",
    )
    run.add_argument(
        "--significance",
        type=float,
        default=0.05,
        metavar="LEVEL",
        help="level of the test against the best model (default 0.05)",
    )
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
        help=(
            "threads for the kernels and the random forest, processes for the "
            "MLP search, and the limit on BLAS threads (default -1: all cores)"
        ),
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
    output.add_argument(
        "--plot-kind",
        choices=("summary", "paired"),
        default="summary",
        help=(
            "summary: mean and std of the score and fit times; paired: every "
            "fold's score, a line per fold across the models (default summary)"
        ),
    )
    output.add_argument(
        "--json",
        metavar="FILE",
        help="save the results as JSON (layout: sknetk/compare_schema.json)",
    )
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
        help="no progress lines",
    )
    verbosity.add_argument(
        "-v",
        "--verbose",
        dest="verbose",
        action="store_const",
        const=1,
        help="progress (model and fold) on standard error (the default)",
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
