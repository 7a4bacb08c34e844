"""Convolutional NNGP/NTK kernels against neural-tangents and their properties.

The reference values are neural-tangents 0.6.5's ``stax`` kernels of
convolutional networks (``tests/data/cntk_reference.npz``; conventions and
tolerance classes in ``tests/data/CNTK_README.md``): errors are relative to
``max |K|`` of each matrix, 1e-10 on plain entries, 1e-9 on edge entries
(zero, negated, scaled or copied images) and 1e-6 on degenerate image pairs
(a pixel pair of correlation +-1, where neural-tangents itself is off by
up to 3e-9).
"""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import cho_solve, cholesky, eigh

from sknetk import kernels as dense
from sknetk.conv import (
    ConvKernelSpec,
    nngp_diag,
    nngp_kernel,
    nngp_ntk_kernels,
    ntk_diag,
    ntk_kernel,
)

DATA = Path(__file__).parent / "data" / "cntk_reference.npz"
RTOL_PLAIN, RTOL_EDGE, RTOL_DEGENERATE = 1e-10, 1e-9, 1e-6
RTOL_PREDICTION = 1e-8


@lru_cache(maxsize=1)
def _load():
    ref = np.load(DATA)
    return {k: ref[k] for k in ref.files}, json.loads(str(ref["index_json"]))


REF, INDEX = _load()
CASES = INDEX["kernel_cases"]


def _kwargs(case):
    """sknetk.conv keyword arguments of a fixture case."""
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


def _case_id(case):
    return (
        f"{case['id']}-{case['act']}-{case['padding']}-{case['readout']}"
        f"-L{case['depth']}-{case['tag']}"
    )


def _rel(value, ref):
    """Entrywise ``|value - ref| / max |ref|``."""
    scale = np.abs(ref).max()
    err = np.abs(np.asarray(value) - ref)
    return err / scale if scale > 0 else np.where(err > 0, np.inf, 0.0)


# ---------------------------------------------------------------------------
# Fixtures of neural-tangents
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_kernels_match_neural_tangents(case):
    """NNGP and NTK, K(X1, X1) and K(X1, X2), in every tolerance class."""
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    prefix = f"kernel/{case['id']}/"
    for tag, (A, B) in {"11": (X1, None), "12": (X1, X2)}.items():
        edge = REF[f"inputs/{S}/edge{tag}"]
        degenerate = REF[f"{prefix}degenerate{tag}"]
        nngp, ntk = nngp_ntk_kernels(A, B, **_kwargs(case))
        for name, K in (("nngp", nngp), ("ntk", ntk)):
            assert np.all(np.isfinite(K))
            err = _rel(K, REF[f"{prefix}{name}{tag}"])
            plain = ~edge & ~degenerate
            assert err[plain].max(initial=0) <= RTOL_PLAIN, (name, tag, "plain")
            assert err[edge & ~degenerate].max(initial=0) <= RTOL_EDGE, (name, tag)
            assert err[degenerate].max(initial=0) <= RTOL_DEGENERATE, (name, tag)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_diagonals_match_neural_tangents(case):
    """``nngp_diag``/``ntk_diag`` equal the variance path and the exact diagonals."""
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    prefix = f"kernel/{case['id']}/"
    kw = _kwargs(case)
    n1, n2 = nngp_diag(X1, **kw), nngp_diag(X2, **kw)
    t1, t2 = ntk_diag(X1, **kw), ntk_diag(X2, **kw)
    for key, value in (
        ("nngp_diag1", n1),
        ("nngp_diag2", n2),
        ("exact_nngp_diag1", n1),
        ("exact_nngp_diag2", n2),
    ):
        assert _rel(value, REF[prefix + key]).max() <= RTOL_PLAIN, key
    # exact diagonals (correlation one on every (p, p)) at the plain
    # tolerance; neural-tangents' own NTK diagonal at the degenerate one
    assert _rel(t1, REF[prefix + "exact_ntk_diag1"]).max() <= RTOL_PLAIN
    assert _rel(t2, REF[prefix + "exact_ntk_diag2"]).max() <= RTOL_PLAIN
    assert _rel(t2, REF[prefix + "ntk_diag2"]).max() <= RTOL_DEGENERATE


