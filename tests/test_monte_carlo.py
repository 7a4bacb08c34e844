"""Closed-form kernels against Monte-Carlo estimates from finite random networks.

Two independent checks of the infinite-width formulas:

* the empirical NTK and NNGP of wide *finite* networks, with parameter
  Jacobians computed here by hand-written backpropagation in NumPy, approach
  :func:`sknetk.kernels.ntk_kernel` / :func:`~sknetk.kernels.nngp_kernel` as
  the width grows, with an error that shrinks like ``1 / sqrt(width)``;
* every activation's dual ``E[phi(u) phi(v)]`` and derivative dual
  ``E[phi'(u) phi'(v)]`` in :data:`sknetk._activations.ACTIVATIONS` agree with
  sample means over a correlated Gaussian pair, which also validates the
  ``fn``/``derivative`` callables used by finite networks elsewhere.

Network conventions are neural-tangents' (``tests/data/REFERENCE_README.md``):
``depth`` hidden blocks ``Dense -> activation`` and a ``Dense(1)`` readout.
In the "ntk" parameterization a Dense layer computes
``z = W_std / sqrt(N_in) * W @ a + b_std * b`` with ``W, b ~ N(0, 1)``; in the
"standard" one ``z = W @ a + b`` with ``W ~ N(0, W_std**2 / N_in)`` and
``b ~ N(0, b_std**2)``, the parameters being ``W`` and ``b`` themselves.
"""

import math

import numpy as np
import pytest

from sknetk._activations import ACTIVATIONS
from sknetk.kernels import nngp_kernel, ntk_kernel


# ---------------------------------------------------------------------------
# A finite fully connected network, its forward pass and its Jacobians
# ---------------------------------------------------------------------------
def _init_network(rng, n_features, width, depth, weight_std, bias_std, param):
    """Draw the Dense layers' parameters and their multipliers.

    Returns a list of ``(W, b, w_mult, b_mult)``, one per Dense layer (hidden
    layers then the readout): the layer computes
    ``z = w_mult * a @ W.T + b_mult * b`` and the trainable parameters are
    ``W`` and ``b`` (``b`` is None when there is no bias parameter).
    """
    sizes = [n_features] + [width] * depth + [1]
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = rng.standard_normal((n_out, n_in))
        b = None if bias_std is None else rng.standard_normal(n_out)
        if param == "ntk":
            w_mult, b_mult = weight_std / math.sqrt(n_in), bias_std
        else:  # "standard": the parameters carry the scale themselves
            W *= weight_std / math.sqrt(n_in)
            if b is not None:
                b *= bias_std
            w_mult, b_mult = 1.0, 1.0
        layers.append((W, b, w_mult, b_mult))
    return layers


def _forward(layers, X, phi):
    """Pre-activations ``z_l`` and layer inputs ``a_{l-1}`` of each Dense layer."""
    a, inputs, pre = X, [], []
    for i, (W, b, w_mult, b_mult) in enumerate(layers):
        inputs.append(a)
        z = w_mult * (a @ W.T)
        if b is not None:
            z = z + b_mult * b
        pre.append(z)
        if i < len(layers) - 1:
            a = phi(z)
    return inputs, pre


def _backward(layers, pre, dphi):
    """``delta_l = d f / d z_l`` for every Dense layer, per example (backprop)."""
    n = pre[0].shape[0]
    deltas = [np.ones((n, 1))]  # the readout's pre-activation is the output
    for i in range(len(layers) - 1, 0, -1):
        W, _, w_mult, _ = layers[i]
        deltas.append(w_mult * (deltas[-1] @ W) * dphi(pre[i - 1]))
    return deltas[::-1]


def _jacobian(layers, X, phi, dphi):
    """Explicit Jacobian ``d f(x) / d theta``, shape (n_samples, n_params).

    ``d f / d W_l[i, j] = w_mult * delta_l[i] * a_{l-1}[j]`` and
    ``d f / d b_l[i] = b_mult * delta_l[i]``, for every parameter.
    """
    inputs, pre = _forward(layers, X, phi)
    deltas = _backward(layers, pre, dphi)
    blocks = []
    for (_, b, w_mult, b_mult), a, delta in zip(layers, inputs, deltas):
        blocks.append(w_mult * (delta[:, :, None] * a[:, None, :]).reshape(len(X), -1))
        if b is not None:
            blocks.append(b_mult * delta)
    return np.concatenate(blocks, axis=1)


