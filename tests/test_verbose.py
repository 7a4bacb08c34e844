"""``verbose``: progress bars on long kernel computations, silence by default."""

import numpy as np
import pytest

from sknetk import NTKRegressor
from sknetk.kernels import kernel_matvec, ntk_kernel


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(300, 4))


def test_kernel_functions_quiet_by_default(X, capsys):
    """verbose=0 prints nothing on stdout or stderr."""
    ntk_kernel(X, working_memory=0.5)
    kernel_matvec(X, X[:20], np.ones(20), working_memory=0.05)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_kernel_functions_show_progress(X, capsys):
    """verbose=1 reports tile and row-block progress on stderr, same values."""
    K = ntk_kernel(X, working_memory=0.5, verbose=1)
    v = kernel_matvec(X, X[:20], np.ones(20), working_memory=0.05, verbose=1)
    err = capsys.readouterr().err
    assert "kernel tiles (300 x 300)" in err
    assert "kernel rows (300 x 20)" in err
    np.testing.assert_array_equal(K, ntk_kernel(X, working_memory=0.5))
    np.testing.assert_allclose(v, ntk_kernel(X, X[:20]).sum(axis=1), rtol=1e-12)


def test_estimator_verbose(X, capsys):
    """NTKRegressor(verbose=1) shows the kernel progress; verbose=0 is silent."""
    y = np.sin(X[:, 0])
    NTKRegressor(working_memory=0.5, solver="cholesky").fit(X, y).predict(X)
    assert capsys.readouterr().err == ""
    NTKRegressor(working_memory=0.5, solver="cholesky", verbose=1).fit(X, y).predict(X)
    err = capsys.readouterr().err
    assert "kernel tiles" in err and "kernel rows" in err


@pytest.mark.parametrize("cv", [None, 3])
def test_cv_estimator_verbose(X, capsys, cv):
    """NTKRegressorCV(verbose=1) reports the search; the choice is unchanged."""
    from sknetk import NTKRegressorCV

    y = np.sin(X[:, 0])
    quiet = NTKRegressorCV(alphas=(0.1, 1.0), depths=(1, 2), cv=cv).fit(X, y)
    assert capsys.readouterr().err == ""
    loud = NTKRegressorCV(alphas=(0.1, 1.0), depths=(1, 2), cv=cv, verbose=1)
    loud.fit(X, y)
    err = capsys.readouterr().err
    assert ("leave-one-out" in err) if cv is None else ("folds" in err)
    assert (loud.alpha_, loud.depth_) == (quiet.alpha_, quiet.depth_)