def test_fixture_grid_is_covered():
    """The fixture cases span the paddings, readouts, pooling and parameterizations."""
    assert len(CASES) == 65
    assert {c["padding"] for c in CASES} == {"SAME", "CIRCULAR", "VALID"}
    assert {c["readout"] for c in CASES} == {"flatten", "gap"}
    assert any(c["pool_after"] for c in CASES)
    assert {c["parameterization"] for c in CASES} == {"ntk", "standard"}


def _prediction_kernel_kwargs(pk):
    case = next(c for c in INDEX["prediction_kernels"] if c["id"] == pk)
    return _kwargs(case)


@pytest.mark.parametrize("pred", INDEX["predictions"], ids=lambda p: p["id"])
def test_predictions_match_neural_tangents(pred):
    """Kernel regression means (t = inf and finite t) from our kernels equal NT's."""
    Xtr, Xte = REF["pred/X_train"], REF["pred/X_test"]
    y = REF["pred/y_train"] if pred["y"] == "y_train" else REF["pred/Y_train_multi"]
    kw = _prediction_kernel_kwargs(pred["kernel"])
    ts = REF["pred/t"]
    K_tr = dict(zip(("nngp", "ntk"), nngp_ntk_kernels(Xtr, **kw)))
    K_te = dict(zip(("nngp", "ntk"), nngp_ntk_kernels(Xte, Xtr, **kw)))
    for name in ("nngp", "ntk"):
        prefix = f"pred/{pred['kernel']}/{name}_"
        assert _rel(K_tr[name], REF[prefix + "train_train"]).max() <= RTOL_PLAIN
        assert _rel(K_te[name], REF[prefix + "test_train"]).max() <= RTOL_PLAIN
        K, Ks = K_tr[name], K_te[name]
        n = K.shape[0]
        reg = pred["diag_reg"] * np.trace(K) / n
        A = K + reg * np.eye(n)
        mean_inf = Ks @ cho_solve((cholesky(A, lower=True), True), y)
        key = f"pred/{pred['id']}/{name}_"
        ref_inf = REF[key + "mean_inf"]
        assert (
            np.abs(mean_inf - ref_inf).max() <= RTOL_PREDICTION * np.abs(ref_inf).max()
        )
        e, V = eigh(A)
        N = y.size
        ref_t = REF[key + "mean_t"]
        for k, t in enumerate(ts):
            if not np.isfinite(t):
                continue
            flt = -np.expm1(-e * t / N) / e
            mean_t = Ks @ (V @ (flt[:, None] * (V.T @ y)))
            scale = np.abs(ref_t[k]).max()
            assert np.abs(mean_t - ref_t[k]).max() <= RTOL_PREDICTION * scale


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------
RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(7, 5, 6, 2))
OTHER = RNG.normal(size=(4, 5, 6, 2))

ARCHS = {
    "gap-same": dict(readout="gap"),
    "flatten-circular": dict(readout="flatten", padding="CIRCULAR"),
    "gap-valid-erf": dict(
        readout="gap", padding="VALID", activation="erf", filter_shape=2
    ),
    "pool-flatten": dict(readout="flatten", pool_after=[0], bias_std=0.2),
    "gap-gelu-2x3": dict(activation="gelu", filter_shape=(2, 3), bias_std=0.1),
    "standard-gap": dict(parameterization="standard", width=8, bias_std=0.3),
}


@pytest.mark.parametrize("arch", ARCHS.values(), ids=ARCHS.keys())
def test_symmetric_psd_and_consistent(arch):
    """K(X, X) is exactly symmetric and PSD; K(X, Y) and the diagonals agree with it."""
    nngp, ntk = nngp_ntk_kernels(IMAGES, depth=2, **arch)
    Z = np.concatenate([IMAGES, OTHER])
    nngp_z, ntk_z = nngp_ntk_kernels(Z, depth=2, **arch)
    nngp_xy, ntk_xy = nngp_ntk_kernels(IMAGES, OTHER, depth=2, **arch)
    n = len(IMAGES)
    for K, KZ, KXY, diag in (
        (nngp, nngp_z, nngp_xy, nngp_diag(IMAGES, depth=2, **arch)),
        (ntk, ntk_z, ntk_xy, ntk_diag(IMAGES, depth=2, **arch)),
    ):
        assert np.array_equal(K, K.T)
        assert np.linalg.eigvalsh(KZ).min() >= -1e-12 * np.abs(KZ).max()
        np.testing.assert_allclose(KZ[:n, :n], K, rtol=1e-13, atol=0)
        np.testing.assert_allclose(KZ[:n, n:], KXY, rtol=1e-13, atol=0)
        np.testing.assert_array_equal(np.diag(K), diag)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("readout", ["flatten", "gap"])
