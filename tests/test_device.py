"""The ``device`` parameter and CuPy, on a machine without CuPy or a GPU.

* CuPy is imported only when asked for (``device="gpu"``, or ``"auto"`` with
  a large problem), and a missing or broken CuPy never breaks ``"auto"``;
* ``device="gpu"`` fails clearly (which part is missing, how to install it),
  at fit or call time; invalid values are refused by validation;
* fitted models hold NumPy arrays and predict where CuPy cannot be imported;
* CuPy input (a stand-in array type) is validated on the host and the
  predictions are returned as CuPy.

The GPU code itself, run on ``array_api_strict``, is tested in
``test_array_api.py``; on a real GPU in ``test_gpu.py``. The references are
independent: the NumPy code path and fresh interpreters.
"""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sknetk import _base
from sknetk._classification import NTKClassifier
from sknetk._cv import NTKClassifierCV, NTKRegressorCV
from sknetk._device import (
    AUTO_GPU_MIN_ENTRIES,
    check_device,
    gpu_available,
    predict_device,
)
from sknetk._regression import NTKRegressor
from sknetk.exceptions import GPUUnavailableError
from sknetk.kernels import (
    kernel_matvec,
    nngp_diag,
    nngp_kernel,
    nngp_ntk_kernels,
    ntk_diag,
    ntk_kernel,
)

ROOT = Path(__file__).resolve().parents[1]
INSTALL = 'pip install "sknetk[gpu]"'
ESTIMATORS = [NTKRegressor, NTKClassifier, NTKRegressorCV, NTKClassifierCV]
KERNEL_FUNCTIONS = [ntk_kernel, nngp_kernel, nngp_ntk_kernels]

no_gpu = pytest.mark.skipif(
    gpu_available(), reason="a GPU is present: the missing-GPU errors cannot be seen"
)


def _data(n=30, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)
    return X, y


def _target(estimator, y):
    return (y > 0).astype(int) if "Classifier" in estimator.__name__ else y


