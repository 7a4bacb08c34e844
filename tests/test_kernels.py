"""Behaviour of the public kernel functions in :mod:`sknetk.kernels`.

Values themselves are checked against neural-tangents in
``test_kernels_reference.py`` and against finite networks in
``test_monte_carlo.py``; here each test compares two routes to the same numbers
(another array namespace, separate calls per depth, another tiling, another
thread count, the kernel's own diagonal, a dense product) or checks a
documented property (symmetry, positive semi-definiteness, dtypes, errors).
"""

import math

import numpy as np
import pytest

from sknetk import kernels
from sknetk.kernels import (
    ACTIVATION_NAMES,
    kernel_matvec,
    nngp_diag,
    nngp_kernel,
    nngp_ntk_kernels,
    ntk_diag,
    ntk_kernel,
)

# Activations whose kernels are smooth in the inputs, so that two routes to
# the same entry agree to rounding even on the diagonal. The ReLU family and
# sign have an infinite slope at correlation one (see the fixture README's
# "degenerate" tolerance class).
SMOOTH = ("erf", "gelu", "sin", "cos", "rbf", "sigmoid_like", "identity")

# Keyword sets covering both parameterizations, biases and activation params.
SETTINGS = [
    dict(depth=3),
    dict(depth=2, activation="erf", weight_std=1.5, bias_std=0.5),
    dict(depth=2, activation="gelu", bias_std=0.1),
    dict(
        depth=4,
        activation="leaky_relu",
        activation_params={"alpha": 0.2},
        weight_std=math.sqrt(2),
        bias_std=0.1,
    ),
    dict(depth=2, activation="sin", activation_params={"b": 0.5, "c": 0.3}),
    dict(
        depth=3,
        activation="relu",
        bias_std=None,
        parameterization="standard",
        width=128,
    ),
    dict(depth=2, activation="sign", bias_std=0.3),
]


def _setting_id(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items())


def _data(n=23, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d))


def _edge_data(scale_huge=1e6, scale_tiny=1e-6, seed=3):
    """Rows that break naive formulas: zero, duplicated, antipodal, extreme norms."""
    X = _data(n=9, d=4, seed=seed)
    X[1] = 0.0
    X[3] = X[2]
    X[5] = -X[4]
    X[6] = 2.5 * X[2]
    X[7] *= scale_huge
    X[8] *= scale_tiny
    return X


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny)


# ---------------------------------------------------------------------------
# Array namespaces
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(depth=2),
        dict(depth=3, activation="erf", bias_std=0.2),
        dict(depth=2, activation="gelu"),
        dict(depth=2, activation="abs", parameterization="standard", width=64),
        dict(depth=2, activation="sign", bias_std=0.1),
        dict(depth=2, activation="rbf", activation_params={"gamma": 0.5}),
        dict(depth=2, activation="cos"),
    ],
    ids=_setting_id,
)
def test_array_api_strict_in_array_api_strict_out(kw):
    """array_api_strict inputs give array_api_strict outputs equal to NumPy's."""
    xp = pytest.importorskip("array_api_strict")
    from sknetk._array_api import get_namespace

    X, Y = _data(), _data(n=7, seed=1)
    X[2] = 0.0
    Xs, Ys = xp.asarray(X), xp.asarray(Y)
    V = np.arange(7.0).reshape(7, 1) - 3
    results = {
        "ntk": (ntk_kernel(Xs, Ys, **kw), ntk_kernel(X, Y, **kw)),
        "nngp": (nngp_kernel(Xs, **kw), nngp_kernel(X, **kw)),
        "both": (
            nngp_ntk_kernels(Xs, Ys, all_depths=True, **kw)[1],
            nngp_ntk_kernels(X, Y, all_depths=True, **kw)[1],
        ),
        "ntk_diag": (ntk_diag(Xs, **kw), ntk_diag(X, **kw)),
        "nngp_diag": (
            nngp_diag(Xs, all_depths=True, **kw),
            nngp_diag(X, all_depths=True, **kw),
        ),
        "matvec": (
            kernel_matvec(Xs, Ys, xp.asarray(V), working_memory=0.01, **kw),
            kernel_matvec(X, Y, V, working_memory=0.01, **kw),
        ),
    }
    for name, (strict, ref) in results.items():
        assert get_namespace(strict) is xp, name
        assert strict.dtype == xp.float64, name
        assert isinstance(ref, np.ndarray), name
        np.testing.assert_allclose(
            np.from_dlpack(strict),
            ref,
            rtol=1e-12,
            atol=1e-14 * np.max(np.abs(ref)),
            err_msg=name,
        )


