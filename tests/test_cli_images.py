"""``sknetk compare`` on image data: the cntk rows, ``--image-shape``, the
pixel scaling (one factor, not per column), the image defaults and the option
errors, and the JSON record of an image run."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import (
    KFold,
    StratifiedKFold,
    cross_val_score,
    cross_validate,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from sknetk import CNTKClassifierCV, CNTKRegressorCV, cli
from sknetk.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, tmp_path, *argv):
    path = tmp_path / "r.json"
    code, out, err = run(capsys, "compare", *argv, "-q", "--json", str(path))
    assert code == 0, out + err
    return json.loads(path.read_text()), out


def digits_rows(n, seed=0):
    """The rows ``--max-samples n --random-state seed`` keeps of digits."""
    X, y = load_digits(return_X_y=True)
    rows = np.random.RandomState(seed).choice(len(y), size=n, replace=False)
    return X[rows], y[rows]


def cntk(cls, readout, grid, image_shape):
    """The estimator a cntk row stands for, built here from its parameters."""
    return cls(
        alphas=grid["alpha"],
        depths=grid["depth"],
        depth=max(grid["depth"]),
        image_shape=image_shape,
        readout=readout,
        alpha_scale="mean_diag",
        n_jobs=1,
    )


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


# A JSON Schema validator for the subset compare_schema.json uses (the tests
# do not depend on the jsonschema package).
def _is_type(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    return value is None if name == "null" else isinstance(value, types[name])


def validate(instance, schema, path="$"):
    if "const" in schema:
        assert instance == schema["const"], path
    if "enum" in schema:
        assert instance in schema["enum"], path
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(_is_type(instance, t) for t in types), f"{path}: not {types}"
    if _is_type(instance, "number"):
        assert instance >= schema.get("minimum", -np.inf), path
        assert instance <= schema.get("maximum", np.inf), path
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            assert key in instance, f"{path}: missing {key!r}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                validate(value, props[key], f"{path}.{key}")
            elif extra is False:
                raise AssertionError(f"{path}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                validate(value, extra, f"{path}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, value in enumerate(instance):
            validate(value, schema["items"], f"{path}[{i}]")


# ---------------------------------------------------------------------------
# The cntk rows are the CNTK estimators on the same folds
# ---------------------------------------------------------------------------
def test_cntk_rows_equal_cross_val_score_on_digits(capsys, tmp_path):
    """On digits, each cntk row scores as cross_validate of CNTKClassifierCV
    (its grid, exact leave-one-out) on the pixels / 16, on the same folds, and
    chooses the same depth and ridge; the JSON validates against the schema."""
    result, out = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "digits",
        "--models",
        "cntk,cntk-flatten",
        "--max-samples",
        "65",
        "--cv",
        "3",
        "--n-jobs",
        "1",
    )
    X, y = digits_rows(65)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    # The fold's largest pixel is 16 (the digits' range), so the scaling the
    # row applies is X / 16, whatever the columns' spreads.
    assert all(X[train].max() == 16 for train, _ in folds.split(X, y))
    by_name = {r["model"]: r for r in result["results"]}
    assert list(by_name) == ["cntk", "cntk-flatten"]
    for name, readout in (("cntk", "gap"), ("cntk-flatten", "flatten")):
        grid = cli._GRIDS["small"][name]
        model = cntk(CNTKClassifierCV, readout, grid, (8, 8, 1))
        ref = cross_validate(model, X / 16, y, cv=folds, return_estimator=True)
        row = by_name[name]
        np.testing.assert_allclose(row["scores"], ref["test_score"], rtol=1e-12)
        assert row["chosen"] == [
            {"alpha": est.alpha_relative_, "depth": est.depth_}
            for est in ref["estimator"]
        ]
        assert row["grid"] == {k: list(v) for k, v in grid.items()}
        assert row["n_candidates"] == len(grid["alpha"]) * len(grid["depth"])
        assert row["params"]["readout"] == readout
        assert row["params"]["image_shape"] == [8, 8, 1]
        assert "CNTKClassifierCV(" in row["estimator"]
        assert "leave-one-out" in row["summary"]
    assert result["image_shape"] == [8, 8, 1]
    validate(result, cli.compare_schema())
    assert "images of 8x8x1 pixels divided by the largest pixel" in out
    assert "cntk, cntk-flatten: over the same grid by exact leave-one-out" in out


def test_other_models_see_the_same_scaled_pixels(capsys, tmp_path):
    """On image data every model gets the pixels divided by one factor, not
    standardized columns: svm and knn (--no-tune, scikit-learn's defaults)
    equal their cross_val_score on X / 16, and differ from the standardized
    pipeline's scores."""
    result, _ = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "digits",
        "--models",
        "svm,knn",
        "--max-samples",
        "90",
        "--cv",
        "3",
        "--no-tune",
    )
    X, y = digits_rows(90)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    by_name = {r["model"]: r for r in result["results"]}
    for name, model in (("svm", SVC()), ("knn", KNeighborsClassifier())):
        ref = cross_val_score(model, X / 16, y, cv=folds)
        np.testing.assert_allclose(by_name[name]["scores"], ref, rtol=1e-12)
    standardized = cross_val_score(
        make_pipeline(StandardScaler(), SVC()), X, y, cv=folds
    )
    assert not np.allclose(by_name["svm"]["scores"], standardized)


