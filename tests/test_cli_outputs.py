"""The ``sknetk`` command line without optional packages, its output files,
its option checks, numerically extreme CSV columns, and ``sknetk info``'s BLAS rows.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from sknetk import cli
from sknetk.cli import main

ROOT = Path(__file__).resolve().parents[1]


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


def strict_json(text):
    """``json.loads`` that rejects NaN and infinities (as strict parsers do)."""

    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=reject)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def mixed_csv(tmp_path):
    """A CSV with numeric, boolean, categorical and missing values (written
    without pandas)."""
    rng = np.random.default_rng(0)
    n = 60
    colour = rng.choice(["red", "green", "blue"], size=n)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    flag = rng.random(n) < 0.5
    label = np.where(x1 + (colour == "red") > 0.3, "yes", "no")
    rows = []
    for i in range(n):
        x2_cell = "" if i % 13 == 0 else repr(float(x2[i]))
        rows.append(
            [
                f"row{i}",
                repr(float(x1[i])),
                x2_cell,
                colour[i],
                str(bool(flag[i])),
                label[i],
            ]
        )
    header = ["id", "x1", "x2", "colour", "flag", "label"]
    return write_csv(tmp_path / "mixed.csv", header, rows)


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if any model is cross-validated."""

    def forbidden(*args):
        raise AssertionError("models ran before the options were checked")

    monkeypatch.setattr(cli, "_evaluate", forbidden)


@pytest.fixture
def hidden_extras(tmp_path):
    """A PYTHONPATH entry under which pandas and matplotlib fail to import."""
    shadow = tmp_path / "shadow"
    for name in ("pandas", "matplotlib"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(
            f"raise ImportError('{name} is hidden by the test')\n"
        )
    return shadow


def run_bare(shadow, cwd, *argv):
    """``python -m sknetk ARGV`` in a fresh interpreter without pandas/matplotlib."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(ROOT)])}
    env.pop("MPLBACKEND", None)
    return subprocess.run(
        [sys.executable, "-m", "sknetk", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


# ---------------------------------------------------------------------------
# A bare install: no pandas, no matplotlib
# ---------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess or many rows: seconds
def test_compare_bundled_data_without_pandas(hidden_extras, tmp_path):
    """The README's ``sknetk compare`` runs with pandas and matplotlib unimportable."""
    probe = subprocess.run(
        [sys.executable, "-c", "import pandas"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(hidden_extras)},
        cwd=tmp_path,
    )
    assert probe.returncode != 0 and "hidden by the test" in probe.stderr
    proc = run_bare(
        hidden_extras,
        tmp_path,
        "compare",
        "--max-samples",
        "100",
        "--cv",
        "3",
        "--no-tune",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Dataset: breast_cancer (100 samples, 30 columns")
    rows = table_rows(proc.stdout)
    expected = [
        m
        for m in cli.DEFAULT_MODELS["classification"]
        if m != "mlp-after" or cli._after_kernel_classes() is not None
    ]
    assert list(rows) == expected
    for cells in rows.values():
        assert 0.8 < float(cells[1]) <= 1.0


def test_compare_csv_without_pandas_matches_pandas_pipeline(
    hidden_extras, mixed_csv, tmp_path
):
    """A mixed CSV read without pandas scores exactly as pandas.read_csv + sklearn."""
    pd = pytest.importorskip("pandas")
    out_json = tmp_path / "res.json"
    proc = run_bare(
        hidden_extras,
        tmp_path,
        "compare",
        "--csv",
        str(mixed_csv),
        "--target",
        "label",
        "--drop",
        "id",
        "--models",
        "svm",
        "--no-tune",
        "--cv",
        "3",
        "-q",
        "--json",
        str(out_json),
    )
    assert proc.returncode == 0, proc.stderr
    assert "one-hot encoded 1 non-numeric column(s)" in proc.stdout
    assert "imputed 5 missing feature values" in proc.stdout
    scores = strict_json(out_json.read_text())["results"][0]["scores"]

    frame = pd.read_csv(mixed_csv)
    y = frame["label"].to_numpy()
    X = frame.drop(columns=["id", "label"])
    X["flag"] = X["flag"].astype(float)
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                ["x1", "x2", "flag"],
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                ["colour"],
            ),
        ]
    )
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    expected = cross_val_score(make_pipeline(pre, SVC()), X, y, cv=folds)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_plot_without_matplotlib_fails_before_the_run(hidden_extras, tmp_path):
    """--plot without matplotlib: one line naming it, exit 2, no data loaded."""
    proc = run_bare(hidden_extras, tmp_path, "compare", "--plot", "cmp.png")
    assert proc.returncode == 2
    assert proc.stderr == (
        "sknetk compare: error: --plot needs matplotlib: pip install matplotlib\n"
    )
    assert proc.stdout == ""  # checked before loading the data
    assert not (tmp_path / "cmp.png").exists()