def _run_python(script, tmp_path, extra_path=()):
    """Run ``script`` in a fresh interpreter with the repository importable."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*map(str, extra_path), str(ROOT)]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def _fake_cupy(folder, body):
    """A package ``cupy`` in ``folder`` whose ``__init__`` is ``body``."""
    package = folder / "cupy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(body))
    return folder


# ---------------------------------------------------------------------------
# 1. CuPy is imported lazily, and a missing or broken CuPy never hurts "auto"
# ---------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess or many rows: seconds
def test_nothing_imports_cupy_unless_asked(tmp_path):
    """Importing every module and computing on the CPU never imports CuPy.

    A ``cupy`` package that records its import and fails is first on the
    path: it must stay untouched by imports, by NumPy computations with
    ``device="auto"``/``"cpu"``, by estimators and by pickling; only
    ``device="gpu"`` reaches it (and then reports it as unusable).
    """
    marker = tmp_path / "cupy_was_imported"
    fake = _fake_cupy(
        tmp_path / "fake",
        f"""
        open({str(marker)!r}, "a").write("imported\\n")
        raise ImportError("this CuPy stand-in must not be imported")
    """,
    )
    out = _run_python(
        f"""
        import importlib, os, pickle, pkgutil, sys
        import numpy as np
        import sknetk
        for info in pkgutil.iter_modules(sknetk.__path__):
            importlib.import_module("sknetk." + info.name)
        from sknetk import (NTKClassifier, NTKClassifierCV, NTKRegressor,
                            NTKRegressorCV, nngp_ntk_kernels, ntk_diag)
        from sknetk.kernels import kernel_matvec
        rng = np.random.default_rng(0)
        X = rng.normal(size=(30, 3)); y = X[:, 0]
        for device in ("auto", "cpu"):
            nngp_ntk_kernels(X, device=device)
            kernel_matvec(X, X, y, device=device)
            for Est, t in ((NTKRegressor, y), (NTKClassifier, y > 0),
                           (NTKRegressorCV, y), (NTKClassifierCV, y > 0)):
                model = pickle.loads(pickle.dumps(Est(device=device).fit(X, t)))
                model.predict(X)
        NTKRegressor(solver="nystrom", n_centers=5).fit(X, y).predict(X)
        NTKRegressor(t=1.0).fit(X, y).predict(X, return_std=True)
        ntk_diag(X)
        assert "cupy" not in sys.modules
        assert not os.path.exists({str(marker)!r})
        try:
            NTKRegressor(device="gpu").fit(X, y)
        except sknetk.exceptions.GPUUnavailableError as exc:
            print("GPU ERROR:", exc)
    """,
        tmp_path,
        [fake],
    )
    assert marker.exists()  # reached by device="gpu" only, at the very end
    message = out.split("GPU ERROR:", 1)[1]
    assert "CuPy is not installed" in message and INSTALL in message


@pytest.mark.parametrize("broken", ["RuntimeError", "OSError"])
@pytest.mark.slow  # a subprocess or many rows: seconds
def test_broken_cupy_install_is_a_missing_gpu(tmp_path, broken):
    """A CuPy whose import fails with another error than ImportError (CUDA
    libraries missing or of the wrong version) is reported as unusable:
    ``device="gpu"`` raises GPUUnavailableError, ``"auto"`` computes on the
    CPU even for a problem large enough for the GPU."""
    fake = _fake_cupy(
        tmp_path / "fake",
        f"""
        raise {broken}("libcudart.so.12: cannot open shared object file")
    """,
    )
    out = _run_python(
        f"""
        import numpy as np
        from sknetk import NTKRegressor, nngp_kernel
        from sknetk._device import gpu_available
        from sknetk.exceptions import GPUUnavailableError
        assert not gpu_available()
        rng = np.random.default_rng(0)
        X, Y = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))
        assert X.shape[0] * Y.shape[0] >= {AUTO_GPU_MIN_ENTRIES}
        K = nngp_kernel(X, Y, depth=1, device="auto")
        assert type(K) is np.ndarray
        np.testing.assert_array_equal(K[:50], nngp_kernel(X[:50], Y, depth=1))
        for call in (lambda: nngp_kernel(X[:5], device="gpu"),
                     lambda: NTKRegressor(device="gpu").fit(X[:5], X[:5, 0])):
            try:
                call()
            except GPUUnavailableError as exc:
                print("GPU ERROR:", exc)
            else:
                raise AssertionError("device='gpu' did not raise")
    """,
        tmp_path,
        [fake],
    )
    messages = out.split("GPU ERROR:")[1:]
    assert len(messages) == 2
    for message in messages:
        assert "CuPy" in message and "libcudart" in message and INSTALL in message


@pytest.mark.slow  # a subprocess or many rows: seconds
def test_cupy_without_device(tmp_path):
    """CuPy importable but no CUDA device: the error says the device is what
    is missing (not CuPy), and "auto" stays on the CPU."""
    fake = _fake_cupy(
        tmp_path / "fake",
        """
        class _Runtime:
            @staticmethod
            def getDeviceCount():
                raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device")
        class cuda:
            runtime = _Runtime
        def __getattr__(name):
            raise AssertionError(f"cupy.{name} used without a device")
    """,
    )
    out = _run_python(
        f"""
        import numpy as np
        from sknetk import ntk_kernel
        from sknetk.exceptions import GPUUnavailableError
        X = np.random.default_rng(0).normal(size=(2000, 2))
        assert X.shape[0] ** 2 >= {AUTO_GPU_MIN_ENTRIES}
        assert type(ntk_kernel(X, depth=1, device="auto")) is np.ndarray
        try:
            ntk_kernel(X[:3], device="gpu")
        except GPUUnavailableError as exc:
            print("GPU ERROR:", exc)
    """,
        tmp_path,
        [fake],
    )
    message = out.split("GPU ERROR:", 1)[1]
    assert "no CUDA device" in message and "cudaErrorNoDevice" in message
    assert "not installed" not in message


# ---------------------------------------------------------------------------
# 2. The device parameter
# ---------------------------------------------------------------------------
@no_gpu
@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "params",
    [{}, {"cv": 3}, {"solver": "nystrom"}, {"t": 2.0}],
    ids=["default", "cv", "nystrom", "finite_t"],
)
def test_gpu_device_raises_at_fit_not_init(Estimator, params):
    """device="gpu" is stored by __init__ and refused by fit, saying why."""
    X, y = _data()
    valid = Estimator().get_params()
    params = {k: v for k, v in params.items() if k in valid}
    model = Estimator(device="gpu", **params)  # no error here
    assert model.get_params()["device"] == "gpu"
    with pytest.raises(GPUUnavailableError, match="CuPy") as info:
        model.fit(X, _target(Estimator, y))
    assert INSTALL in str(info.value)
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_cpu_and_auto_predict_the_same(Estimator):
    """Small problems: "auto" computes on the CPU, exactly as "cpu"."""
    X, y = _data()
    model = Estimator(device="cpu").fit(X, _target(Estimator, y))
    expected = model.predict(X)
    auto = Estimator(device="auto").fit(X, _target(Estimator, y))
    assert_allclose(auto.dual_coef_, model.dual_coef_, rtol=0, atol=0)
    model.set_params(device="auto")
    assert_allclose(model.predict(X), expected, rtol=0, atol=0)


@no_gpu
def test_predict_device_without_gpu():
    """predict_device: an unusable "gpu" becomes "cpu" with a warning saying
    why; other values pass through; invalid values are refused."""
    with pytest.warns(UserWarning, match='device="gpu".*CuPy is not installed'):
        assert predict_device("gpu") == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert predict_device("cpu") == "cpu"
        assert predict_device("auto") == "auto"
    with pytest.raises(ValueError, match="device must be one of"):
        predict_device("cuda")


@no_gpu
def test_gpu_device_raises_in_every_kernel_function():
    """Each kernel function with a device parameter refuses "gpu" clearly."""
    X, _ = _data(n=5)
    calls = [lambda f=f: f(X, device="gpu") for f in KERNEL_FUNCTIONS]
    calls.append(lambda: kernel_matvec(X, X, np.ones(5), device="gpu"))
    for call in calls:
        with pytest.raises(GPUUnavailableError, match="CuPy is not installed"):
            call()


@pytest.mark.parametrize("device", ["GPU", "cuda", "cuda:0", None, 0, ["gpu"]])
def test_invalid_device_values_are_refused(device):
    """Estimators refuse bad values by parameter validation at fit; kernel
    functions with a ValueError listing the valid values."""
    X, y = _data(n=10)
    for Estimator in ESTIMATORS:
        with pytest.raises(ValueError, match="'device' parameter"):
            Estimator(device=device).fit(X, _target(Estimator, y))
    for function in KERNEL_FUNCTIONS:
        with pytest.raises(ValueError, match="device must be one of"):
            function(X, device=device)


def test_check_device_refuses_arrays_clearly():
    """An array is not a device: a clear ValueError, not NumPy's ambiguous
    truth-value error."""
    with pytest.raises(ValueError, match="device must be one of"):
        check_device(np.array(["cpu", "gpu"]))
    with pytest.raises(ValueError, match="device must be one of"):
        ntk_kernel(np.ones((2, 2)), device=np.array(["gpu", "cpu"]))


def test_diagonal_functions_take_device():
    """ntk_diag and nngp_diag take device like the other kernel functions."""
    X, _ = _data(n=6)
    for function in (ntk_diag, nngp_diag):
        assert_allclose(function(X, device="cpu"), function(X), rtol=0, atol=0)
        assert_allclose(function(X, device="auto"), function(X), rtol=0, atol=0)
        if not gpu_available():
            with pytest.raises(GPUUnavailableError, match="CuPy"):
                function(X, device="gpu")


# ---------------------------------------------------------------------------
# 3. Portable fitted models
# ---------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess or many rows: seconds
def test_fitted_models_load_and_predict_without_cupy(tmp_path):
    """NumPy-fitted models of every kind hold NumPy arrays, pickle, and
    predict the same in an interpreter where ``import cupy`` fails."""
    X, y = _data(n=40, seed=8)
    Xt = _data(n=12, seed=9)[0]
    models = {
        "exact": NTKRegressor(alpha=0.01),
        "finite_t": NTKRegressor(alpha=0.01, t=5.0),
        "nystrom": NTKRegressor(solver="nystrom", n_centers=15, random_state=0),
        "classifier": NTKClassifier(),
        "regressor_cv": NTKRegressorCV(),
        "classifier_cv": NTKClassifierCV(cv=3),
    }
    expected = {}
    for name, model in models.items():
        model.fit(X, y > 0 if "classifier" in name else y)
        for attribute, value in vars(model).items():
            if attribute.endswith("_") and hasattr(value, "shape"):
                assert type(value) is np.ndarray, (name, attribute)
        expected[name] = model.predict(Xt)
    expected["std"] = models["exact"].predict(Xt, return_std=True)[1]
    (tmp_path / "models.pkl").write_bytes(pickle.dumps((models, Xt, expected)))
    out = _run_python(
        """
        import sys
        sys.modules["cupy"] = None  # `import cupy` raises ImportError
        sys.modules["cupyx"] = None
        import pickle
        import numpy as np
        models, Xt, expected = pickle.load(open("models.pkl", "rb"))
        for name, model in models.items():
            np.testing.assert_allclose(model.predict(Xt), expected[name],
                                       rtol=1e-12, atol=1e-14)
        std = models["exact"].predict(Xt, return_std=True)[1]
        np.testing.assert_allclose(std, expected["std"], rtol=1e-12, atol=1e-14)
        from sknetk._device import gpu_available
        assert not gpu_available()
        print("PREDICTED", len(models))
    """,
        tmp_path,
    )
    assert f"PREDICTED {len(models)}" in out


@no_gpu
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_gpu_fitted_model_predicts_where_there_is_no_gpu(Estimator):
    """A model fitted with device="gpu" (NumPy attributes, device="gpu"
    stored), loaded on a machine without a GPU, predicts on the CPU with a
    warning, as the same model with device="cpu"."""
    X, y = _data(n=30, seed=10)
    reference = Estimator(device="cpu").fit(X, _target(Estimator, y))
    model = pickle.loads(pickle.dumps(reference))
    model.device = "gpu"  # the state a GPU fit leaves behind
    calls = [lambda m: m.predict(X)]
    if Estimator is NTKRegressor:
        calls += [
            lambda m: m.predict(X, return_std=True)[1],
            lambda m: m.predict_trajectory(X, [1.0, np.inf]),
        ]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = call(model)
        assert any("no GPU" in str(w.message) for w in caught)
        assert_allclose(got, call(reference), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# CuPy input to every estimator, with a stand-in array type (no GPU needed)
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


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_cupy_input_is_validated_on_the_host_and_mirrored(Estimator, monkeypatch):
    """CuPy X, y and sample_weight fit every estimator (validated on the host);
    predict/decision_function return CuPy; same values as NumPy input."""
    monkeypatch.setattr(
        _base, "cupy_or_error", lambda: SimpleNamespace(asarray=_FakeCupyArray)
    )
    X, y = _data(n=25)
    y = _target(Estimator, y)
    w = np.linspace(0.5, 2.0, X.shape[0])
    params = dict(device="cpu")
    if "CV" in Estimator.__name__:
        params.update(alphas=[1e-3, 0.1], depths=[1, 2])
    ref = Estimator(**params).fit(X, y, sample_weight=w)
    model = Estimator(**params).fit(
        _FakeCupyArray(X), _FakeCupyArray(y), sample_weight=_FakeCupyArray(w)
    )
    assert isinstance(model.dual_coef_, np.ndarray)
    assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-12)
    Xt = _data(n=7, seed=1)[0]
    method = "predict" if "Regressor" in Estimator.__name__ else "decision_function"
    out = getattr(model, method)(_FakeCupyArray(Xt))
    assert isinstance(out, _FakeCupyArray)
    assert_allclose(out.array, getattr(ref, method)(Xt), rtol=1e-12)
    if "Classifier" in Estimator.__name__:
        np.testing.assert_array_equal(
            model.predict(_FakeCupyArray(Xt)), ref.predict(Xt)
        )
