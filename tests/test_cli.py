"""Tests of the ``sknetk`` command line (``sknetk.cli``) and the progress helper."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes, load_iris
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sknetk import _progress
from sknetk.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


HAS_NTK = _has("sknetk._regression") and _has("sknetk._classification")
needs_ntk = pytest.mark.skipif(
    not HAS_NTK, reason="sknetk._regression / sknetk._classification not present"
)


def run(capsys, *argv):
    """Run ``main(argv)``; return ``(exit code, stdout, stderr)``."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out):
    """Parse the results table: model name -> list of its cells."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(("Note:", "Error:", "Total", "vs best")):
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


@pytest.fixture
def mixed_csv(tmp_path):
    """A CSV with numeric, boolean, categorical and missing values."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 60
    colour = rng.choice(["red", "green", "blue"], size=n)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    flag = rng.random(n) < 0.5
    label = np.where(x1 + (colour == "red") > 0.3, "yes", "no")
    value = 2 * x1 - x2 + (colour == "blue") + 0.1 * rng.normal(size=n)
    x2_missing = x2.copy()
    x2_missing[::13] = np.nan
    frame = pd.DataFrame(
        {
            "id": [f"row{i}" for i in range(n)],
            "x1": x1,
            "x2": x2_missing,
            "colour": colour,
            "flag": flag,
            "label": label,
            "value": value,
        }
    )
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------------
# compare on bundled data
# ---------------------------------------------------------------------------
def test_compare_matches_sklearn_cross_val_score(capsys, tmp_path):
    """Scores equal scikit-learn's cross_val_score with the same folds and pipeline."""
    out_json = tmp_path / "res.json"
    code, out, err = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "svc,dummy",
        "--no-tune",
        "--cv",
        "4",
        "--json",
        str(out_json),
        "-q",
    )
    assert code == 0, err
    assert err == ""
    X, y = load_iris(return_X_y=True)
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    expected = cross_val_score(make_pipeline(StandardScaler(), SVC()), X, y, cv=folds)
    result = json.loads(out_json.read_text())
    assert result["dataset"] == "iris"
    assert result["task"] == "classification"
    assert result["n_samples"] == 150 and result["n_classes"] == 3
    svm = next(r for r in result["results"] if r["model"] == "svm")
    np.testing.assert_allclose(svm["scores"], expected, rtol=1e-12)
    assert svm["mean"] == pytest.approx(expected.mean())
    assert svm["std"] == pytest.approx(expected.std())
    assert svm["mean_fit_time"] > 0 and svm["mean_predict_time"] > 0
    rows = table_rows(out)
    assert set(rows) == {"svm", "dummy"}
    assert float(rows["svm"][1]) == pytest.approx(expected.mean(), abs=5e-5)
    dummy = cross_val_score(DummyClassifier(), X, y, cv=folds)
    assert float(rows["dummy"][1]) == pytest.approx(dummy.mean(), abs=5e-5)


def test_compare_regression_dataset(capsys, tmp_path):
    """diabetes is regression with standardized targets; R^2 equals scikit-learn's."""
    from sklearn.kernel_ridge import KernelRidge

    out_json = tmp_path / "res.json"
    code, out, err = run(
        capsys,
        "compare",
        "--dataset",
        "diabetes",
        "--models",
        "krr-rbf,ridge",
        "--no-tune",
        "--cv",
        "3",
        "--json",
        str(out_json),
        "-q",
    )
    assert code == 0, err
    assert "regression" in out and "r2 mean" in out
    X, y = load_diabetes(return_X_y=True)
    folds = KFold(3, shuffle=True, random_state=0)
    model = TransformedTargetRegressor(
        make_pipeline(StandardScaler(), KernelRidge(alpha=1.0, kernel="rbf")),
        transformer=StandardScaler(),
    )
    expected = cross_val_score(model, X, y, cv=folds, scoring="r2")
    result = json.loads(out_json.read_text())
    krr = next(r for r in result["results"] if r["model"] == "krr-rbf")
    np.testing.assert_allclose(krr["scores"], expected, rtol=1e-10)


