"""Numerical soundness of the kernels: duplicates, Cauchy-Schwarz, domains, overflow.

The references are independent of the tile recursion: the O(n) diagonal
recursion (``ntk_diag``/``nngp_diag``, correlation exactly one) for rows that
a second input repeats, the Cauchy-Schwarz inequality of a covariance,
scikit-learn's ``KernelRidge`` on the precomputed training kernel, float64 for
float32, and the mathematics of each activation for the parameter domains.
"""

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from sknetk import NTKRegressor
from sknetk.kernels import (
    KernelSpec,
    nngp_diag,
    nngp_kernel,
    nngp_ntk_kernels,
    ntk_diag,
    ntk_kernel,
)

from . import test_cuda_source as cuda_host
from .test_cuda_source import host_kernel  # noqa: F401  (fixture)

# Activations at ordinary and at chaotic parameters (a sweep on the old code
# found rbf gamma >= 5, sin/cos b >= 5 and erf b >= 10 off by far more than
# rounding on exact duplicates).
SETTINGS = [
    ("relu", {}),
    ("leaky_relu", {"alpha": -0.3}),
    ("abrelu", {"a": 0.4, "b": -1.2}),
    ("abs", {}),
    ("erf", {"a": 1.5, "b": 10.0, "c": 0.2}),
    ("sigmoid_like", {}),
    ("gelu", {}),
    ("sin", {"a": 1.1, "b": 5.0, "c": 0.4}),
    ("cos", {"a": 0.9, "b": 7.0, "c": -0.3}),
    ("rbf", {"gamma": 1000.0}),
    ("rbf", {"gamma": 5.0}),
    ("sign", {}),
    ("identity", {}),
]


def _ids(setting):
    act, params = setting
    return "-".join([act] + [f"{k}={v}" for k, v in params.items()])


def _with_repeats(rng, n, d, dtype):
    """Rows of X, and Y: a permuted copy of X's first rows plus new rows."""
    X = rng.normal(size=(n, d)).astype(dtype)
    X[3] = 0.0  # a zero row
    perm = rng.permutation(n)[: n // 2]
    Y = np.vstack([X[perm].copy(), rng.normal(size=(5, d)).astype(dtype)])
    return X, Y, perm


@pytest.mark.parametrize("setting", SETTINGS, ids=_ids)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_repeated_rows_equal_the_diagonal_recursion(setting, dtype, parameterization):
    """K(X, Y) where a row of Y repeats a row of X equals ntk_diag/nngp_diag.

    Every depth up to 20 (all_depths; 8 in float32, where the NTK of rbf with
    gamma = 1000 overflows beyond), NNGP and NTK, any number of features (the
    first layer's Gram product rounds differently from the row norms).
    """
    act, params = setting
    rng = np.random.default_rng(0)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    deep = 20 if dtype == "float64" else 8
    for d, depth in ((4, deep), (300, 6)):
        X, Y, perm = _with_repeats(rng, 24, d, dtype)
        kw = dict(
            depth=depth,
            activation=act,
            activation_params=params,
            weight_std=1.4,
            bias_std=0.3,
            parameterization=parameterization,
            width=128,
            dtype=dtype,
            all_depths=True,
        )
        nngp, ntk = nngp_ntk_kernels(X, Y, **kw)
        ref = {"nngp": nngp_diag(X, **kw), "ntk": ntk_diag(X, **kw)}
        for name, K in (("nngp", nngp), ("ntk", ntk)):
            shared = K[:, perm, np.arange(len(perm))]  # (depth, n // 2)
            expected = ref[name][:, perm]
            scale = np.abs(expected).max(axis=1, keepdims=True)
            scale = np.where(scale > 0, scale, 1.0)
            err = np.abs(shared - expected) / scale
            assert err.max() <= rtol, (name, d, err.max(axis=1))


@pytest.mark.parametrize("setting", SETTINGS, ids=_ids)
def test_kernel_respects_cauchy_schwarz(setting):
    """|K(x, y)| <= sqrt(K(x, x) K(y, y)) for every entry, NNGP and NTK.

    Inputs mix duplicates, scaled and antipodal copies, near-duplicates and
    unrelated rows; the diagonals come from the O(n) recursion.
    """
    act, params = setting
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 5))
    Y = np.vstack(
        [
            X[:6] * 2.5,
            -X[6:10],
            X[10:16] + 1e-9 * rng.normal(size=(6, 5)),
            X[16:20],
            rng.normal(size=(6, 5)),
        ]
    )
    for depth in (3, 12):
        kw = dict(
            depth=depth,
            activation=act,
            activation_params=params,
            weight_std=2.0,
            bias_std=0.2,
            all_depths=True,
        )
        nngp, ntk = nngp_ntk_kernels(X, Y, **kw)
        for K, diag in ((nngp, nngp_diag), (ntk, ntk_diag)):
            root_x, root_y = np.sqrt(diag(X, **kw)), np.sqrt(diag(Y, **kw))
            bound = root_x[:, :, None] * root_y[:, None, :]
            assert np.all(np.abs(K) <= bound)


