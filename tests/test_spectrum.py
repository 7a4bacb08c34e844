"""Kernel spectra, convergence times, and the Fourier-feature falloff claim.

References: ``numpy.linalg.eigvalsh`` of the kernel matrix; the gradient-flow
training trajectory of :mod:`sknetk.dynamics` (the residual along an
eigenvector shrinks by ``e`` at its convergence time); and the seed's claim,
measured as the falloff index (number of eigenvalues >= 1e-3 of the top).
"""

import math

import numpy as np
import pytest
from sklearn.base import clone

from sknetk.dynamics import gradient_flow_train_predict
from sknetk.fourier import FourierFeatures
from sknetk.kernels import nngp_kernel, nngp_ntk_kernels, ntk_kernel
from sknetk.spectrum import falloff_index, kernel_spectrum


def _grid_1d(n=256):
    return np.linspace(0.0, 1.0, n)[:, None]


def _grid_2d(side=24):
    g = np.linspace(0.0, 1.0, side)
    return np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)


@pytest.mark.parametrize(
    "X, scales",
    [(_grid_1d(), (1.0, 3.0, 10.0)), (_grid_2d(), (0.1, 0.3, 1.0))],
    ids=["1d", "2d"],
)
def test_fourier_scale_slows_the_falloff(X, scales):
    """Larger Gaussian Fourier-feature scales keep many more eigenvalues.

    Measure: the number of eigenvalues >= 1e-3 of the top one (the falloff
    index). Each step up in ``scale`` at least doubles it (1-D: about 39, 80,
    188 of 256; 2-D: about 17, 47, 172 of 576).
    """
    kw = dict(depth=3)
    counts = []
    for scale in scales:
        ff = FourierFeatures(256, kind="gaussian", scale=scale, random_state=0)
        spectrum = kernel_spectrum(X, transformer=ff, **kw)
        counts.append(falloff_index(spectrum.eigenvalues, rtol=1e-3))
    for slow, fast in zip(counts[:-1], counts[1:]):
        assert fast >= 2 * slow, counts


def test_eigenvalues_and_normalisations():
    """Descending eigvalsh of the kernel matrix, scaled as documented."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    K = ntk_kernel(X, depth=2, bias_std=0.2)
    ref = np.sort(np.linalg.eigvalsh(K))[::-1]
    raw = kernel_spectrum(X, depth=2, bias_std=0.2, normalize=None)
    np.testing.assert_allclose(raw.eigenvalues, ref, rtol=1e-10, atol=1e-12 * ref[0])
    assert raw.scale == 1.0
    for normalize, scale in (("top", ref[0]), ("trace", ref.sum()), ("n_samples", 30)):
        out = kernel_spectrum(X, depth=2, bias_std=0.2, normalize=normalize)
        assert out.scale == pytest.approx(scale, rel=1e-12)
        np.testing.assert_allclose(
            out.eigenvalues * out.scale,
            raw.eigenvalues,
            rtol=1e-12,
            atol=1e-14 * ref[0],
        )
    assert kernel_spectrum(X, depth=2, bias_std=0.2).eigenvalues[0] == 1.0
    nngp = kernel_spectrum(X, kernel="nngp", depth=2, normalize=None)
    np.testing.assert_allclose(
        nngp.eigenvalues,
        np.sort(np.linalg.eigvalsh(nngp_kernel(X, depth=2)))[::-1],
        rtol=1e-10,
        atol=1e-12,
    )
    frozen = kernel_spectrum(X, depth=3, frozen_layers=2, normalize=None)
    _, Kf = nngp_ntk_kernels(X, depth=3, frozen_layers=2)
    np.testing.assert_allclose(
        frozen.eigenvalues,
        np.sort(np.linalg.eigvalsh(Kf))[::-1],
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_convergence_time_is_the_e_folding_time_of_the_flow(ridge):
    """At t_i the training residual along eigenvector i is exp(-1) of y."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 3))
    lr = 0.3
    out = kernel_spectrum(
        X,
        depth=2,
        normalize=None,
        learning_rate=lr,
        ridge=ridge,
        return_eigenvectors=True,
    )
    K = ntk_kernel(X, depth=2)
    np.testing.assert_allclose(
        K @ out.eigenvectors, out.eigenvectors * out.eigenvalues, atol=1e-10
    )
    np.testing.assert_allclose(
        out.convergence_times, 20 / (lr * (out.eigenvalues + ridge)), rtol=1e-12
    )
    for i in (0, 5, 19):
        v = out.eigenvectors[:, i]
        fitted = gradient_flow_train_predict(K, v, out.convergence_times[i], ridge, lr)
        np.testing.assert_allclose(v - fitted, math.exp(-1.0) * v, atol=1e-8)


def test_transformer_is_cloned_unless_fitted():
    """An unfitted transformer is not modified; a fitted one is used as is."""
    X = _grid_1d(50)
    ff = FourierFeatures(16, scale=2.0, random_state=0)
    a = kernel_spectrum(X, transformer=ff, depth=1)
    assert not hasattr(ff, "B_")
    fitted = clone(ff).fit(X)
    b = kernel_spectrum(X, transformer=fitted, depth=1)
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(
        b.eigenvalues * b.scale,
        np.sort(np.linalg.eigvalsh(ntk_kernel(fitted.transform(X), depth=1)))[::-1],
        rtol=1e-9,
        atol=1e-12 * b.scale,
    )


def test_zero_eigenvalues_give_infinite_times():
    """A rank-deficient kernel: no NaN, zero rates take forever."""
    X = np.zeros((5, 2))
    out = kernel_spectrum(X, depth=1, bias_std=0.0, normalize="top")
    assert np.all(out.eigenvalues == 0.0) and out.scale == 1.0
    assert np.all(np.isinf(out.convergence_times))
    assert falloff_index(np.array([])) == 0


def test_falloff_index():
    """Counts the eigenvalues at or above the relative threshold."""
    e = np.array([2.0, 1.0, 2e-3, 1e-3, 5e-4])
    assert falloff_index(e) == 3
    assert falloff_index(e, rtol=0.25) == 2
    assert falloff_index(e[::-1]) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kernel="rbf"), "kernel"),
        (dict(normalize="max"), "normalize"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(ridge=-1.0), "ridge"),
        (dict(n_targets=0), "n_targets"),
        (dict(kernel="nngp", frozen_layers=1), "frozen_layers"),
    ],
)
def test_invalid_arguments(kwargs, message):
    """Bad arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=message):
        kernel_spectrum(np.eye(3), **kwargs)


def test_array_api_strict_input():
    """array_api_strict input stays in its namespace with NumPy's values."""
    xp = pytest.importorskip("array_api_strict")
    from sknetk._array_api import get_namespace

    X = np.random.default_rng(2).normal(size=(12, 3))
    ref = kernel_spectrum(X, depth=2)
    out = kernel_spectrum(xp.asarray(X), depth=2)
    assert get_namespace(out.eigenvalues) is xp
    # NumPy's in-place ReLU path and the generic array-API path differ by
    # ~1e-8 relative on the kernel's diagonal (correlation one, where the
    # arc-cosine has infinite slope), hence the tolerance.
    np.testing.assert_allclose(
        np.asarray(out.eigenvalues), ref.eigenvalues, rtol=1e-7, atol=1e-10
    )
    np.testing.assert_allclose(
        np.asarray(out.convergence_times), ref.convergence_times, rtol=1e-7
    )
    assert falloff_index(out.eigenvalues) == falloff_index(ref.eigenvalues)