@needs_ntk
@pytest.mark.slow  # a subprocess or many rows: seconds
def test_compare_default_runs_ntk_models(capsys, tmp_path, monkeypatch):
    """With no data arguments, compare runs its default models on breast_cancer."""
    from sknetk import cli
    from sknetk.cli import DEFAULT_MODELS, _after_kernel_classes

    # Two-candidate network and forest grids keep the test fast; the protocol
    # (inner grid search of every model) is the default one.
    small = {**cli._GRIDS["small"]}
    small["mlp"] = {
        "width": (16,),
        "depth": (1,),
        "alpha": (1e-4, 1e-1),
        "learning_rate_init": (1e-2,),
    }
    small["rf"] = {"max_features": (0.3,), "min_samples_leaf": (1, 5)}
    monkeypatch.setitem(cli._GRIDS, "small", small)
    plot = tmp_path / "cmp.png"
    code, out, err = run(
        capsys,
        "compare",
        "--cv",
        "3",
        "--max-samples",
        "90",
        "--n-jobs",
        "1",
        "--plot",
        str(plot),
        "-q",
    )
    assert code == 0, err
    assert out.startswith("Dataset: breast_cancer (90 samples")
    rows = table_rows(out)
    expected = [
        m
        for m in DEFAULT_MODELS["classification"]
        if m != "mlp-after" or _after_kernel_classes() is not None
    ]
    assert list(rows) == expected
    for name in ("ntk", "nngp"):
        # An infinitely wide ReLU network is a strong model on this data set.
        assert 0.85 < float(rows[name][1]) <= 1.0
    assert plot.stat().st_size > 1000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_ntk
def test_compare_ntk_regression_matches_estimator(capsys, tmp_path):
    """The ntk row on diabetes equals cross-validating the estimator it names."""
    from sklearn.base import clone

    from sknetk.cli import _make_model, _parser

    out_json = tmp_path / "res.json"
    code, _, err = run(
        capsys,
        "compare",
        "--dataset",
        "diabetes",
        "--models",
        "ntk",
        "--cv",
        "3",
        "--json",
        str(out_json),
        "-q",
        "--n-jobs",
        "1",
    )
    assert code == 0, err
    args = _parser().parse_args(["compare", "--n-jobs", "1"])
    est, _ = _make_model("ntk", "regression", args)
    X, y = load_diabetes(return_X_y=True)
    folds = KFold(3, shuffle=True, random_state=0)
    model = TransformedTargetRegressor(
        make_pipeline(StandardScaler(), clone(est)), transformer=StandardScaler()
    )
    expected = cross_val_score(model, X, y, cv=folds)
    scores = json.loads(out_json.read_text())["results"][0]["scores"]
    np.testing.assert_allclose(scores, expected, rtol=1e-8)
    assert np.mean(scores) > 0.3  # ridge-like models reach R^2 ~ 0.45 here


# ---------------------------------------------------------------------------
# compare on a CSV file
# ---------------------------------------------------------------------------
def test_compare_csv_mixed_columns_classification(capsys, mixed_csv, tmp_path):
    """String target, categorical and boolean columns and missing values work."""
    out_json = tmp_path / "res.json"
    code, out, err = run(
        capsys,
        "compare",
        "--csv",
        str(mixed_csv),
        "--target",
        "label",
        "--drop",
        "id,value",
        "--models",
        "svm,ridge",
        "--cv",
        "3",
        "--json",
        str(out_json),
        "-q",
    )
    assert code == 0, err
    assert "classification, 2 classes" in out
    assert "one-hot encoded 1 non-numeric column(s)" in out
    assert "imputed 5 missing feature values" in out
    result = json.loads(out_json.read_text())
    assert result["n_columns"] == 4  # x1, x2, colour, flag
    for r in result["results"]:
        assert r["error"] is None
        assert len(r["scores"]) == 3
        assert 0.6 < r["mean"] <= 1.0  # the label is a simple function of x1, colour


def test_compare_csv_regression_auto_task(capsys, mixed_csv, tmp_path):
    """A float target is regression; the linear model recovers it (R^2 near 1)."""
    out_json = tmp_path / "res.json"
    code, out, err = run(
        capsys,
        "compare",
        "--csv",
        str(mixed_csv),
        "--target",
        "value",
        "--drop",
        "id,label",
        "--models",
        "ridge",
        "--cv",
        "3",
        "--json",
        str(out_json),
        "-q",
    )
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert result["task"] == "regression"
    assert result["results"][0]["mean"] > 0.8


def test_compare_task_override(capsys, mixed_csv, tmp_path):
    """--task regression on a string target is rejected with a hint."""
    code, _, err = run(
        capsys,
        "compare",
        "--csv",
        str(mixed_csv),
        "--target",
        "label",
        "--drop",
        "id",
        "--task",
        "regression",
    )
    assert code == 2
    assert "not numeric" in err and "--task classification" in err


