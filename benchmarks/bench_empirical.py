"""Empirical NTK of a scikit-learn MLP: layer-wise Grams against ``J J^T``.

:func:`sknetk.empirical.empirical_ntk` contracts, per Dense layer, the Gram
matrix of the layer's inputs (with a ones column for the bias) with the Gram
matrix of the signals back-propagated to its outputs, and never forms the
``n x n_params`` Jacobian. The baseline builds that Jacobian with the very
same per-layer algebra (``J_l[x, (i, j)] = a_{l-1}(x)_i delta_l(x)_j`` and
``delta_l(x)`` for the bias, written into one dense float64 matrix) and
multiplies ``J @ J.T``, as a generic autodiff NTK does.

Default problem (the issue's): ``MLPRegressor(hidden_layer_sizes=(512, 512))``,
ReLU, fitted for a few iterations on ``n = 2,000`` rows of ``d = 50``
standard normal features (289,793 parameters: ``J`` is 4.6 GB). Both methods
run in the same process, on the same thread pool; each is timed best of
``--repeat`` (the baseline once by default), with its peak traced memory
(``tracemalloc``, which sees NumPy's allocations). Also reported: the
largest difference of the two kernels relative to the largest entry.

Prints a table and one JSON line (machine, sizes, dtype, device, ratio vs
``J J^T``); ``--save`` appends the line to
``benchmarks/results/empirical_<date>_cpu.jsonl``.

Usage::

    python benchmarks/bench_empirical.py            # about a minute on 2 cores
    python benchmarks/bench_empirical.py --n 500 --widths 128 128
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402

from sknetk.empirical import empirical_ntk  # noqa: E402


def machine():
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "blas": blas,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def explicit_ntk(mlp, X):
    """``J @ J.T`` with the dense Jacobian built layer by layer (the baseline)."""
    relu = mlp.activation == "relu"
    if not relu:
        raise ValueError("the baseline is written for relu networks")
    Ws, bs = mlp.coefs_, mlp.intercepts_
    acts, ders = [X], []
    for W, b in zip(Ws[:-1], bs[:-1]):
        u = acts[-1] @ W + b
        acts.append(np.maximum(u, 0.0))
        ders.append((u > 0).astype(np.float64))
    deltas = [None] * len(Ws)
    deltas[-1] = np.ones((len(X), 1))
    for layer in range(len(Ws) - 2, -1, -1):
        deltas[layer] = (deltas[layer + 1] @ Ws[layer + 1].T) * ders[layer]
    n_params = sum(W.size + b.size for W, b in zip(Ws, bs))
    J = np.empty((len(X), n_params))
    offset = 0
    for a, d, W in zip(acts, deltas, Ws):
        size = W.size
        block = J[:, offset : offset + size].reshape(len(X), *W.shape)
        np.multiply(a[:, :, None], d[:, None, :], out=block)
        J[:, offset + size : offset + size + d.shape[1]] = d
        offset += size + d.shape[1]
    return J @ J.T


def timed(fn, repeat):
    times, peak, out = [], 0, None
    for _ in range(repeat):
        out = None
        tracemalloc.start()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return out, min(times), times, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 512])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-explicit", type=int, default=1)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.d))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=args.n)
    mlp = MLPRegressor(
        hidden_layer_sizes=tuple(args.widths), max_iter=3, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    n_params = sum(W.size + b.size for W, b in zip(mlp.coefs_, mlp.intercepts_))

    K, t_struct, all_struct, mem_struct = timed(
        lambda: empirical_ntk(mlp, X), args.repeat
    )
    K_ref, t_explicit, all_explicit, mem_explicit = timed(
        lambda: explicit_ntk(mlp, X), args.repeat_explicit
    )
    diff = float(np.max(np.abs(K - K_ref)) / np.max(np.abs(K_ref)))
    ratio = t_explicit / t_struct

    print(
        f"MLP {tuple(args.widths)} relu, n={args.n}, d={args.d}, "
        f"{n_params} parameters, float64, cpu"
    )
    print(f"{'method':<22}{'time s':>10}{'peak MiB':>12}")
    print(f"{'structured (sknetk)':<22}{t_struct:>10.3f}{mem_struct / 2**20:>12.1f}")
    print(f"{'explicit J @ J.T':<22}{t_explicit:>10.3f}{mem_explicit / 2**20:>12.1f}")
    print(
        f"ratio explicit/structured: {ratio:.1f}x (goal >= 10x); "
        f"max rel diff {diff:.1e}"
    )

    record = {
        "benchmark": "bench_empirical",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "device": "cpu",
        "dtype": "float64",
        "network": {
            "hidden_layer_sizes": list(args.widths),
            "activation": "relu",
            "n_params": int(n_params),
        },
        "n": args.n,
        "d": args.d,
        "baseline": "explicit J @ J.T (dense n x n_params Jacobian)",
        "target": {"ratio": ">= 10"},
        "structured_s": round(t_struct, 4),
        "explicit_s": round(t_explicit, 4),
        "ratio": round(ratio, 2),
        "structured_peak_mib": round(mem_struct / 2**20, 1),
        "explicit_peak_mib": round(mem_explicit / 2**20, 1),
        "max_rel_diff": diff,
        "all_s": {
            "structured": [round(t, 4) for t in all_struct],
            "explicit": [round(t, 4) for t in all_explicit],
        },
        "machine": machine(),
    }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"empirical_{datetime.date.today()}_cpu.jsonl"
        with open(path, "a") as fh:
            fh.write(line + "\n")
    return record


if __name__ == "__main__":
    main()
