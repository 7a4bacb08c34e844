"""Properties of the kernels and the kernel-ridge estimators, over random networks.

Hypothesis draws the network (every activation of
``sknetk._activations.ACTIVATIONS`` with its parameters over a realistic range,
depth, weight and bias scales, both parameterizations) and the inputs, and
each test checks a property that holds for any correct implementation:
symmetry and positive semi-definiteness, the diagonal functions, transposes,
the cross path against the symmetric one, the all-depths slices, positive
homogeneity, invariance to threads and tiling, and, for the estimators,
interpolation as ``alpha -> 0`` and predictions equal to ``K @ dual_coef_``.
The search is derandomized (see ``tests/conftest.py``).

Entries are compared on their own scale ``sqrt(K(x, x) K(y, y))`` (from the
diagonal functions), which bounds ``|K(x, y)|`` for a positive semi-definite
kernel: ``RTOL`` (1e-10, the fixtures' "plain" class) for ordinary pairs,
and, for activations with an infinite slope at correlation one (the ReLU
family and sign), ``RTOL_PARALLEL`` for pairs of distinct rows whose first
pre-activations are nearly parallel, where rounding in the correlation
becomes ``~1e-8`` in the angle (the "degenerate" class of
``tests/data/REFERENCE_README.md``). Deep sign networks amplify that further,
so their nearly parallel pairs are not compared (the fixtures' rule too).
"""

import itertools
import math

import numpy as np
import pytest

# the test extra pins hypothesis; a GPU machine running gpu_check.sh may lack it
pytest.importorskip("hypothesis")
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from sknetk import NTKRegressor
from sknetk._activations import ACTIVATIONS
from sknetk.kernels import (
    nngp_diag,
    nngp_kernel,
    nngp_ntk_kernels,
    ntk_diag,
    ntk_kernel,
)

RTOL = 1e-10
RTOL_PARALLEL = 1e-6
# |first-layer correlation| above this is "nearly parallel".
PARALLEL = 1.0 - 1e-6

# Realistic ranges of each activation's parameters (min, max).
PARAM_RANGES = {
    "relu": {},
    "abs": {},
    "leaky_relu": {"alpha": (0.0, 1.0)},
    "abrelu": {"a": (-2.0, 2.0), "b": (-2.0, 2.0)},
    "erf": {"a": (0.1, 3.0), "b": (0.1, 3.0), "c": (-1.0, 1.0)},
    "sigmoid_like": {},
    "gelu": {},
    "sin": {"a": (0.1, 3.0), "b": (0.1, 3.0), "c": (-math.pi, math.pi)},
    "cos": {"a": (0.1, 3.0), "b": (0.1, 3.0), "c": (-math.pi, math.pi)},
    "rbf": {"gamma": (0.01, 10.0)},
    "sign": {},
    "identity": {},
}
ACTIVATION_NAMES = sorted(ACTIVATIONS)
# An infinite slope of the duals at correlation one.
STEEP = {name for name, act in ACTIVATIONS.items() if act.slopes is not None}
STEEP.add("sign")
# Positively homogeneous of degree one: phi(c x) = c phi(x) for c > 0.
HOMOGENEOUS = sorted(STEEP - {"sign"} | {"identity"})
KERNELS = {"ntk": (ntk_kernel, ntk_diag), "nngp": (nngp_kernel, nngp_diag)}


def examples(n):
    """``n`` examples per test case under the deterministic profile (25 per
    test by default), scaled with the loaded profile's ``max_examples``."""
    return settings(max_examples=max(1, round(n * settings.default.max_examples / 25)))


def test_parameter_ranges_cover_every_activation():
    """Each registered activation, with each of its parameters, is drawn."""
    assert set(PARAM_RANGES) == set(ACTIVATIONS)
    for name, act in ACTIVATIONS.items():
        assert set(PARAM_RANGES[name]) == set(act.defaults), name


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------
def _floats(lo, hi):
    return st.floats(
        lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False
    )


def _param(lo, hi):
    """An activation parameter in [lo, hi], rounded to 4 decimals (so zero or
    at least 1e-4 in size, as parameters are in practice)."""
    return _floats(lo, hi).map(lambda v: round(v, 4))


