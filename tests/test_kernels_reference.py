"""Kernel values against neural-tangents' ``stax`` kernels (stored fixtures)."""

import numpy as np
import pytest

from sknetk.kernels import nngp_diag, nngp_ntk_kernels, ntk_diag

from ._reference import (
    RTOL_DEGENERATE,
    RTOL_EDGE,
    RTOL_PLAIN,
    kernel_kwargs,
    load,
    relative_errors,
)

REF, INDEX = load()
CASES = INDEX["kernel_cases"]


def _case_id(case):
    return (
        f"{case['id']}-{case['act']}-L{case['depth']}-{case['parameterization']}"
    )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_kernels_match_neural_tangents(case):
    """NNGP and NTK, K(X1, X1) and K(X1, X2), in every tolerance class."""
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    kw = kernel_kwargs(case)
    ill = case["degenerate_ill_conditioned"]
    for tag, (A, B) in {"11": (X1, None), "12": (X1, X2)}.items():
        edge = REF[f"inputs/{S}/edge{tag}"]
        degenerate = REF[f"kernel/{case['id']}/degenerate{tag}"]
        nngp, ntk = nngp_ntk_kernels(A, B, **kw)
        for name, K in (("nngp", nngp), ("ntk", ntk)):
            assert np.all(np.isfinite(K))
            K_ref = REF[f"kernel/{case['id']}/{name}{tag}"]
            plain, edg, deg = relative_errors(K, K_ref, edge, degenerate)
            assert plain <= RTOL_PLAIN, (name, tag, "plain", plain)
            assert edg <= RTOL_EDGE, (name, tag, "edge", edg)
            if not ill:
                assert deg <= RTOL_DEGENERATE, (name, tag, "degenerate", deg)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_diagonals_match_neural_tangents(case):
    """``nngp_diag``/``ntk_diag`` equal the fixtures' variance-path diagonals."""
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    kw = kernel_kwargs(case)
    prefix = f"kernel/{case['id']}/"
    checks = [
        ("nngp_diag1", nngp_diag(X1, **kw), RTOL_EDGE),
        ("nngp_diag2", nngp_diag(X2, **kw), RTOL_EDGE),
        ("exact_nngp_diag1", nngp_diag(X1, **kw), RTOL_DEGENERATE),
        ("exact_nngp_diag2", nngp_diag(X2, **kw), RTOL_DEGENERATE),
        ("exact_ntk_diag1", ntk_diag(X1, **kw), RTOL_DEGENERATE),
        ("exact_ntk_diag2", ntk_diag(X2, **kw), RTOL_DEGENERATE),
    ]
    if not case["degenerate_ill_conditioned"]:
        checks.append(("ntk_diag2", ntk_diag(X2, **kw), RTOL_DEGENERATE))
    for key, value, rtol in checks:
        ref = REF[prefix + key]
        err = np.max(np.abs(value - ref)) / (np.max(np.abs(ref)) or 1.0)
        assert err <= rtol, (key, err)


def test_fixture_covers_every_activation():
    """The fixture file exercises every registered activation."""
    from sknetk.kernels import ACTIVATION_NAMES

    assert {c["act"] for c in CASES} == set(ACTIVATION_NAMES)