# ---------------------------------------------------------------------------
# Broken input: one line on stderr, exit code 2, no traceback
# ---------------------------------------------------------------------------
def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "make_argv, message",
    [
        (lambda p: ["--csv", str(p / "nope.csv"), "--target", "y"], "file not found"),
        (
            lambda p: ["--csv", _write(p, "a,b\n1,2\n3,4\n"), "--target", "y"],
            "target column 'y' not found",
        ),
        (
            lambda p: ["--csv", _write(p, "a,y\n" + "1,k\n" * 10), "--target", "y"],
            "single class",
        ),
        (lambda p: ["--csv", _write(p, ""), "--target", "y"], "is empty"),
        (
            lambda p: ["--csv", _write(p, "a,b,y\n1,2,0\n"), "--target", "y"],
            "fewer than --cv=5",
        ),
        (lambda p: ["--csv", _write(p, "a\n1\n")], "--csv needs --target"),
        (lambda p: ["--csv", str(p)], "--csv needs --target"),
        (lambda p: ["--csv", str(p), "--target", "y"], "is a directory"),
        (lambda p: ["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (
            lambda p: ["--dataset", "iris", "--models", "ntk,xgboost"],
            "unknown model 'xgboost'",
        ),
        (lambda p: ["--dataset", "iris", "--models", "krr-rbf"], "is a regressor"),
        (lambda p: ["--dataset", "iris", "--cv", "1"], "--cv must be at least 2"),
        (lambda p: ["--dataset", "iris", "--cv", "51"], "fewer than --cv=51"),
        (lambda p: ["--dataset", "iris", "--scoring", "nope"], "unknown --scoring"),
        (lambda p: ["--dataset", "iris", "--device", "tpu"], "device must be one of"),
        (lambda p: ["--dataset", "iris", "--target", "y"], "go with --csv"),
    ],
)
def test_compare_bad_input_one_line_exit_2(capsys, tmp_path, make_argv, message):
    """Each broken input ends with exit code 2 and one line on stderr."""
    code, out, err = run(capsys, "compare", "-q", *make_argv(tmp_path))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("sknetk compare: error: ")
    assert "Traceback" not in err + out


def test_compare_rejects_high_cardinality_column(capsys, tmp_path):
    """A text column with many distinct values is rejected, naming it."""
    rows = "".join(f"{i},name{i},{i % 2}\n" for i in range(40))
    path = _write(tmp_path, "x,name,y\n" + rows)
    code, _, err = run(capsys, "compare", "--csv", path, "--target", "y", "-q")
    assert code == 2
    assert "column 'name' is not numeric and has 40 distinct values" in err
    # Raising the limit (or dropping the column) makes the same file work.
    code, _, err = run(
        capsys,
        "compare",
        "--csv",
        path,
        "--target",
        "y",
        "--drop",
        "name",
        "--models",
        "dummy",
        "-q",
    )
    assert code == 0, err


def test_compare_float_target_rejected_for_classification(capsys, tmp_path):
    """--task classification on a continuous target says to use regression."""
    rows = "".join(f"{i},{i / 7:.4f}\n" for i in range(30))
    path = _write(tmp_path, "x,y\n" + rows)
    code, _, err = run(
        capsys, "compare", "--csv", path, "--target", "y", "--task", "classification"
    )
    assert code == 2 and "--task regression" in err


def test_compare_warns_about_kernel_memory(capsys, tmp_path, monkeypatch):
    """Large data with kernel models prints the memory they need per fold."""
    from sknetk import cli

    monkeypatch.setattr(cli, "_evaluate", lambda *args: ([], []))  # do not fit
    rows = "".join(f"{i % 97},{i % 2}\n" for i in range(9000))
    path = _write(tmp_path, "x,y\n" + rows)
    code, out, _ = run(
        capsys, "compare", "--csv", path, "--target", "y", "--models", "ntk", "-q"
    )
    assert code == 0
    # 7200 training rows per fold: 8 float64 matrices of 7200 x 7200 = 3.1 GiB.
    assert "need about 3 GiB per fold" in out
    code, out, _ = run(
        capsys,
        "compare",
        "--csv",
        path,
        "--target",
        "y",
        "--models",
        "ntk",
        "--max-samples",
        "2000",
        "-q",
    )
    assert "GiB" not in out and "subsampled 2000 of 9000 rows" in out