def test_chaotic_rbf_predicts_its_training_data():
    """NTKRegressor(rbf, gamma=1000, depth 5) predicts the training rows as
    KernelRidge on the precomputed training kernel does (was off by 1.4e6)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.uniform(-1, 1, 60)
    for kw in (
        dict(activation="rbf", activation_params={"gamma": 1000.0}, depth=5),
        dict(activation="rbf", weight_std=4.0, depth=10),
        dict(activation="sin", activation_params={"b": 8.0}, depth=12),
    ):
        model = NTKRegressor(alpha=1e-3, **kw).fit(X, y)
        K = ntk_kernel(X, **kw)
        reference = KernelRidge(alpha=1e-3, kernel="precomputed").fit(K, y)
        np.testing.assert_allclose(
            model.predict(X.copy()), reference.predict(K), rtol=0, atol=1e-9
        )


def test_float32_duplicates_agree_with_float64():
    """dtype="float32" at depth 8 with duplicated rows: within 1e-5 of float64
    (relative to max |K|) on the duplicate pairs (was 2.3e-3)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 6))
    X[1], X[2], X[4] = X[0], -X[3], 3.0 * X[5]
    for act in ("relu", "abs", "erf", "gelu", "rbf", "sin"):
        for kernel in (ntk_kernel, nngp_kernel):
            K64 = kernel(X, X.copy(), depth=8, activation=act, bias_std=0.1)
            K32 = kernel(
                X, X.copy(), depth=8, activation=act, bias_std=0.1, dtype="float32"
            )
            pairs = ([0, 1, 0, 1, 2, 3, 4, 5], [1, 0, 0, 1, 3, 2, 5, 4])
            err = np.abs(K32[pairs] - K64[pairs]).max() / np.abs(K64).max()
            assert err <= 1e-5, (act, kernel.__name__, err)


def test_first_layer_snap_grows_with_the_number_of_features():
    """Duplicated rows with 4096 features (a Gram rounding far above 32 ulps)
    still equal the diagonal, in float64 and float32."""
    rng = np.random.default_rng(3)
    X = rng.uniform(0.5, 1.5, size=(12, 4096))  # positive: the sum rounds most
    for dtype, rtol in (("float64", 1e-12), ("float32", 2e-5)):
        K = ntk_kernel(X, X[::-1].copy(), depth=6, dtype=dtype)
        expected = ntk_diag(X, depth=6, dtype=dtype)
        np.testing.assert_allclose(np.diag(K[:, ::-1]), expected, rtol=rtol)


