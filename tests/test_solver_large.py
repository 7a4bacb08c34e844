"""Exact fits at n = 16,000-17,000 survive multithreaded OpenBLAS.

OpenBLAS 0.3.30/0.3.31 (NumPy's and SciPy's wheels) crashes the process in its
own multithreaded ``potrf`` at ``n = 16,000`` on AVX-512 machines (SkylakeX
kernels), intermittently depending on memory layout and thread timing (for
example right after another array of the same size was created and freed).
Each fit here runs in a subprocess, so a crash is a failed exit status rather
than the end of the test session (the old solver's fit at 16,000 rows after a
freed array of the same size died with SIGSEGV). Each fit takes about 30 s on
2 idle cores. The subprocesses run with the stock OpenBLAS
settings: an ``OPENBLAS_CORETYPE`` override of the calling environment (a
known workaround for the crash) is removed, and two BLAS threads are asked for.
"""

import json
import os
import subprocess
import sys

import pytest

# Fit NTKRegressor(solver="cholesky") on n rows; optionally create and free a
# same-size array first. Prints one JSON line with what the parent checks.
_SCRIPT = """
import json, sys, warnings
import numpy as np
from sknetk import NTKRegressor
from sknetk.exceptions import IllConditionedKernelWarning

n, seed, churn = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
rng = np.random.default_rng(seed)
X = rng.normal(size=(n, 8))
y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n)
if churn:
    scratch = np.full((n, n), 0.5)
    scratch @ scratch[:, :1]
    del scratch
with warnings.catch_warnings():
    warnings.simplefilter("error", IllConditionedKernelWarning)
    model = NTKRegressor(alpha=1e-2, solver="cholesky", depth=3).fit(X, y)
check = rng.choice(n, size=200, replace=False)
print(json.dumps({
    "finite": bool(np.isfinite(model.dual_coef_).all()),
    "fit_error": float(np.abs(model.predict(X[check]) - y[check]).max()),
}))
"""


def _run_fit(n, seed, churn):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        env[name] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(n), str(seed), "1" if churn else "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return proc


@pytest.mark.slow
@pytest.mark.parametrize(
    "n, seed, churn",
    [(16_000, 0, False), (16_000, 1, True), (17_000, 2, True)],
)
def test_exact_fit_at_sixteen_thousand_rows_exits_cleanly(n, seed, churn):
    """The subprocess exits 0 (no segfault) with finite duals that fit y."""
    proc = _run_fit(n, seed, churn)
    assert proc.returncode == 0, (
        f"exact fit on {n} rows exited with {proc.returncode} (negative: killed "
        f"by signal {-proc.returncode})\n{proc.stderr[-3000:]}"
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["finite"]
    # alpha = 1e-2 on a kernel of diagonal ~1: the fit follows y closely.
    assert result["fit_error"] < 0.5
