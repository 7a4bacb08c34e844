"""``frozen_layers`` against finite wide networks whose first layers are not trained.

Arora et al. (2020) keep the first ``f`` Dense layers at their initialisation
and train the rest. The empirical NTK of such a network sums
``df/dtheta df/dtheta'`` over the *trainable* parameters only; here it is
computed for wide random NumPy networks (neural-tangents' "ntk"
parameterization, hand-written backpropagation) and compared with
``nngp_ntk_kernels(..., frozen_layers=f)``. Freezing every hidden layer leaves
the readout, whose NTK is the NNGP.
"""

import math

import numpy as np
import pytest

from sknetk._cv import NTKRegressorCV
from sknetk.kernels import nngp_kernel, nngp_ntk_kernels, ntk_kernel


def _network(rng, d, width, depth, w_std, b_std):
    """Layers ``(W, b)`` with ``W, b ~ N(0, 1)`` ("ntk" parameterization)."""
    sizes = [d] + [width] * depth + [1]
    return [
        (rng.standard_normal((o, i)), rng.standard_normal(o))
        for i, o in zip(sizes[:-1], sizes[1:])
    ]


def _empirical_ntk(layers, X, w_std, b_std, frozen, phi, dphi):
    """Sum of Jacobian products over the Dense layers with index >= frozen.

    Layer ``l`` computes ``z = w_std / sqrt(n_in) a W^T + b_std b``; with
    ``delta = df/dz``, its weights contribute
    ``w_std^2 / n_in <delta, delta'> <a, a'>`` and its biases
    ``b_std^2 <delta, delta'>``.
    """
    a, inputs, pre = X, [], []
    for i, (W, b) in enumerate(layers):
        inputs.append(a)
        z = w_std / math.sqrt(a.shape[1]) * a @ W.T + b_std * b
        pre.append(z)
        if i < len(layers) - 1:
            a = phi(z)
    deltas = [np.ones((len(X), 1))]
    for i in range(len(layers) - 1, 0, -1):
        W, _ = layers[i]
        n_in = W.shape[1]
        deltas.append(w_std / math.sqrt(n_in) * (deltas[-1] @ W) * dphi(pre[i - 1]))
    deltas = deltas[::-1]
    ntk = np.zeros((len(X), len(X)))
    for index, ((W, _), a_in, delta) in enumerate(zip(layers, inputs, deltas)):
        if index < frozen:
            continue
        dd = delta @ delta.T
        ntk += w_std**2 / W.shape[1] * dd * (a_in @ a_in.T) + b_std**2 * dd
    return ntk


def _relu(x):
    return np.maximum(x, 0.0)


def _drelu(x):
    return (x > 0).astype(float)


def _inputs(n=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[1] = -X[0]
    X[2] *= 2.5
    return X


@pytest.mark.parametrize("frozen", [1, 2])
def test_frozen_ntk_matches_wide_networks(frozen):
    """The empirical NTK of trained later layers converges to the closed form."""
    depth, w_std, b_std = 3, 1.4, 0.3
    X = _inputs()
    _, ref = nngp_ntk_kernels(
        X, depth=depth, weight_std=w_std, bias_std=b_std, frozen_layers=frozen
    )
    full = ntk_kernel(X, depth=depth, weight_std=w_std, bias_std=b_std)
    # The frozen layers' terms are a sizeable part of the NTK: the test can
    # tell a frozen kernel from the full one.
    assert np.max(np.abs(full - ref)) > 0.2 * np.max(np.abs(ref))
    errors = []
    for width in (64, 2048):
        samples = [
            _empirical_ntk(
                _network(
                    np.random.default_rng([width, s]),
                    X.shape[1],
                    width,
                    depth,
                    w_std,
                    b_std,
                ),
                X,
                w_std,
                b_std,
                frozen,
                _relu,
                _drelu,
            )
            for s in range(8)
        ]
        errors.append(
            np.max(np.abs(np.mean(samples, axis=0) - ref)) / np.max(np.abs(ref))
        )
    assert errors[1] < 0.05
    assert errors[1] < errors[0] / 2


def test_empirical_frozen_ntk_equals_partial_jacobian():
    """The factorised per-layer sum equals J_trainable J_trainable^T exactly."""
    rng = np.random.default_rng(3)
    X = _inputs(n=4, d=3)
    w_std, b_std, depth, frozen = 1.2, 0.5, 2, 1
    layers = _network(rng, 3, 5, depth, w_std, b_std)

    def output(params):
        a = X
        for i, (W, b) in enumerate(params):
            z = w_std / math.sqrt(a.shape[1]) * a @ W.T + b_std * b
            a = np.tanh(z) if i < len(params) - 1 else z
        return a[:, 0]

    columns = []
    eps = 1e-6
    for index, (W, b) in enumerate(layers):
        if index < frozen:
            continue
        for arr in (W, b):
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + eps
                plus = output(layers)
                arr[idx] = old - eps
                minus = output(layers)
                arr[idx] = old
                columns.append((plus - minus) / (2 * eps))
    J = np.column_stack(columns)
    emp = _empirical_ntk(
        layers, X, w_std, b_std, frozen, np.tanh, lambda z: 1 - np.tanh(z) ** 2
    )
    np.testing.assert_allclose(emp, J @ J.T, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("activation", ["relu", "erf", "gelu", "sign"])
def test_all_frozen_is_nngp(activation):
    """frozen_layers=depth trains the readout only: the NTK equals the NNGP."""
    X = _inputs(seed=1)
    kw = dict(activation=activation, weight_std=1.3, bias_std=0.2)
    for depth in (1, 3):
        nngp, ntk = nngp_ntk_kernels(X, depth=depth, frozen_layers=depth, **kw)
        np.testing.assert_allclose(
            ntk, nngp_kernel(X, depth=depth, **kw), rtol=1e-13, atol=1e-15
        )
        np.testing.assert_allclose(nngp, ntk, rtol=1e-13, atol=1e-15)


def test_frozen_kernels_of_every_depth_in_one_pass():
    """all_depths=True with frozen layers equals one call per depth."""
    X = _inputs(seed=2)
    _, stack = nngp_ntk_kernels(
        X, depth=4, frozen_layers=2, all_depths=True, bias_std=0.1
    )
    for depth in (2, 3, 4):
        _, direct = nngp_ntk_kernels(X, depth=depth, frozen_layers=2, bias_std=0.1)
        np.testing.assert_allclose(stack[depth - 1], direct, rtol=1e-13)


def test_cv_selects_frozen_layers():
    """NTKRegressorCV searches frozen_layers and predicts with the chosen one."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(25, 3))
    y = np.tanh(X @ np.array([1.0, -2.0, 0.5]))
    model = NTKRegressorCV(
        alphas=(0.01,),
        depths=(2,),
        frozen_layers=[0, 1, 2],
        alpha_scale="absolute",
        normalize_y=False,
    )
    model.fit(X, y)
    assert [p["frozen_layers"] for p in model.cv_results_["params"]] == [0, 1, 2]
    assert model.frozen_layers_ == model.best_params_["frozen_layers"]
    _, K = nngp_ntk_kernels(X, depth=2, frozen_layers=model.frozen_layers_)
    _, Ks = nngp_ntk_kernels(X[:4], X, depth=2, frozen_layers=model.frozen_layers_)
    np.testing.assert_allclose(
        model.predict(X[:4]), Ks @ np.linalg.solve(K + 0.01 * np.eye(25), y), rtol=1e-8
    )