def _empirical_kernels(layers, X, phi, dphi, weight_std, bias_std, frozen=0):
    """Empirical NNGP and NTK ``sum_theta df(x)/dtheta df(x')/dtheta``.

    The sum over a weight matrix factorises,
    ``sum_ij delta[i] a[j] delta'[i] a'[j] = <delta, delta'> <a, a'>``, so the
    NTK is formed without storing the Jacobian (checked against
    :func:`_jacobian` in :func:`test_factorised_ntk_equals_explicit_jacobian`).
    The empirical NNGP is the covariance of the output over the readout's
    random parameters given the last hidden features,
    ``W_std**2 <a, a'> / N + b_std**2``. The first ``frozen`` Dense layers
    are not trained: their parameters are left out of the NTK's sum.
    """
    inputs, pre = _forward(layers, X, phi)
    deltas = _backward(layers, pre, dphi)
    ntk = np.zeros((len(X), len(X)))
    for (_, b, w_mult, b_mult), a, delta in list(zip(layers, inputs, deltas))[frozen:]:
        dd = delta @ delta.T
        ntk += w_mult**2 * dd * (a @ a.T)
        if b is not None:
            ntk += b_mult**2 * dd
    a = inputs[-1]
    nngp = weight_std**2 * (a @ a.T) / a.shape[1] + (bias_std or 0.0) ** 2
    return nngp, ntk


def _relu(x):
    return np.maximum(x, 0.0)


def _relu_derivative(x):
    return (x > 0).astype(x.dtype)


