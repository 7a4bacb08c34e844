"""Empirical NTK of sklearn MLPs, kernel comparisons, limit kernel; after-kernel."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from sknetk.empirical import (
    AfterKernelClassifier,
    AfterKernelRegressor,
    centered_kernel_alignment,
    empirical_ntk,
    kernel_alignment,
    kernel_distance,
    limit_kernel,
    target_alignment,
)

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


# ---------------------------------------------------------------------------
# Reference: the explicit Jacobian, one sample and one output at a time
# ---------------------------------------------------------------------------
def _act(name, u):
    if name == "identity":
        return u, np.ones_like(u)
    if name == "relu":
        return np.maximum(u, 0.0), (u > 0).astype(float)
    if name == "tanh":
        t = np.tanh(u)
        return t, 1.0 - t**2
    s = 1.0 / (1.0 + np.exp(-u))
    return s, s * (1.0 - s)


def jacobian(mlp, X):
    """Rows d f_c(x) / d theta, theta = every coefs_ then intercepts_ entry, per layer.

    Plain per-sample, per-output back-propagation with Python loops: the
    gradient of ``f_c`` with respect to ``W_l[i, j]`` is ``a_{l-1}[i] delta_l[j]``.
    """
    Ws, bs = mlp.coefs_, mlp.intercepts_
    k = Ws[-1].shape[1]
    rows = []
    for x in X:
        acts, ders = [x], []
        for W, b in zip(Ws[:-1], bs[:-1]):
            a, g = _act(mlp.activation, acts[-1] @ W + b)
            acts.append(a)
            ders.append(g)
        for c in range(k):
            delta = np.zeros(k)
            delta[c] = 1.0
            grads = []
            for layer in range(len(Ws) - 1, -1, -1):
                gW = np.zeros_like(Ws[layer])
                for i in range(gW.shape[0]):
                    for j in range(gW.shape[1]):
                        gW[i, j] = acts[layer][i] * delta[j]
                grads.append(np.concatenate([gW.ravel(), delta.copy()]))
                if layer > 0:
                    delta = (Ws[layer] @ delta) * ders[layer - 1]
            rows.append(np.concatenate(grads[::-1]))
    return np.array(rows).reshape(len(X), k, -1)


def _quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _trained(kind, activation, n_outputs=1, hidden=(5, 4), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(9, 3))
    if kind == "regressor":
        y = rng.normal(size=(9, n_outputs))
        y = y[:, 0] if n_outputs == 1 else y
        model = MLPRegressor(hidden_layer_sizes=hidden, activation=activation)
    else:
        y = np.arange(9) % n_outputs
        model = MLPClassifier(hidden_layer_sizes=hidden, activation=activation)
    model.set_params(solver="lbfgs", max_iter=30, random_state=seed)
    return _quiet_fit(model, X, y), X, rng.normal(size=(6, 3))


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


CASES = [
    ("regressor", 1),
    ("regressor", 3),
    ("classifier", 2),  # binary: one logit
    ("classifier", 3),  # three logits
]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind, n", CASES)
def test_empirical_ntk_equals_jacobian_product(activation, kind, n):
    """K(X, Y) equals J(X) J(Y)^T block by block, and "mean" its diagonal average."""
    mlp, X, Y = _trained(kind, activation, n)
    JX, JY = jacobian(mlp, X), jacobian(mlp, Y)
    n_params = sum(W.size + b.size for W, b in zip(mlp.coefs_, mlp.intercepts_))
    assert JX.shape[2] == n_params
    full = np.einsum("ick,jdk->ijcd", JX, JY)
    k = JX.shape[1]
    assert _rel(empirical_ntk(mlp, X, Y, output="full"), full) < 1e-10
    mean = np.einsum("ijcc->ij", full) / k
    assert _rel(empirical_ntk(mlp, X, Y), mean) < 1e-10
    sym = np.einsum("ick,jdk->ijcd", JX, JX)
    assert _rel(empirical_ntk(mlp, X, output="full"), sym) < 1e-10


def test_reference_jacobian_matches_sklearn_backprop():
    """The reference J row is the gradient scikit-learn's own backprop returns."""
    mlp, X, _ = _trained("regressor", "tanh", 1)
    x = X[:1]
    J = jacobian(mlp, x)[0, 0]
    # squared loss on one sample with residual pred - y = 1: gradient = df/dtheta
    y = mlp.predict(x).reshape(1, 1) - 1.0
    layers = len(mlp.coefs_) + 1
    acts = [x] + [None] * (layers - 1)
    deltas = [None] * (layers - 1)
    cg = [np.empty_like(W) for W in mlp.coefs_]
    ig = [np.empty_like(b) for b in mlp.intercepts_]
    mlp.set_params(alpha=0.0)
    _, cg, ig = mlp._backprop(x, y, None, acts, deltas, cg, ig)
    ref = np.concatenate([np.concatenate([c.ravel(), i]) for c, i in zip(cg, ig)])
    np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("output", ["mean", "full"])
