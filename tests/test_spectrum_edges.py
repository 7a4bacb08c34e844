"""Edge cases of :func:`~sknetk.spectrum.kernel_spectrum` and
:func:`~sknetk.spectrum.falloff_index`: unfitted pipelines as transformers,
frozen layers, sparse transformer output, inputs that are not a spectrum.
References: dense eigenvalues (``numpy.linalg.eigvalsh``).
"""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknetk.fourier import FourierFeatures
from sknetk.kernels import nngp_ntk_kernels, ntk_kernel
from sknetk.spectrum import falloff_index, kernel_spectrum


def _data(seed, n=16, d=3, n_targets=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.normal(size=n)
    if n_targets:
        y = np.column_stack([y] + [np.cos(X[:, j]) for j in range(n_targets - 1)])
    return X, y, rng


def test_falloff_index_refuses_what_is_not_a_spectrum():
    """2-D arrays, NaN and negative rtol raise ValueError."""
    with pytest.raises(ValueError, match="1-D"):
        falloff_index(np.ones((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        falloff_index([np.nan, 1.0])
    with pytest.raises(ValueError, match="rtol"):
        falloff_index([1.0, 0.5], rtol=-1.0)
    assert falloff_index([1e-5, 1.0, 0.5]) == 2  # order does not matter


# ---------------------------------------------------------------------------
# Spectrum: dense references
# ---------------------------------------------------------------------------
def test_spectrum_with_a_pipeline_transformer_equals_dense_eigenvalues():
    """Unfitted pipeline: cloned, fitted on X; eigenvalues and times by eigvalsh."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 10, size=(30, 2))
    pipe = make_pipeline(
        StandardScaler(), FourierFeatures(64, scale=2.0, random_state=0)
    )
    result = kernel_spectrum(
        X,
        transformer=pipe,
        depth=2,
        bias_std=0.1,
        normalize="trace",
        ridge=0.5,
        learning_rate=0.3,
        n_targets=2,
    )
    assert not hasattr(pipe[-1], "random_weights_")  # the user's object untouched
    Z = make_pipeline(
        StandardScaler(), FourierFeatures(64, scale=2.0, random_state=0)
    ).fit_transform(X)
    evals = np.linalg.eigvalsh(ntk_kernel(Z, depth=2, bias_std=0.1))[::-1]
    evals = np.clip(evals, 0, None)
    assert_allclose(result.eigenvalues, evals / evals.sum(), rtol=1e-9, atol=1e-14)
    assert_allclose(
        result.convergence_times, len(X) * 2 / (0.3 * (evals + 0.5)), rtol=1e-9
    )
    fitted = pipe.fit(X)
    again = kernel_spectrum(
        X, transformer=fitted, depth=2, bias_std=0.1, normalize="trace"
    )
    assert_allclose(again.eigenvalues, result.eigenvalues, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("frozen_layers", [1, 2])
def test_frozen_spectrum_equals_dense_eigenvalues(frozen_layers):
    """frozen_layers selects the frozen NTK (top-normalised eigvalsh)."""
    X, _, _ = _data(6, n=25)
    result = kernel_spectrum(X, depth=3, frozen_layers=frozen_layers)
    _, Theta = nngp_ntk_kernels(X, depth=3, frozen_layers=frozen_layers)
    evals = np.clip(np.linalg.eigvalsh(Theta)[::-1], 0, None)
    assert_allclose(result.eigenvalues, evals / evals[0], rtol=1e-9, atol=1e-14)
    assert math.isclose(result.scale, evals[0], rel_tol=1e-12)


def test_spectrum_of_sparse_transformer_output_equals_dense():
    """A sparse transformer output (OneHotEncoder's default) is densified."""
    from sklearn.preprocessing import OneHotEncoder

    X = np.array([[0, 1], [1, 0], [2, 2], [0, 0], [1, 2], [2, 1]])
    sparse = kernel_spectrum(X, transformer=OneHotEncoder(), depth=2, bias_std=0.1)
    dense = kernel_spectrum(
        X, transformer=OneHotEncoder(sparse_output=False), depth=2, bias_std=0.1
    )
    assert_array_equal(sparse.eigenvalues, dense.eigenvalues)
    Z = OneHotEncoder(sparse_output=False).fit_transform(X)
    evals = np.clip(np.linalg.eigvalsh(ntk_kernel(Z, depth=2, bias_std=0.1)), 0, None)[
        ::-1
    ]
    assert_allclose(dense.eigenvalues, evals / evals[0], rtol=1e-9, atol=1e-14)