def test_array_api_strict_keeps_the_device():
    """Outputs live on the device of the inputs (array_api_strict's device1)."""
    xp = pytest.importorskip("array_api_strict")
    device = xp.Device("device1")
    X = xp.asarray(_data(n=6), device=device)
    v = xp.ones(6, dtype=xp.float64, device=device)
    outputs = [
        ntk_kernel(X),
        nngp_kernel(X, X[:2, :]),
        ntk_diag(X),
        nngp_diag(X, all_depths=True),
        *nngp_ntk_kernels(X, all_depths=True),
        kernel_matvec(X, X, v, working_memory=0.001),
    ]
    for out in outputs:
        assert out.device == device


def test_array_api_strict_float32_policy():
    """array_api_strict float32 input computes in float64 unless asked."""
    xp = pytest.importorskip("array_api_strict")
    X = xp.asarray(_data(n=5), dtype=xp.float32)
    assert ntk_kernel(X).dtype == xp.float64
    assert ntk_kernel(X, dtype="float32").dtype == xp.float32


# ---------------------------------------------------------------------------
# One pass over all depths
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw", SETTINGS, ids=_setting_id)
def test_all_depths_equals_separate_calls(kw):
    """``all_depths=True`` stacks the kernels of separate calls at depth 1..L."""
    X, Y = _data(), _data(n=5, seed=1)
    depth = kw["depth"]
    for Y_ in (None, Y):
        nngp_all, ntk_all = nngp_ntk_kernels(X, Y_, all_depths=True, **kw)
        n2 = X.shape[0] if Y_ is None else Y_.shape[0]
        assert nngp_all.shape == ntk_all.shape == (depth, X.shape[0], n2)
        for k in range(1, depth + 1):
            kw_k = {**kw, "depth": k}
            np.testing.assert_allclose(
                ntk_all[k - 1], ntk_kernel(X, Y_, **kw_k), rtol=1e-13, atol=0
            )
            np.testing.assert_allclose(
                nngp_all[k - 1], nngp_kernel(X, Y_, **kw_k), rtol=1e-13, atol=0
            )
    np.testing.assert_allclose(
        ntk_kernel(X, all_depths=True, **kw),
        nngp_ntk_kernels(X, all_depths=True, **kw)[1],
        rtol=1e-13,
        atol=0,
    )
    diag_all = ntk_diag(X, all_depths=True, **kw)
    for k in range(1, depth + 1):
        np.testing.assert_allclose(
            diag_all[k - 1], ntk_diag(X, **{**kw, "depth": k}), rtol=1e-13, atol=0
        )


def test_combined_call_equals_single_kernels():
    """``nngp_ntk_kernels`` returns exactly ``nngp_kernel`` and ``ntk_kernel``."""
    X, Y = _data(), _data(n=4, seed=2)
    kw = dict(depth=3, activation="erf", bias_std=0.3)
    nngp, ntk = nngp_ntk_kernels(X, Y, **kw)
    np.testing.assert_array_equal(nngp, nngp_kernel(X, Y, **kw))
    np.testing.assert_array_equal(ntk, ntk_kernel(X, Y, **kw))


