"""Access to the neural-tangents reference fixtures in ``tests/data``.

The fixtures were computed with neural-tangents 0.6.5 (see
``tests/data/REFERENCE_README.md`` for the conventions and tolerance classes).

Errors are measured per entry. The fixture inputs hold a row of norm
``1e3 * sqrt(d)``, so a matrix's largest entry can exceed its ordinary entries
by up to 13 orders of magnitude (deep ReLU and rbf NTKs); an error relative to
``max |K|`` would let a tolerance class mean far less than it says. Instead
entry ``(i, j)`` is compared with its own scale ``sqrt(K(x_i, x_i) K(y_j, y_j))``
(the exact diagonals stored in the fixtures), which bounds ``|K(x_i, y_j)|``
for a positive semi-definite kernel (Cauchy-Schwarz); for correlations near
zero it is the natural scale of the rounding error of the recursion.
"""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "ntk_reference.npz"

# Tolerances of REFERENCE_README.md, per entry (see ``entry_scale``). Measured
# on the current kernels: plain <= 1.1e-14, edge <= 1.9e-11, degenerate
# (well-conditioned cases) <= 8e-8; diagonals from the exact recursion agree
# to 1.1e-15 on plain rows and 6.4e-11 on edge rows.
RTOL_PLAIN, RTOL_EDGE, RTOL_DEGENERATE = 1e-10, 1e-9, 1e-6


@lru_cache(maxsize=1)
def load():
    ref = np.load(DATA)
    return {k: ref[k] for k in ref.files}, json.loads(str(ref["index_json"]))


def kernel_kwargs(case):
    """sknetk keyword arguments for a fixture's ``kernel_cases`` entry."""
    return dict(
        depth=case["depth"],
        activation=case["act"],
        activation_params=case["act_kwargs"],
        weight_std=case["W_std"],
        bias_std=case["b_std"],
        parameterization=case["parameterization"],
        width=case["width"],
    )


def entry_scale(K_ref, diag1, diag2):
    """Scale of each entry: ``max(sqrt(|d1_i d2_j|), |K_ref_ij|)``.

    ``diag1``/``diag2`` are the kernel's values ``K(x, x)`` on the rows and
    the columns. The ``|K_ref|`` term only matters where rounding in a
    degenerate pair pushes an entry past the Cauchy-Schwarz bound. A zero
    scale (a zero row of a bias-free network) demands an exact zero.
    """
    d1 = np.abs(np.asarray(diag1, dtype=float))
    d2 = np.abs(np.asarray(diag2, dtype=float))
    return np.maximum(np.sqrt(d1[:, None] * d2[None, :]), np.abs(K_ref))


def scaled_errors(value, ref, scale):
    """``|value - ref| / scale`` entrywise; ``inf`` where a zero scale is missed."""
    err = np.abs(np.asarray(value, dtype=float) - ref)
    positive = scale > 0
    out = np.where(err > 0, np.inf, 0.0)
    np.divide(err, scale, out=out, where=positive)
    return out


def relative_errors(K, K_ref, edge, degenerate, diag1, diag2):
    """Max per-entry relative error in each tolerance class: (plain, edge, degenerate).

    ``diag1``/``diag2`` are the reference diagonals ``K(x, x)`` of the rows
    and columns (the fixtures' ``exact_*_diag*``), see :func:`entry_scale`.
    """
    err = scaled_errors(K, K_ref, entry_scale(K_ref, diag1, diag2))
    plain = ~edge & ~degenerate
    return (
        err[plain].max(initial=0.0),
        err[edge & ~degenerate].max(initial=0.0),
        err[degenerate].max(initial=0.0),
    )


def edge_rows(edge11, edge12):
    """Boolean masks of the edge rows of ``X1`` and ``X2``.

    A row is an edge row when the fixture marks its whole row of ``edge11``
    (for ``X1``) or its whole column of ``edge12`` (for ``X2``).
    """
    return edge11.all(axis=1), edge12.all(axis=0)