def _inputs(n=6, d=5, seed=0):
    """A few rows with varied norms and angles, including an antipodal pair."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[1] = -X[0]
    X[2] *= 3.0
    X[3] = 0.5 * X[3] + 0.5 * X[4]
    return X


def _relative_error(K, K_ref):
    return np.max(np.abs(K - K_ref)) / np.max(np.abs(K_ref))


# ---------------------------------------------------------------------------
# Finite-network tests
# ---------------------------------------------------------------------------
def test_factorised_ntk_equals_explicit_jacobian():
    """The factorised NTK equals J J^T with the full per-parameter Jacobian."""
    rng = np.random.default_rng(1)
    X = _inputs(n=5, d=4)
    for param in ("ntk", "standard"):
        for bias_std in (0.3, None):
            layers = _init_network(rng, 4, 7, 2, 1.3, bias_std, param)
            J = _jacobian(layers, X, _relu, _relu_derivative)
            n_params = sum(
                W.size + (0 if b is None else b.size) for W, b, _, _ in layers
            )
            assert J.shape == (5, n_params)
            nngp, ntk = _empirical_kernels(
                layers, X, _relu, _relu_derivative, 1.3, bias_std
            )
            np.testing.assert_allclose(ntk, J @ J.T, rtol=1e-12, atol=1e-12)


def test_jacobian_matches_finite_differences():
    """The hand-written backpropagation agrees with central finite differences."""
    rng = np.random.default_rng(2)
    X = _inputs(n=5, d=4)
    layers = _init_network(rng, 4, 6, 2, 1.2, 0.4, "ntk")
    J = _jacobian(layers, X, np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)
    eps = 1e-6
    column = 0
    for W, b, *_ in layers:
        for arr in (W,) if b is None else (W, b):
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + eps
                f_plus = _forward(layers, X, np.tanh)[1][-1][:, 0]
                arr[idx] = old - eps
                f_minus = _forward(layers, X, np.tanh)[1][-1][:, 0]
                arr[idx] = old
                fd = (f_plus - f_minus) / (2 * eps)
                np.testing.assert_allclose(J[:, column], fd, rtol=1e-6, atol=1e-8)
                column += 1
    assert column == J.shape[1]


WIDTHS = (64, 256, 1024, 2048)


def _mean_errors(depth, weight_std, bias_std, n_seeds):
    """RMS over seeds of the relative error of the empirical kernels, per width."""
    X = _inputs()
    kw = dict(depth=depth, weight_std=weight_std, bias_std=bias_std)
    ntk_ref, nngp_ref = ntk_kernel(X, **kw), nngp_kernel(X, **kw)
    errors = {"ntk": [], "nngp": []}
    for width in WIDTHS:
        e_ntk, e_nngp = [], []
        for seed in range(n_seeds):
            rng = np.random.default_rng([width, seed])
            layers = _init_network(
                rng, X.shape[1], width, depth, weight_std, bias_std, "ntk"
            )
            nngp, ntk = _empirical_kernels(
                layers, X, _relu, _relu_derivative, weight_std, bias_std
            )
            e_ntk.append(_relative_error(ntk, ntk_ref))
            e_nngp.append(_relative_error(nngp, nngp_ref))
        errors["ntk"].append(math.sqrt(np.mean(np.square(e_ntk))))
        errors["nngp"].append(math.sqrt(np.mean(np.square(e_nngp))))
    return errors


@pytest.mark.parametrize(
    "depth, weight_std, bias_std", [(2, 1.0, 0.0), (3, math.sqrt(2), 0.1)]
)
def test_wide_relu_network_approaches_analytic_kernels(depth, weight_std, bias_std):
    """Empirical NTK/NNGP of finite ReLU nets converge like 1/sqrt(width)."""
    errors = _mean_errors(depth, weight_std, bias_std, n_seeds=6)
    for name, err in errors.items():
        err = np.asarray(err)
        # The fluctuations are O(1/sqrt(width)): a 32-fold width gives ~5.7x.
        assert err[-1] < err[0] / 3, (name, err)
        # Larger widths are (on average over seeds) closer than smaller ones.
        assert err[-1] < err[1] and err[-2] < err[0], (name, err)
        # Absolute level: C / sqrt(width), C ~ 2-3 here, at every width.
        assert np.all(err < 5.0 / np.sqrt(WIDTHS)), (name, err)


def test_average_over_networks_has_small_bias():
    """Averaging the empirical NTK over networks leaves only O(1/width) bias."""
    X = _inputs()
    depth, weight_std, bias_std, width, n_seeds = 2, 1.0, 0.5, 512, 12
    ref = ntk_kernel(X, depth=depth, weight_std=weight_std, bias_std=bias_std)
    mean = np.zeros_like(ref)
    for seed in range(n_seeds):
        rng = np.random.default_rng([7, seed])
        layers = _init_network(
            rng, X.shape[1], width, depth, weight_std, bias_std, "ntk"
        )
        ntk = _empirical_kernels(
            layers, X, _relu, _relu_derivative, weight_std, bias_std
        )[1]
        mean += ntk / n_seeds
    # One network: ~C/sqrt(512); the mean of 12: ~C/sqrt(12 * 512) ~ 0.013 C.
    assert _relative_error(mean, ref) < 0.05


def test_frozen_layers_match_partial_jacobian():
    """NTK with frozen leading layers = sum over the trained parameters only."""
    from sknetk.kernels import nngp_ntk_kernels

    X = _inputs()
    depth, weight_std, bias_std, width, n_seeds = 3, 1.2, 0.3, 2048, 3
    kw = dict(depth=depth, weight_std=weight_std, bias_std=bias_std)
    frozen_values = (1, 2)
    means = dict.fromkeys(frozen_values, 0.0)
    for seed in range(n_seeds):
        rng = np.random.default_rng([13, seed])
        layers = _init_network(
            rng, X.shape[1], width, depth, weight_std, bias_std, "ntk"
        )
        for frozen in frozen_values:
            ntk = _empirical_kernels(
                layers, X, _relu, _relu_derivative, weight_std, bias_std, frozen
            )[1]
            means[frozen] = means[frozen] + ntk / n_seeds
    full = ntk_kernel(X, **kw)
    for frozen in frozen_values:
        ref = nngp_ntk_kernels(X, frozen_layers=frozen, **kw)[1]
        err = _relative_error(means[frozen], ref)
        assert err < 6.0 / math.sqrt(width), (frozen, err)
        # Freezing removes a sizeable share: the full NTK is far from it.
        assert _relative_error(full, ref) > 0.1


@pytest.mark.parametrize("bias_std", [0.5, None])
def test_standard_parameterization_matches_width_dependent_ntk(bias_std):
    """Standard-parameterization empirical NTK matches the kernel at that width."""
    X = _inputs()
    depth, weight_std, width, n_seeds = 2, 1.2, 2048, 4
    kw = dict(
        depth=depth,
        weight_std=weight_std,
        bias_std=bias_std,
        parameterization="standard",
    )
    ref = ntk_kernel(X, width=width, **kw)
    nngp_ref = nngp_kernel(X, width=width, **kw)
    mean_nngp, mean_ntk, errs = 0.0, 0.0, []
    for seed in range(n_seeds):
        rng = np.random.default_rng([11, seed])
        layers = _init_network(
            rng, X.shape[1], width, depth, weight_std, bias_std, "standard"
        )
        nngp, ntk = _empirical_kernels(
            layers, X, _relu, _relu_derivative, weight_std, bias_std
        )
        errs.append(_relative_error(ntk, ref))
        mean_nngp = mean_nngp + nngp / n_seeds
        mean_ntk = mean_ntk + ntk / n_seeds
    # Each network: ~C/sqrt(width) with C ~ 2-3; their mean: ~C/sqrt(4 width).
    assert math.sqrt(np.mean(np.square(errs))) < 6.0 / math.sqrt(width), errs
    assert _relative_error(mean_ntk, ref) < 3.0 / math.sqrt(width)
    assert _relative_error(mean_nngp, nngp_ref) < 3.0 / math.sqrt(width)
    # The width matters: the kernel at a quarter of the width is far off.
    wrong = ntk_kernel(X, width=width // 4, **kw)
    assert _relative_error(wrong, ref) > 0.5


def test_wide_network_every_activation():
    """Mean empirical kernels of 4 width-2048 nets match, for every activation.

    The same random networks serve every activation. ``sign`` uses its
    almost-everywhere derivative 0, so only the readout trains, which is the
    closed form's convention.
    """
    X = _inputs()
    depth, weight_std, bias_std, width, n_seeds = 2, 1.3, 0.2, 2048, 4
    kw = dict(depth=depth, weight_std=weight_std, bias_std=bias_std)
    names = sorted(ACTIVATIONS)
    means = {name: [0.0, 0.0] for name in names}
    for seed in range(n_seeds):
        rng = np.random.default_rng([5, seed])
        layers = _init_network(
            rng, X.shape[1], width, depth, weight_std, bias_std, "ntk"
        )
        for name in names:
            act = ACTIVATIONS[name]
            params = act.params()
            nngp, ntk = _empirical_kernels(
                layers,
                X,
                lambda z, act=act, params=params: act.fn(z, **params),
                lambda z, act=act, params=params: act.derivative(z, **params),
                weight_std,
                bias_std,
            )
            means[name][0] += nngp / n_seeds
            means[name][1] += ntk / n_seeds
    for name in names:
        nngp_ref = nngp_kernel(X, activation=name, **kw)
        ntk_ref = ntk_kernel(X, activation=name, **kw)
        # Observed C / sqrt(width) with C <= 3.6 over activations and seeds.
        err_nngp = _relative_error(means[name][0], nngp_ref)
        err_ntk = _relative_error(means[name][1], ntk_ref)
        assert err_nngp < 6.0 / math.sqrt(width), (name, err_nngp)
        assert err_ntk < 6.0 / math.sqrt(width), (name, err_ntk)


# ---------------------------------------------------------------------------
# Activation duals against Monte-Carlo expectations
# ---------------------------------------------------------------------------
ACTIVATION_CASES = [(name, None) for name in sorted(ACTIVATIONS)] + [
    ("leaky_relu", {"alpha": -0.3}),
    ("abrelu", {"a": 0.4, "b": -1.5}),
    ("erf", {"a": 1.7, "b": 0.6, "c": -0.4}),
    ("sin", {"a": 0.8, "b": 1.9, "c": 0.7}),
    ("cos", {"a": 1.3, "b": 0.5, "c": -0.2}),
    ("rbf", {"gamma": 0.3}),
]

# (q1, q2, covariance): moderate, anticorrelated, unequal and small variances.
COVARIANCES = [(1.0, 1.0, 0.5), (2.0, 0.7, -0.9), (0.3, 1.5, 0.2), (0.8, 0.8, 0.79)]
N_SAMPLES = 1_000_000


@pytest.fixture(scope="module")
def gaussian_pairs():
    """Standard normal draws shared by every activation and covariance."""
    rng = np.random.default_rng(1234)
    return rng.standard_normal((2, N_SAMPLES))


def _assert_mc_close(samples, closed_form, label):
    """|mean - closed form| within 5 standard errors (plus rounding slack)."""
    mean = samples.mean()
    stderr = samples.std() / math.sqrt(samples.size)
    assert abs(mean - closed_form) <= 5 * stderr + 1e-12 * (1 + abs(closed_form)), (
        label,
        mean,
        closed_form,
        stderr,
    )


def _ids(case):
    name, params = case
    return name if params is None else f"{name}-{'-'.join(map(str, params.values()))}"


@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=map(_ids, ACTIVATION_CASES))
def test_activation_duals_match_monte_carlo(case, gaussian_pairs):
    """E[phi(u)phi(v)] and E[phi'(u)phi'(v)] of fn/derivative equal the duals."""
    name, overrides = case
    act = ACTIVATIONS[name]
    params = act.params(overrides)
    g1, g2 = gaussian_pairs
    for q1, q2, c in COVARIANCES:
        rho = c / math.sqrt(q1 * q2)
        u = math.sqrt(q1) * g1
        v = math.sqrt(q2) * (rho * g1 + math.sqrt(1 - rho * rho) * g2)
        new_c, dot = act.dual(
            np, np.array([c]), np.array([q1]), np.array([q2]), **params
        )
        label = (name, q1, q2, c)
        _assert_mc_close(
            act.fn(u, **params) * act.fn(v, **params),
            float(new_c[0]),
            label + ("dual",),
        )
        _assert_mc_close(
            act.derivative(u, **params) * act.derivative(v, **params),
            float(np.broadcast_to(dot, (1,))[0]),
            label + ("derivative dual",),
        )
        # The diagonal path: the same expectations at u = v.
        new_q, dot_q = act.variance(np, np.array([q1]), **params)
        _assert_mc_close(
            act.fn(u, **params) ** 2, float(new_q[0]), label + ("variance",)
        )
        _assert_mc_close(
            act.derivative(u, **params) ** 2,
            float(np.broadcast_to(dot_q, (1,))[0]),
            label + ("derivative variance",),
        )
