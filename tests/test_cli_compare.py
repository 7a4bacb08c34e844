"""``sknetk compare`` as a fair comparison: the same inner grid search for every
model, the verdict (corrected resampled t-test), the chosen hyper-parameters
and grid-edge warnings, the JSON record and its schema, thread limits,
progress lines and the plot's axes."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknetk import cli
from sknetk.cli import corrected_resampled_ttest, main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out):
    """The results table: model name -> its cells (split on two spaces)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    header = lines[start - 1]
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("vs best"):
            break
        cells = [c for c in line.split("  ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells]
    return header, rows


def run_json(capsys, tmp_path, *argv):
    path = tmp_path / "r.json"
    code, out, err = run(capsys, "compare", *argv, "-q", "--json", str(path))
    assert code == 0, out + err
    return json.loads(path.read_text()), out


# ---------------------------------------------------------------------------
# A small JSON Schema validator (the subset compare_schema.json uses), so the
# test does not need the jsonschema package.
# ---------------------------------------------------------------------------
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def validate(instance, schema, path="$"):
    """Raise AssertionError naming the first place ``instance`` breaks ``schema``."""
    if "const" in schema:
        assert instance == schema["const"], f"{path}: {instance!r} != const"
    if "enum" in schema:
        assert instance in schema["enum"], f"{path}: {instance!r} not in enum"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(_is_type(instance, t) for t in types), f"{path}: not {types}"
    if _is_type(instance, "number"):
        if "minimum" in schema:
            assert instance >= schema["minimum"], f"{path}: below minimum"
        if "maximum" in schema:
            assert instance <= schema["maximum"], f"{path}: above maximum"
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
# The corrected resampled t-test
# ---------------------------------------------------------------------------
def test_corrected_ttest_against_scipy_paired_ttest():
    """Without the correction term it is scipy's one-sample t-test; with it,
    t shrinks by sqrt(1 + J * n_test / n_train) (Nadeau and Bengio, 2003)."""
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.02, size=10)
    ref = stats.ttest_1samp(d, 0.0)
    t0, p0 = corrected_resampled_ttest(d, 0.0)
    assert t0 == pytest.approx(ref.statistic, rel=1e-12)
    assert p0 == pytest.approx(ref.pvalue, rel=1e-10)
    ratio = 0.25
    t, p = corrected_resampled_ttest(d, ratio)
    assert t == pytest.approx(ref.statistic / math.sqrt(1 + len(d) * ratio))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1))
    assert p > p0  # the correction makes the test more conservative


def test_corrected_ttest_degenerate_differences():
    assert corrected_resampled_ttest([0.0, 0.0, 0.0], 0.5) == (0.0, 1.0)
    t, p = corrected_resampled_ttest([0.02, 0.02, 0.02], 0.5)
    assert t == math.inf and p == 0.0
    t, p = corrected_resampled_ttest([0.1], 0.5)
    assert math.isnan(t) and math.isnan(p)


# ---------------------------------------------------------------------------
# Every model tuned by the same inner protocol
# ---------------------------------------------------------------------------
def test_tuned_baseline_equals_nested_gridsearch(capsys, tmp_path):
    """A tuned row equals scikit-learn's nested CV: GridSearchCV over the
    stated grid with the same inner splits, inside the same outer folds."""
    from sklearn.svm import SVC

    result, out = run_json(
        capsys, tmp_path, "--dataset", "iris", "--models", "svm", "--cv", "3"
    )
    X, y = load_iris(return_X_y=True)
    grid = cli._GRIDS["small"]["svm"]
    inner = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(
        SVC(), {k: list(v) for k, v in grid.items()}, cv=inner, scoring="accuracy"
    )
    outer = StratifiedKFold(3, shuffle=True, random_state=0)
    ref = cross_validate(
        make_pipeline(StandardScaler(), search), X, y, cv=outer, return_estimator=True
    )
    svm = result["results"][0]
    np.testing.assert_allclose(svm["scores"], ref["test_score"], rtol=1e-12)
    chosen = [est[-1].best_params_ for est in ref["estimator"]]
    assert svm["chosen"] == chosen
    assert svm["grid"] == {k: list(v) for k, v in grid.items()}
    assert svm["n_candidates"] == 16
    assert result["tuned"] is True and result["inner_cv"] == 3
    assert "GridSearchCV(" in svm["estimator"] and "param_grid=" in svm["estimator"]