# ---------------------------------------------------------------------------
# Structure: symmetry, PSD, diagonals, K(X, Y) = K(Y, X)^T
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("bias_std", [0.0, 0.4])
def test_kernel_symmetric_and_psd(activation, bias_std):
    """K(X, X) is exactly symmetric with min eigenvalue >= -tol * max."""
    X = _edge_data(scale_huge=30.0, scale_tiny=1e-3)
    X = np.vstack([X, _data(n=30, d=4, seed=5)])
    # Several tiles, so that the mirrored blocks are exercised.
    nngp, ntk = nngp_ntk_kernels(
        X, depth=3, activation=activation, bias_std=bias_std, working_memory=0.002
    )
    for K in (nngp, ntk):
        np.testing.assert_allclose(K, K.T, rtol=1e-14, atol=0)
        eig = np.linalg.eigvalsh(K)
        assert eig[0] >= -1e-12 * max(eig[-1], 1e-300), (eig[0], eig[-1])


@pytest.mark.parametrize("working_memory", [0.002, None])
def test_kernel_exactly_symmetric(working_memory):
    """K(X, X) is bitwise symmetric, as documented, whatever the tiling."""
    X = _data(n=300, d=7)
    nngp, ntk = nngp_ntk_kernels(X, depth=2, working_memory=working_memory)
    np.testing.assert_array_equal(nngp, nngp.T)
    np.testing.assert_array_equal(ntk, ntk.T)


@pytest.mark.parametrize("kw", SETTINGS, ids=_setting_id)
def test_cross_kernel_transposes(kw):
    """K(X, Y) equals K(Y, X)^T and Y=None equals Y=X."""
    X, Y = _data(), _data(n=5, seed=1)
    np.testing.assert_allclose(
        ntk_kernel(X, Y, **kw), ntk_kernel(Y, X, **kw).T, rtol=1e-12, atol=0
    )
    # Off the diagonal, Y=None equals Y=X; on it Y=None uses the exact
    # correlation-one recursion and Y=X the pairwise one, whose correlation is
    # one up to rounding (snapped to one): they agree to rounding too.
    off = ~np.eye(len(X), dtype=bool)
    for fn, diag in ((ntk_kernel, ntk_diag), (nngp_kernel, nngp_diag)):
        K_none, K_x = fn(X, **kw), fn(X, X, **kw)
        np.testing.assert_allclose(K_none[off], K_x[off], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.diag(K_none), diag(X, **kw), rtol=1e-14)
        np.testing.assert_allclose(np.diag(K_x), np.diag(K_none), rtol=1e-11)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("depth", [1, 3])
def test_diag_functions_equal_kernel_diagonal(activation, depth):
    """``ntk_diag``/``nngp_diag`` equal the diagonal of the full kernels.

    Two independent routes: the pairwise recursion of ``K(X, X.copy())``
    (a cross kernel, whose diagonal is a correlation-one pair of the 2-D
    duals) and the exact variance recursion of the diagonal functions. The
    symmetric ``K(X)`` writes the latter on its diagonal; that wiring is
    checked too.
    """
    X = np.vstack([_edge_data(scale_huge=30.0, scale_tiny=1e-3), _data(n=6, d=4)])
    kw = dict(depth=depth, activation=activation, bias_std=0.2, weight_std=1.2)
    nngp, ntk = nngp_ntk_kernels(X, **kw)
    nngp_x, ntk_x = nngp_ntk_kernels(X, X.copy(), **kw)
    for diag, K, K_x in (
        (nngp_diag(X, **kw), nngp, nngp_x),
        (ntk_diag(X, **kw), ntk, ntk_x),
    ):
        assert diag.shape == (X.shape[0],)
        # bias_std > 0: every diagonal entry is positive (even the zero
        # row's), so a relative comparison per entry is meaningful.
        assert np.all(diag > 0)
        np.testing.assert_allclose(np.diag(K_x), diag, rtol=1e-11, atol=0)
        np.testing.assert_allclose(np.diag(K), diag, rtol=1e-14, atol=0)


