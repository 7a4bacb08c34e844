"""The compiled (numba) convolutional recursion against the NumPy one.

``sknetk._conv_compiled`` runs the pixel-pair recursion of the ReLU family
(arccos duals) in float64 on NumPy when numba is installed; everything else
stays on the NumPy path of ``sknetk._conv``. The NumPy path is the
independent reference here (it matches neural-tangents' fixtures, see
``tests/test_conv_kernels.py``): random cases over the paddings, filter
shapes, pooling, readouts, parameterizations, depths and ``n_jobs``, with
zero, negated, scaled and copied images, must agree to 1e-12 of ``max |K|``;
the neural-tangents fixture cases of the ReLU family must pass their
tolerance classes through the compiled path; without numba (or with a numba
that fails to compile the kernel) the NumPy path runs and gives the same
kernels bit for bit.
"""

import json
import sys
import types
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from sknetk import _conv, _conv_compiled
from sknetk.conv import nngp_diag, nngp_ntk_kernels, ntk_diag, ntk_kernel

DATA = Path(__file__).parent / "data" / "cntk_reference.npz"
RTOL_PLAIN, RTOL_EDGE, RTOL_DEGENERATE = 1e-10, 1e-9, 1e-6
#: Compiled vs NumPy: the patch and readout sums run in another order and
#: arccos is fdlibm's rational form (within 2 ulps of NumPy's).
RTOL_NUMPY = 1e-12