@pytest.mark.slow  # a subprocess or many rows: seconds
def test_ntk_row_searches_the_same_inner_splits(capsys, tmp_path):
    """The ntk row's choice equals GridSearchCV over the plain NTKRegressor
    with the same alphas, depths, inner splits and scorer (diabetes, R^2)."""
    from sklearn.compose import TransformedTargetRegressor

    from sknetk import NTKRegressor

    result, _ = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "diabetes",
        "--models",
        "ntk",
        "--cv",
        "3",
        "--max-samples",
        "120",
        "--n-jobs",
        "1",
    )
    X, y = load_diabetes(return_X_y=True)
    rows = np.random.RandomState(0).choice(len(y), size=120, replace=False)
    X, y = X[rows], y[rows]
    grid = cli._GRIDS["small"]["ntk"]
    inner = KFold(3, shuffle=True, random_state=0)
    base = NTKRegressor(kernel="ntk", bias_std=0.1, alpha_scale="mean_diag", n_jobs=1)
    search = GridSearchCV(
        base,
        {"alpha": list(grid["alpha"]), "depth": list(grid["depth"])},
        cv=inner,
        scoring="r2",
    )
    model = TransformedTargetRegressor(
        make_pipeline(StandardScaler(), search), transformer=StandardScaler()
    )
    outer = KFold(3, shuffle=True, random_state=0)
    ref = cross_validate(model, X, y, cv=outer, return_estimator=True)
    ntk = result["results"][0]
    chosen = [est.regressor_[-1].best_params_ for est in ref["estimator"]]
    assert ntk["chosen"] == chosen
    np.testing.assert_allclose(ntk["scores"], ref["test_score"], rtol=1e-6)
    assert "cv=KFold(n_splits=3, random_state=0, shuffle=True)" in ntk["estimator"]
    assert "bias_std=0.1" in ntk["estimator"]


def test_no_tune_keeps_scikit_learn_defaults(capsys, tmp_path):
    """--no-tune: the baselines run with scikit-learn's defaults, no grid."""
    from sklearn.linear_model import RidgeClassifier

    result, out = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "breast_cancer",
        "--models",
        "ridge",
        "--cv",
        "3",
        "--no-tune",
    )
    X, y = load_breast_cancer(return_X_y=True)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    expected = cross_val_score(
        make_pipeline(StandardScaler(), RidgeClassifier()), X, y, cv=folds
    )
    ridge = result["results"][0]
    np.testing.assert_allclose(ridge["scores"], expected, rtol=1e-12)
    assert ridge["grid"] == {} and ridge["chosen"] == [None, None, None]
    assert result["tuned"] is False and result["inner_cv"] is None
    assert "--no-tune" in out


# ---------------------------------------------------------------------------
# Verdict over paired, repeated folds
# ---------------------------------------------------------------------------
def test_verdict_best_model_and_corrected_ttest(capsys, tmp_path):
    """The best mean is marked; every other row's p-value is the corrected
    resampled t-test of its paired per-fold differences to the best."""
    result, out = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "breast_cancer",
        "--models",
        "dummy,ridge,knn",
        "--cv",
        "3",
        "--repeats",
        "2",
    )
    X, y = load_breast_cancer(return_X_y=True)
    from sklearn.dummy import DummyClassifier

    folds = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0)
    dummy_ref = cross_val_score(DummyClassifier(), X, y, cv=folds)
    by_name = {r["model"]: r for r in result["results"]}
    np.testing.assert_allclose(by_name["dummy"]["scores"], dummy_ref, rtol=1e-12)
    assert [(f["repeat"], f["fold"]) for f in result["folds"]] == [
        (r, k) for r in range(2) for k in range(3)
    ]
    best = max(by_name.values(), key=lambda r: r["mean"])
    assert result["best_model"] == best["model"]
    ratio = np.mean([f["n_test"] / f["n_train"] for f in result["folds"]])
    header, rows = table_rows(out)
    assert "verdict" in header and "p-value" in header
    assert rows[best["model"]][3] == "best"
    for name, r in by_name.items():
        c = r["comparison"]
        if r is best:
            assert c["best"] is True
            continue
        d = np.subtract(r["scores"], best["scores"])
        # Independent: scipy's paired t statistic, shrunk by the correction.
        plain = stats.ttest_rel(r["scores"], best["scores"]).statistic
        t = plain / math.sqrt(1 + len(d) * ratio)
        p = 2 * stats.t.sf(abs(t), len(d) - 1)
        assert c["difference"] == pytest.approx(d.mean())
        assert c["p_value"] == pytest.approx(p, rel=1e-9)
        assert c["significant"] == (p < 0.05)
        word = "significant" if p < 0.05 else "not significant"
        assert rows[name][-3] == word
    # The majority class is far below a linear model, fold after fold.
    assert by_name["dummy"]["comparison"]["significant"] is True
    assert "corrected resampled t-test" in out and "5 degrees of freedom" in out


