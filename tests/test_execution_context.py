"""Where every estimator computes is decided in one place, and CuPy input is
mirrored by one decorator.

* ``device="cpu"`` (and ``"auto"`` on a small problem) never asks for a GPU:
  no estimator, plain, model-selection or image, probes CuPy in ``fit`` or
  in its predictions;
* the model-selection estimators resolve ``device`` as the plain model they
  stand for: without a GPU, ``device="gpu"`` fails at fit with the plain
  model's error, and a fitted search set to ``device="gpu"`` predicts on the
  CPU with the plain model's warning;
* run settings changed after a search (``device``, ``n_jobs``,
  ``working_memory``) are the ones its predictions run with, and
  ``best_estimator_`` is left as fitted;
* every parameter a search shares with its plain model reaches
  ``best_estimator_``;
* CuPy in gives CuPy out for every prediction method returning numbers
  (tuples included); labels stay NumPy (CuPy holds no strings).

A missing GPU is simulated by replacing ``sknetk._device.probe_cupy``, and
CuPy arrays by a stand-in type, so that these tests run on any machine.
"""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone

from sknetk import _base, _device
from sknetk._classification import NTKClassifier
from sknetk._conv_estimators import (
    CNTKClassifier,
    CNTKClassifierCV,
    CNTKRegressor,
    CNTKRegressorCV,
)
from sknetk._cv import NTKClassifierCV, NTKRegressorCV
from sknetk._regression import NTKRegressor
from sknetk.exceptions import GPUUnavailableError

REASON = "no CuPy in this test, a stand-in"

# Small settings that keep each fit to a fraction of a second.
CV = dict(alphas=(1e-3, 0.1), depths=(1, 2))
CONV = dict(depth=1, readout="flatten")
ESTIMATORS = [
    NTKRegressor(alpha=0.1, depth=2),
    NTKClassifier(alpha=0.1, depth=2),
    NTKRegressorCV(**CV),
    NTKRegressorCV(**CV, cv=3),
    NTKRegressorCV(**CV, cv="evidence"),
    NTKClassifierCV(**CV),
    CNTKRegressor(alpha=0.1, **CONV),
    CNTKClassifier(alpha=0.1, **CONV),
    CNTKRegressorCV(alphas=(1e-3, 0.1), **CONV),
    CNTKClassifierCV(alphas=(1e-3, 0.1), **CONV),
]
SEARCHES = [NTKRegressorCV, NTKClassifierCV]


def _ids(estimator):
    params = estimator.get_params()
    return type(estimator).__name__ + (f"-cv={params['cv']}" if "cv" in params else "")


def _data(n=24, d=9, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) / 3
    y = np.sin(X[:, 0]) + X[:, 1]
    return X, y


def _target(estimator, y):
    return y > np.median(y) if "Classifier" in type(estimator).__name__ else y