def _over_16(A):
    return A / 16.0


def test_every_bundled_dataset_without_pandas(hidden_extras, tmp_path):
    """With pandas unimportable, each data set scores as scikit-learn's own
    cross_val_score on ``load_*(return_X_y=True)``."""
    import sklearn.datasets
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.model_selection import KFold

    script = (
        "import sys\n"
        "from sknetk.cli import main\n"
        "for name in sys.argv[1:]:\n"
        "    code = main(['compare', '--dataset', name, '--models', 'ridge',\n"
        "                 '--cv', '3', '--no-tune', '-q',\n"
        "                 '--json', name + '.json'])\n"
        "    assert code == 0, name\n"
        "assert 'pandas' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden_extras), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-c", script, *cli.DATASETS],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for dataset, (loader, task) in cli.DATASETS.items():
        result = strict_json((tmp_path / f"{dataset}.json").read_text())
        X, y = getattr(sklearn.datasets, loader)(return_X_y=True)
        if dataset == "digits":
            # images: every pixel divided by the training fold's largest (16),
            # not standardized column by column
            model = make_pipeline(FunctionTransformer(_over_16), RidgeClassifier())
            folds = StratifiedKFold(3, shuffle=True, random_state=0)
        elif task == "classification":
            model = make_pipeline(StandardScaler(), RidgeClassifier())
            folds = StratifiedKFold(3, shuffle=True, random_state=0)
        else:
            model = TransformedTargetRegressor(
                make_pipeline(StandardScaler(), Ridge()), transformer=StandardScaler()
            )
            folds = KFold(3, shuffle=True, random_state=0)
        expected = cross_val_score(model, X, y, cv=folds)
        assert result["task"] == task
        np.testing.assert_allclose(
            result["results"][0]["scores"], expected, rtol=1e-10, err_msg=dataset
        )


QUIRKY_CSVS = {
    "missing tokens": "a,b,y\n1,NA,p\n,2.5,q\nnan,null,p\n4,N/A,q\n",
    "booleans and text": "flag,word,y\nTrue,x,1\nFALSE,y,0\nfalse,x,1\ntrue,,0\n",
    "quoted, spaces, blank lines": 'a,b,y\n"1,5",  2 ,x\n\n"2,5",3,y\n7,-1e3,x\n',
    "short rows": "a,b,y\n1,2,x\n3\n5,6,y\n",
    "trailing commas": "a,b,y\n1,2,x,\n3,4,y,\n",
    "ints, floats and exponents": "a,b,y\n1,1.5e2,0\n2,-0.25,1\n3,+4,0\n",
    "duplicate and empty header names": "a,a,,y\n1,2,3,x\n4,5,6,y\n",
}


@pytest.mark.parametrize("text", QUIRKY_CSVS.values(), ids=QUIRKY_CSVS.keys())
def test_csv_reader_agrees_with_pandas(tmp_path, text):
    """Column names, types, values and missing cells equal pandas.read_csv's."""
    pd = pytest.importorskip("pandas")
    path = tmp_path / "q.csv"
    path.write_text(text)
    frame = pd.read_csv(path, index_col=False)
    table, y, _ = cli._read_csv(str(path), "y", [])
    assert table.names == [c for c in frame.columns if c != "y"]
    for name, column in zip(table.names, table.columns):
        expected = frame[name]
        if pd.api.types.is_numeric_dtype(expected) or pd.api.types.is_bool_dtype(
            expected
        ):
            np.testing.assert_array_equal(column, expected.to_numpy(dtype=float))
        else:
            got = [None if v != v else v.strip() for v in column]
            want = [None if v != v else v.strip() for v in expected]
            assert got == want
    want_y = frame["y"]
    if pd.api.types.is_numeric_dtype(want_y):
        np.testing.assert_array_equal(y, want_y.to_numpy(dtype=float))
    else:
        assert [None if v != v else v for v in y] == [
            None if v != v else v for v in want_y
        ]