def test_frozen_layers_limits():
    """frozen_layers=0 is the NTK; freezing every hidden layer gives the NNGP."""
    X, Y = _data(), _data(n=5, seed=1)
    for kw in SETTINGS[:4]:
        depth = kw["depth"]
        nngp, ntk = nngp_ntk_kernels(X, Y, frozen_layers=0, **kw)
        np.testing.assert_array_equal(ntk, ntk_kernel(X, Y, **kw))
        nngp_f, ntk_f = nngp_ntk_kernels(X, Y, frozen_layers=depth, **kw)
        np.testing.assert_array_equal(nngp_f, nngp)
        np.testing.assert_allclose(ntk_f, nngp, rtol=1e-13, atol=0)


# ---------------------------------------------------------------------------
# Tiling and the memory budget
# ---------------------------------------------------------------------------
@pytest.fixture
def count_tiles(monkeypatch):
    """Wrap ``kernels._tile_recursion`` and count its calls (one per tile)."""
    calls = []
    original = kernels._tile_recursion

    def counting(xp, sigma, *args, **kwargs):
        calls.append(sigma.shape)
        return original(xp, sigma, *args, **kwargs)

    monkeypatch.setattr(kernels, "_tile_recursion", counting)
    return calls


@pytest.mark.parametrize("symmetric", [True, False])
def test_small_working_memory_tiles_and_agrees(count_tiles, symmetric):
    """A 0.001 MiB budget forces many small tiles and gives the same kernels."""
    X, Y = _data(n=70), _data(n=45, seed=1)
    Y_ = None if symmetric else Y
    kw = dict(depth=3, activation="gelu", bias_std=0.3)
    nngp_big, ntk_big = nngp_ntk_kernels(X, Y_, working_memory=1024, **kw)
    assert len(count_tiles) == 1
    count_tiles.clear()
    nngp_small, ntk_small = nngp_ntk_kernels(X, Y_, working_memory=0.001, **kw)
    assert len(count_tiles) >= 20
    n2 = X.shape[0] if symmetric else Y.shape[0]
    # The tiles cover every entry exactly once (one triangle when symmetric).
    covered = sum(a * b for a, b in count_tiles)
    if symmetric:
        assert X.shape[0] ** 2 / 2 <= covered < X.shape[0] ** 2
    else:
        assert covered == X.shape[0] * n2
    assert _rel(nngp_small, nngp_big) < 1e-13
    assert _rel(ntk_small, ntk_big) < 1e-13


def test_small_working_memory_all_depths(count_tiles):
    """Tiling and ``all_depths`` combine: every depth's stack is filled."""
    X = _data(n=40)
    big = ntk_kernel(X, depth=4, all_depths=True, working_memory=1024)
    small = ntk_kernel(X, depth=4, all_depths=True, working_memory=0.001)
    assert len(count_tiles) > 2
    assert small.shape == (4, 40, 40)
    # Tiles change the GEMM's summation order: equal up to rounding.
    for k in range(4):
        assert _rel(small[k], big[k]) < 1e-13


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("v_shape", [(45,), (45, 3)])
def test_kernel_matvec_small_budget_equals_dense_product(count_tiles, kernel, v_shape):
    """kernel_matvec with a tiny budget equals the dense K(X, Y) @ V."""
    X, Y = _data(n=50), _data(n=45, seed=1)
    V = np.random.default_rng(4).standard_normal(v_shape)
    kw = dict(depth=3, activation="erf", bias_std=0.3, weight_std=1.3)
    dense = (ntk_kernel if kernel == "ntk" else nngp_kernel)(X, Y, **kw)
    count_tiles.clear()
    KV = kernel_matvec(X, Y, V, kernel=kernel, working_memory=0.002, **kw)
    assert len(count_tiles) >= 20
    # No tile is larger than the budget allows.
    assert max(a * b for a, b in count_tiles) * 8 <= 0.002 * 2**20
    assert KV.shape == (X.shape[0],) + v_shape[1:]
    np.testing.assert_allclose(
        KV, dense @ V, rtol=1e-12, atol=1e-12 * np.max(np.abs(dense @ V))
    )


