"""Issue 4 (GPU backend with CuPy): the side that runs without CuPy or a GPU.

* CuPy is imported only when asked for (``device="gpu"``, or ``"auto"`` with
  a large problem), and a missing or broken CuPy never breaks ``"auto"``;
* ``device="gpu"`` fails clearly (which part is missing, how to install it),
  at fit or call time; invalid values are refused by validation;
* the array-API code that the GPU runs (kernels, the GPU ridge solve and its
  fallback, the GPU fit) gives NumPy's results on ``array_api_strict``,
  following the CPU solver's rules;
* fitted models hold NumPy arrays and predict where CuPy cannot be imported;
* kernel tiles and predictions stay within ``working_memory``.

The references are independent: the NumPy code path, SciPy's LAPACK through
:func:`sknetk._solver.solve_kernel_ridge`, and fresh interpreters.
"""

import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sknetk import _base
from sknetk._array_api import get_namespace
from sknetk._classification import NTKClassifier
from sknetk._cv import NTKClassifierCV, NTKRegressorCV
from sknetk._device import (
    AUTO_GPU_MIN_ENTRIES,
    check_device,
    gpu_available,
    predict_device,
)
from sknetk._gpu_solve import cholesky_solve_inplace, eigh_solve, solve_ridge_gpu
from sknetk._nystrom import kernel_block_function, nystrom_predict
from sknetk._regression import NTKRegressor
from sknetk._solver import solve_kernel_ridge
from sknetk.exceptions import GPUUnavailableError, IllConditionedKernelWarning
from sknetk.kernels import (
    ACTIVATION_NAMES,
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
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
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
def test_nothing_imports_cupy_unless_asked(tmp_path):
    """Importing every module and computing on the CPU never imports CuPy.

    A ``cupy`` package that records its import and fails is first on the
    path: it must stay untouched by imports, by NumPy computations with
    ``device="auto"``/``"cpu"``, by estimators and by pickling; only
    ``device="gpu"`` reaches it (and then reports it as unusable).
    """
    marker = tmp_path / "cupy_was_imported"
    fake = _fake_cupy(tmp_path / "fake", f"""
        open({str(marker)!r}, "a").write("imported\\n")
        raise ImportError("this CuPy stand-in must not be imported")
    """)
    out = _run_python(f"""
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
    """, tmp_path, [fake])
    assert marker.exists()  # reached by device="gpu" only, at the very end
    message = out.split("GPU ERROR:", 1)[1]
    assert "CuPy is not installed" in message and INSTALL in message


@pytest.mark.parametrize("broken", ["RuntimeError", "OSError"])
def test_broken_cupy_install_is_a_missing_gpu(tmp_path, broken):
    """A CuPy whose import fails with another error than ImportError (CUDA
    libraries missing or of the wrong version) is reported as unusable:
    ``device="gpu"`` raises GPUUnavailableError, ``"auto"`` computes on the
    CPU even for a problem large enough for the GPU."""
    fake = _fake_cupy(tmp_path / "fake", f"""
        raise {broken}("libcudart.so.12: cannot open shared object file")
    """)
    out = _run_python(f"""
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
    """, tmp_path, [fake])
    messages = out.split("GPU ERROR:")[1:]
    assert len(messages) == 2
    for message in messages:
        assert "CuPy" in message and "libcudart" in message and INSTALL in message


def test_cupy_without_device(tmp_path):
    """CuPy importable but no CUDA device: the error says the device is what
    is missing (not CuPy), and "auto" stays on the CPU."""
    fake = _fake_cupy(tmp_path / "fake", """
        class _Runtime:
            @staticmethod
            def getDeviceCount():
                raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device")
        class cuda:
            runtime = _Runtime
        def __getattr__(name):
            raise AssertionError(f"cupy.{name} used without a device")
    """)
    out = _run_python(f"""
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
    """, tmp_path, [fake])
    message = out.split("GPU ERROR:", 1)[1]
    assert "no CUDA device" in message and "cudaErrorNoDevice" in message
    assert "not installed" not in message


# ---------------------------------------------------------------------------
# 2. The device parameter
# ---------------------------------------------------------------------------
@no_gpu
@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "params", [{}, {"cv": 3}, {"solver": "nystrom"}, {"t": 2.0}],
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
# 3. The array-API code paths, on array_api_strict
# ---------------------------------------------------------------------------
@pytest.fixture
def xps():
    return pytest.importorskip("array_api_strict")


def _strict_to_numpy(a):
    return np.from_dlpack(a)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_every_activation_on_array_api_strict(xps, activation):
    """Every activation's generic path (the one without a fused form) runs on
    array_api_strict, keeps the namespace and equals NumPy to 1e-12."""
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    X[1] = 0.0
    X[4] = 2.0 * X[3]
    kw = dict(depth=2, activation=activation, bias_std=0.2, frozen_layers=1)
    Xs, Ys = xps.asarray(X), xps.asarray(Y)
    pairs = [
        (nngp_ntk_kernels(Xs, Ys, all_depths=True, **kw),
         nngp_ntk_kernels(X, Y, all_depths=True, **kw)),
        ((ntk_kernel(Xs, **kw),), (ntk_kernel(X, **kw),)),
        ((ntk_diag(Xs, **kw), nngp_diag(Xs, **kw)),
         (ntk_diag(X, **kw), nngp_diag(X, **kw))),
        ((kernel_matvec(Xs, Ys, xps.ones((5, 2), dtype=xps.float64),
                        working_memory=0.0005, **kw),),
         (kernel_matvec(X, Y, np.ones((5, 2)), working_memory=0.0005, **kw),)),
    ]
    for strict, ref in pairs:
        for a, b in zip(strict, ref):
            assert get_namespace(a) is xps
            assert_allclose(_strict_to_numpy(a), b, rtol=1e-12,
                            atol=1e-13 * np.max(np.abs(b)))


def test_float32_on_array_api_strict(xps):
    """float32 array_api_strict input with dtype="float32" computes and returns
    float32 in its namespace, equal to float64 within float32 rounding away
    from the diagonal."""
    X = np.random.default_rng(4).normal(size=(40, 5))
    Xs = xps.asarray(X, dtype=xps.float32)
    ref = ntk_kernel(X)
    K = ntk_kernel(Xs, dtype="float32")
    nngp, ntk = nngp_ntk_kernels(Xs, xps.asarray(X[:7], dtype=xps.float32),
                                 dtype="float32")
    for out in (K, nngp, ntk, ntk_diag(Xs, dtype="float32"),
                kernel_matvec(Xs, Xs, xps.ones(40, dtype=xps.float32),
                              dtype="float32")):
        assert get_namespace(out) is xps and out.dtype == xps.float32
    # Pairs of identical rows (correlation 1 up to float32 rounding, where the
    # arc-cosine loses half the digits) are left out here; see the next test.
    off = ~np.eye(40, dtype=bool)
    assert_allclose(_strict_to_numpy(K)[off], ref[off], rtol=2e-5,
                    atol=1e-6 * np.abs(ref).max())
    assert_allclose(_strict_to_numpy(ntk)[off[:, :7]], ref[:, :7][off[:, :7]],
                    rtol=2e-5, atol=1e-6 * np.abs(ref).max())
    assert_allclose(_strict_to_numpy(ntk_diag(Xs, dtype="float32")), np.diag(ref),
                    rtol=2e-6)


def test_auto_keeps_other_array_libraries_where_they_are(xps, monkeypatch):
    """On a machine with a GPU, "auto" computes array_api_strict input where
    it lives (only NumPy input is moved to the GPU), whatever its size."""
    import sknetk._device as device_module

    monkeypatch.setattr(device_module, "gpu_available", lambda: True)
    monkeypatch.setattr(device_module, "AUTO_GPU_MIN_ENTRIES", 1)
    X, _ = _data(n=6)
    Xs = xps.asarray(X)
    for out, ref in (
        (ntk_kernel(Xs, device="auto"), ntk_kernel(X, device="cpu")),
        (nngp_ntk_kernels(Xs, Xs[:2, :], device="auto")[1],
         nngp_ntk_kernels(X, X[:2], device="cpu")[1]),
        (kernel_matvec(Xs, Xs, xps.ones(6, dtype=xps.float64), device="auto"),
         kernel_matvec(X, X, np.ones(6), device="cpu")),
    ):
        assert get_namespace(out) is xps
        assert_allclose(_strict_to_numpy(out), ref, rtol=1e-12, atol=1e-14)


def _duplicated_rows_kernel():
    X, _ = _data(n=40, seed=5)
    X = np.vstack([X, X[:5]])
    y = np.random.default_rng(5).normal(size=45)
    return ntk_kernel(X), y


def test_gpu_solve_follows_the_cpu_rules_when_well_posed(xps):
    """The GPU solve's array-API path equals the CPU solver, without warning."""
    K, y = _duplicated_rows_kernel()
    Y = np.stack([y, -2 * y], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        for rhs in (y, Y):
            ref = solve_kernel_ridge(K, rhs, 0.1)
            out = solve_ridge_gpu(lambda: xps.asarray(K), xps.asarray(rhs), 0.1)
            assert get_namespace(out) is xps and tuple(out.shape) == rhs.shape
            assert_allclose(_strict_to_numpy(out), ref, rtol=1e-10, atol=1e-12)
            direct = cholesky_solve_inplace(xps.asarray(K + 0.1 * np.eye(45)),
                                            xps.asarray(rhs))
            assert_allclose(_strict_to_numpy(direct), ref, rtol=1e-10, atol=1e-12)


def test_gpu_solve_falls_back_as_the_cpu_does(xps):
    """A ridge below rounding level with duplicated rows: LAPACK's Cholesky
    succeeds with a pivot ~1e-15 times the largest. The CPU solver warns and
    returns the pseudo-inverse solution; so must the GPU solve (it returned
    the Cholesky solution, of norm ~1e15, without a warning)."""
    K, y = _duplicated_rows_kernel()
    alpha = 1e-15
    with pytest.warns(IllConditionedKernelWarning, match="singular to working"):
        ref = solve_kernel_ridge(K, y, alpha)
    calls = []

    def make_kernel():
        calls.append(1)
        return xps.asarray(K)

    with pytest.warns(IllConditionedKernelWarning, match="singular to working"):
        out = solve_ridge_gpu(make_kernel, xps.asarray(y), alpha)
    assert len(calls) == 2  # the factorised kernel is recomputed for eigh
    assert get_namespace(out) is xps
    assert_allclose(_strict_to_numpy(out), ref, rtol=1e-7, atol=1e-9)
    with pytest.raises(np.linalg.LinAlgError, match="singular to working"):
        cholesky_solve_inplace(xps.asarray(K + alpha * np.eye(45)), xps.asarray(y))


def test_gpu_eigh_fallback_is_the_cpu_pseudo_inverse(xps):
    """eigh_solve keeps every eigenvalue the CPU solver keeps, negative ones
    included (it dropped them), so both return the same solution."""
    K = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    y = np.array([1.0, -1.0, 3.0])
    with pytest.warns(IllConditionedKernelWarning):
        ref = solve_kernel_ridge(K, y, 0.0)
    assert_allclose(K @ ref, [1.0, -1.0, 0.0], atol=1e-12)  # pinv: least squares
    out = eigh_solve(xps.asarray(K), xps.asarray(y), 0.0)
    assert get_namespace(out) is xps
    assert_allclose(_strict_to_numpy(out), ref, rtol=1e-12, atol=1e-14)
    with pytest.warns(IllConditionedKernelWarning):
        out = solve_ridge_gpu(lambda: xps.asarray(K), xps.asarray(y), 0.0)
    assert_allclose(_strict_to_numpy(out), ref, rtol=1e-12, atol=1e-14)


def test_gpu_solve_refuses_a_non_finite_kernel(xps):
    """NaN in the kernel: the CPU's ValueError, not a fallback warning."""
    K = np.eye(3)
    K[1, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        with pytest.raises(ValueError, match="NaN or infinity"):
            solve_kernel_ridge(K, np.ones(3), 0.1)
        with pytest.raises(ValueError, match="NaN or infinity"):
            solve_ridge_gpu(lambda: xps.asarray(K), xps.asarray(np.ones(3)), 0.1)


def _strict_gpu(monkeypatch, xps):
    """Run the estimators' GPU fit with array_api_strict standing in for CuPy.

    ``cupy.asarray``/``asnumpy`` move between NumPy and array_api_strict, and
    the kernel functions asked for ``device="gpu"`` compute on the stand-in
    arrays where they are (the generic array-API path).
    """
    fake = SimpleNamespace(
        asarray=lambda a: xps.asarray(np.asarray(a)),
        asnumpy=lambda a: np.asarray(a),
        get_default_memory_pool=lambda: SimpleNamespace(free_all_blocks=lambda: None),
    )

    def on_stand_in(function):
        def run(X, *args, device, **kwargs):
            assert device == "gpu" and get_namespace(X) is xps
            return function(X, *args, device="cpu", **kwargs)
        return run

    monkeypatch.setattr(_base, "cupy_or_error", lambda: fake)
    monkeypatch.setattr(_base, "ntk_kernel", on_stand_in(ntk_kernel))
    monkeypatch.setattr(_base, "nngp_kernel", on_stand_in(nngp_kernel))
    monkeypatch.setattr(NTKRegressor, "_compute_device",
                        lambda self, n, **kwargs: "gpu")


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_estimator_gpu_fit_logic_on_array_api_strict(xps, monkeypatch, kernel):
    """The exact GPU fit (kernel, weights, in-place solve) with array_api_strict
    standing in for CuPy gives the CPU fit's NumPy attributes."""
    X, y = _data(n=40, seed=6)
    w = np.random.default_rng(6).uniform(0.0, 2.0, size=40)
    w[3] = 0.0
    Y = np.stack([y, y**2], axis=1)
    params = dict(alpha=0.05, kernel=kernel, depth=2, bias_std=0.1,
                  solver="cholesky")
    refs = [NTKRegressor(device="cpu", **params).fit(X, t, w) for t in (y, Y)]
    _strict_gpu(monkeypatch, xps)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedKernelWarning)
        fits = [NTKRegressor(device="gpu", **params).fit(X, t, w) for t in (y, Y)]
    monkeypatch.undo()
    for fit, ref in zip(fits, refs):
        fit.set_params(device="cpu")  # no GPU here to predict on
        assert type(fit.dual_coef_) is np.ndarray and type(fit.X_fit_) is np.ndarray
        assert fit.dual_coef_.shape == ref.dual_coef_.shape
        assert fit.alpha_ == ref.alpha_
        assert_allclose(fit.dual_coef_, ref.dual_coef_, rtol=1e-9, atol=1e-11)
        assert_allclose(fit.predict(X), ref.predict(X), rtol=1e-9, atol=1e-11)


def test_estimator_gpu_fit_falls_back_as_the_cpu_does(xps, monkeypatch):
    """Duplicated rows and alpha=0: the GPU fit warns and gives the CPU's
    minimum-norm fit."""
    X, y = _data(n=40, seed=7)
    X = np.vstack([X, X[:6]])
    y = np.concatenate([y, y[:6] + 0.3])
    params = dict(alpha=0.0, depth=2, solver="cholesky")
    with pytest.warns(IllConditionedKernelWarning):
        ref = NTKRegressor(device="cpu", **params).fit(X, y)
    _strict_gpu(monkeypatch, xps)
    with pytest.warns(IllConditionedKernelWarning):
        fit = NTKRegressor(device="gpu", **params).fit(X, y)
    monkeypatch.undo()
    fit.set_params(device="cpu")
    assert np.isfinite(fit.dual_coef_).all()
    assert_allclose(fit.predict(X), ref.predict(X), rtol=1e-6, atol=1e-8)


def test_nystrom_predict_empty_keeps_the_device(xps):
    """No rows to predict: an empty result on the centres' device."""
    device = xps.Device("device1")
    C = xps.asarray(np.ones((4, 3)), device=device)
    coef = xps.ones(4, dtype=xps.float64, device=device)
    out = nystrom_predict(C[:0, :], C, coef, kernel_block_function())
    assert tuple(out.shape) == (0,)
    assert out.device == device


# ---------------------------------------------------------------------------
# 4. Portable fitted models
# ---------------------------------------------------------------------------
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
    out = _run_python("""
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
    """, tmp_path)
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
        calls += [lambda m: m.predict(X, return_std=True)[1],
                  lambda m: m.predict_trajectory(X, [1.0, np.inf])]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = call(model)
        assert any("no GPU" in str(w.message) for w in caught)
        assert_allclose(got, call(reference), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# 5. Memory planning on the CPU
# ---------------------------------------------------------------------------
def _peak(call):
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("working_memory", [0.5, 2.0])
def test_kernel_tiles_respect_working_memory(working_memory):
    """Beyond the output, the tiled kernels allocate about working_memory."""
    X = np.random.default_rng(11).normal(size=(700, 5))
    ntk_kernel(X[:50], working_memory=working_memory)  # warm caches
    budget = working_memory * 2**20
    for n_jobs in (1, 2):
        (nngp, ntk), peak = _peak(lambda n_jobs=n_jobs: nngp_ntk_kernels(
            X, all_depths=True, working_memory=working_memory, n_jobs=n_jobs))
        assert peak - nngp.nbytes - ntk.nbytes <= 1.25 * budget + 2**17
        assert peak - nngp.nbytes - ntk.nbytes >= 0.1 * budget  # tiles were used


def test_prediction_streams_many_rows():
    """Predicting on many rows never holds the n_test x n_train kernel."""
    rng = np.random.default_rng(12)
    X, y = _data(n=400, seed=12)
    X_test = rng.normal(size=(20_000, 3))
    full_kernel = 20_000 * 400 * 8  # 61 MiB
    model = NTKRegressor(alpha=0.1, depth=2, working_memory=1.0).fit(X, y)
    pred, peak = _peak(lambda: model.predict(X_test))
    assert peak - pred.nbytes <= 4 * 2**20 < full_kernel / 10
    assert_allclose(pred[:200], ntk_kernel(X_test[:200], X, depth=2)
                    @ model.dual_coef_, rtol=1e-10, atol=1e-12)


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
    monkeypatch.setattr(_base, "cupy_or_error",
                        lambda: SimpleNamespace(asarray=_FakeCupyArray))
    X, y = _data(n=25)
    y = _target(Estimator, y)
    w = np.linspace(0.5, 2.0, X.shape[0])
    params = dict(device="cpu")
    if "CV" in Estimator.__name__:
        params.update(alphas=[1e-3, 0.1], depths=[1, 2])
    ref = Estimator(**params).fit(X, y, sample_weight=w)
    model = Estimator(**params).fit(_FakeCupyArray(X), _FakeCupyArray(y),
                                    sample_weight=_FakeCupyArray(w))
    assert isinstance(model.dual_coef_, np.ndarray)
    assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-12)
    Xt = _data(n=7, seed=1)[0]
    method = "predict" if "Regressor" in Estimator.__name__ else "decision_function"
    out = getattr(model, method)(_FakeCupyArray(Xt))
    assert isinstance(out, _FakeCupyArray)
    assert_allclose(out.array, getattr(ref, method)(Xt), rtol=1e-12)
    if "Classifier" in Estimator.__name__:
        np.testing.assert_array_equal(model.predict(_FakeCupyArray(Xt)),
                                      ref.predict(Xt))