def test_cuda_source_follows_the_same_math(host_kernel):  # noqa: F811
    """The host-compiled CUDA source gives repeated rows the diagonal's value
    and stays within the Cauchy-Schwarz bound at chaotic parameters."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 40))
    Y = np.vstack([X[::-1].copy(), rng.normal(size=(3, 40))])
    for act, params in SETTINGS:
        spec = KernelSpec.from_params(
            depth=6,
            activation=act,
            activation_params=params,
            weight_std=1.5,
            bias_std=0.2,
        )
        nngp, ntk = cuda_host._run_host(host_kernel, X, Y, spec, all_depths=True)
        kw = dict(
            depth=6,
            activation=act,
            activation_params=params,
            weight_std=1.5,
            bias_std=0.2,
            all_depths=True,
        )
        for K, diag in ((nngp, nngp_diag), (ntk, ntk_diag)):
            dx, dy = diag(X, **kw), diag(Y, **kw)
            shared = K[:, np.arange(10), np.arange(10)[::-1]]
            scale = np.abs(dx).max()
            np.testing.assert_allclose(shared, dx, rtol=0, atol=1e-12 * scale)
            bound = np.sqrt(dx)[:, :, None] * np.sqrt(dy)[:, None, :]
            assert np.all(np.abs(K) <= bound * (1 + 1e-14)), (act, params)


# --------------------------------------------------------------------------
# Parameter domains
# --------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [-1.0, -1e-12])
def test_rbf_gamma_must_be_non_negative(gamma):
    """A negative rbf gamma (an indefinite 'kernel') raises, naming gamma."""
    X = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="'gamma'.*>= 0"):
        ntk_kernel(X, activation="rbf", activation_params={"gamma": gamma})
    with pytest.raises(ValueError, match="'gamma'"):
        NTKRegressor(activation="rbf", activation_params={"gamma": gamma}).fit(
            X, np.arange(5.0)
        )


def test_rbf_gamma_zero_is_the_constant_network():
    """gamma = 0: phi(x) = sqrt(2) sin(pi/4) = 1, so the NNGP is W^2 + b^2."""
    X = np.random.default_rng(0).normal(size=(6, 3))
    K = nngp_kernel(
        X,
        activation="rbf",
        activation_params={"gamma": 0.0},
        weight_std=1.3,
        bias_std=0.4,
    )
    np.testing.assert_allclose(K, np.full((6, 6), 1.3**2 + 0.4**2), rtol=1e-15)


def test_unrestricted_parameters_accept_any_sign():
    """Negative erf/sin b and leaky alpha are valid: erf(-bx) = -erf(bx) and
    sin(-bx) = -sin(bx) flip the sign of a (the kernels depend on a^2), and
    leaky_relu with alpha = -1 is abs."""
    X = np.random.default_rng(0).normal(size=(8, 3))
    for act, neg, pos in (
        ("erf", {"a": 1.2, "b": -0.7, "c": 0.3}, {"a": -1.2, "b": 0.7, "c": 0.3}),
        ("sin", {"a": 1.2, "b": -0.7, "c": 0.0}, {"a": -1.2, "b": 0.7, "c": 0.0}),
    ):
        np.testing.assert_allclose(
            ntk_kernel(X, activation=act, activation_params=neg),
            ntk_kernel(X, activation=act, activation_params=pos),
            rtol=1e-14,
        )
    np.testing.assert_allclose(
        ntk_kernel(X, activation="leaky_relu", activation_params={"alpha": -1.0}),
        ntk_kernel(X, activation="abs"),
        rtol=1e-14,
    )


# --------------------------------------------------------------------------
# Overflow: the error names what overflowed
# --------------------------------------------------------------------------
OVERFLOWS = [
    (dict(weight_std=1e155), "weight_std"),
    (dict(bias_std=1e155), "bias_std"),
    (dict(weight_std=10.0, depth=400), "weight_std"),
    (dict(activation="leaky_relu", activation_params={"alpha": 1e155}), "'alpha'"),
    (dict(activation="abrelu", activation_params={"a": 1e160, "b": 1.0}), "'a'"),
    (dict(activation="erf", activation_params={"a": 1e200}), "'a'"),
    (dict(activation="erf", activation_params={"b": 1e200}), "'b'"),
    (dict(activation="sin", activation_params={"a": 1e200}), "'a'"),
    (dict(activation="cos", activation_params={"b": 1e200}), "'b'"),
    (dict(activation="rbf", activation_params={"gamma": 1e308}), "'gamma'"),
    (dict(weight_std=1e20, dtype="float32"), "weight_std"),
]


@pytest.mark.parametrize(
    "kwargs, culprit", OVERFLOWS, ids=[f"{i}-{c}" for i, (_, c) in enumerate(OVERFLOWS)]
)
def test_overflow_names_the_parameter(kwargs, culprit):
    """Huge hyper-parameters raise ValueError naming the parameter, not X
    (standardized inputs), and never a bare OverflowError."""
    X = np.random.default_rng(0).normal(size=(7, 4))
    for call in (
        lambda: ntk_kernel(X, **kwargs),
        lambda: ntk_kernel(X, X[:3], **kwargs),
        lambda: ntk_diag(X, **kwargs),
    ):
        with np.errstate(all="ignore"), pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert culprit in message and "overflows" in message, message
        assert "rows of X" not in message, message


@pytest.mark.parametrize("dtype, factor", [("float64", 1e200), ("float32", 1e25)])
def test_overflow_from_the_inputs_names_them(dtype, factor):
    """Rows too large for the dtype: the error names the input (X or Y)."""
    X = np.random.default_rng(0).normal(size=(7, 4))
    with np.errstate(all="ignore"):
        with pytest.raises(ValueError, match="rows of X are too large"):
            ntk_kernel(X * factor, X, dtype=dtype)
        with pytest.raises(ValueError, match="rows of Y are too large"):
            ntk_kernel(X, X * factor, dtype=dtype)
        with pytest.raises(ValueError, match=r"rows of X.*; and weight_std"):
            ntk_kernel(X * factor, weight_std=1e200, dtype=dtype)


def test_huge_erf_slope_is_the_sign_network():
    """erf(b x) with b = 1e200 is sign(x) for the NNGP (finite, no overflow
    inside the closed form), while its NTK (which grows like b) overflows."""
    X = np.random.default_rng(0).normal(size=(6, 3))
    with np.errstate(divide="ignore"):  # the unused derivative dual is inf
        K = nngp_kernel(
            X,
            X[::-1],
            activation="erf",
            activation_params={"b": 1e200},
            depth=3,
            bias_std=0.2,
        )
    K_sign = nngp_kernel(X, X[::-1], activation="sign", depth=3, bias_std=0.2)
    np.testing.assert_allclose(K, K_sign, rtol=1e-12)


def test_huge_phase_is_finite():
    """sin/cos with a huge phase c: finite and equal to the closed form's value,
    which depends on c only through cos(2c) (no overflow forming 2c)."""
    X = np.random.default_rng(0).normal(size=(6, 3))
    c = 1e308  # 2c overflows
    K = nngp_kernel(
        X, activation="sin", activation_params={"c": c}, depth=1, bias_std=0.0
    )
    cos2c = np.cos(c) ** 2 - np.sin(c) ** 2
    q = np.sum(X * X, axis=1) / 3
    k = X @ X.T / 3
    s = q[:, None] + q[None, :]
    expected = 0.5 * (np.exp(-0.5 * (s - 2 * k)) - cos2c * np.exp(-0.5 * (s + 2 * k)))
    np.testing.assert_allclose(K, expected, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# The compiled ABReLU tile (numba, optional) and its libm-free arccos
# --------------------------------------------------------------------------
def _acos_points():
    """[-1, 1] densely, with the branch points +-1/2, +-1 and their neighbours."""
    grid = np.linspace(-1.0, 1.0, 40001)
    special = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 1e-300, -1e-300, 2.0**-60]
    for x in (0.5, -0.5, 1.0, -1.0):
        special += [np.nextafter(x, 0.0), np.nextafter(x, 2 * x)]
    near_one = 1.0 - np.logspace(-16, -1, 200)
    rng = np.random.default_rng(5)
    uniform = rng.uniform(-1.0, 1.0, 20000)
    points = np.concatenate([grid, special, near_one, -near_one, uniform])
    return points[np.abs(points) <= 1.0]


def test_acos_rational_matches_numpy_arccos():
    """The compiled kernel's arccos is within 1e-15 (and 2 ulps) of NumPy's
    over [-1, 1], and exact at the ends (duplicated rows: angle 0 and pi)."""
    from sknetk._recursion import acos_rational

    x = _acos_points()
    got = np.array([acos_rational(float(v)) for v in x])
    expected = np.arccos(x)
    err = np.abs(got - expected)
    assert err.max() <= 1e-15, x[np.argmax(err)]
    ulps = err / np.spacing(expected)
    assert ulps.max() <= 2, x[np.argmax(ulps)]
    assert acos_rational(1.0) == 0.0 and acos_rational(-1.0) == np.pi
    assert acos_rational(0.0) == np.pi / 2


ABRELU_SETTINGS = [
    dict(depth=3, weight_std=2**0.5, bias_std=0.1),
    dict(depth=5, activation="leaky_relu", activation_params={"alpha": -0.3},
         bias_std=0.3, all_depths=True),
    dict(depth=4, activation="abs", parameterization="standard", width=100,
         bias_std=None, frozen_layers=2, all_depths=True),
    dict(depth=2, activation="abrelu", activation_params={"a": 0.4, "b": -1.2},
         frozen_layers=2),
    dict(depth=2, activation="abrelu", activation_params={"a": 0.7, "b": 0.7}),
]  # fmt: skip


def _numpy_tiles(monkeypatch, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with the compiled tile kernel switched off."""
    from sknetk import _recursion

    with monkeypatch.context() as m:
        m.setattr(_recursion.compiled_abrelu, "kernel", False)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("kw", ABRELU_SETTINGS)