@pytest.mark.parametrize("activation", ["relu", "erf", "sin", "sign"])
def test_one_pixel_images_equal_dense_kernels(activation, readout, parameterization):
    """1x1 images with 1x1 filters: the CNN is the fully connected network."""
    X = RNG.normal(size=(6, 1, 1, 5))
    Y = RNG.normal(size=(3, 1, 1, 5))
    kw = dict(
        depth=3,
        activation=activation,
        weight_std=1.3,
        bias_std=0.2,
        parameterization=parameterization,
        width=16,
    )
    got = nngp_ntk_kernels(X, Y, filter_shape=1, readout=readout, **kw)
    ref = dense.nngp_ntk_kernels(X.reshape(6, 5), Y.reshape(3, 5), **kw)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_circular_gap_is_translation_invariant():
    """CIRCULAR + GAP: shifting one image (circularly) leaves every entry unchanged."""
    kw = dict(depth=3, padding="CIRCULAR", readout="gap", bias_std=0.1)
    K = ntk_kernel(IMAGES, OTHER, **kw)
    shifted = np.roll(IMAGES, shift=(2, -1), axis=(1, 2))
    np.testing.assert_allclose(ntk_kernel(shifted, OTHER, **kw), K, rtol=1e-12)
    # Flatten: invariant to shifting both images together only
    kw["readout"] = "flatten"
    K = ntk_kernel(IMAGES, OTHER, **kw)
    both = ntk_kernel(shifted, np.roll(OTHER, shift=(2, -1), axis=(1, 2)), **kw)
    np.testing.assert_allclose(both, K, rtol=1e-12)
    one = ntk_kernel(shifted, OTHER, **kw)
    assert np.abs(one - K).max() > 1e-3 * np.abs(K).max()


@pytest.mark.parametrize("arch", ARCHS.values(), ids=ARCHS.keys())
def test_all_depths_is_each_depth(arch):
    """``all_depths`` stacks the kernels of the networks of depth 1..depth."""
    pools = arch.get("pool_after", [])
    nngp, ntk = nngp_ntk_kernels(IMAGES, OTHER, depth=3, all_depths=True, **arch)
    for d in range(1, 4):
        kw = dict(arch, pool_after=[p for p in pools if p < d])
        n_d, t_d = nngp_ntk_kernels(IMAGES, OTHER, depth=d, **kw)
        np.testing.assert_allclose(nngp[d - 1], n_d, rtol=1e-14)
        np.testing.assert_allclose(ntk[d - 1], t_d, rtol=1e-14)
    diag = ntk_diag(IMAGES, depth=3, all_depths=True, **arch)
    full = ntk_kernel(IMAGES, depth=3, all_depths=True, **arch)
    np.testing.assert_array_equal(diag, np.diagonal(full, axis1=1, axis2=2))


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_tiles_threads_and_flat_rows(readout):
    """Tiny tiles, threads and flattened rows give the same kernel."""
    kw = dict(depth=2, readout=readout, bias_std=0.1)
    K = ntk_kernel(IMAGES, **kw)
    tiny = ntk_kernel(IMAGES, working_memory=0.01, n_jobs=2, **kw)
    np.testing.assert_allclose(tiny, K, rtol=1e-14)
    flat = ntk_kernel(IMAGES.reshape(7, -1), image_shape=(5, 6, 2), **kw)
    np.testing.assert_array_equal(flat, K)
    cross = ntk_kernel(IMAGES, OTHER[:1], working_memory=0.01, **kw)
    np.testing.assert_allclose(cross, ntk_kernel(IMAGES, OTHER, **kw)[:, :1])