def test_working_memory_blocks_give_the_same_kernel(output):
    """Row blocks of a few rows give the kernel of one block (symmetric and cross)."""
    mlp, X, Y = _trained("classifier", "relu", 3, hidden=(6,))
    X = np.vstack([X] * 4)
    for args in [(X,), (X, Y)]:
        whole = empirical_ntk(mlp, *args, output=output)
        tiny = empirical_ntk(mlp, *args, output=output, working_memory=1e-4)
        np.testing.assert_allclose(tiny, whole, rtol=1e-12, atol=1e-12)
    K = empirical_ntk(mlp, X, output=output, working_memory=1e-4)
    swapped = (1, 0) if output == "mean" else (1, 0, 3, 2)
    np.testing.assert_array_equal(K, np.transpose(K, swapped))


def test_array_api_strict_namespace(xps):
    """The array_api_strict path returns its own arrays, equal to NumPy's."""
    mlp, X, Y = _trained("regressor", "logistic", 2)
    for output in ("mean", "full"):
        K = empirical_ntk(mlp, xps.asarray(X), xps.asarray(Y), output=output)
        assert type(K).__module__.startswith("array_api_strict")
        np.testing.assert_allclose(
            np.asarray(K), empirical_ntk(mlp, X, Y, output=output), rtol=1e-12
        )
    L = limit_kernel(mlp)(xps.asarray(X))
    assert type(L).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(L), limit_kernel(mlp)(X), rtol=1e-12)
    K, Kx = empirical_ntk(mlp, X), empirical_ntk(mlp, xps.asarray(X))
    Lx, L = limit_kernel(mlp)(xps.asarray(X)), limit_kernel(mlp)(X)
    y = np.linspace(-1.0, 1.0, len(X))
    for measure in (kernel_distance, kernel_alignment, centered_kernel_alignment):
        assert measure(Kx, Lx) == pytest.approx(measure(K, L), rel=1e-12)
    assert target_alignment(Kx, xps.asarray(y)) == pytest.approx(
        target_alignment(K, y), rel=1e-12
    )