def _numpy_path(monkeypatch, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with the compiled kernel switched off."""
    with monkeypatch.context() as m:
        m.setattr(_conv_compiled.compiled_conv, "kernel", False)
        return fn(*args, **kwargs)


class _Spy:
    """Counts the calls of the compiled path's driver."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = _conv.run_pairs

        def run_pairs(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(_conv, "run_pairs", run_pairs)


@pytest.fixture
def compiled():
    """The compiled kernel (the test is skipped without numba)."""
    pytest.importorskip("numba")
    kernel = _conv_compiled.compiled_conv()
    assert kernel is not None
    return kernel


def _images(rng, n, H, W, C):
    """Random images with the edge cases: a zero image, x and -x, x and 3x."""
    X = rng.normal(size=(n, H, W, C))
    X[0] = 0.0
    X[2] = -X[1]
    X[4] = 3.0 * X[3]
    return X


def _close(got, expected, what):
    for a, b in zip(got, expected):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, what
        assert np.all(np.isfinite(a)), what
        scale = np.abs(b).max()
        assert np.abs(a - b).max() <= RTOL_NUMPY * scale, (
            what,
            np.abs(a - b).max() / scale,
        )


CASES = {
    "same-gap-L3": dict(depth=3),
    "same-flatten-L2": dict(depth=2, readout="flatten", bias_std=0.2),
    "circular-gap-2x3": dict(
        depth=2, padding="CIRCULAR", filter_shape=(2, 3), weight_std=1.4, bias_std=0.3
    ),
    "circular-flatten-L1": dict(depth=1, padding="CIRCULAR", readout="flatten"),
    "valid-gap-3x2-leaky": dict(
        depth=2,
        padding="VALID",
        filter_shape=(3, 2),
        activation="leaky_relu",
        activation_params={"alpha": 0.2},
    ),
    "valid-flatten-L3": dict(depth=3, padding="VALID", filter_shape=2),
    "same-even-4x1-abs": dict(depth=2, filter_shape=(4, 1), activation="abs"),
    "pool-flatten-L3": dict(depth=3, readout="flatten", pool_after=[0]),
    "pool-gap-abrelu-L4": dict(
        depth=4,
        activation="abrelu",
        activation_params={"a": -0.3, "b": 1.2},
        pool_after=[1],
        bias_std=0.1,
    ),
    "pool-window-3x2": dict(
        depth=2, readout="flatten", pool_after=[0], pool_window=(3, 2)
    ),
    "standard-gap-nobias": dict(
        depth=3, parameterization="standard", width=16, bias_std=None
    ),
    "standard-flatten-pool": dict(
        depth=2,
        parameterization="standard",
        width=8,
        readout="flatten",
        pool_after=[0],
        bias_std=0.5,
    ),
    "same-5x5-filter-L1": dict(depth=1, filter_shape=5, weight_std=0.7),
    # the padded layout (SAME, GAP, no pooling) with each tap count of the
    # activation's loop: fh = 1, 2 (the zero plane), 3, > 3 (the partial sum)
    # and even, wider-than-the-map in-plane filters
    "same-gap-1x2-filter-L3": dict(depth=3, filter_shape=(1, 2), bias_std=0.3),
    "same-gap-2x4-filter-L2": dict(depth=2, filter_shape=(2, 4), weight_std=1.3),
    "same-gap-6x7-filter-L2": dict(depth=2, filter_shape=(6, 7), bias_std=0.1),
    "same-gap-3x3-standard-leaky": dict(
        depth=3,
        parameterization="standard",
        width=4,
        activation="leaky_relu",
        activation_params={"alpha": -0.5},
    ),
}


@pytest.mark.parametrize("kw", CASES.values(), ids=CASES.keys())
def test_compiled_equals_numpy(monkeypatch, compiled, kw):
    """Every layer's NNGP and NTK, K(X, X) and K(X, Y), as the NumPy path."""
    rng = np.random.default_rng(len(str(kw)))
    X = _images(rng, 7, 6, 5, 2)
    Y = np.concatenate([X[3:5], -X[5:6], rng.normal(size=(3, 6, 5, 2))])
    spy = _Spy(monkeypatch)
    for Y_ in (None, Y):
        got = nngp_ntk_kernels(X, Y_, all_depths=True, **kw)
        calls = spy.calls
        expected = _numpy_path(
            monkeypatch, nngp_ntk_kernels, X, Y_, all_depths=True, **kw
        )
        assert spy.calls == calls  # the reference ran the NumPy path
        _close(got, expected, ("K(X, X)" if Y_ is None else "K(X, Y)", kw))
        if Y_ is None:
            for K in got:
                np.testing.assert_array_equal(K, np.swapaxes(K, -1, -2))
    assert spy.calls > 0  # the compiled path ran
    # the diagonals: the per-image pass
    for fn in (nngp_diag, ntk_diag):
        got = fn(X, all_depths=True, **kw)
        expected = _numpy_path(monkeypatch, fn, X, all_depths=True, **kw)
        _close([got], [expected], (fn.__name__, kw))


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
def test_threads_and_tiles_do_not_change_the_kernels(compiled, n_jobs):
    """The pairs are independent: any n_jobs, and a working memory too small
    for one thread's scratch arrays, give the same kernels bit for bit."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(9, 5, 5, 1))
    Y = rng.normal(size=(5, 5, 5, 1))
    kw = dict(depth=2, bias_std=0.1)
    for Y_ in (None, Y):
        reference = ntk_kernel(X, Y_, n_jobs=1, **kw)
        got = ntk_kernel(X, Y_, n_jobs=n_jobs, **kw)
        np.testing.assert_array_equal(got, reference)
        tiny = ntk_kernel(X, Y_, n_jobs=n_jobs, working_memory=1e-4, **kw)
        np.testing.assert_array_equal(tiny, reference)


def test_many_pairs_split_over_calls(monkeypatch, compiled):
    """Row blocks smaller than the matrix (several kernel calls per thread)
    fill every entry once, K(X, X) mirrored and with the exact diagonal."""
    monkeypatch.setattr(_conv, "_COMPILED_MAX_PAIRS", 5)
    rng = np.random.default_rng(12)
    X = rng.normal(size=(13, 4, 4, 2))
    X[7] = X[2]  # a copy: its entries equal the diagonal's
    Y = rng.normal(size=(6, 4, 4, 2))
    kw = dict(depth=2, bias_std=0.2)
    spy = _Spy(monkeypatch)
    for Y_ in (None, Y):
        got = nngp_ntk_kernels(X, Y_, n_jobs=2, **kw)
        expected = _numpy_path(monkeypatch, nngp_ntk_kernels, X, Y_, **kw)
        _close(got, expected, "tiled")
    assert spy.calls > 6
    K = ntk_kernel(X, **kw)
    np.testing.assert_allclose(K[2, 7], K[2, 2], rtol=1e-13)
    np.testing.assert_array_equal(np.diag(K), ntk_diag(X, **kw))


def test_empty_inputs(compiled):
    X = np.zeros((0, 4, 4, 1))
    Y = np.ones((3, 4, 4, 1))
    assert ntk_kernel(X).shape == (0, 0)
    assert ntk_kernel(X, Y).shape == (0, 3)
    assert ntk_kernel(Y, X).shape == (3, 0)
    assert ntk_diag(X).shape == (0,)


def test_other_activations_and_float32_stay_on_numpy(monkeypatch, compiled):
    """erf, gelu and float32 do not use the compiled kernel."""
    rng = np.random.default_rng(13)
    X = rng.normal(size=(4, 4, 4, 1))
    spy = _Spy(monkeypatch)
    ntk_kernel(X, depth=2, activation="erf")
    ntk_kernel(X, depth=2, activation="gelu")
    ntk_kernel(X, depth=2, dtype="float32")
    assert spy.calls == 0
    ntk_kernel(X, depth=2)
    assert spy.calls > 0


# ---------------------------------------------------------------------------
# The neural-tangents fixtures through the compiled path
# ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _load():
    ref = np.load(DATA)
    return {k: ref[k] for k in ref.files}, json.loads(str(ref["index_json"]))


REF, INDEX = _load()
RELU_FAMILY = ("relu", "leaky_relu", "abrelu", "abs")
FIXTURES = [c for c in INDEX["kernel_cases"] if c["act"] in RELU_FAMILY]


def _kwargs(case):
    return dict(
        depth=case["depth"],
        activation=case["act"],
        activation_params=case["act_kwargs"],
        weight_std=case["W_std"],
        bias_std=case["b_std"],
        parameterization=case["parameterization"],
        width=case["width"],
        filter_shape=tuple(case["filter_shape"]),
        padding=case["padding"],
        pool_after=case["pool_after"],
        pool_window=tuple(case["pool_window"]),
        readout=case["readout"],
    )


def _rel(value, ref):
    scale = np.abs(ref).max()
    err = np.abs(np.asarray(value) - ref)
    return err / scale if scale > 0 else np.where(err > 0, np.inf, 0.0)


def test_fixtures_cover_the_compiled_cases():
    assert {c["padding"] for c in FIXTURES} == {"SAME", "CIRCULAR", "VALID"}
    assert {c["readout"] for c in FIXTURES} == {"flatten", "gap"}
    assert any(c["pool_after"] for c in FIXTURES)
    assert {c["parameterization"] for c in FIXTURES} == {"ntk", "standard"}
    assert {c["act"] for c in FIXTURES} >= {"relu", "leaky_relu", "abrelu"}


@pytest.mark.parametrize(
    "case",
    FIXTURES,
    ids=lambda c: f"{c['id']}-{c['act']}-{c['padding']}-{c['readout']}-L{c['depth']}",
)
def test_fixtures_through_the_compiled_path(monkeypatch, compiled, case):
    """neural-tangents' kernels and diagonals, in every tolerance class."""
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    prefix = f"kernel/{case['id']}/"
    kw = _kwargs(case)
    spy = _Spy(monkeypatch)
    for tag, (A, B) in {"11": (X1, None), "12": (X1, X2)}.items():
        edge = REF[f"inputs/{S}/edge{tag}"]
        degenerate = REF[f"{prefix}degenerate{tag}"]
        nngp, ntk = nngp_ntk_kernels(A, B, **kw)
        for name, K in (("nngp", nngp), ("ntk", ntk)):
            assert np.all(np.isfinite(K))
            err = _rel(K, REF[f"{prefix}{name}{tag}"])
            plain = ~edge & ~degenerate
            assert err[plain].max(initial=0) <= RTOL_PLAIN, (name, tag)
            assert err[edge & ~degenerate].max(initial=0) <= RTOL_EDGE, (name, tag)
            assert err[degenerate].max(initial=0) <= RTOL_DEGENERATE, (name, tag)
    for key, value in (
        ("exact_nngp_diag1", nngp_diag(X1, **kw)),
        ("exact_ntk_diag2", ntk_diag(X2, **kw)),
    ):
        assert _rel(value, REF[prefix + key]).max() <= RTOL_PLAIN, key
    assert spy.calls > 0


# ---------------------------------------------------------------------------
# Without numba
# ---------------------------------------------------------------------------
def test_without_numba_the_numpy_path_runs(monkeypatch):
    """Where numba cannot be imported, the NumPy path gives the kernels, bit
    for bit those with the compiled kernel switched off."""
    rng = np.random.default_rng(14)
    X, Y = rng.normal(size=(5, 4, 4, 2)), rng.normal(size=(3, 4, 4, 2))
    kw = dict(depth=2, bias_std=0.1, all_depths=True)
    expected = _numpy_path(monkeypatch, nngp_ntk_kernels, X, Y, **kw)
    expected_diag = _numpy_path(monkeypatch, ntk_diag, X, **kw)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba fails
    monkeypatch.setattr(_conv_compiled.compiled_conv, "kernel", None)
    assert _conv_compiled.compiled_conv() is None
    spy = _Spy(monkeypatch)
    got = nngp_ntk_kernels(X, Y, **kw)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ntk_diag(X, **kw), expected_diag)
    assert spy.calls == 0


def test_a_numba_that_fails_to_compile_falls_back_with_a_warning(monkeypatch):
    """A numba release that cannot compile the kernel (here a stand-in module
    without its API) gives a RuntimeWarning and the NumPy path."""
    rng = np.random.default_rng(15)
    X = rng.normal(size=(4, 4, 4, 1))
    expected = _numpy_path(monkeypatch, ntk_kernel, X, depth=2)
    monkeypatch.setitem(sys.modules, "numba", types.ModuleType("numba"))
    monkeypatch.setattr(_conv_compiled.compiled_conv, "kernel", None)
    with pytest.warns(RuntimeWarning, match="could not compile"):
        K = ntk_kernel(X, depth=2)
    np.testing.assert_array_equal(K, expected)


def test_overflow_is_reported_as_on_the_numpy_path(compiled):
    """Images too large for float64 raise the NumPy path's ValueError, not
    infinite kernels (the per-image pass checks its outputs)."""
    X = np.random.default_rng(16).random((3, 4, 4, 1)) * 1e200
    with pytest.raises(ValueError, match="overflows"):
        ntk_kernel(X, depth=2)
    with pytest.raises(ValueError, match="overflows"):
        ntk_kernel(np.ones((2, 4, 4, 1)), X, depth=2)


def test_padded_layout_last_block_only(monkeypatch, compiled):
    """SAME and GAP at the benchmarked shape (8 x 8, depth 3), the last
    block alone (its output planes are not stored): K(X, X) symmetric with
    the exact diagonal, K(X, Y) and K(Y, X) transposes, all as NumPy."""
    rng = np.random.default_rng(21)
    X = _images(rng, 6, 8, 8, 1)
    Y = rng.normal(size=(4, 8, 8, 1))
    kw = dict(depth=3, bias_std=0.2)
    for Y_ in (None, Y):
        got = nngp_ntk_kernels(X, Y_, **kw)
        expected = _numpy_path(monkeypatch, nngp_ntk_kernels, X, Y_, **kw)
        _close(got, expected, "padded layout")
    K = ntk_kernel(X, **kw)
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_array_equal(np.diag(K), ntk_diag(X, **kw))
    np.testing.assert_allclose(
        ntk_kernel(X, Y, **kw), ntk_kernel(Y, X, **kw).T, rtol=1e-13, atol=0
    )


@pytest.mark.parametrize(
    "shape, kw",
    [
        ((1, 1, 3), dict(depth=2)),
        ((1, 1, 1), dict(depth=1, readout="flatten", filter_shape=(5, 2))),
        ((2, 7, 1), dict(depth=3, bias_std=0.4)),
        ((7, 2, 2), dict(depth=2, padding="CIRCULAR", filter_shape=(4, 3))),
        ((3, 8, 1), dict(depth=2, padding="VALID", filter_shape=(2, 3))),
        ((8, 3, 1), dict(depth=2, readout="flatten", pool_after=[0], bias_std=0.1)),
    ],
)
def test_thin_and_tiny_maps(monkeypatch, compiled, shape, kw):
    """Maps narrower than the filter, single pixels, H != W either way."""
    rng = np.random.default_rng(sum(shape))
    X = rng.normal(size=(5,) + shape)
    Y = rng.normal(size=(3,) + shape)
    for Y_ in (None, Y):
        got = nngp_ntk_kernels(X, Y_, all_depths=True, **kw)
        expected = _numpy_path(
            monkeypatch, nngp_ntk_kernels, X, Y_, all_depths=True, **kw
        )
        _close(got, expected, (shape, kw))