def test_square_rows_are_single_channel_images():
    """image_shape=None: d = s^2 features are an s x s one-channel image."""
    X = RNG.normal(size=(3, 16))
    K = nngp_kernel(X, depth=2)
    np.testing.assert_array_equal(K, nngp_kernel(X.reshape(3, 4, 4, 1), depth=2))
    np.testing.assert_array_equal(K, nngp_kernel(X.reshape(3, 4, 4), depth=2))
    with pytest.raises(ValueError, match="not a square number"):
        nngp_kernel(RNG.normal(size=(3, 12)))
    with pytest.raises(ValueError, match="holds 12 values"):
        nngp_kernel(X, image_shape=(2, 2, 3))
    with pytest.raises(ValueError, match="image_shape"):
        nngp_kernel(X.reshape(3, 4, 4, 1), image_shape=(2, 2, 4))


def test_zero_and_scaled_images_are_finite():
    """Zero images give zero kernels without biases; scaled ReLU images scale."""
    X = np.concatenate([np.zeros((1, 4, 4, 2)), IMAGES[:2, :4, :4]])
    for readout in ("flatten", "gap"):
        nngp, ntk = nngp_ntk_kernels(X, depth=3, readout=readout)
        assert np.isfinite(nngp).all() and np.isfinite(ntk).all()
        assert not nngp[0].any() and not ntk[0].any()
        # ReLU without biases is positively homogeneous: K(3x, y) = 3 K(x, y)
        K3 = ntk_kernel(3 * X[1:], X[1:], depth=3, readout=readout)
        np.testing.assert_allclose(K3, 3 * ntk[1:, 1:], rtol=1e-13)


def test_float32_close_to_float64():
    """float32 kernels agree with float64 to single precision."""
    K64 = ntk_kernel(IMAGES, OTHER, depth=3)
    K32 = ntk_kernel(IMAGES, OTHER, depth=3, dtype="float32")
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, K64, rtol=2e-5, atol=2e-5 * np.abs(K64).max())


def test_array_api_strict(xps):
    """The same code on array_api_strict: same values, outputs in its namespace."""
    for arch in ARCHS.values():
        A, B = xps.asarray(IMAGES), xps.asarray(OTHER)
        nngp, ntk = nngp_ntk_kernels(A, B, depth=2, **arch)
        assert type(ntk).__module__.startswith("array_api_strict")
        ref = nngp_ntk_kernels(IMAGES, OTHER, depth=2, **arch)
        np.testing.assert_allclose(np.asarray(nngp), ref[0], rtol=1e-13)
        np.testing.assert_allclose(np.asarray(ntk), ref[1], rtol=1e-13)
        sym = ntk_kernel(A, depth=2, **arch)
        np.testing.assert_allclose(
            np.asarray(sym), ntk_kernel(IMAGES, depth=2, **arch), rtol=1e-13
        )
        d = ntk_diag(A, depth=2, **arch)
        np.testing.assert_allclose(
            np.asarray(d), ntk_diag(IMAGES, depth=2, **arch), rtol=1e-13
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(padding="FULL"), "padding"),
        (dict(readout="max"), "readout"),
        (dict(pool_after=[3]), "pool_after"),
        (dict(filter_shape=(0, 3)), "filter_shape"),
        (dict(pool_window=(2, 2, 2)), "pool_window"),
        (dict(padding="VALID", filter_shape=6), "vanishes"),
        (dict(pool_after=[0, 1, 2]), "vanishes"),
        (dict(activation="nope"), "activation"),
        (dict(parameterization="standard"), "width"),
    ],
)
def test_invalid_parameters(kwargs, match):
    """Invalid architectures raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=match):
        ntk_kernel(IMAGES[:, :4, :4], **kwargs)


def test_spec_validates_and_shapes():
    """ConvKernelSpec normalises its parameters and reports the map sizes."""
    spec = ConvKernelSpec.from_params(
        depth=3, padding="valid", filter_shape=2, pool_after=(1,)
    )
    assert spec.padding == "VALID" and spec.filter_shape == (2, 2)
    assert spec.map_shapes(9, 8) == [(8, 7, 8, 7), (7, 6, 3, 3), (2, 2, 2, 2)]
    assert spec.full_layout() == [True, True, True]
    flat = ConvKernelSpec.from_params(depth=3, readout="flatten", pool_after=(1,))
    assert flat.full_layout() == [True, True, False]