# ---------------------------------------------------------------------------
# After-kernel estimators
# ---------------------------------------------------------------------------
@parametrize_with_checks(
    [
        AfterKernelRegressor(),
        AfterKernelClassifier(),
        AfterKernelRegressor(
            MLPRegressor(hidden_layer_sizes=(8, 8), activation="tanh", max_iter=50),
            alpha=0.1,
            alpha_scale="absolute",
            working_memory=0.01,
        ),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    """Every scikit-learn common check passes, with no expected failure."""
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---------------------------------------------------------------------------
# Kernel comparisons
# ---------------------------------------------------------------------------
def _psd(seed, n=12, rank=5):
    F = np.random.default_rng(seed).normal(size=(n, rank))
    return F @ F.T


@pytest.mark.parametrize("measure", [kernel_alignment, centered_kernel_alignment])
def test_alignments_one_for_identical_and_scaled_kernels(measure):
    """Alignment 1 (distance 0) for a kernel and its positive multiples."""
    K = _psd(0)
    assert measure(K, K) == pytest.approx(1.0, abs=1e-14)
    assert measure(K, 1e-30 * K) == pytest.approx(1.0, abs=1e-14)
    assert measure(1e250 * K, K) == pytest.approx(1.0, abs=1e-14)
    assert kernel_distance(K, 7.0 * K) == pytest.approx(0.0, abs=1e-14)


def test_measures_against_their_definitions():
    """Brute-force formulas: Frobenius cosine, centred with H = I - 11^T/n, y^T K y."""
    rng = np.random.default_rng(1)
    for seed in range(5):
        A, B = _psd(seed), _psd(seed + 10)
        cos = np.sum(A * B) / np.linalg.norm(A) / np.linalg.norm(B)
        assert kernel_alignment(A, B) == pytest.approx(cos, rel=1e-12)
        assert kernel_distance(A, B) == pytest.approx(1 - cos, rel=1e-12)
        assert 0.0 <= kernel_distance(A, B) <= 1.0
        H = np.eye(12) - 1.0 / 12
        HA, HB = H @ A @ H, H @ B @ H
        cka = np.sum(HA * HB) / np.linalg.norm(HA) / np.linalg.norm(HB)
        assert centered_kernel_alignment(A, B) == pytest.approx(cka, rel=1e-12)
        assert 0.0 <= cka <= 1.0
        y = rng.normal(size=12)
        ta = y @ A @ y / np.linalg.norm(A) / (y @ y)
        assert target_alignment(A, y) == pytest.approx(ta, rel=1e-12)
        assert target_alignment(5 * A, 3 * y) == pytest.approx(ta, rel=1e-12)
        yc = y - y.mean()
        tac = yc @ HA @ yc / np.linalg.norm(HA) / (yc @ yc)
        assert target_alignment(A, y, centered=True) == pytest.approx(tac, rel=1e-12)


def test_measures_reject_zero_and_mismatched_kernels():
    """A zero kernel, a constant one (centred) or mismatched shapes raise ValueError."""
    K = _psd(0)
    with pytest.raises(ValueError, match="zero"):
        kernel_distance(K, np.zeros_like(K))
    with pytest.raises(ValueError, match="zero"):
        centered_kernel_alignment(K, np.ones_like(K))
    with pytest.raises(ValueError, match="shape"):
        kernel_alignment(K, K[:3])


# ---------------------------------------------------------------------------
# The infinite-width limit
# ---------------------------------------------------------------------------
def _initialised(activation, width, seed, X, depth=1):
    mlp = MLPRegressor(
        hidden_layer_sizes=(width,) * depth,
        activation=activation,
        solver="sgd",
        learning_rate_init=1e-12,
        momentum=0.0,
        random_state=seed,
    )
    return mlp.partial_fit(X, np.zeros(len(X)))


def test_limit_kernel_maps_sklearn_glorot_initialisation():
    """Depth, widths, activation and the variances 2/(a+b) (2/(3(a+b)) logistic)."""
    X = np.random.default_rng(0).normal(size=(5, 7))
    for activation, factor in [("relu", 6.0), ("tanh", 6.0), ("logistic", 2.0)]:
        mlp = _initialised(activation, 11, 0, X, depth=2)
        kernel = limit_kernel(mlp)
        assert kernel.widths == (11, 11)
        fans = [(7, 11), (11, 11), (11, 1)]
        expected = tuple(factor / 3 / (a + b) for a, b in fans)
        assert kernel.weight_variances == pytest.approx(expected, rel=1e-14)
        assert kernel.bias_variances == pytest.approx(expected, rel=1e-14)
        # the empirical variances of the drawn weights agree (uniform draw)
        drawn = [np.var(W) for W in mlp.coefs_[:2]]
        assert drawn == pytest.approx(expected[:2], rel=0.15)
    assert limit_kernel(_initialised("relu", 3, 0, X)).activation == "relu"
    assert limit_kernel(_initialised("identity", 3, 0, X)).activation == "identity"
    assert limit_kernel(_initialised("tanh", 3, 0, X)).activation == "erf"


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_wide_networks_at_initialisation_are_close_to_the_limit(activation):
    """Distance to the limit shrinks with width (64 -> 1024) and is small at 4096."""
    X = np.random.default_rng(0).normal(size=(25, 20))
    mean = {}
    for width in (64, 1024, 4096):
        distances = []
        for seed in range(3):
            mlp = _initialised(activation, width, seed, X)
            distances.append(
                kernel_distance(empirical_ntk(mlp, X), limit_kernel(mlp)(X))
            )
        mean[width] = np.mean(distances)
    # measured: relu 0.022, 0.0019, 0.0004; tanh 0.015, 0.0014, 0.0004 (1/width)
    assert mean[1024] < mean[64] / 4
    assert mean[4096] < 0.005


def _gauss_limit(kernel, X, fn, dfn, n_points=60):
    """Reference limit NTK of a one-hidden-layer network by Gauss-Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(n_points)
    w = w / w.sum()
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    W = np.outer(w, w)
    (vw0, vw1), (vb0, _) = kernel.weight_variances, kernel.bias_variances
    width = kernel.widths[0]
    G = X @ X.T
    Q = vw0 * G + vb0
    n = len(X)
    E, Ed = np.empty((n, n)), np.empty((n, n))
    for i in range(n):
        for j in range(n):
            qi, qj, c = Q[i, i], Q[j, j], Q[i, j]
            u = np.sqrt(qi) * Z1
            v = c / np.sqrt(qi) * Z1 + np.sqrt(max(qj - c * c / qi, 0.0)) * Z2
            E[i, j] = np.sum(W * fn(u) * fn(v))
            Ed[i, j] = np.sum(W * dfn(u) * dfn(v))
    return width * E + 1.0 + (G + 1.0) * width * vw1 * Ed


@pytest.mark.parametrize(
    "activation, fn, dfn, bound",
    [
        ("tanh", np.tanh, lambda u: 1 - np.tanh(u) ** 2, 2e-4),
        (
            "logistic",
            lambda u: 0.5 + 0.5 * np.tanh(u / 2),
            lambda u: 0.25 * (1 - np.tanh(u / 2) ** 2),
            2e-4,
        ),
        ("identity", lambda u: u, np.ones_like, 1e-12),
    ],
)
def test_limit_kernel_against_quadrature(activation, fn, dfn, bound):
    """The closed-form limit against the quadrature of the exact activation."""
    X = 3.0 * np.random.default_rng(2).normal(size=(8, 4))
    mlp = _initialised(activation, 16, 0, X)
    kernel = limit_kernel(mlp)
    reference = _gauss_limit(kernel, X, fn, dfn)
    assert kernel_distance(kernel(X), reference) < bound


# ---------------------------------------------------------------------------
# Input checks and edge cases
# ---------------------------------------------------------------------------
def test_empirical_ntk_input_errors():
    """Unfitted, foreign or diverged networks, wrong widths and outputs raise."""
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import Ridge

    mlp, X, _ = _trained("regressor", "relu")
    with pytest.raises(NotFittedError):
        empirical_ntk(MLPRegressor(), X)
    with pytest.raises(TypeError, match="MLPRegressor or MLPClassifier"):
        empirical_ntk(Ridge().fit(X, X[:, 0]), X)
    with pytest.raises(ValueError, match="features"):
        empirical_ntk(mlp, X[:, :2])
    with pytest.raises(ValueError, match="output"):
        empirical_ntk(mlp, X, output="diag")
    with pytest.raises(ValueError, match="NaN"):
        empirical_ntk(mlp, np.where(X > 0, np.nan, X))
    broken, _, _ = _trained("regressor", "relu")
    broken.coefs_[0][0, 0] = np.inf
    with pytest.raises(ValueError, match="diverged"):
        empirical_ntk(broken, X)


def test_empirical_ntk_edge_rows_and_linear_network():
    """Empty inputs give empty kernels; no hidden layer gives X Y^T + 1."""
    mlp, X, Y = _trained("regressor", "tanh")
    assert empirical_ntk(mlp, X[:0]).shape == (0, 0)
    assert empirical_ntk(mlp, X, Y[:0], output="full").shape == (9, 0, 1, 1)
    linear, X, Y = _trained("regressor", "relu", hidden=())
    np.testing.assert_allclose(empirical_ntk(linear, X, Y), X @ Y.T + 1.0, rtol=1e-14)
    # duplicated and zero rows: finite, and duplicates give equal rows
    Z = np.vstack([X[:2], X[:2], np.zeros((1, 3))])
    K = empirical_ntk(mlp, Z)
    assert np.all(np.isfinite(K))
    np.testing.assert_allclose(K[0], K[2], rtol=1e-14)


def test_logistic_is_stable_for_huge_inputs():
    """Inputs of 1e30 give a finite kernel for a logistic network (no overflow)."""
    mlp, X, _ = _trained("classifier", "logistic", 2)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        K = empirical_ntk(mlp, np.full((2, 3), 1e30))
    assert np.all(np.isfinite(K))


# ---------------------------------------------------------------------------
# After-kernel estimators against KernelRidge on the same kernel
# ---------------------------------------------------------------------------
def test_after_kernel_regressor_is_kernel_ridge_on_the_empirical_ntk():
    """Predictions equal KernelRidge(kernel="precomputed") on the trained net's NTK."""
    from sklearn.kernel_ridge import KernelRidge

    rng = np.random.default_rng(3)
    X, Xt = rng.normal(size=(30, 4)), rng.normal(size=(7, 4))
    y = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2])
    net = MLPRegressor(hidden_layer_sizes=(12,), activation="tanh", max_iter=200)
    model = AfterKernelRegressor(net, alpha=0.05, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    reference_net = _quiet_fit(
        MLPRegressor(
            hidden_layer_sizes=(12,), activation="tanh", max_iter=200, random_state=1
        ),
        X,
        y,
    )
    K = empirical_ntk(reference_net, X)
    ridge = 0.05 * np.mean(np.diag(K))
    krr = KernelRidge(alpha=ridge, kernel="precomputed").fit(K, y)
    expected = krr.predict(empirical_ntk(reference_net, Xt, X))
    np.testing.assert_allclose(model.predict(Xt), expected, rtol=1e-8, atol=1e-10)
    assert model.alpha_ == pytest.approx(ridge)
    assert net.get_params()["random_state"] is None  # the given network is not fitted


def test_after_kernel_classifier_uses_plus_minus_one_targets():
    """Decision values: kernel ridge on one-vs-all +-1 targets; string labels."""
    from sklearn.kernel_ridge import KernelRidge

    rng = np.random.default_rng(4)
    X = rng.normal(size=(36, 3))
    labels = np.array(["a", "b", "c"])[np.argmax(X, axis=1)]
    model = AfterKernelClassifier(alpha=1e-2, alpha_scale="absolute", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, labels)
    K = empirical_ntk(model.mlp_, X)
    targets = 2.0 * (labels[:, None] == model.classes_) - 1.0
    krr = KernelRidge(alpha=1e-2, kernel="precomputed").fit(K, targets)
    np.testing.assert_allclose(
        model.decision_function(X), krr.predict(K), rtol=1e-8, atol=1e-10
    )
    assert set(model.predict(X)) <= set(model.classes_)
    assert model.score(X, labels) > 0.9


def test_after_kernel_rejects_a_network_of_the_wrong_kind():
    """A classifier network in the regressor (and vice versa) raises TypeError."""
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(TypeError, match="MLPRegressor"):
        AfterKernelRegressor(MLPClassifier()).fit(X, np.arange(10) % 2)
    with pytest.raises(TypeError, match="MLPClassifier"):
        AfterKernelClassifier(MLPRegressor()).fit(X, np.arange(10) % 2)


@pytest.mark.gpu
@pytest.mark.parametrize("output", ["mean", "full"])
def test_cupy_in_cupy_out(output):
    """CuPy rows give a CuPy kernel equal to NumPy's (blocked and whole)."""
    cupy = pytest.importorskip("cupy")
    mlp, X, Y = _trained("classifier", "tanh", 3)
    for kwargs in ({}, {"working_memory": 1e-4}):
        K = empirical_ntk(
            mlp, cupy.asarray(X), cupy.asarray(Y), output=output, **kwargs
        )
        assert isinstance(K, cupy.ndarray)
        np.testing.assert_allclose(
            K.get(), empirical_ntk(mlp, X, Y, output=output), rtol=1e-10
        )
    L = limit_kernel(mlp)(cupy.asarray(X))
    assert isinstance(L, cupy.ndarray)
    np.testing.assert_allclose(L.get(), limit_kernel(mlp)(X), rtol=1e-10)
    d = kernel_distance(L, L * 3.0)
    assert d == pytest.approx(0.0, abs=1e-12)