@st.composite
def networks(
    draw,
    activations=ACTIVATION_NAMES,
    max_depth=6,
    bias=True,
    parameterizations=("ntk", "standard"),
):
    """Keyword arguments of a network: activation and its parameters, depth,
    weight and bias scales, parameterization (and width)."""
    act = draw(st.sampled_from(activations))
    params = {k: draw(_param(lo, hi)) for k, (lo, hi) in PARAM_RANGES[act].items()}
    parameterization = draw(st.sampled_from(parameterizations))
    if bias:
        bias_std = draw(st.one_of(st.none(), st.just(0.0), _floats(0.05, 1.0)))
    elif parameterization == "ntk":  # no bias term in the kernels at all
        bias_std = draw(st.sampled_from([None, 0.0]))
    else:  # "standard": a zero-variance bias parameter still trains
        bias_std = None
    return dict(
        depth=draw(st.integers(1, max_depth)),
        activation=act,
        activation_params=params,
        weight_std=draw(_floats(0.5, 2.0)),
        bias_std=bias_std,
        parameterization=parameterization,
        width=draw(st.sampled_from([1, 64, 512]))
        if parameterization == "standard"
        else None,
    )


@st.composite
def inputs(draw, n_min=1, n_max=7, d=None):
    """A float64 matrix: entries in [-3, 3], rows scaled by 0.01 to 10.

    Rows scaled by arbitrary factors make a row's Gram entry ``<x, x>`` (a
    matrix product) and its squared norm (a sum of squares) round
    differently, as real data does.
    """
    d = draw(st.integers(1, 16)) if d is None else d
    n = draw(st.integers(n_min, n_max))
    X = draw(arrays(np.float64, (n, d), elements=_floats(-3.0, 3.0)))
    log_scale = draw(
        arrays(np.float64, (n, 1), elements=st.one_of(st.just(0.0), _floats(-2.0, 1.0)))
    )
    return X * 10.0**log_scale


@st.composite
def input_pairs(draw, n_max=7):
    """``(X, Y)`` with the same number of features."""
    X = draw(inputs(n_max=n_max))
    Y = draw(inputs(n_max=n_max, d=X.shape[1]))
    return X, Y


# ---------------------------------------------------------------------------
# Comparison on each entry's scale
# ---------------------------------------------------------------------------
def _first_correlation(X, Y, net):
    """Correlation of the first pre-activations of every pair of rows."""
    d = X.shape[1]
    w2 = net["weight_std"] ** 2
    b2 = (net["bias_std"] or 0.0) ** 2
    k = w2 * (X @ Y.T) / d + b2
    qx = w2 * np.sum(X * X, axis=1) / d + b2
    qy = w2 * np.sum(Y * Y, axis=1) / d + b2
    norm = np.sqrt(np.outer(qx, qy))
    return np.divide(k, norm, out=np.zeros_like(k), where=norm > 0)


def _underflows(X):
    """True when a nonzero row's mean square is below the smallest normal float."""
    q = np.sum(X * X, axis=1) / X.shape[1]
    return bool(
        np.any((q < np.finfo(X.dtype).smallest_normal) & np.any(X != 0, axis=1))
    )


def assert_kernels_close(actual, desired, X, Y, net, diag, rtol=RTOL):
    """``|actual - desired| <= tol * sqrt(K(x, x) K(y, y))`` per entry.

    ``diag`` is the diagonal function (``ntk_diag`` or ``nngp_diag``).
    """
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    finite = np.isfinite(actual)
    assert finite.all(), f"{np.sum(~finite)} non-finite entries"
    kw = {k: v for k, v in net.items() if k != "all_depths"}
    scale = np.sqrt(np.abs(np.outer(diag(X, **kw), diag(Y, **kw))))
    scale = np.maximum(scale, np.abs(desired))
    tol = np.full(desired.shape, rtol)
    if net["activation"] in STEEP:
        # Identical (or opposite) rows are exactly parallel: the duals snap
        # their correlation to +-1, so they get no extra tolerance.
        same = np.all(X[:, None, :] == Y[None, :, :], axis=2)
        same |= np.all(X[:, None, :] == -Y[None, :, :], axis=2)
        parallel = (np.abs(_first_correlation(X, Y, net)) > PARALLEL) & ~same
        if net["activation"] == "sign" and net["depth"] > 1:
            tol[parallel] = np.inf  # ill-conditioned (fixture README)
        else:
            tol[parallel] = max(rtol, RTOL_PARALLEL)
    err = np.abs(actual - desired)
    # A result below the smallest normal float (inputs near 1e-308 scaled
    # down) is subnormal: it carries fewer than 53 significant bits, so no
    # relative accuracy can be asked of it, only an absolute one.
    bad = err > tol * scale + np.finfo(np.float64).tiny
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} entries off; worst relative error "
        f"{np.max(err / np.where(scale > 0, scale, 1.0)):.3g} at "
        f"{np.unravel_index(np.argmax(err - tol * scale), err.shape)}"
    )