# ---------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------
def small_csv(tmp_path, name="data.csv"):
    rng = np.random.default_rng(1)
    rows = [
        [repr(float(a)), repr(float(b)), int(a + b > 0)]
        for a, b in rng.normal(size=(40, 2))
    ]
    return write_csv(tmp_path / name, ["a", "b", "y"], rows)


@pytest.mark.parametrize("option", ["--json", "--plot"])
@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink"])
def test_output_never_overwrites_the_input(capsys, tmp_path, no_run, option, spelling):
    """An output path naming the --csv input is refused, even with --force."""
    data = small_csv(tmp_path)
    before = data.read_bytes()
    (tmp_path / "sub").mkdir()
    target = {
        "same": str(data),
        "dotdot": str(tmp_path / "sub" / ".." / "data.csv"),
        "symlink": str(tmp_path / "link.csv"),
    }[spelling]
    if spelling == "symlink":
        os.symlink(data, target)
    for extra in ([], ["--force"]):
        code, out, err = run(
            capsys,
            "compare",
            "--csv",
            str(data),
            "--target",
            "y",
            option,
            target,
            *extra,
            "-q",
        )
        assert code == 2
        assert "is the input file of --csv" in err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert out == ""
    assert data.read_bytes() == before


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_existing_output_needs_force(capsys, tmp_path, option):
    """An existing output file is kept unless --force, which replaces it."""
    path = tmp_path / ("out.json" if option == "--json" else "out.png")
    path.write_text("precious")
    argv = [
        "compare",
        "--dataset",
        "iris",
        "--models",
        "dummy",
        "--cv",
        "3",
        "-q",
        option,
        str(path),
    ]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "already exists; pass --force" in err and err.count("\n") == 1
    assert path.read_text() == "precious"
    code, out, err = run(capsys, *argv, "--force")
    assert code == 0, err
    if option == "--json":
        assert strict_json(path.read_text())["dataset"] == "iris"
    else:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "make_argv, message",
    [
        (lambda p: ["--json", str(p / "missing" / "r.json")], "does not exist"),
        (lambda p: ["--plot", str(p / "missing" / "r.png")], "does not exist"),
        (lambda p: ["--json", str(p)], "is a directory"),
        (lambda p: ["--json", ""], "needs a file name"),
        (
            lambda p: ["--json", str(p / "a.png"), "--plot", str(p / "a.png")],
            "same file",
        ),
        (lambda p: ["--plot", str(p / "out.xyz")], "cannot write .xyz files"),
        (lambda p: ["--plot", str(p / "out")], "has no file extension"),
        (lambda p: ["--max-samples", "-1"], "--max-samples must be at least"),
        (lambda p: ["--max-samples", "0"], "--max-samples must be at least"),
        (
            lambda p: ["--max-samples", "2", "--cv", "3"],
            "--max-samples must be at least --cv=3",
        ),
        (lambda p: ["--n-jobs", "0"], "--n-jobs must not be 0"),
        (lambda p: ["--random-state", "-1"], "--random-state must be in"),
        (lambda p: ["--max-categories", "-2"], "--max-categories must be >= 0"),
        (lambda p: ["--repeats", "0"], "--repeats must be at least 1"),
        (lambda p: ["--inner-cv", "1"], "--inner-cv must be at least 2"),
        (lambda p: ["--significance", "1.5"], "--significance must be between"),
        (lambda p: ["--models", "knn", "--grid", "huge"], None),
    ],
)
def test_bad_options_rejected_before_the_run(
    capsys, tmp_path, no_run, make_argv, message
):
    """Bad options and output paths: one line, exit 2, before data or models."""
    code, out, err = run(
        capsys, "compare", "--dataset", "iris", "-q", *make_argv(tmp_path)
    )
    assert code == 2
    if message is None:  # an argparse usage error (choices)
        assert "invalid choice: 'huge'" in err and out == ""
        return
    assert message in err
    assert err.count("\n") == 1 and err.startswith("sknetk compare: error: ")
    assert out == ""
    assert sorted(os.listdir(tmp_path)) == []  # nothing written


