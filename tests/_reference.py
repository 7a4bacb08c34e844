"""Access to the neural-tangents reference fixtures in ``tests/data``.

The fixtures were computed with neural-tangents 0.6.5 (see
``tests/data/REFERENCE_README.md`` for the conventions and tolerance classes).
"""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "ntk_reference.npz"

# Tolerances of REFERENCE_README.md, relative to max |K| of each matrix.
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


def relative_errors(K, K_ref, edge, degenerate):
    """Max relative error in each tolerance class: (plain, edge, degenerate)."""
    scale = np.max(np.abs(K_ref)) or 1.0
    err = np.abs(np.asarray(K) - K_ref) / scale
    plain = ~edge & ~degenerate
    return (
        err[plain].max(initial=0.0),
        err[edge & ~degenerate].max(initial=0.0),
        err[degenerate].max(initial=0.0),
    )