# ---------------------------------------------------------------------------
# Structure of K(X, X)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@examples(8)
@given(data=st.data(), X=inputs(n_max=8), kernel=st.sampled_from(sorted(KERNELS)))
def test_symmetric_and_positive_semidefinite(activation, data, X, kernel):
    """K(X, X) is exactly symmetric; its smallest eigenvalue >= -tol * largest.

    ``tol`` is ``n`` times the entry tolerance: entries within ``rtol`` of
    the true (positive semi-definite) kernel's move its eigenvalues by at
    most ``n * rtol * max |K|`` (Weyl).
    """
    net = data.draw(networks([activation], max_depth=8), label="net")
    fn, _ = KERNELS[kernel]
    K = fn(X, **net)
    np.testing.assert_array_equal(K, K.T)
    eig = np.linalg.eigvalsh(K)
    tol = X.shape[0] * (RTOL_PARALLEL if activation in STEEP else RTOL)
    assert eig[0] >= -tol * max(eig[-1], 0.0), (eig[0], eig[-1])


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@examples(5)
@given(data=st.data(), X=inputs(n_max=8))
def test_diagonal_equals_diag_functions(activation, data, X):
    """diag K(X, X) equals ``ntk_diag``/``nngp_diag``, also for all depths."""
    net = data.draw(networks([activation], max_depth=8), label="net")
    nngp, ntk = nngp_ntk_kernels(X, all_depths=True, **net)
    for K, diag in ((nngp, nngp_diag), (ntk, ntk_diag)):
        d = diag(X, all_depths=True, **net)
        assert d.shape == (net["depth"], X.shape[0])
        np.testing.assert_allclose(
            np.diagonal(K, axis1=1, axis2=2), d, rtol=1e-14, atol=0
        )
        np.testing.assert_array_equal(d[-1], diag(X, **net))


# ---------------------------------------------------------------------------
# Cross kernels
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@examples(6)
@given(data=st.data(), XY=input_pairs(), kernel=st.sampled_from(sorted(KERNELS)))
def test_cross_kernel_is_transpose(activation, data, XY, kernel):
    """K(X, Y) equals K(Y, X)^T."""
    net = data.draw(networks([activation], max_depth=8), label="net")
    X, Y = XY
    fn, diag = KERNELS[kernel]
    assert_kernels_close(fn(X, Y, **net), fn(Y, X, **net).T, X, Y, net, diag)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@examples(10)
@given(data=st.data(), XY=input_pairs())
def test_cross_path_equals_symmetric_path_on_shared_rows(activation, data, XY):
    """K(X, Y), with Y holding some rows of X, equals K(X, X) on those rows.

    The symmetric path puts the exact correlation-one recursion on the
    diagonal; the cross path reaches the same pairs (a row with its own
    copy included) through the 2-D duals. Depths up to 10, as in the
    fixtures.
    """
    net = data.draw(networks([activation], max_depth=10), label="net")
    X, Y_new = XY
    shared = data.draw(
        st.lists(
            st.integers(0, X.shape[0] - 1), min_size=1, max_size=X.shape[0], unique=True
        ),
        label="shared",
    )
    Y = np.vstack([X[shared], Y_new])
    order = list(data.draw(st.permutations(range(Y.shape[0])), label="order"))
    Y = Y[order]
    cols = [order.index(i) for i in range(len(shared))]  # where X[shared] went
    nngp_xx, ntk_xx = nngp_ntk_kernels(X, **net)
    nngp_xy, ntk_xy = nngp_ntk_kernels(X, Y, **net)
    for K_xy, K_xx, diag in ((nngp_xy, nngp_xx, nngp_diag), (ntk_xy, ntk_xx, ntk_diag)):
        assert_kernels_close(K_xy[:, cols], K_xx[:, shared], X, X[shared], net, diag)