def test_compiled_tile_equals_the_numpy_tile(monkeypatch, kw):
    """With numba, the compiled ABReLU tile gives the NumPy tile's kernels to
    rounding (the arccos differs by an ulp), symmetric, cross and tiled, with
    zero, duplicated and antipodal rows; duplicates keep the exact diagonal."""
    pytest.importorskip("numba")
    from sknetk._recursion import compiled_abrelu

    assert compiled_abrelu() is not None
    rng = np.random.default_rng(6)
    X = rng.normal(size=(90, 7))
    X[3], X[10], X[11] = 0.0, X[5], -X[6]
    Y = np.vstack([X[:20][::-1], rng.normal(size=(15, 7))])
    for Y_ in (None, Y):
        for wm in (1024, 0.05):
            fast = nngp_ntk_kernels(X, Y_, working_memory=wm, **kw)
            slow = _numpy_tiles(monkeypatch, nngp_ntk_kernels, X, Y_,
                                working_memory=wm, **kw)  # fmt: skip
            for a, b in zip(fast, slow):
                scale = np.abs(b).max()
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-14 * scale)
                if Y_ is None:
                    np.testing.assert_array_equal(a, np.swapaxes(a, -1, -2))
            ntk_only = ntk_kernel(X, Y_, working_memory=wm, **kw)
            np.testing.assert_array_equal(ntk_only, fast[1])
    nngp, ntk = nngp_ntk_kernels(X, Y, **kw)
    for K, diag in ((nngp, nngp_diag), (ntk, ntk_diag)):
        shared = np.asarray(K)[..., np.arange(20), np.arange(20)[::-1]]
        np.testing.assert_allclose(shared, diag(X[:20], **kw), rtol=1e-13)


