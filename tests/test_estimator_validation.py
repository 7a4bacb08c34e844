"""Input validation of the estimators: targets, class weights, dask input, memory.

The references are scikit-learn's own estimators (``Ridge``, ``KernelRidge``
for the targets), NTKRegressor fits on the rows that carry weight, the
NumPy fit for dask input, and the covariance functions of
:mod:`sknetk.dynamics` for ``predict(return_cov=True)``.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.preprocessing import LabelBinarizer

import sknetk.kernels
from sknetk._base import plain_labels
from sknetk._classification import NTKClassifier
from sknetk._cv import NTKClassifierCV, NTKRegressorCV
from sknetk._regression import NTKRegressor
from sknetk.cli import main
from sknetk.dynamics import ensemble_covariance, gp_posterior, kernel_eigh
from sknetk.kernels import nngp_kernel, nngp_ntk_kernels, ntk_kernel

NET = dict(depth=2, bias_std=0.1)


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(30, 3))


def _labels(kind, n):
    """Three balanced label columns of the given kind (first two, or all three)."""
    base = np.arange(n) % 3
    if kind == "int":
        return base
    if kind == "str":
        return np.array(["cat", "dog", "eel"])[base]
    return np.array([np.int64(10), np.int64(20), np.int64(30)])[base]


# ---------------------------------------------------------------------------
# One class rule for both classifiers
# ---------------------------------------------------------------------------
CLASSIFIERS = [
    pytest.param(
        lambda **kw: NTKClassifier(alpha=0.1, **NET, **kw), id="NTKClassifier"
    ),
    pytest.param(
        lambda **kw: NTKClassifierCV(alphas=[0.1], depths=[2], bias_std=0.1, **kw),
        id="NTKClassifierCV",
    ),
]


@pytest.mark.parametrize("make", CLASSIFIERS)
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("kind", ["int", "str"])
def test_zero_sample_weight_for_all_but_one_class_is_refused(X, make, n_classes, kind):
    """Both classifiers refuse weights that leave a single class."""
    y = _labels(kind, len(X))
    keep = np.isin(np.arange(len(X)) % 3, range(n_classes))
    X, y = X[keep], y[keep]
    only = y == y[0]
    with pytest.raises(ValueError, match="at least two classes with positive weight"):
        make().fit(X, y, sample_weight=only.astype(float))
    # the same weights as booleans, and positive weights on one class only
    with pytest.raises(ValueError, match="at least two classes"):
        make().fit(X, y, sample_weight=only)
    with pytest.raises(ValueError, match="at least two classes"):
        make().fit(X, y, sample_weight=np.where(only, 2.5, 0.0))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("kind", ["int", "str"])
def test_zero_class_weight_for_all_but_one_class_is_refused(X, n_classes, kind):
    """class_weight leaving one weighted class is refused (also with sample_weight)."""
    y = _labels(kind, len(X))
    keep = np.isin(np.arange(len(X)) % 3, range(n_classes))
    X, y = X[keep], y[keep]
    classes = np.unique(y)
    zero_all_but_first = {c: (1.0 if i == 0 else 0.0) for i, c in enumerate(classes)}
    clf = NTKClassifierCV(alphas=[0.1], depths=[2], class_weight=zero_all_but_first)
    with pytest.raises(ValueError, match="at least two classes with positive weight"):
        clf.fit(X, y)
    # class 0 weighted by class_weight, the others zeroed by sample_weight
    clf = NTKClassifierCV(alphas=[0.1], depths=[2], class_weight={classes[0]: 0.0})
    with pytest.raises(ValueError, match="at least two classes"):
        clf.fit(X, y, sample_weight=(y != classes[1]).astype(float))


@pytest.mark.parametrize("make", CLASSIFIERS)
@pytest.mark.parametrize("kind", ["int", "str"])
def test_class_without_weight_warns_and_equals_dropping_its_rows(X, make, kind):
    """Three classes, one of zero total weight: a warning, and the weighted fit.

    The decision values equal NTKRegressor on the one-vs-all targets of the
    rows that carry weight (the empty class's column is fitted to -1).
    """
    y = _labels(kind, len(X))
    classes = np.unique(y)
    weights = (y != classes[1]).astype(float)
    with pytest.warns(UserWarning, match=rf"\[{plain_labels(classes[1:2])[0]!r}\]"):
        model = make().fit(X, y, sample_weight=weights)
    Y = LabelBinarizer(neg_label=-1).fit(y).transform(y).astype(float)
    kept = weights > 0
    # alpha_ is the effective ridge on every estimator (the CV's is relative)
    ref = NTKRegressor(alpha=model.alpha_, normalize_y=False, **NET)
    ref.fit(X[kept], Y[kept])
    assert_allclose(model.decision_function(X), ref.predict(X), rtol=1e-6, atol=1e-8)


def test_class_weight_zero_class_warns_in_cv(X):
    """A class zeroed by class_weight (three classes) warns and is never weighted."""
    y = _labels("int", len(X))
    with pytest.warns(UserWarning, match=r"class\(es\) \[2\]"):
        NTKClassifierCV(alphas=[0.1], depths=[2], class_weight={2: 0.0}).fit(X, y)


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_classes_with_weight_fit_without_warning(X, make):
    """Every class weighted: no warning (the rule does not fire spuriously)."""
    y = _labels("str", len(X))
    w = np.random.default_rng(1).uniform(0.1, 2.0, size=len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make().fit(X, y, sample_weight=w)


# ---------------------------------------------------------------------------
# Plain labels in messages
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, plain",
    [
        (np.array([np.int64(1), np.int32(2)], dtype=object), [1, 2]),
        (np.array([np.float32(1.5)], dtype=object), [1.5]),
        (np.array([np.True_], dtype=object), [True]),
        (np.array([np.str_("a")], dtype=object), ["a"]),
        (np.array([3, 4], dtype=np.uint8), [3, 4]),
    ],
)
def test_plain_labels_have_no_numpy_scalars(values, plain):
    """NumPy scalars of any type become plain Python values (``1``, not np.int64)."""
    got = plain_labels(values)
    assert got == plain
    assert "np." not in repr(got)


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_single_class_message_prints_plain_label(X, make):
    """The single-class error of both classifiers prints ``[10]``."""
    y = np.array([np.int64(10)] * len(X), dtype=object).astype(np.int64)
    with pytest.raises(ValueError, match=r"labels \[10\]\.") as info:
        make().fit(X, y)
    assert "np." not in str(info.value)


@pytest.mark.parametrize("value, shown", [("1", "1"), ("2.5", "2.5"), ("True", "True")])
def test_cli_single_class_message_prints_plain_label(capsys, tmp_path, value, shown):
    """``sknetk compare`` on a one-class target prints the plain value."""
    path = tmp_path / "one.csv"
    path.write_text("a,y\n" + "".join(f"{i},{value}\n" for i in range(12)))
    code = main(
        [
            "compare",
            "-q",
            "--csv",
            str(path),
            "--target",
            "y",
            "--task",
            "classification",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"single class ({shown})" in err
    assert "np." not in err


def test_cli_small_class_message_prints_plain_label(capsys, tmp_path):
    """The fewer-than-cv message names the class as ``1``."""
    path = tmp_path / "two.csv"
    path.write_text("a,y\n" + "".join(f"{i},{int(i < 2)}\n" for i in range(12)))
    code = main(["compare", "-q", "--csv", str(path), "--target", "y", "--cv", "3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "class 1 of target 'y' has only 2 samples" in err


# ---------------------------------------------------------------------------
# Regression targets: checked before any kernel work
# ---------------------------------------------------------------------------
def _no_kernels(monkeypatch):
    """Make every kernel computation of sknetk.kernels raise."""

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel was computed")

    for name in ("_compute_kernels", "checked_diagonals", "_blocked_matvec"):
        monkeypatch.setattr(sknetk.kernels, name, refuse)


REGRESSORS = [
    pytest.param(lambda: NTKRegressor(**NET), id="cholesky"),
    pytest.param(lambda: NTKRegressor(t=2.0, **NET), id="finite-t"),
    pytest.param(
        lambda: NTKRegressor(solver="nystrom", n_centers=10, random_state=0, **NET),
        id="nystrom",
    ),
    pytest.param(
        lambda: NTKRegressor(
            alpha_scale="mean_diag",
            solver="nystrom",
            n_centers=10,
            random_state=0,
            **NET,
        ),
        id="nystrom-mean-diag",
    ),
    pytest.param(lambda: NTKRegressorCV(depths=[1, 2]), id="CV-loo"),
    pytest.param(lambda: NTKRegressorCV(depths=[1, 2], cv=3), id="CV-kfold"),
]


@pytest.mark.parametrize("make", REGRESSORS)
@pytest.mark.parametrize(
    "y_bad, match",
    [
        (["a"] * 30, "y must hold numbers.*'a'"),
        (["1.5"] * 29 + ["x"], "y must hold numbers.*'x'"),
        (np.array([1.0] * 29 + ["?"], dtype=object), "y must hold numbers.*'\\?'"),
        (["nan"] + ["1"] * 29, "y contains NaN or infinity"),
        (["1"] * 29 + ["-inf"], "y contains NaN or infinity"),
        (np.r_[np.inf, np.ones(29)], "y.*infinity"),
    ],
)
def test_bad_regression_targets_fail_before_any_kernel(
    X, make, y_bad, match, monkeypatch
):
    """A bad y is refused, naming y, before the n x n kernel is computed."""
    _no_kernels(monkeypatch)
    with pytest.raises(AssertionError, match="a kernel was computed"):
        make().fit(X, np.ones(len(X)))  # the patch does intercept the kernels
    with pytest.raises(ValueError, match=match):
        make().fit(X, y_bad)


@pytest.mark.parametrize("make", REGRESSORS)
def test_numeric_string_targets_are_converted_as_by_ridge(X, make):
    """``["1.5", ...]`` fits as the floats, as Ridge and KernelRidge do."""
    y = np.round(np.sin(X[:, 0]), 3)
    y_text = [str(v) for v in y]
    for reference in (Ridge(alpha=0.1), KernelRidge(alpha=0.1)):
        # the reference behaviour: accepted, and the same model as floats
        assert_allclose(
            reference.fit(X, y_text).predict(X), reference.fit(X, y).predict(X)
        )
    model = make().fit(X, y_text)
    assert_allclose(model.predict(X), make().fit(X, y).predict(X), rtol=1e-10)


def test_two_dimensional_single_column_target_stays_two_dimensional(X):
    """y of shape (n, 1): predictions of shape (n, 1), as KernelRidge gives."""
    y = np.sin(X[:, :1])
    assert KernelRidge().fit(X, y).predict(X).shape == (len(X), 1)
    for model in (NTKRegressor(**NET), NTKRegressorCV(depths=[2])):
        pred = model.fit(X, y).predict(X)
        assert pred.shape == (len(X), 1)
        assert_allclose(pred[:, 0], model.fit(X, y[:, 0]).predict(X), rtol=1e-10)


def test_sparse_target_is_refused(X):
    """A sparse y gets a TypeError that says to densify it."""
    from scipy import sparse

    y = sparse.csr_matrix(np.ones((len(X), 1)))
    for model in (NTKRegressor(), NTKRegressorCV()):
        with pytest.raises(TypeError, match="sparse y"):
            model.fit(X, y)


@pytest.mark.parametrize("Estimator", [NTKRegressorCV, NTKClassifierCV])
@pytest.mark.parametrize(
    "sample_weight, match",
    [
        (np.ones(29), "shape"),
        (np.ones((30, 2)), "1D"),
        (np.zeros(30), "non-zero"),
        (np.r_[np.nan, np.ones(29)], "NaN"),
        (np.r_[-1.0, np.ones(29)], "[Nn]egative"),
    ],
)
def test_cv_estimators_check_sample_weight(X, Estimator, sample_weight, match):
    """The CV estimators validate sample_weight as the plain ones do."""
    with pytest.raises(ValueError, match=match):
        Estimator(depths=[1]).fit(
            X, _labels("int", len(X)), sample_weight=sample_weight
        )


# ---------------------------------------------------------------------------
# Dask input: booleans and unknown chunk sizes
# ---------------------------------------------------------------------------
@pytest.fixture
def sync_dask():
    dask = pytest.importorskip("dask")
    pytest.importorskip("dask.array")
    with dask.config.set(scheduler="sync"):
        yield


@pytest.mark.slow
def test_dask_bool_X_is_accepted_as_numpy_bool(X, sync_dask):
    """Boolean dask X fits and predicts as the same NumPy booleans."""
    import dask.array as da

    B = X > 0.3
    y = np.sin(X[:, 0])
    Bd = da.from_array(B, chunks=(10, 3))
    params = dict(solver="nystrom", n_centers=100, **NET)  # all rows: exact
    model = NTKRegressor(**params).fit(Bd, y)
    ref = NTKRegressor(solver="cholesky", **NET).fit(B, y)
    assert_allclose(model.predict(B), ref.predict(B), rtol=1e-6, atol=1e-8)
    assert_allclose(model.predict(Bd).compute(), ref.predict(B), rtol=1e-6, atol=1e-8)
    labels = np.where(X[:, 1] > 0, "up", "down")
    clf = NTKClassifier(**params).fit(Bd, labels)
    ref = NTKClassifier(solver="cholesky", **NET).fit(B, labels)
    assert_allclose(
        clf.decision_function(Bd).compute(),
        ref.decision_function(B),
        rtol=1e-6,
        atol=1e-8,
    )


@pytest.mark.slow
def test_dask_unknown_chunk_sizes_are_computed(X, sync_dask):
    """X[X[:, 0] > 0] (NaN chunk sizes) fits as the NumPy rows it selects."""
    import dask.array as da

    y = np.sin(X[:, 0]) + X[:, 1]
    Xd, yd = da.from_array(X, chunks=(7, 3)), da.from_array(y, chunks=7)
    mask = Xd[:, 0] > -0.2
    Xm, ym = Xd[mask], yd[mask]
    assert np.isnan(Xm.chunks[0][0])
    keep = X[:, 0] > -0.2
    params = dict(solver="nystrom", n_centers=100, **NET)  # all rows: exact
    model = NTKRegressor(**params).fit(Xm, ym)
    ref = NTKRegressor(solver="cholesky", **NET).fit(X[keep], y[keep])
    assert_allclose(model.predict(X), ref.predict(X), rtol=1e-6, atol=1e-8)
    # prediction on unknown chunks stays lazy and gives the selected rows
    assert_allclose(
        model.predict(Xm).compute(), ref.predict(X[keep]), rtol=1e-6, atol=1e-8
    )
    clf = NTKClassifier(**params).fit(Xm, ym > 0)
    assert_allclose(
        clf.decision_function(X),
        NTKClassifier(solver="cholesky", **NET)
        .fit(X[keep], y[keep] > 0)
        .decision_function(X),
        rtol=1e-6,
        atol=1e-8,
    )


@pytest.mark.slow
def test_dask_non_numeric_X_is_refused_at_fit_and_predict(X, sync_dask):
    """Strings and complex numbers in a dask X raise, naming the dtype."""
    import dask.array as da

    y = np.sin(X[:, 0])
    model = NTKRegressor(solver="nystrom", n_centers=10, **NET).fit(X, y)
    for bad in (X.astype(str), X + 1j):
        Xd = da.from_array(bad, chunks=(10, 3))
        with pytest.raises(ValueError, match="real numbers"):
            NTKRegressor(solver="nystrom").fit(Xd, y)
        with pytest.raises(ValueError, match="real numbers"):
            model.predict(Xd)


@pytest.mark.slow
def test_dask_bad_targets_fail_before_any_kernel(X, sync_dask, monkeypatch):
    """The dask path checks y (and its length) before kernel work too."""
    import dask.array as da

    Xd = da.from_array(X, chunks=(10, 3))
    _no_kernels(monkeypatch)
    with pytest.raises(AssertionError, match="a kernel was computed"):
        NTKRegressor(solver="nystrom", n_centers=10).fit(Xd, np.ones(len(X)))
    for y_bad, match in (
        (["a"] * 30, "y must hold numbers"),
        (["nan"] * 30, "NaN"),
        (np.ones(29), "rows"),
    ):
        with pytest.raises(ValueError, match=match):
            NTKRegressor(solver="nystrom", n_centers=10).fit(Xd, y_bad)


@pytest.mark.slow
def test_dask_unknown_chunks_on_a_cluster(X):
    """The same on a one-worker LocalCluster (the chunk sizes computed there)."""
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    y = np.cos(X[:, 1])
    keep = X[:, 2] < 0.5
    with (
        distributed.LocalCluster(
            n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        Xd = da.from_array(X > 0, chunks=(8, 3))
        mask = da.from_array(keep, chunks=8)
        model = NTKRegressor(solver="nystrom", n_centers=100, **NET).fit(
            Xd[mask], da.from_array(y, chunks=8)[mask]
        )
    ref = NTKRegressor(solver="cholesky", **NET).fit((X > 0)[keep], y[keep])
    assert_allclose(model.predict(X > 0), ref.predict(X > 0), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# predict(return_cov=True): values and memory
# ---------------------------------------------------------------------------
def _cov_reference(model, X_fit, y, w, X_test):
    """The covariance from the functions of sknetk.dynamics, from scratch."""
    params = model._kernel_params()
    # uncertainty="gp": the Gaussian process of the model's own kernel
    readout_only = model.kernel == "nngp" or model.uncertainty == "gp"
    prior = ntk_kernel if model.kernel == "ntk" and readout_only else nngp_kernel
    prior_params = params if prior is ntk_kernel else dict(params, frozen_layers=0)
    K = prior(X_fit, **prior_params)
    Ks = prior(X_test, X_fit, **prior_params)
    Kss = prior(X_test, **prior_params)
    ridge = model.alpha_
    if readout_only and model.t is None:
        return gp_posterior(K, Ks, Kss, None, ridge, sample_weight=w)[1]
    n_targets = 1 if y.ndim == 1 else y.shape[1]
    lr = 1.0 if w is None else len(w) / np.sum(w)
    if readout_only:
        noise = np.where(w > 0, ridge / np.where(w > 0, w, 1.0), 0.0)
        eigh = kernel_eigh(K, w)
        return ensemble_covariance(
            K + np.diag(noise),
            Ks,
            Kss,
            t=model.t,
            ridge=ridge,
            learning_rate=lr,
            n_targets=n_targets,
            sample_weight=w,
            eigh=eigh,
        )
    _, Theta = nngp_ntk_kernels(X_fit, **params)
    _, Theta_s = nngp_ntk_kernels(X_test, X_fit, **params)
    return ensemble_covariance(
        K,
        Ks,
        Kss,
        ntk_train_train=Theta,
        ntk_test_train=Theta_s,
        t=np.inf if model.t is None else model.t,
        ridge=ridge,
        learning_rate=lr,
        n_targets=n_targets,
        sample_weight=w,
    )


@pytest.mark.parametrize(
    "kernel, t, uncertainty",
    [
        ("ntk", None, "gp"),
        ("ntk", 3.0, "gp"),
        ("ntk", None, "ensemble"),
        ("ntk", 3.0, "ensemble"),
        ("nngp", None, "gp"),
        ("nngp", 3.0, "gp"),
    ],
)
@pytest.mark.parametrize("working_memory", [0.01, None])
def test_blocked_covariance_equals_dynamics_functions(
    kernel, t, uncertainty, working_memory
):
    """The in-place, blocked covariance equals the one-shot formulas; symmetric."""
    rng = np.random.default_rng(2)
    X_fit, X_test = rng.normal(size=(25, 3)), rng.normal(size=(301, 3))
    y = np.c_[np.sin(X_fit[:, 0]), X_fit[:, 1]]
    w = rng.uniform(0.0, 2.0, size=25)
    w[:3] = 0.0
    model = NTKRegressor(
        kernel=kernel,
        t=t,
        uncertainty=uncertainty,
        alpha=0.05,
        device="cpu",
        working_memory=working_memory,
        **NET,
    ).fit(X_fit, y, w)
    _, cov = model.predict(X_test, return_cov=True, latent=True)
    assert cov.shape == (301, 301, 2)
    # one latent covariance, scaled per target by the fitted output scale
    unit = cov / model.output_scale_[None, None, :]
    assert_allclose(unit[:, :, 0], unit[:, :, 1])
    ref = _cov_reference(model, X_fit, y, w, X_test)
    assert_allclose(unit[:, :, 0], ref, rtol=1e-7, atol=1e-9)
    assert np.array_equal(cov[:, :, 0], cov[:, :, 0].T)
    # the predictive covariance adds the noise output_scale_ * alpha_ (diagonal)
    _, pred = model.predict(X_test, return_cov=True)
    noise = np.eye(301)[:, :, None] * (model.output_scale_ * model.alpha_)
    assert_allclose(pred, cov + noise, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kernel, t", [("ntk", None), ("nngp", None), ("ntk", 3.0)])
@pytest.mark.parametrize("n_targets", [0, 1])
def test_covariance_peak_memory_is_close_to_the_output(kernel, t, n_targets):
    """tracemalloc's peak during predict(return_cov=True) is at most 1.5x the output.

    The one-shot formulas held about four n_test x n_test temporaries (4.2x
    the output), whatever working_memory said.
    """
    rng = np.random.default_rng(3)
    X_fit, X_test = rng.normal(size=(40, 3)), rng.normal(size=(1200, 3))
    y = np.sin(X_fit[:, 0])
    y = y if n_targets == 0 else y[:, None]
    model = NTKRegressor(
        kernel=kernel, t=t, alpha=0.1, device="cpu", working_memory=4, **NET
    ).fit(X_fit, y)
    model.predict(X_test[:5], return_cov=True)  # imports and caches warmed up
    tracemalloc.start()
    try:
        _, cov = model.predict(X_test, return_cov=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cov.nbytes == 8 * 1200 * 1200
    assert peak <= 1.5 * cov.nbytes, peak / cov.nbytes


def test_covariance_of_two_targets_holds_one_extra_copy():
    """With two targets the peak is the output plus one n_test x n_test copy."""
    rng = np.random.default_rng(4)
    X_fit, X_test = rng.normal(size=(40, 3)), rng.normal(size=(900, 3))
    y = np.c_[np.sin(X_fit[:, 0]), np.cos(X_fit[:, 1])]
    model = NTKRegressor(alpha=0.1, device="cpu", working_memory=4, **NET).fit(X_fit, y)
    model.predict(X_test[:5], return_cov=True)
    tracemalloc.start()
    try:
        _, cov = model.predict(X_test, return_cov=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cov.shape == (900, 900, 2)
    assert peak <= 1.5 * cov.nbytes + 0.25 * cov.nbytes / 2, peak / cov.nbytes