def _corners(activation):
    """Networks at the corners of the drawn ranges: every activation
    parameter at its ends, depth 1 and 10, weight_std 0.5 and 2, biases."""
    ranges = PARAM_RANGES[activation]
    for ends in itertools.product(*ranges.values()):
        for depth, weight_std, bias_std in itertools.product(
            (1, 10), (0.5, 2.0), (None, 0.5)
        ):
            yield dict(
                depth=depth,
                activation=activation,
                activation_params=dict(zip(ranges, ends)),
                weight_std=weight_std,
                bias_std=bias_std,
            )


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_cross_path_equals_symmetric_path_at_range_corners(activation):
    """The shared-rows property at the corners of each activation's range.

    The rows have assorted scales, so a row's Gram entry and its squared norm
    round differently; every failing corner is listed.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 16)) * 10.0 ** rng.uniform(-1.5, 1.0, size=(10, 1))
    shared = [7, 0, 3, 9, 1, 4, 8, 2, 6, 5]
    Y = np.vstack([rng.normal(size=(2, 16)), X[shared]])
    cols = list(range(2, 12))
    failures = []
    for net in _corners(activation):
        for (K_xy, K_xx), diag in zip(
            zip(nngp_ntk_kernels(X, Y, **net), nngp_ntk_kernels(X, **net)),
            (nngp_diag, ntk_diag),
        ):
            try:
                assert_kernels_close(
                    K_xy[:, cols], K_xx[:, shared], X, X[shared], net, diag
                )
            except AssertionError as exc:
                failures.append(f"{diag.__name__[:4]} {net}: {exc.args[0]}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------
# Depths, homogeneity, threads and tiles
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@examples(4)
@given(data=st.data(), XY=input_pairs(n_max=5), symmetric=st.booleans())
def test_all_depths_slices_equal_shallower_networks(activation, data, XY, symmetric):
    """Slice l of ``all_depths=True`` is the kernel of depth l + 1."""
    net = data.draw(networks([activation], max_depth=6), label="net")
    X, Y = XY
    Y = None if symmetric else Y
    nngp_all, ntk_all = nngp_ntk_kernels(X, Y, all_depths=True, **net)
    assert ntk_all.shape[0] == net["depth"]
    for layer in range(net["depth"]):
        shallow = {**net, "depth": layer + 1}
        nngp, ntk = nngp_ntk_kernels(X, Y, **shallow)
        np.testing.assert_allclose(nngp_all[layer], nngp, rtol=1e-13, atol=0)
        np.testing.assert_allclose(ntk_all[layer], ntk, rtol=1e-13, atol=0)


@pytest.mark.parametrize("activation", HOMOGENEOUS)
@examples(10)
@given(data=st.data(), XY=input_pairs(), log_c=_floats(-3.0, 3.0))
def test_positive_homogeneity_without_biases(activation, data, XY, log_c):
    """Degree-one activations without biases: K(cX, Y) = c K(X, Y) for c > 0.

    Every layer then maps a covariance that scales by c to one that scales by
    c, NNGP and NTK alike (both parameterizations, as there is no bias
    parameter). So K(cX, cY) = c^2 K(X, Y), too.
    """
    net = data.draw(networks([activation], bias=False), label="net")
    X, Y = XY
    c = 10.0**log_c
    # Rows whose mean square underflows count as zero rows (see
    # test_rows_whose_squares_underflow_are_zero_rows): scaling must not carry
    # a row across that threshold.
    assume(not any(_underflows(A) for A in (X, Y, c * X, c * Y)))
    for fn, diag in KERNELS.values():
        K = fn(X, Y, **net)
        assert_kernels_close(fn(c * X, Y, **net) / c, K, X, Y, net, diag)
        assert_kernels_close(fn(c * X, c * Y, **net) / c**2, K, X, Y, net, diag)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("dtype, rms", [("float64", 1e-170), ("float32", 1e-25)])
def test_rows_whose_squares_underflow_are_zero_rows(activation, dtype, rms):
    """A row whose mean square underflows the dtype (here 1e-170 in float64,
    1e-25 in float32) gets, with a warning, the kernel of a zero row: in K(X, X)
    and in K(X, Y) alike, where its tiny cross products with other rows would
    otherwise survive while its norm has vanished."""
    params = {k: v for k, v in ACTIVATIONS[activation].defaults.items()}
    for bias_std in (None, 0.5):
        net = dict(
            depth=3,
            activation=activation,
            activation_params=params,
            bias_std=bias_std,
        )
        X = np.array([[rms, -rms, 2 * rms], [1.0, 0.5, -2.0], [0.3, 0.0, 0.7]])
        X_zero = X.copy()
        X_zero[0] = 0.0
        for fn, _ in KERNELS.values():
            with pytest.warns(UserWarning, match="1 row.* treated as zero rows"):
                K = fn(X, dtype=dtype, **net)
            with pytest.warns(UserWarning, match="1 row.* of Y"):
                K_cross = fn(X_zero, X, dtype=dtype, **net)
            K_zero = fn(X_zero, dtype=dtype, **net)
            np.testing.assert_array_equal(K, K_zero)
            assert np.all(np.isfinite(K_cross))
            np.testing.assert_allclose(K_cross, K_zero, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@examples(5)
@given(data=st.data(), XY=input_pairs(n_max=9), symmetric=st.booleans())
def test_threads_and_tiny_tiles_do_not_change_the_kernel(
    activation, data, XY, symmetric
):
    """One thread and one tile equals two threads over 1 x 1 tiles."""
    net = data.draw(networks([activation], max_depth=6), label="net")
    X, Y = XY
    Y_ = None if symmetric else Y
    one = nngp_ntk_kernels(X, Y_, n_jobs=1, **net)
    # A budget of a few bytes: every tile is a single entry.
    many = nngp_ntk_kernels(X, Y_, n_jobs=2, working_memory=1e-6, **net)
    for a, b, diag in zip(many, one, (nngp_diag, ntk_diag)):
        assert_kernels_close(a, b, X, X if symmetric else Y, net, diag)


# ---------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@examples(4)
@given(
    data=st.data(), X=inputs(n_min=1, n_max=8), kernel=st.sampled_from(sorted(KERNELS))
)
def test_predictions_are_kernel_times_dual_coef(activation, data, X, kernel):
    """predict(X) = K(X, X_fit) @ dual_coef_, and the duals solve the ridge."""
    net = data.draw(networks([activation], max_depth=4), label="net")
    y = data.draw(
        arrays(np.float64, X.shape[0], elements=_floats(-5.0, 5.0)), label="y"
    )
    X_new = data.draw(inputs(d=X.shape[1]), label="X_new")
    alpha = data.draw(_floats(1e-3, 10.0), label="alpha")
    model = NTKRegressor(alpha=alpha, kernel=kernel, normalize_y=False, **net)
    model.fit(X, y)
    fn, _ = KERNELS[kernel]
    K = fn(X, **net)
    coef = model.dual_coef_
    scale = np.max(np.abs(K)) * np.max(np.abs(coef)) * X.shape[0] + np.max(np.abs(y))
    np.testing.assert_allclose(model.predict(X), K @ coef, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(
        model.predict(X_new), fn(X_new, X, **net) @ coef, rtol=0, atol=1e-12 * scale
    )
    # (K + alpha I) c = y, to the solver's accuracy
    residual = (K + alpha * np.eye(len(y))) @ coef - y
    assert np.max(np.abs(residual)) <= 1e-9 * scale


@pytest.mark.parametrize("activation", [a for a in ACTIVATION_NAMES if a != "identity"])
@examples(4)
@given(
    data=st.data(),
    X=inputs(n_min=2, n_max=6),
    kernel=st.sampled_from(sorted(KERNELS)),
    bias_std=_floats(0.1, 1.0),
)
def test_interpolation_as_alpha_goes_to_zero(activation, data, X, kernel, bias_std):
    """On distinct rows the training residual is at most
    ``alpha / (lambda_min + alpha) |y|``, so predictions on the training rows
    approach y as alpha -> 0.

    With biases, distinct rows give a positive definite kernel for every
    activation but the linear one (excluded); a kernel that is numerically
    singular is skipped (the bound then says nothing).
    """
    net = data.draw(networks([activation], max_depth=4), label="net")
    net = {**net, "bias_std": bias_std}
    assume(len(np.unique(X, axis=0)) == X.shape[0])
    y = data.draw(
        arrays(np.float64, X.shape[0], elements=_floats(-5.0, 5.0)), label="y"
    )
    fn, _ = KERNELS[kernel]
    eig = np.linalg.eigvalsh(fn(X, **net))
    assume(eig[0] > 1e-6 * eig[-1])
    norm_y = np.linalg.norm(y)
    for alpha in (1e-2, 1e-5, 1e-8):
        alpha = alpha * eig[-1]
        model = NTKRegressor(alpha=alpha, kernel=kernel, normalize_y=False, **net)
        residual = np.linalg.norm(model.fit(X, y).predict(X) - y)
        bound = alpha / (eig[0] + alpha) * norm_y
        # rounding of the solve: ~ eps * condition number * |y|
        slack = 1e-12 * (eig[-1] / eig[0]) * norm_y
        assert residual <= bound * (1 + 1e-6) + slack, (alpha, residual, bound)