# ---------------------------------------------------------------------------
# Chosen hyper-parameters and grid edges
# ---------------------------------------------------------------------------
def _linear_csv(tmp_path, noise):
    rng = np.random.default_rng(0)
    n = 200 if noise else 60
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -2.0, 0.5] if not noise else rng.normal(size=n)
    path = tmp_path / ("noise.csv" if noise else "linear.csv")
    rows = "\n".join(",".join(repr(float(v)) for v in (*x, t)) for x, t in zip(X, y))
    path.write_text("a,b,c,y\n" + rows + "\n")
    return path


@pytest.mark.parametrize(
    "noise, value, side", [(False, 0.01, "smallest"), (True, 100, "largest")]
)
def test_grid_edge_choice_is_flagged(capsys, tmp_path, noise, value, side):
    """A noiseless linear target picks the smallest ridge, pure noise the
    largest: both are flagged in the table, the warning and the JSON."""
    path = _linear_csv(tmp_path, noise)
    result, out = run_json(
        capsys,
        tmp_path,
        "--csv",
        str(path),
        "--target",
        "y",
        "--models",
        "ridge",
        "--cv",
        "3",
    )
    ridge = result["results"][0]
    assert [c["alpha"] for c in ridge["chosen"]] == [value] * 3
    edge = "lower" if side == "smallest" else "upper"
    assert ridge["edges"] == [
        {"param": "alpha", "edge": edge, "value": value, "n_folds": 3}
    ]
    assert (
        "Warning: ridge chose an edge of its grid: "
        f"alpha={value:g} ({side}) in 3/3 folds" in out
    )
    lines = out.splitlines()
    start = lines.index(
        "Hyper-parameters chosen in each fold (* = on an edge of the grid):"
    )
    chosen_line = lines[start + 1]
    assert chosen_line.split()[2:] == [f"{value:g}*"] * 3


def test_edges_need_three_numeric_values():
    grid = {"a": (1, 2), "b": (1, 2, 3), "c": ("x", "y", "z")}
    assert cli._edges(grid, {"a": 1, "b": 3, "c": "x"}) == {"b": "upper"}
    assert cli._edges(grid, {"a": 2, "b": 2, "c": "z"}) == {}


# ---------------------------------------------------------------------------
# JSON record and its schema
# ---------------------------------------------------------------------------
def test_json_record_validates_against_committed_schema(capsys, tmp_path):
    """The JSON has versions, seed, per-fold scores, times and choices, and
    validates against sknetk/compare_schema.json; broken records do not."""
    import scipy
    import sklearn

    import sknetk

    result, _ = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "wine",
        "--models",
        "ridge,dummy",
        "--cv",
        "3",
        "--random-state",
        "7",
    )
    schema = cli.compare_schema()
    on_disk = json.loads((ROOT / "sknetk" / "compare_schema.json").read_text())
    assert schema == on_disk
    validate(result, schema)
    assert result["versions"]["numpy"] == np.__version__
    assert result["versions"]["scipy"] == scipy.__version__
    assert result["versions"]["sklearn"] == sklearn.__version__
    assert result["versions"]["sknetk"] == sknetk.__version__
    assert result["seed"] == 7 and result["schema_version"] == 1
    ridge = result["results"][0]
    assert len(ridge["scores"]) == len(ridge["fit_time"]) == 3
    assert len(ridge["predict_time"]) == len(ridge["chosen"]) == 3
    assert all(t > 0 for t in ridge["fit_time"])
    from sklearn.linear_model import RidgeClassifier

    assert ridge["params"] == RidgeClassifier().get_params(deep=False)
    for broken in (
        {k: v for k, v in result.items() if k != "versions"},
        {**result, "task": "ranking"},
        {**result, "results": [{**ridge, "scores": "0.9"}]},
        {**result, "results": [{**ridge, "comparison": {"best": "yes"}}]},
    ):
        with pytest.raises(AssertionError):
            validate(broken, schema)