def test_kernel_matvec_memory_stays_within_budget():
    """kernel_matvec never holds K(X, Y): traced peak ~ budget, not n_X n_Y."""
    import tracemalloc

    X = _data(n=4000, d=4)
    Y, V = X[:400].copy(), np.ones((400, 2))
    full_mib = X.shape[0] * Y.shape[0] * 8 / 2**20  # 12.2 MiB
    budget = 1.0
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        KV = kernel_matvec(X, Y, V, working_memory=budget)
        peak_mib = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    finally:
        tracemalloc.stop()
    assert KV.shape == (4000, 2)
    # NumPy buffers and Python objects (thread pool) are both traced: allow
    # the budget, the (4000, 2) result and some fixed overhead.
    assert peak_mib < 4 * budget < full_mib / 3, peak_mib


def test_kernel_matvec_matches_brute_force_loop():
    """kernel_matvec equals a per-row loop over kernel rows."""
    X, Y = _data(n=11), _data(n=8, seed=1)
    V = np.random.default_rng(5).standard_normal((8, 2))
    kw = dict(depth=2, activation="relu", bias_std=0.1)
    expected = np.stack(
        [ntk_kernel(X[i : i + 1], Y, **kw)[0] @ V for i in range(X.shape[0])]
    )
    np.testing.assert_allclose(kernel_matvec(X, Y, V, **kw), expected, rtol=1e-12)


def test_n_jobs_does_not_change_results():
    """n_jobs=1 and n_jobs=2 give the same kernels (threads only split tiles)."""
    X, Y = _data(n=90), _data(n=60, seed=1)
    kw = dict(depth=3, activation="gelu", bias_std=0.1, working_memory=0.01)
    for Y_ in (None, Y):
        one = nngp_ntk_kernels(X, Y_, n_jobs=1, **kw)
        two = nngp_ntk_kernels(X, Y_, n_jobs=2, **kw)
        for a, b in zip(one, two):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    V = np.ones((Y.shape[0], 2))
    np.testing.assert_allclose(
        kernel_matvec(X, Y, V, n_jobs=1, **kw),
        kernel_matvec(X, Y, V, n_jobs=2, **kw),
        rtol=1e-14,
    )


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "erf", "gelu", "sin"])
def test_float32_input_computes_in_float64_by_default(activation):
    """float32 inputs give float64 kernels equal to the float64 computation."""
    X = _data()
    X32 = X.astype(np.float32)
    kw = dict(depth=3, activation=activation, bias_std=0.1)
    K = ntk_kernel(X32, **kw)
    assert K.dtype == np.float64
    # Same numbers as computing from the (rounded) float32 values in float64.
    np.testing.assert_array_equal(K, ntk_kernel(X32.astype(np.float64), **kw))
    for f in (nngp_kernel, ntk_diag, nngp_diag):
        assert f(X32, **kw).dtype == np.float64
    assert kernel_matvec(X32, X32, np.ones(23, np.float32), **kw).dtype == np.float64