def test_without_numba_the_numpy_tile_runs(monkeypatch):
    """Where numba cannot be imported, the kernels come from the NumPy tile,
    bit for bit the same as with the compiled kernel switched off."""
    import sys

    from sknetk import _recursion

    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    kw = dict(depth=3, weight_std=1.3, bias_std=0.2, all_depths=True)
    expected = _numpy_tiles(monkeypatch, nngp_ntk_kernels, X, Y, **kw)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba fails
    monkeypatch.setattr(_recursion.compiled_abrelu, "kernel", None)
    assert _recursion.compiled_abrelu() is None
    got = nngp_ntk_kernels(X, Y, **kw)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_a_numba_that_fails_to_compile_falls_back_with_a_warning(monkeypatch):
    """A numba release that cannot compile the tile kernel (here a stand-in
    module without its API) gives a RuntimeWarning and the NumPy tile."""
    import sys
    import types

    from sknetk import _recursion

    rng = np.random.default_rng(8)
    X = rng.normal(size=(30, 4))
    expected = _numpy_tiles(monkeypatch, ntk_kernel, X, bias_std=0.1)
    monkeypatch.setitem(sys.modules, "numba", types.ModuleType("numba"))
    monkeypatch.setattr(_recursion.compiled_abrelu, "kernel", None)
    with pytest.warns(RuntimeWarning, match="could not compile"):
        K = ntk_kernel(X, bias_std=0.1)
    np.testing.assert_array_equal(K, expected)