def test_compare_model_failure_reported(capsys, monkeypatch):
    """A model that raises is reported as failed, others still run, exit code 1."""
    from sknetk import cli

    class Broken(DummyClassifier):
        def fit(self, X, y):
            raise RuntimeError("boom\nsecond line")

    real = cli._make_model

    def fake(name, task, args):
        if name == "knn":
            return Broken(), "Broken"
        return real(name, task, args)

    monkeypatch.setattr(cli, "_make_model", fake)
    code, out, _ = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "knn,dummy",
        "--no-tune",
        "-q",
    )
    assert code == 1
    rows = table_rows(out)
    assert rows["knn"][1] == "failed"
    # Stratified 5-fold on balanced iris: the majority class is exactly 1/3.
    assert float(rows["dummy"][1]) == pytest.approx(1 / 3, abs=5e-5)
    assert "Error: knn failed: RuntimeError: boom" in out


def test_usage_errors_and_help(capsys):
    """argparse errors return 2, --help returns 0, no command prints usage."""
    assert main(["compare", "--cv", "five"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main(["compare", "--help"]) == 0
    assert "--dataset" in capsys.readouterr().out
    assert main([]) == 2
    assert "usage: sknetk" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
def test_info_reports_versions_gpu_and_budget(capsys):
    """info lists package versions, GPU availability and the memory budget."""
    import sklearn

    import sknetk
    from sknetk._device import gpu_available

    with sklearn.config_context(working_memory=321):
        code, out, err = run(capsys, "info")
    assert code == 0 and err == ""
    fields = {line.split()[0]: line for line in out.splitlines()}
    assert sknetk.__version__ in fields["sknetk"]
    assert np.__version__ in fields["numpy"]
    assert sklearn.__version__ in fields["scikit-learn"]
    assert "321 MiB" in fields["memory"]
    expected = "available:" if gpu_available() else "not available:"
    assert fields["GPU"].split(None, 1)[1].startswith(expected)


def test_python_m_sknetk_info_subprocess():
    """``python -m sknetk info`` runs in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "sknetk", "info"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("sknetk ")
    assert "memory budget" in proc.stdout


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------
def test_progress_silent_when_quiet():
    """verbose=0 returns the iterable itself and writes nothing."""
    items = [1, 2, 3]
    buf = io.StringIO()
    assert _progress.progress(items, desc="x", verbose=0, file=buf) is items
    assert buf.getvalue() == ""


def test_progress_plain_fallback(monkeypatch):
    """Without tqdm the fallback yields every item and ends with a final count."""
    monkeypatch.setattr(_progress, "_get_tqdm", lambda: None)
    buf = io.StringIO()
    out = list(
        _progress.progress(iter(range(7)), total=7, desc="fit", verbose=1, file=buf)
    )
    assert out == list(range(7))
    last = buf.getvalue().splitlines()[-1]
    assert last.startswith("fit: 7/7 [")


def test_progress_plain_fallback_without_total(monkeypatch):
    """The fallback counts items of an iterable without a length."""
    monkeypatch.setattr(_progress, "_get_tqdm", lambda: None)
    buf = io.StringIO()
    assert sum(_progress.progress((i for i in range(5)), verbose=2, file=buf)) == 10
    assert buf.getvalue().splitlines()[-1].startswith("5 [")


def test_progress_uses_tqdm_when_installed():
    """With tqdm installed, progress returns a tqdm bar writing to the file."""
    tqdm = pytest.importorskip("tqdm")
    buf = io.StringIO()
    bar = _progress.progress(range(3), desc="tq", verbose=1, file=buf)
    assert isinstance(bar, tqdm.std.tqdm)
    assert list(bar) == [0, 1, 2]
    assert "tq" in buf.getvalue()


def test_compare_progress_on_stderr(capsys):
    """Progress names the model and fold, one clean line per fit off a terminal."""
    code, out, err = run(
        capsys, "compare", "--dataset", "iris", "--models", "dummy,ridge", "--cv", "3"
    )
    assert code == 0
    lines = err.splitlines()
    assert "\r" not in err  # capsys is not a terminal: plain lines for logs
    for k, (name, fold) in enumerate(
        [(m, f) for m in ("dummy", "ridge") for f in (1, 2, 3)], start=1
    ):
        assert lines[k - 1].startswith(f"compare [{k}/6] {name} fold {fold}/3: ")
    assert lines[-1].startswith("compare: 6/6 fits done in ")
    assert "compare" not in out.split("\n")[0]
    code, out, err = run(
        capsys, "compare", "--dataset", "iris", "--models", "dummy", "--cv", "3", "-q"
    )
    assert code == 0 and err == ""