def test_pixel_scaler_divides_by_one_global_factor():
    """The image preprocessor keeps the ratios between pixels (one factor: the
    largest absolute training pixel); a column-wise scaler would not."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 6)) * [1, 10, 100, 1, 1, 1]
    scaler = cli._PixelScaler().fit(X)
    assert scaler.scale_ == np.abs(X).max()
    np.testing.assert_array_equal(scaler.transform(X[:5]), X[:5] / np.abs(X).max())
    assert cli._PixelScaler().fit(np.zeros((3, 4))).scale_ == 1.0


# ---------------------------------------------------------------------------
# CSV images with --image-shape
# ---------------------------------------------------------------------------
def _digits_csv(tmp_path, n, target=None):
    X, y = digits_rows(n, seed=1)
    t = y if target is None else target(X, y)
    path = tmp_path / "images.csv"
    header = ["id", *(f"p{j}" for j in range(64)), "label"]
    write_csv(
        path,
        header,
        [
            [f"img{i}", *map(int, x), repr(float(v))]
            for i, (x, v) in enumerate(zip(X, t))
        ],
    )
    return path, X, t


def test_csv_with_image_shape_classification(capsys, tmp_path):
    """A CSV of pixel columns (plus a dropped id) with --image-shape 4,8,2: the
    cntk row is CNTKClassifierCV with image_shape=(4, 8, 2) on the same folds,
    the pixels in row-major NHWC order."""
    path, X, y = _digits_csv(tmp_path, 50)
    result, out = run_json(
        capsys,
        tmp_path,
        "--csv",
        str(path),
        "--target",
        "label",
        "--drop",
        "id",
        "--image-shape",
        "4,8,2",
        "--models",
        "cntk",
        "--cv",
        "3",
        "--n-jobs",
        "1",
    )
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    scale = FunctionTransformer(lambda A: A / 16.0)
    assert all(X[train].max() == 16 for train, _ in folds.split(X, y))
    model = cntk(CNTKClassifierCV, "gap", cli._GRIDS["small"]["cntk"], (4, 8, 2))
    ref = cross_val_score(make_pipeline(scale, model), X, y.astype(int), cv=folds)
    row = result["results"][0]
    np.testing.assert_allclose(row["scores"], ref, rtol=1e-12)
    assert result["image_shape"] == [4, 8, 2] and result["n_columns"] == 64
    assert row["params"]["image_shape"] == [4, 8, 2]
    assert "images of 4x8x2 pixels" in out


def test_csv_with_image_shape_regression(capsys, tmp_path):
    """A numeric target on images: the cntk row is CNTKRegressorCV on the
    scaled pixels with the target standardized inside each fold (R^2)."""
    path, X, t = _digits_csv(
        tmp_path,
        40,
        target=lambda X, y: X[:, :32].mean(axis=1) - X[:, 32:].mean(axis=1),
    )
    result, out = run_json(
        capsys,
        tmp_path,
        "--csv",
        str(path),
        "--target",
        "label",
        "--drop",
        "id",
        "--image-shape",
        "8,8",
        "--models",
        "cntk-flatten",
        "--cv",
        "3",
        "--no-tune",
        "--n-jobs",
        "1",
    )
    assert result["task"] == "regression"
    folds = KFold(3, shuffle=True, random_state=0)
    scales = [16.0 if X[train].max() == 16 else None for train, _ in folds.split(X)]
    assert scales == [16.0] * 3
    model = cntk(CNTKRegressorCV, "flatten", cli._NO_TUNE_CNTK, (8, 8, 1))
    pipe = make_pipeline(FunctionTransformer(lambda A: A / 16.0), model)
    ref = cross_val_score(
        TransformedTargetRegressor(pipe, transformer=StandardScaler()),
        X,
        t,
        cv=folds,
        scoring="r2",
    )
    np.testing.assert_allclose(result["results"][0]["scores"], ref, rtol=1e-10)
    assert "target standardized" in out
    assert "ntk/nngp/cntk tune ridge and depth by leave-one-out" in out


# ---------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------
def _prepared(*argv):
    args = cli._parser().parse_args(["compare", *argv])
    cli._check_args(args)
    return cli._prepare(args)


def test_image_defaults_add_cntk_and_cap_the_rows():
    """digits: the default models gain cntk, and without --max-samples the
    GAP cntk run keeps 500 random rows (a note says so); without cntk in the
    run, or with --max-samples, the rows are as asked. breast_cancer (the
    default run) is unchanged: no cntk, every row, no image shape."""
    assert cli._parse_models(None, "classification", (8, 8, 1)) == [
        *cli._parse_models(None, "classification"),
        "cntk",
    ]
    assert "cntk" not in cli._parse_models(None, "classification")
    table, y, _, info = _prepared("--dataset", "digits")
    assert info["n_samples"] == len(y) == cli._IMAGE_MAX_SAMPLES == 500
    assert info["image_shape"] == [8, 8, 1]
    assert any("default --max-samples for image data" in n for n in info["notes"])
    X, _ = digits_rows(500)
    np.testing.assert_array_equal(table.to_array(), X)
    for argv in (("--models", "ntk,cntk-flatten"), ("--max-samples", "1797")):
        _, y, _, info = _prepared("--dataset", "digits", *argv)
        assert len(y) == 1797 and info["notes"] == []
    _, y, _, info = _prepared()
    assert len(y) == len(load_breast_cancer().target) and "image_shape" not in info
    assert info["notes"] == []


# ---------------------------------------------------------------------------
# Errors: one line, exit code 2, before any model runs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (("--dataset", "digits", "--image-shape", "8x8"), "must be H,W or H,W,C"),
        (("--dataset", "digits", "--image-shape", "8,0"), "must be H,W or H,W,C"),
        (("--dataset", "digits", "--image-shape", "8,8,1,1"), "must be H,W or H,W,C"),
        (("--dataset", "digits", "--image-shape", "8,-8"), "must be H,W or H,W,C"),
        (
            ("--dataset", "digits", "--image-shape", "8,9"),
            "--image-shape 8,9,1 holds 72 values per image, but digits has 64",
        ),
        (("--dataset", "iris", "--models", "svm,cntk"), "cntk needs image data"),
        (("--dataset", "wine", "--models", "cntk-flatten"), "cntk-flatten needs image"),
        (("--models", "cntk-gap"), "cntk needs image data"),
    ],
)
def test_image_option_errors(capsys, monkeypatch, argv, message):
    monkeypatch.setattr(cli, "_evaluate", pytest.fail)  # no model may run
    code, out, err = run(capsys, "compare", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("sknetk compare: error: ")
    assert message in err


def test_csv_image_errors(capsys, monkeypatch, tmp_path):
    """cntk on a CSV needs --image-shape; the shape must match the numeric
    feature columns, and every feature column must be numeric."""
    monkeypatch.setattr(cli, "_evaluate", pytest.fail)
    path, _, _ = _digits_csv(tmp_path, 30)
    base = ("compare", "--csv", str(path), "--target", "label")
    cases = [
        (("--drop", "id", "--models", "cntk"), "cntk needs image data"),
        (("--drop", "id", "--image-shape", "8,4"), "holds 32 values per image"),
        (("--image-shape", "8,8"), "feature column(s) 'id' of"),
        (("--drop", "id,p0", "--image-shape", "8,8"), "has 63 numeric feature"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, *base, *argv)
        assert code == 2 and out == "", err
        assert err.count("\n") == 1 and message in err, err