@pytest.mark.parametrize("activation", ["relu", "erf", "gelu", "sin"])
def test_float32_opt_in_close_to_float64(activation):
    """``dtype="float32"`` returns float32 close to the float64 kernel."""
    X = _data()
    kw = dict(depth=3, activation=activation, bias_std=0.1)
    nngp32, ntk32 = nngp_ntk_kernels(X, dtype="float32", **kw)
    nngp64, ntk64 = nngp_ntk_kernels(X, **kw)
    for k32, k64 in ((nngp32, nngp64), (ntk32, ntk64)):
        assert k32.dtype == np.float32
        # The ReLU-family NTK loses ~sqrt(eps32) on the diagonal (angle 0).
        assert _rel(k32, k64) < 1e-3
        off = ~np.eye(len(X), dtype=bool)
        assert _rel(k32[off], k64[off]) < 1e-5
    assert ntk_diag(X, dtype="float32", **kw).dtype == np.float32
    v = np.ones(len(X))
    assert kernel_matvec(X, X, v, dtype="float32", **kw).dtype == np.float32


def test_dtype_float64_explicit_and_integer_input():
    """dtype="float64" is the default; integer input is accepted as float64."""
    Xi = np.arange(12).reshape(4, 3) - 5
    K = ntk_kernel(Xi, dtype="float64")
    assert K.dtype == np.float64
    np.testing.assert_array_equal(K, ntk_kernel(Xi.astype(float)))


# ---------------------------------------------------------------------------
# Edge inputs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_edge_rows_give_finite_kernels(activation, parameterization):
    """Zero, duplicated, antipodal rows and norms 1e-6..1e6 are finite."""
    X = _edge_data()
    Y = np.vstack([X[[0, 2]], -X[[4]], np.zeros((1, 4)), 1e-6 * X[[7]]])
    for bias_std in (0.0, 0.5, None):
        kw = dict(
            depth=3,
            activation=activation,
            bias_std=bias_std,
            parameterization=parameterization,
            width=256,
        )
        for A, B in ((X, None), (X, Y)):
            nngp, ntk = nngp_ntk_kernels(A, B, all_depths=True, **kw)
            assert np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk))
        assert np.all(np.isfinite(ntk_diag(X, **kw)))
        assert np.all(nngp_diag(X, **kw) >= 0)
        # A duplicated row has an identical kernel row.
        nngp, ntk = nngp_ntk_kernels(X, Y, **kw)
        np.testing.assert_allclose(ntk[2], ntk[3], rtol=1e-14, atol=0)
        np.testing.assert_allclose(nngp[2], nngp[3], rtol=1e-14, atol=0)


def test_zero_row_follows_angle_convention():
    """An all-zero row has angle pi/2 to everything, as in neural-tangents.

    The convention is visible in the standard parameterization with
    ``bias_std=0.0``: the bias parameter exists (it adds 1 to the NTK) while
    the zero row's pre-activation variance is 0. One ReLU layer then gives
    Theta(0, x) = W^2 * 1 * (1/2 - (pi/2) / (2 pi)) + width * 0 + 1.
    """
    X = np.array([[0.0, 0.0], [1.0, 2.0], [-3.0, 0.5]])
    w = 1.3
    kw = dict(
        depth=1, weight_std=w, bias_std=0.0, parameterization="standard", width=10
    )
    nngp, ntk = nngp_ntk_kernels(X, **kw)
    expected = w**2 / 4 + 1
    np.testing.assert_allclose(ntk[0], expected, rtol=1e-14)
    np.testing.assert_allclose(ntk_diag(X, **kw)[0], expected, rtol=1e-14)
    np.testing.assert_array_equal(nngp[0], 0.0)
    # The ntk parameterization has no such term: the zero row's kernels vanish.
    nngp, ntk = nngp_ntk_kernels(X, depth=3, bias_std=0.0)
    np.testing.assert_array_equal(ntk[0], 0.0)


def test_sign_trains_only_the_readout():
    """sign's derivative dual is 0 by convention: its NTK is the NNGP."""
    X, Y = _edge_data(scale_huge=30.0, scale_tiny=1e-3), _data(n=4, d=4)
    for depth in (1, 3):
        kw = dict(depth=depth, activation="sign", bias_std=0.3, weight_std=1.4)
        nngp, ntk = nngp_ntk_kernels(X, Y, **kw)
        np.testing.assert_allclose(ntk, nngp, rtol=1e-14, atol=0)


