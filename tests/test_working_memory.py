"""Memory planning on the CPU: kernel tiles and predictions stay within
``working_memory`` (measured with :mod:`tracemalloc`); the streamed
predictions equal the dense kernel product."""

import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sknetk._regression import NTKRegressor
from sknetk.kernels import nngp_ntk_kernels, ntk_kernel


def _data(n=30, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)
    return X, y


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
        (nngp, ntk), peak = _peak(
            lambda n_jobs=n_jobs: nngp_ntk_kernels(
                X, all_depths=True, working_memory=working_memory, n_jobs=n_jobs
            )
        )
        assert peak - nngp.nbytes - ntk.nbytes <= 1.25 * budget + 2**17
        assert peak - nngp.nbytes - ntk.nbytes >= 0.1 * budget  # tiles were used


@pytest.mark.slow  # a subprocess or many rows: seconds
def test_prediction_streams_many_rows():
    """Predicting on many rows never holds the n_test x n_train kernel."""
    rng = np.random.default_rng(12)
    X, y = _data(n=400, seed=12)
    X_test = rng.normal(size=(20_000, 3))
    full_kernel = 20_000 * 400 * 8  # 61 MiB
    model = NTKRegressor(alpha=0.1, depth=2, working_memory=1.0, normalize_y=False)
    model.fit(X, y)
    pred, peak = _peak(lambda: model.predict(X_test))
    assert peak - pred.nbytes <= 4 * 2**20 < full_kernel / 10
    assert_allclose(
        pred[:200],
        ntk_kernel(X_test[:200], X, depth=2) @ model.dual_coef_,
        rtol=1e-10,
        atol=1e-12,
    )