def test_plot_format_needing_latex_rejected_before_the_run(capsys, tmp_path, no_run):
    """.pgf is a matplotlib format that needs LaTeX: without it, exit 2 up front."""
    import shutil

    pytest.importorskip("matplotlib")
    if shutil.which("xelatex"):
        pytest.skip("xelatex is installed, so .pgf works")
    code, out, err = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "-q",
        "--plot",
        str(tmp_path / "chart.pgf"),
    )
    assert code == 2 and out == ""
    assert "matplotlib cannot write .pgf here" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_n_jobs_negative_values_still_accepted(capsys):
    """joblib's negative n_jobs (-2: all cores but one) stay valid."""
    code, out, err = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "rf",
        "--no-tune",
        "--cv",
        "2",
        "--n-jobs",
        "-2",
        "-q",
    )
    assert code == 0, err
    assert float(table_rows(out)["rf"][1]) > 0.9


@pytest.mark.parametrize("ext, magic", [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_plot_written_exactly_where_asked(capsys, tmp_path, ext, magic):
    """--plot writes the named file, in the format its extension names."""
    pytest.importorskip("matplotlib")
    path = tmp_path / f"chart.{ext}"
    code, _, err = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "dummy,knn",
        "--cv",
        "3",
        "-q",
        "--plot",
        str(path),
    )
    assert code == 0, err
    assert os.listdir(tmp_path) == [path.name]
    assert path.read_bytes().startswith(magic)


class _Broken:
    """An estimator whose fit always raises."""

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, X, y):
        raise RuntimeError("boom")


def _all_models_broken(monkeypatch):
    monkeypatch.setattr(
        cli, "_make_model", lambda name, task, args: (_Broken(), "Broken")
    )


def test_json_writes_null_for_failed_models(capsys, tmp_path, monkeypatch):
    """A failed model's mean and std are JSON null, not the invalid bare NaN."""
    real = cli._make_model
    monkeypatch.setattr(
        cli,
        "_make_model",
        lambda name, task, args: (
            (_Broken(), "Broken") if name == "knn" else real(name, task, args)
        ),
    )
    path = tmp_path / "r.json"
    code, _, _ = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "knn,dummy",
        "--cv",
        "3",
        "-q",
        "--no-tune",
        "--json",
        str(path),
    )
    assert code == 1
    text = path.read_text()
    assert "NaN" not in text
    result = {r["model"]: r for r in strict_json(text)["results"]}
    assert result["knn"]["error"] == "RuntimeError: boom"
    assert result["knn"]["mean"] is None and result["knn"]["std"] is None
    assert result["knn"]["mean_fit_time"] is None and result["knn"]["scores"] == []
    X, y = load_iris(return_X_y=True)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    expected = cross_val_score(DummyClassifier(), X, y, cv=folds)
    np.testing.assert_allclose(result["dummy"]["scores"], expected, rtol=1e-12)


def test_plot_when_every_model_failed(capsys, tmp_path, monkeypatch):
    """No traceback and no file when no model succeeded; exit 1 and a message."""
    pytest.importorskip("matplotlib")
    _all_models_broken(monkeypatch)
    path = tmp_path / "p.png"
    code, out, err = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "knn,svm",
        "--cv",
        "3",
        "-q",
        "--plot",
        str(path),
    )
    assert code == 1
    assert "Traceback" not in out + err
    assert f"no plot written to {path}" in err
    assert not path.exists()


# ---------------------------------------------------------------------------
# Extreme magnitudes in a CSV
# ---------------------------------------------------------------------------
def _scaled_csv(tmp_path, name, factor):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    rows = [
        [repr(float(a * factor)), repr(float(b)), repr(float(c)), int(t)]
        for (a, b, c), t in zip(X, y)
    ]
    return write_csv(tmp_path / name, ["a", "b", "c", "y"], rows)