def test_scale_equivariance_of_relu_without_bias():
    """ReLU without biases is positively homogeneous: K(cx, y) = c K(x, y)."""
    X, Y = _data(), _data(n=5, seed=1)
    for c in (1e-5, 3.0, 1e5):
        for f in (nngp_kernel, ntk_kernel):
            np.testing.assert_allclose(
                f(c * X, Y, depth=3), c * f(X, Y, depth=3), rtol=1e-10
            )


def test_empty_inputs():
    """Zero rows give empty kernels of the right shape, not errors."""
    X, E = _data(n=5), np.empty((0, 6))
    assert ntk_kernel(E).shape == (0, 0)
    assert ntk_kernel(E, X).shape == (0, 5)
    assert nngp_kernel(X, E).shape == (5, 0)
    assert ntk_kernel(E, X, all_depths=True, depth=2).shape == (2, 0, 5)
    nngp, ntk = nngp_ntk_kernels(E, X)
    assert nngp.shape == ntk.shape == (0, 5)
    assert ntk_diag(E).shape == (0,)
    assert nngp_diag(E, all_depths=True, depth=2).shape == (2, 0)
    assert kernel_matvec(E, X, np.ones(5)).shape == (0,)
    assert kernel_matvec(E, X, np.ones((5, 2))).shape == (0, 2)
    np.testing.assert_array_equal(
        kernel_matvec(X, E, np.ones((0, 2))), np.zeros((5, 2))
    )


def test_array_likes_are_accepted():
    """Lists and pandas DataFrames give the same kernels as NumPy arrays."""
    pd = pytest.importorskip("pandas")
    X = _data(n=6, d=3)
    K = ntk_kernel(X)
    np.testing.assert_array_equal(ntk_kernel(X.tolist()), K)
    np.testing.assert_array_equal(ntk_kernel(pd.DataFrame(X)), K)


def test_inputs_are_not_modified():
    """Read-only inputs work and are left untouched."""
    X = _data(n=6, d=3)
    X.setflags(write=False)
    copy = X.copy()
    ntk_kernel(X, X)
    kernel_matvec(X, X, np.ones(6))
    np.testing.assert_array_equal(X, copy)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
X_OK = np.ones((3, 2))

BAD_CALLS = [
    ("nan", lambda: ntk_kernel(np.array([[np.nan, 1.0], [0.0, 1.0]])), "NaN"),
    ("inf-Y", lambda: ntk_kernel(X_OK, np.full((2, 2), np.inf)), "infinity"),
    ("1-D", lambda: ntk_kernel(np.ones(3)), "2D array"),
    ("1-D diag", lambda: ntk_diag(np.ones(3)), "2D array"),
    ("3-D", lambda: nngp_kernel(np.ones((2, 2, 2))), "dim 3"),
    ("features", lambda: ntk_kernel(X_OK, np.ones((2, 3))), "features"),
    ("no features", lambda: ntk_kernel(np.ones((2, 0))), "feature"),
    ("activation", lambda: ntk_kernel(X_OK, activation="tanh"), "Unknown activation"),
    (
        "activation param",
        lambda: ntk_kernel(X_OK, activation_params={"alpha": 1}),
        "Unknown parameter",
    ),
    (
        "activation param inf",
        lambda: ntk_kernel(X_OK, activation="erf", activation_params={"a": np.inf}),
        "finite",
    ),
    ("depth 0", lambda: ntk_kernel(X_OK, depth=0), "depth"),
    ("depth float", lambda: ntk_kernel(X_OK, depth=2.5), "depth"),
    ("weight_std", lambda: ntk_kernel(X_OK, weight_std=-1.0), "weight_std"),
    ("weight_std nan", lambda: ntk_kernel(X_OK, weight_std=np.nan), "weight_std"),
    ("bias_std", lambda: nngp_kernel(X_OK, bias_std=-0.1), "bias_std"),
    (
        "standard without width",
        lambda: ntk_kernel(X_OK, parameterization="standard"),
        "width",
    ),
    (
        "width 0",
        lambda: ntk_kernel(X_OK, parameterization="standard", width=0),
        "width",
    ),
    (
        "parameterization",
        lambda: ntk_kernel(X_OK, parameterization="mup"),
        "parameterization",
    ),
    ("non-numeric", lambda: ntk_kernel(np.array([["a", "b"]])), "convert"),
    ("complex", lambda: ntk_kernel(np.ones((2, 2)) + 1j), "Complex"),
    ("working_memory", lambda: ntk_kernel(X_OK, working_memory=0), "working_memory"),
    ("dtype", lambda: ntk_kernel(X_OK, dtype="float16"), "dtype"),
    (
        "frozen",
        lambda: nngp_ntk_kernels(X_OK, depth=2, frozen_layers=3),
        "frozen_layers",
    ),
    ("matvec rows", lambda: kernel_matvec(X_OK, X_OK, np.ones(4)), "rows"),
    (
        "matvec kernel",
        lambda: kernel_matvec(X_OK, X_OK, np.ones(3), kernel="rbf"),
        "kernel",
    ),
]


