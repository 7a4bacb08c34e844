"""Every solver of the registry against an independent reference.

Each entry of :data:`sknetk._solvers.SOLVERS` takes the same arguments and
returns a :class:`~sknetk._solvers.FitResult`; the exact ones must equal
scikit-learn's ``KernelRidge`` on the precomputed kernel (weighted too), the
finite-time ones the closed-form gradient flow of :mod:`sknetk.dynamics`, and
Nystrom with every row as a centre the exact solution. The GPU entries run
here on a NumPy stand-in for CuPy (the array-API code is the same).
"""

from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.kernel_ridge import KernelRidge

from sknetk._solvers import (
    SOLVERS,
    ExecutionContext,
    FitResult,
    Kernel,
    Ridge,
    keeps_training_rows,
    solver_key,
    time_scale,
)
from sknetk.dynamics import gradient_flow_dual_coef
from sknetk.kernels import ntk_diag, ntk_kernel

PARAMS = dict(
    depth=2,
    activation="relu",
    activation_params=None,
    weight_std=1.3,
    bias_std=0.2,
    parameterization="ntk",
    width=None,
    frozen_layers=0,
)
FAKE_CUPY = SimpleNamespace(
    asarray=np.asarray,
    asnumpy=np.asarray,
    get_default_memory_pool=lambda: SimpleNamespace(free_all_blocks=lambda: None),
)


def _kernel():
    def function(X, working_memory=None, device=None, n_jobs=None, verbose=0, **p):
        return ntk_kernel(X, **p, working_memory=working_memory)

    return Kernel("ntk", dict(PARAMS), function, ntk_diag)


def _context(name):
    gpu = name.endswith("_gpu")
    return ExecutionContext(
        device="gpu" if gpu else "cpu",
        cupy=FAKE_CUPY if gpu else None,
        n_centers=10_000,
        max_iter=500,
        tol=1e-12,
        random_state=0,
    )


def _data(seed, n=40, d=3, targets=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n if targets == 1 else (n, targets))
    return X, y


def _exact_reference(X, y, alpha, sample_weight):
    K = ntk_kernel(X, **PARAMS)
    model = KernelRidge(alpha=alpha, kernel="precomputed")
    return model.fit(K, y, sample_weight=sample_weight).dual_coef_


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("targets", [1, 2])
def test_every_solver_equals_its_reference(name, weighted, targets):
    X, y = _data(seed=len(name) + targets, targets=targets)
    rng = np.random.default_rng(7)
    sw = rng.uniform(0.2, 3.0, X.shape[0]) if weighted else None
    flow = name.startswith("flow")
    t = 3.0 if flow else None
    ridge = Ridge(0.05, "absolute", sw)
    result = SOLVERS[name](_kernel(), X, y, sw, ridge, t, _context(name))
    assert isinstance(result, FitResult)
    assert result.alpha == pytest.approx(0.05)
    # the entry's declared fields describe what the solver did
    assert result.solver == SOLVERS[name].name
    assert (result.X_fit is X) == SOLVERS[name].keeps_X
    if not SOLVERS[name].keeps_X:
        assert not np.shares_memory(result.X_fit, X)
    if flow:
        K = ntk_kernel(X, **PARAMS)
        expected = gradient_flow_dual_coef(
            K, y, t=t, ridge=0.05, learning_rate=time_scale(sw), sample_weight=sw
        )
    else:
        expected = _exact_reference(X, y, 0.05, sw)
    rtol = 1e-6 if name == "nystrom" else 1e-9
    assert result.dual_coef.shape == np.shape(y)
    assert_allclose(result.dual_coef, expected, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_computes_the_relative_ridge_alike(name):
    X, y = _data(seed=3)
    sw = np.linspace(0.5, 2.0, X.shape[0])
    t = 2.0 if name.startswith("flow") else None
    ridge = Ridge(0.1, "mean_diag", sw)
    result = SOLVERS[name](_kernel(), X, y, sw, ridge, t, _context(name))
    diag = ntk_diag(X, **PARAMS)
    expected = 0.1 * np.sum(sw * diag) / np.sum(sw)
    # Nystrom may floor the ridge for degenerate centres; these are not.
    assert result.alpha == pytest.approx(expected, rel=1e-12)


def test_long_flow_converges_to_the_exact_solution():
    X, y = _data(seed=11)
    ridge = Ridge(0.05, "absolute")
    exact = SOLVERS["cholesky"](
        _kernel(), X, y, None, ridge, None, _context("cholesky")
    )
    flow = SOLVERS["flow"](_kernel(), X, y, None, ridge, 1e8, _context("flow"))
    assert_allclose(flow.dual_coef, exact.dual_coef, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "solver, device, t, key",
    [
        ("cholesky", "cpu", None, "cholesky"),
        ("cholesky", "cpu", 2.0, "flow"),
        ("cholesky", "cpu", float("inf"), "cholesky"),
        ("cholesky", "gpu", None, "cholesky_gpu"),
        ("cholesky", "gpu", 2.0, "flow_gpu"),
        ("nystrom", "cpu", None, "nystrom"),
        ("nystrom", "gpu", None, "nystrom"),
    ],
)
def test_dispatch_key_names_a_registered_solver(solver, device, t, key):
    assert solver_key(solver, device, t) == key
    assert key in SOLVERS


@pytest.mark.parametrize("key", sorted(SOLVERS))
def test_dispatch_finds_every_registered_solver(key):
    # every entry is reachable, and only through its own fields
    entry = SOLVERS[key]
    devices = ["cpu", "gpu"] if entry.device is None else [entry.device]
    for device in devices:
        assert solver_key(entry.name, device, 2.0 if entry.finite_t else None) == key


def test_dispatch_refuses_what_no_solver_does():
    with pytest.raises(ValueError, match="No registered solver"):
        solver_key("nystrom", "cpu", 2.0)  # no finite-time Nystrom flow
    with pytest.raises(ValueError, match="No registered solver"):
        solver_key("lsqr", "cpu", None)


def test_copy_rule_follows_the_registry():
    # the estimators copy X exactly for the solvers that keep it as X_fit
    assert keeps_training_rows("cholesky")
    assert not keeps_training_rows("nystrom")
    X, y = _data(seed=5)
    for name, entry in SOLVERS.items():
        t = 2.0 if entry.finite_t else None
        result = entry(_kernel(), X, y, None, Ridge(0.1, "absolute"), t, _context(name))
        assert (result.X_fit is X) == keeps_training_rows(entry.name)