@pytest.mark.parametrize("factor", [2.0**660, 2.0**-700, 1e200])
def test_huge_and_tiny_columns_score_like_unit_scale(capsys, tmp_path, factor):
    """A column near 1e200 (or 1e-211) scores as the same data at unit scale.

    Standardizing is invariant to scaling a column; the reference is the same
    CSV with the column unscaled (exactly equal for power-of-two factors).
    """
    models = "svm,knn,rf,ntk"
    scores = {}
    for tag, f in (("ref", 1.0), ("scaled", factor)):
        path = _scaled_csv(tmp_path, f"{tag}.csv", f)
        out_json = tmp_path / f"{tag}.json"
        code, out, err = run(
            capsys,
            "compare",
            "--csv",
            str(path),
            "--target",
            "y",
            "--models",
            models,
            "--cv",
            "3",
            "-q",
            "--n-jobs",
            "1",
            "--no-tune",
            "--json",
            str(out_json),
        )
        assert code == 0, out + err
        scores[tag] = {
            r["model"]: r["scores"]
            for r in strict_json(out_json.read_text())["results"]
        }
        if tag == "scaled":
            assert "rescaled 1 column(s)" in out
    exact = np.log2(factor) == int(np.log2(factor))
    for model, ref in scores["ref"].items():
        if exact:
            assert scores["scaled"][model] == ref, model
        else:
            np.testing.assert_allclose(scores["scaled"][model], ref, atol=0.05)


@pytest.mark.parametrize("cell", ["inf", "-inf", "1e400"])
def test_infinite_csv_value_rejected(capsys, tmp_path, cell):
    """An infinite value (or one that overflows float64) is named with its line."""
    rows = [[i, i % 2] for i in range(20)]
    rows[6][0] = cell
    path = write_csv(tmp_path / "inf.csv", ["x", "y"], rows)
    code, _, err = run(capsys, "compare", "--csv", str(path), "--target", "y", "-q")
    assert code == 2
    assert f"column 'x' of {path} has an infinite value ({cell!r} on line 8)" in err
    assert err.count("\n") == 1


def test_regression_target_too_large_rejected(capsys, tmp_path):
    """A regression target near 1e200 (squared errors overflow) is refused."""
    rng = np.random.default_rng(0)
    rows = [[repr(float(a)), repr(float(a * 1e200))] for a in rng.normal(size=30)]
    path = write_csv(tmp_path / "big.csv", ["x", "y"], rows)
    code, _, err = run(capsys, "compare", "--csv", str(path), "--target", "y", "-q")
    assert code == 2
    assert "target 'y' has magnitudes up to" in err and "rescale" in err


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
def test_info_reports_blas_libraries(capsys):
    """Each BLAS that threadpoolctl finds is listed: API, version, threads, file."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, as info does)
    from threadpoolctl import threadpool_info

    code, out, _ = run(capsys, "info")
    assert code == 0
    blas_rows = [line for line in out.splitlines() if line.startswith("BLAS ")]
    libraries = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert libraries, "NumPy and SciPy always load a BLAS"
    assert len(blas_rows) == len(libraries)
    for lib in libraries:
        row = next(r for r in blas_rows if r.endswith(f" at {lib['filepath']}"))
        assert f"{lib['internal_api']} {lib['version']}" in row
        assert f"{lib['num_threads']} threads" in row
        assert lib["prefix"] in row
        if lib.get("architecture"):
            assert f"architecture {lib['architecture']}" in row


# ---------------------------------------------------------------------------
# CI
# ---------------------------------------------------------------------------
def test_ci_runs_readme_command_in_a_bare_venv_first():
    """.ci/run installs the package bare in a fresh venv and runs sknetk compare
    there before it installs any extra."""
    script = (ROOT / ".ci" / "run").read_text()
    lines = [
        line.strip()
        for line in script.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert "set -euo pipefail" in lines

    def first(predicate):
        return next(i for i, line in enumerate(lines) if predicate(line))

    venv = first(lambda s: "-m venv" in s)
    activate = first(lambda s: "venv/bin/activate" in s)
    install = first(lambda s: s.startswith("pip install") and s.endswith(" -e ."))
    compare = first(lambda s: s == "sknetk compare")
    extra = first(lambda s: "pip install" in s and ".[test]" in s)
    tests = first(lambda s: "pytest" in s)
    assert venv < activate < install < compare < extra < tests