@pytest.mark.parametrize(
    "call, match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_inputs_raise_clear_errors(call, match):
    """Invalid inputs and parameters raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        call()


def test_array_api_strict_bad_inputs():
    """The non-NumPy path validates inputs too."""
    xp = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match="NaN"):
        ntk_kernel(xp.asarray([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        ntk_kernel(xp.asarray([1.0, 2.0]))
    with pytest.raises(ValueError, match="real numbers"):
        ntk_kernel(xp.asarray([[True, False]]))


# ---------------------------------------------------------------------------
# Known defects, reported with these reproducers (strict: they flip when fixed)
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_gelu_huge_norm_is_finite():
    """GELU kernels stay finite, near the ReLU-like limit q/2, for huge rows."""
    X = np.array([[1e9, 0.0], [0.0, 1.0]])
    nngp, ntk = nngp_ntk_kernels(X, depth=1, activation="gelu")
    assert np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk))
    q = 1e18 / 2  # input variance <x, x> / d of the first row
    np.testing.assert_allclose(nngp[0, 0], q / 2, rtol=1e-6)


def test_kernel_matvec_rejects_non_finite_v():
    """A NaN in V raises instead of silently returning NaN."""
    X = _data(n=4, d=3)
    with pytest.raises(ValueError, match="NaN"):
        kernel_matvec(X, X, np.array([1.0, np.nan, 0.0, 0.0]))


def test_kernel_matvec_empty_keeps_device():
    """Empty kernel_matvec output lives on the inputs' device."""
    xp = pytest.importorskip("array_api_strict")
    device = xp.Device("device1")
    X = xp.asarray(_data(n=4, d=3), device=device)
    out = kernel_matvec(X[:0, :], X, xp.ones(4, dtype=xp.float64, device=device))
    assert out.shape == (0,)
    assert out.device == device


def test_standard_nngp_needs_no_width():
    """The standard-parameterization NNGP does not depend on the width, so the
    NNGP functions do not ask for it; the NTK ones do."""
    X = _data()
    kw = dict(depth=3, parameterization="standard", bias_std=0.3, weight_std=1.2)
    ref = nngp_kernel(X, width=64, **kw)
    np.testing.assert_array_equal(nngp_kernel(X, **kw), ref)
    np.testing.assert_array_equal(nngp_kernel(X, width=4096, **kw), ref)
    np.testing.assert_allclose(nngp_diag(X, **kw), np.diag(ref), rtol=1e-6)
    with pytest.raises(ValueError, match="width"):
        ntk_kernel(X, **kw)