def test_json_schema_with_jsonschema_if_installed(capsys, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    result, _ = run_json(
        capsys, tmp_path, "--dataset", "iris", "--models", "dummy", "--cv", "2"
    )
    jsonschema.validate(result, cli.compare_schema())


# ---------------------------------------------------------------------------
# --version, threads, progress
# ---------------------------------------------------------------------------
def test_version_option(capsys):
    import sknetk

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sknetk {sknetk.__version__}"


def test_n_jobs_bounds_blas_threads(capsys, monkeypatch, tmp_path):
    """During the run every BLAS library is limited to --n-jobs threads."""
    from threadpoolctl import threadpool_info

    seen = []
    real = cli._evaluate

    def spy(*args):
        seen.extend(
            lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"
        )
        return real(*args)

    monkeypatch.setattr(cli, "_evaluate", spy)
    result, out = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "iris",
        "--models",
        "dummy",
        "--cv",
        "2",
        "--n-jobs",
        "1",
    )
    assert seen and set(seen) == {1}
    assert result["blas_threads"] == 1 and "(1 BLAS thread(s))" in out
    import joblib

    assert cli._blas_threads(-1) == joblib.cpu_count()
    assert cli._blas_threads(3) == 3


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_redraws_and_leaves_a_line():
    buf = _Terminal()
    bar = cli._Progress(2, verbose=1, file=buf)
    bar.started("ntk fold 1/2")
    bar.finished("ntk fold 1/2", "0.9")
    bar.started("svm fold 1/2")
    bar.finished("svm fold 1/2", "0.8")
    bar.close()
    text = buf.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\rcompare [1/2] ntk fold 1/2 ..." in text
    assert "\rcompare [2/2] svm fold 1/2: 0.8" in text
    last = text.split("\r")[-1]
    assert last.startswith("compare: 2/2 fits done in ")


# ---------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------
def _fake_results(times, n_folds=3):
    out = []
    for k, t in enumerate(times):
        scores = [0.8 + 0.01 * k + 0.005 * j for j in range(n_folds)]
        out.append(
            {
                "model": f"m{k}",
                "error": None,
                "scores": scores,
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores)),
                "mean_fit_time": t,
                "comparison": {"best": k == len(times) - 1},
            }
        )
    return out


def _info(dataset):
    return {"dataset": dataset, "cv": 3, "repeats": 1, "n_samples": 10, "task": "x"}


@pytest.mark.parametrize(
    "times, scale",
    [((0.12, 0.3, 0.55, 0.9), "linear"), ((0.002, 0.05, 1.3, 21.0), "log")],
    ids=["one decade", "four decades"],
)
def test_plot_time_axis_readable(times, scale):
    """A one-decade range gets a linear axis with several ticks in range; a
    four-decade range a log axis with a labelled tick at every decade."""
    pytest.importorskip("matplotlib")
    fig = cli._plot_figure(_fake_results(times), _info("/data/house prices.csv"), "r2")
    ax = fig.axes[1]
    fig.canvas.draw()
    assert ax.get_xscale() == scale
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(ticks) >= 3 and len(labels) >= 3
    assert lo <= min(times) and max(times) <= hi
    if scale == "log":
        decades = [10.0**k for k in range(-2, 2)]  # 0.01 .. 10 inside the range
        for d in decades:
            assert any(math.isclose(t, d) for t in ticks), d
        assert {"0.01", "0.1", "1", "10"} <= set(labels)
    assert fig._suptitle.get_text() == "house prices"


def test_paired_plot_one_line_per_fold():
    pytest.importorskip("matplotlib")
    results = _fake_results((0.1, 0.2, 0.3), n_folds=4)
    fig = cli._plot_figure(results, _info("wine"), "accuracy", kind="paired")
    ax = fig.axes[0]
    fold_lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(fold_lines) == 4 + 1  # one per fold, plus the means
    assert [t.get_text() for t in ax.get_xticklabels()] == ["m0", "m1", "m2"]
    assert fig._suptitle.get_text() == "wine"