def _predictions(model, X):
    """Every prediction method of a fitted ``model``, by name."""
    methods = ["predict", "decision_function", "predict_proba"]
    return {m: getattr(model, m)(X) for m in methods if hasattr(model, m)}


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine without CuPy: ``probe_cupy`` says so, and counts its calls."""
    calls = []

    def probe():
        calls.append(True)
        return None, REASON

    monkeypatch.setattr(_device, "probe_cupy", probe)
    return calls


# ---------------------------------------------------------------------------
# device="cpu" and small "auto" problems never look for a GPU
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", "auto"])
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_ids)
def test_cpu_work_never_probes_the_gpu(estimator, device, no_gpu):
    """Fit and every prediction on the CPU, without one look for CuPy; the
    results are those of the other setting (same code path)."""
    X, y = _data()
    model = clone(estimator).set_params(device=device)
    model.fit(X, _target(estimator, y))
    got = _predictions(model, X[:5])
    assert no_gpu == []
    other = "auto" if device == "cpu" else "cpu"
    reference = clone(estimator).set_params(device=other)
    reference.fit(X, _target(estimator, y))
    for name, values in _predictions(reference, X[:5]).items():
        assert_allclose(got[name], values, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# The searches resolve device as their plain model does
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_ids)
def test_gpu_without_gpu_fails_at_fit_saying_why(estimator, no_gpu):
    """device="gpu" without CuPy: GPUUnavailableError at fit, with the reason
    the probe gave, for every estimator (the plain model's error)."""
    X, y = _data(n=12)
    estimator = clone(estimator).set_params(device="gpu")
    with pytest.raises(GPUUnavailableError, match=REASON):
        estimator.fit(X, _target(estimator, y))
    assert no_gpu  # the reason came from the probe


@pytest.mark.parametrize("Search", SEARCHES)
def test_search_set_to_gpu_after_fit_predicts_on_the_cpu(Search, no_gpu):
    """A fitted search set to device="gpu" where no GPU is usable predicts on
    the CPU with the plain model's warning, the same values; its
    best_estimator_ keeps the device it was fitted with."""
    X, y = _data()
    y = y > np.median(y) if Search is NTKClassifierCV else y
    model = Search(**CV, device="cpu").fit(X, y)
    expected = _predictions(model, X[:5])
    model.set_params(device="gpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _predictions(model, X[:5])
    assert any("no GPU is usable" in str(w.message) for w in caught)
    for name, values in expected.items():
        assert_allclose(got[name], values, rtol=0, atol=0)
    assert model.best_estimator_.device == "cpu"


@pytest.mark.parametrize("Search", SEARCHES)
def test_run_settings_after_fit_reach_the_predictions(Search, monkeypatch):
    """n_jobs, working_memory and device set on a fitted search are those its
    chosen model predicts with; best_estimator_ itself is not changed."""
    X, y = _data()
    y = y > np.median(y) if Search is NTKClassifierCV else y
    model = Search(**CV, device="cpu").fit(X, y)
    Model = type(model.best_estimator_)
    seen = []
    original = Model.decision_function if Search is NTKClassifierCV else Model.predict

    def spy(self, X, **kwargs):
        seen.append((self.n_jobs, self.working_memory, self.device))
        return original(self, X, **kwargs)

    name = "decision_function" if Search is NTKClassifierCV else "predict"
    monkeypatch.setattr(Model, name, spy)
    model.predict(X[:3])
    assert seen == [(-1, None, "cpu")]
    model.set_params(n_jobs=1, working_memory=64, device="auto")
    model.predict(X[:3])
    assert seen[-1] == (1, 64, "auto")
    best = model.best_estimator_
    assert (best.n_jobs, best.working_memory, best.device) == (-1, None, "cpu")


# ---------------------------------------------------------------------------
# best_estimator_ is the plain model with the search's parameters
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("Search", SEARCHES)
def test_shared_parameters_reach_the_chosen_model(Search):
    """Every parameter the search shares with its plain model is set on
    best_estimator_ as on the search; the searched ones as chosen."""
    X, y = _data(n=30)
    y = y > np.median(y) if Search is NTKClassifierCV else y
    shared = dict(
        weight_std=1.3,
        bias_std=0.2,
        parameterization="standard",
        width=64,
        alpha_scale="absolute",
        random_state=3,
        working_memory=32,
        n_jobs=1,
        device="cpu",
    )
    if Search is NTKRegressorCV:
        shared["normalize_y"] = False
    model = Search(
        **CV, activation=["relu", "erf"], frozen_layers=[0, 1], **shared
    ).fit(X, y)
    params = model.best_estimator_.get_params()
    for name, value in shared.items():
        assert params[name] == value, name
    for name, value in model.best_params_.items():
        assert params[name] == value, name
    assert params["activation"] == model.activation_
    assert params["frozen_layers"] == model.frozen_layers_
    assert params["depth"] == model.depth_
    # and it is the plain model with those parameters, refitted on all rows
    Model = type(model.best_estimator_)
    ref = Model(**params).fit(X, y)
    assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-12)


# ---------------------------------------------------------------------------
# CuPy in, CuPy out: one decorator
# ---------------------------------------------------------------------------
class _FakeCupyArray:
    """Quacks like ``cupy.ndarray`` where sknetk looks: its type's module is
    ``cupy...``, ``.get()`` copies to the host, and implicit conversion to
    NumPy is refused (as CuPy refuses it)."""

    __module__ = "cupy._core.core"

    def __init__(self, array):
        self.array = np.asarray(array)

    def get(self):
        return self.array.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed.")


CUPY_CASES = [
    (NTKRegressor(alpha=0.1), ["predict"], {"return_std": True}),
    (NTKRegressorCV(**CV), ["predict"], {"return_std": True}),
    (
        NTKClassifier(alpha=0.1),
        ["decision_function", "predict_proba", "predict_log_proba"],
        None,
    ),
    (
        NTKClassifierCV(**CV),
        ["decision_function", "predict_proba", "predict_log_proba"],
        None,
    ),
]


@pytest.mark.parametrize(
    "estimator, methods, tuple_kwargs",
    CUPY_CASES,
    ids=[type(case[0]).__name__ for case in CUPY_CASES],
)
def test_cupy_in_cupy_out_for_every_method(
    estimator, methods, tuple_kwargs, monkeypatch
):
    """Each method returning numbers gives the stand-in type for stand-in
    input (each part of a tuple too), with the NumPy input's values; predict
    of a classifier gives NumPy labels (here strings)."""
    monkeypatch.setattr(
        _base, "cupy_or_error", lambda: SimpleNamespace(asarray=_FakeCupyArray)
    )
    X, y = _data(n=30)
    if "Classifier" in type(estimator).__name__:
        thirds = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
        y = np.array(["low", "mid", "high"])[thirds]
    model = clone(estimator).set_params(device="cpu")
    model.fit(_FakeCupyArray(X), y)
    Xt = _data(n=6, seed=1)[0]
    for method in methods:
        out = getattr(model, method)(_FakeCupyArray(Xt))
        assert isinstance(out, _FakeCupyArray), method
        assert_allclose(out.array, getattr(model, method)(Xt), rtol=1e-12)
    if tuple_kwargs:
        out = model.predict(_FakeCupyArray(Xt), **tuple_kwargs)
        ref = model.predict(Xt, **tuple_kwargs)
        assert isinstance(out, tuple) and len(out) == len(ref)
        for part, ref_part in zip(out, ref):
            assert isinstance(part, _FakeCupyArray)
            assert_allclose(part.array, ref_part, rtol=1e-12)
    if "Classifier" in type(estimator).__name__:
        labels = model.predict(_FakeCupyArray(Xt))
        assert type(labels) is np.ndarray
        np.testing.assert_array_equal(labels, model.predict(Xt))
        assert set(labels) <= {"low", "mid", "high"}
