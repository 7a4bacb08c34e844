"""Kernel values against neural-tangents' ``stax`` kernels (stored fixtures).

Every entry is compared with its own scale ``sqrt(K(x, x) K(y, y))`` (see
``tests/_reference.py``), so that each tolerance class of
``tests/data/REFERENCE_README.md`` holds for every entry, not only for the
largest one of a matrix.
"""

import numpy as np
import pytest

from sknetk.kernels import nngp_diag, nngp_ntk_kernels, ntk_diag

from ._reference import (
    RTOL_DEGENERATE,
    RTOL_EDGE,
    RTOL_PLAIN,
    edge_rows,
    kernel_kwargs,
    load,
    relative_errors,
    scaled_errors,
)

REF, INDEX = load()
CASES = INDEX["kernel_cases"]


def _case_id(case):
    return f"{case['id']}-{case['act']}-L{case['depth']}-{case['parameterization']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_kernels_match_neural_tangents(case):
    """NNGP and NTK, K(X1, X1) and K(X1, X2), per entry in every tolerance class."""
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    kw = kernel_kwargs(case)
    prefix = f"kernel/{case['id']}/"
    ill = case["degenerate_ill_conditioned"]
    for tag, (A, B) in {"11": (X1, None), "12": (X1, X2)}.items():
        edge = REF[f"inputs/{S}/edge{tag}"]
        degenerate = REF[f"{prefix}degenerate{tag}"]
        nngp, ntk = nngp_ntk_kernels(A, B, **kw)
        for name, K in (("nngp", nngp), ("ntk", ntk)):
            assert np.all(np.isfinite(K))
            K_ref = REF[f"{prefix}{name}{tag}"]
            diag1 = REF[f"{prefix}exact_{name}_diag1"]
            diag2 = diag1 if tag == "11" else REF[f"{prefix}exact_{name}_diag2"]
            plain, edg, deg = relative_errors(K, K_ref, edge, degenerate, diag1, diag2)
            assert plain <= RTOL_PLAIN, (name, tag, "plain", plain)
            assert edg <= RTOL_EDGE, (name, tag, "edge", edg)
            if not ill:
                assert deg <= RTOL_DEGENERATE, (name, tag, "degenerate", deg)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_diagonals_match_neural_tangents(case):
    """``nngp_diag``/``ntk_diag`` equal the fixtures' diagonals, entry by entry.

    The variance-path and exact diagonals are checked at the plain tolerance
    on ordinary rows and the edge tolerance on edge rows; ``ntk_diag2``
    (neural-tangents' NTK(X2, X2) diagonal, a correlation-one pair of its
    2-D recursion) at the degenerate tolerance.
    """
    S = case["inputs"]
    X1, X2 = REF[f"inputs/{S}/X1"], REF[f"inputs/{S}/X2"]
    edge1, edge2 = edge_rows(REF[f"inputs/{S}/edge11"], REF[f"inputs/{S}/edge12"])
    kw = kernel_kwargs(case)
    prefix = f"kernel/{case['id']}/"
    nngp1, nngp2 = nngp_diag(X1, **kw), nngp_diag(X2, **kw)
    ntk1, ntk2 = ntk_diag(X1, **kw), ntk_diag(X2, **kw)
    checks = [
        ("nngp_diag1", nngp1, edge1),
        ("nngp_diag2", nngp2, edge2),
        ("exact_nngp_diag1", nngp1, edge1),
        ("exact_nngp_diag2", nngp2, edge2),
        ("exact_ntk_diag1", ntk1, edge1),
        ("exact_ntk_diag2", ntk2, edge2),
    ]
    for key, value, edge in checks:
        ref = REF[prefix + key]
        err = scaled_errors(value, ref, np.abs(ref))
        assert err[~edge].max(initial=0.0) <= RTOL_PLAIN, (key, "plain", err)
        assert err[edge].max(initial=0.0) <= RTOL_EDGE, (key, "edge", err)
    if not case["degenerate_ill_conditioned"]:
        ref = REF[prefix + "ntk_diag2"]
        err = scaled_errors(ntk2, ref, np.abs(ref))
        assert err.max(initial=0.0) <= RTOL_DEGENERATE, ("ntk_diag2", err)


def test_fixture_covers_every_activation():
    """The fixture file exercises every registered activation."""
    from sknetk.kernels import ACTIVATION_NAMES

    assert {c["act"] for c in CASES} == set(ACTIVATION_NAMES)