def test_paired_plot_from_the_command_line(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "paired.svg"
    code, _, err = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "dummy,ridge",
        "--cv",
        "3",
        "-q",
        "--plot",
        str(path),
        "--plot-kind",
        "paired",
    )
    assert code == 0, err
    text = path.read_text()
    assert text.startswith("<?xml") and "iris" in text


# ---------------------------------------------------------------------------
# Three-way: trained net, its after-kernel, the infinite-width NTK
# ---------------------------------------------------------------------------
def test_after_kernel_row_uses_the_mlp_rows_network(capsys, tmp_path, monkeypatch):
    """mlp-after is kernel ridge with the empirical NTK of the network the mlp
    row chose in the same fold: its scores equal that reference."""
    empirical = pytest.importorskip("sknetk.empirical")
    from sklearn.neural_network import MLPClassifier

    # A two-candidate network grid keeps the test fast; the wiring is the same.
    small = {**cli._GRIDS["small"]}
    small["mlp"] = {
        "width": (8, 16),
        "depth": (1,),
        "alpha": (1e-2,),
        "learning_rate_init": (1e-2,),
    }
    monkeypatch.setitem(cli._GRIDS, "small", small)

    result, out = run_json(
        capsys,
        tmp_path,
        "--dataset",
        "breast_cancer",
        "--models",
        "mlp-after,ntk,mlp",
        "--max-samples",
        "50",
        "--cv",
        "2",
        "--inner-cv",
        "2",
        "--n-jobs",
        "1",
    )
    by_name = {r["model"]: r for r in result["results"]}
    assert [r["model"] for r in result["results"]] == ["ntk", "mlp", "mlp-after"]
    X, y = load_breast_cancer(return_X_y=True)
    rows = np.random.RandomState(0).choice(len(y), size=50, replace=False)
    X, y = X[rows], y[rows]
    outer = StratifiedKFold(2, shuffle=True, random_state=0)
    inner = StratifiedKFold(2, shuffle=True, random_state=0)
    for k, (train, test) in enumerate(outer.split(X, y)):
        c = by_name["mlp"]["chosen"][k]
        net = MLPClassifier(
            hidden_layer_sizes=(c["width"],) * c["depth"],
            alpha=c["alpha"],
            learning_rate_init=c["learning_rate_init"],
            max_iter=cli._MLP_MAX_ITER,
            random_state=0,
        )
        search = GridSearchCV(
            empirical.AfterKernelClassifier(estimator=net),
            {"alpha": list(cli._GRIDS["small"]["mlp-after"]["alpha"])},
            cv=inner,
            scoring="accuracy",
        )
        model = make_pipeline(StandardScaler(), search).fit(X[train], y[train])
        assert by_name["mlp-after"]["scores"][k] == pytest.approx(
            model.score(X[test], y[test])
        )
        assert by_name["mlp-after"]["chosen"][k] == search.best_params_
    assert "the same trained net" in by_name["mlp-after"]["estimator"]


def test_model_failing_inside_its_search_is_reported(capsys, tmp_path, monkeypatch):
    """An error inside a tuned model's grid search marks the row failed, with
    its message; the other rows still run and get a verdict."""
    from sklearn.linear_model import RidgeClassifier

    class Broken(RidgeClassifier):
        def fit(self, X, y, sample_weight=None):
            raise RuntimeError("boom")

    real = cli._make_model
    monkeypatch.setattr(
        cli,
        "_make_model",
        lambda name, task, args: (
            (Broken(), "Broken") if name == "ridge" else real(name, task, args)
        ),
    )
    path = tmp_path / "r.json"
    code, out, _ = run(
        capsys,
        "compare",
        "--dataset",
        "iris",
        "--models",
        "ridge,knn,dummy",
        "--cv",
        "3",
        "-q",
        "--json",
        str(path),
    )
    assert code == 1
    assert "Error: ridge failed: RuntimeError: boom" in out
    result = {r["model"]: r for r in json.loads(path.read_text())["results"]}
    assert result["ridge"]["comparison"] is None and result["ridge"]["mean"] is None
    assert result["knn"]["comparison"]["best"] is True
    assert result["dummy"]["comparison"]["significant"] is True
    _, rows = table_rows(out)
    assert rows["ridge"][1] == "failed" and rows["knn"][3] == "best"
