"""CPU benchmark of ``sknetk.kernels`` against neural-tangents, and a CPU roofline.

Times, in one run and on the same inputs, the full symmetric ``K(X, X)`` of a
fully connected ReLU network (default: n = 5000, d = 50, depth 3,
``weight_std = sqrt(2)``, ``bias_std = 0.1``, float64):

* ``sknetk.kernels.ntk_kernel(X)`` and ``nngp_ntk_kernels(X)``;
* neural-tangents' jitted ``kernel_fn`` of the same ``stax.serial`` network,
  ``get="ntk"`` and ``get=("nngp", "ntk")`` (``jax_enable_x64``), when
  neural-tangents is importable (it is not a dependency of sknetk);
* with ``--variants``, sknetk's NumPy tile path as well (the compiled tile
  kernel switched off), so that what the compiled kernel buys is measured in
  the same run.

The timed calls are interleaved (one of each per round) and the best of
``--repeat`` rounds counts, so that a shared machine's load affects all of
them alike; ``uptime``'s load averages before and after are recorded.

The same script measures the rates that make the CPU roofline of
``docs/kernels.rst``: the peak DGEMM rate (a large square ``matmul``, all
cores), the throughput of multiply-add, square root, division and arccos
(NumPy ufuncs on cache-resident float64 arrays, one core, times the number of
cores) and the write bandwidth (filling an n x n float64 array already in
memory). The roofline time is

``2 n^2 d / R_gemm + E depth (t_acos + t_sqrt + 6 t_fma) / cores + 8 n^2 / B``

with ``E = n (n + 1) / 2`` unique entries. Two versions are reported: with
``t_acos`` the measured ``numpy.arccos`` (on CPUs without AVX-512, a scalar
libm call), and the stricter one with ``t_acos`` its rational form (one
division and 12 multiply-adds; the compiled kernel's ``acos``).

Usage::

    python benchmarks/bench_vs_neural_tangents.py                  # n = 5000
    python benchmarks/bench_vs_neural_tangents.py --n 2000 --repeat 3
    python benchmarks/bench_vs_neural_tangents.py --variants --save

Prints a table and one JSON line; ``--save`` appends the JSON line to
``benchmarks/results/kernels_<date>_cpu.jsonl``. Needs about 8 x 8 n^2 bytes
(neural-tangents' intermediates; 1.6 GB at n = 5000).
"""

import argparse
import datetime
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# the files whose state the timings describe ("+dirty": uncommitted changes)
KERNEL_FILES = ("sknetk/kernels.py", "sknetk/_recursion.py", "sknetk/_activations.py")

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load():
    """``uptime``'s 1-, 5- and 15-minute load averages."""
    return list(os.getloadavg())


def git_commit():
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", *KERNEL_FILES],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# ---------------------------------------------------------------------------
# Rates of the roofline
# ---------------------------------------------------------------------------
def _best(fn, repeat, inner=1):
    best = math.inf
    fn()
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def measure_rates(n, repeat):
    """Peak DGEMM flop/s, per-element ufunc times (one core) and write bandwidth."""
    rng = np.random.default_rng(1)
    m = 3000
    A, B = rng.standard_normal((m, m)), rng.standard_normal((m, m))
    C = np.empty((m, m))
    t = _best(lambda: np.matmul(A, B, out=C), repeat)
    gemm_flops = 2 * m**3 / t
    # 32768 float64 = 256 KiB per array: cache resident, as in a tile
    x = rng.uniform(-0.99, 0.99, size=32768)
    y = rng.uniform(0.5, 2.0, size=32768)
    z = np.empty_like(x)

    def fma():  # one multiply and one add: what a compiled loop does in one FMA
        np.multiply(x, y, out=z)
        np.add(z, x, out=z)

    per = {
        "multiply_add": _best(fma, repeat, 50) / x.size / 2,
        "sqrt": _best(lambda: np.sqrt(y, out=z), repeat, 50) / x.size,
        "divide": _best(lambda: np.divide(x, y, out=z), repeat, 50) / x.size,
        "arccos_numpy": _best(lambda: np.arccos(x, out=z), repeat, 10) / x.size,
    }
    out = np.empty((n, n))
    out.fill(0.0)  # pages touched: the bandwidth, not the page faults
    t_write = _best(lambda: out.fill(1.0), repeat)
    return {
        "gemm_flop_per_s": gemm_flops,
        "seconds_per_element_one_core": per,
        "write_bytes_per_s": 8 * n * n / t_write,
    }


def roofline(n, d, depth, rates, cores):
    """Roofline seconds: GEMM + elementwise work per unique entry and layer + write."""
    per = rates["seconds_per_element_one_core"]
    t_gemm = 2 * n * n * d / rates["gemm_flop_per_s"]
    entries = n * (n + 1) / 2
    n_fma = 6  # the ReLU dual: 1 - rho, 1 + rho, product, dot, rho * dot, scaling
    acos_rational = per["divide"] + 12 * per["multiply_add"]
    elem = {}
    for name, t_acos in (
        ("arccos_numpy", per["arccos_numpy"]),
        ("arccos_rational", acos_rational),
    ):
        t_entry = t_acos + per["sqrt"] + n_fma * per["multiply_add"]
        elem[name] = entries * depth * t_entry / cores
    t_write = 8 * n * n / rates["write_bytes_per_s"]
    return {
        "seconds_gemm": t_gemm,
        "seconds_elementwise": elem,
        "seconds_write": t_write,
        "seconds": {name: t_gemm + e + t_write for name, e in elem.items()},
        "multiply_adds_per_entry_and_layer": n_fma,
        "arccos_rational_as": "1 divide + 12 multiply-adds",
    }


# ---------------------------------------------------------------------------
# The implementations
# ---------------------------------------------------------------------------
def sknetk_fns(kw):
    from sknetk.kernels import nngp_ntk_kernels, ntk_kernel

    return (
        lambda X: ntk_kernel(X, device="cpu", **kw),
        lambda X: nngp_ntk_kernels(X, device="cpu", **kw),
    )


def numpy_path(fn):
    """``fn`` run with sknetk's compiled tile kernel switched off."""
    from sknetk import _recursion

    def run(X):
        saved = getattr(_recursion, "_COMPILED", None)
        _recursion._COMPILED = False
        try:
            return fn(X)
        finally:
            _recursion._COMPILED = saved

    return run


def nt_fns(depth, weight_std, bias_std):
    """neural-tangents' jitted kernel functions, or ``None`` when not installed."""
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import neural_tangents as nt
        from neural_tangents import stax
    except ImportError:
        return None, {}
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=weight_std, b_std=bias_std), stax.Relu()]
    layers.append(stax.Dense(1, W_std=weight_std, b_std=bias_std))
    _, _, kernel_fn = stax.serial(*layers)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")

    def ntk(X):
        return np.asarray(jax.block_until_ready(kernel_fn(X, None, get="ntk")))

    def both(X):
        out = jax.block_until_ready(kernel_fn(X, None, get=("nngp", "ntk")))
        return np.asarray(out[0]), np.asarray(out[1])

    versions = {
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
    }
    return (ntk, both), versions


def rel_diffs(A, B):
    """max |A - B| / max |B|, overall and off the diagonal."""
    scale = float(np.max(np.abs(B)))
    D = np.abs(A - B)
    overall = float(D.max()) / scale
    np.fill_diagonal(D, 0.0)
    return overall, float(D.max()) / scale


def machine_info():
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import sknetk

    np.ones((2, 2)) @ np.ones((2, 2))
    blas = [
        {
            k: lib.get(k)
            for k in ("internal_api", "version", "num_threads", "architecture")
        }
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    cpu = ""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "sknetk": sknetk.__version__,
        "sknetk_commit": git_commit(),
        "numba": numba_version,
        "blas": blas,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5, help="rounds; best counts")
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also time sknetk's NumPy tile path (compiled kernel off)",
    )
    parser.add_argument("--label", default="", help="free text stored in the JSON")
    parser.add_argument("--save", action="store_true", help="append the JSON line")
    args = parser.parse_args(argv)
    n, d, depth = args.n, args.d, args.depth
    weight_std, bias_std = math.sqrt(2.0), 0.1
    kw = dict(depth=depth, activation="relu", weight_std=weight_std, bias_std=bias_std)
    load_before = load()
    X = np.random.default_rng(0).standard_normal((n, d))

    sk_ntk, sk_both = sknetk_fns(kw)
    impls = {"sknetk_ntk": sk_ntk, "sknetk_nngp_ntk": sk_both}
    if args.variants:
        impls["sknetk_numpy_path_ntk"] = numpy_path(sk_ntk)
        impls["sknetk_numpy_path_nngp_ntk"] = numpy_path(sk_both)
    nt, versions = nt_fns(depth, weight_std, bias_std)
    if nt is not None:
        impls["neural_tangents_ntk"], impls["neural_tangents_nngp_ntk"] = nt
    results = {}
    for name, fn in impls.items():  # warm up: compilation, thread pools
        results[name] = fn(X[: min(n, 500)])
        results[name] = None
    best = dict.fromkeys(impls, math.inf)
    for _ in range(args.repeat):
        for name, fn in impls.items():
            results[name] = None
            gc.collect()
            t0 = time.perf_counter()
            results[name] = fn(X)
            best[name] = min(best[name], time.perf_counter() - t0)
    agreement = {}
    if nt is not None:
        ref_ntk = results["neural_tangents_ntk"]
        ref_nngp, ref_ntk2 = results["neural_tangents_nngp_ntk"]
        for name, out in results.items():
            if not name.startswith("sknetk"):
                continue
            if isinstance(out, tuple):
                agreement[name] = {
                    "nngp": rel_diffs(out[0], ref_nngp),
                    "ntk": rel_diffs(out[1], ref_ntk2),
                }
            else:
                agreement[name] = {"ntk": rel_diffs(out, ref_ntk)}
    results.clear()
    rates = measure_rates(n, args.repeat)
    cores = os.cpu_count()
    roof = roofline(n, d, depth, rates, cores)
    load_after = load()

    ratios, fractions = {}, {}
    for name, t in best.items():
        if not name.startswith("sknetk"):
            continue
        kind = "nngp_ntk" if name.endswith("nngp_ntk") else "ntk"
        if nt is not None:
            ratios[name] = best[f"neural_tangents_{kind}"] / t
        fractions[name] = {k: v / t for k, v in roof["seconds"].items()}

    print(f"n={n} d={d} depth={depth} relu float64, load {load_before} -> {load_after}")
    print(f"{'implementation':<30} {'best s':>8} {'vs NT':>7} {'roofline frac':>22}")
    for name, t in best.items():
        ratio = f"{ratios[name]:.2f}x" if name in ratios else ""
        frac = fractions.get(name)
        frac_s = (
            f"{frac['arccos_numpy']:.2f} / {frac['arccos_rational']:.2f}"
            if frac
            else ""
        )
        print(f"{name:<30} {t:>8.3f} {ratio:>7} {frac_s:>22}")
    print(
        "roofline s (numpy arccos / rational arccos): "
        f"{roof['seconds']['arccos_numpy']:.3f} / "
        f"{roof['seconds']['arccos_rational']:.3f}; gemm {roof['seconds_gemm']:.3f}, "
        f"write {roof['seconds_write']:.3f}"
    )
    for name, a in agreement.items():
        print(f"agreement {name}: {a}")

    now = datetime.datetime.now(datetime.timezone.utc)
    record = {
        "benchmark": "bench_vs_neural_tangents",
        "date": now.isoformat(timespec="seconds"),
        "label": args.label,
        "device": "cpu",
        "dtype": "float64",
        "n": n,
        "d": d,
        "depth": depth,
        "activation": "relu",
        "weight_std": weight_std,
        "bias_std": bias_std,
        "symmetric": True,
        "repeat": args.repeat,
        "baseline": "neural_tangents jitted kernel_fn" if nt is not None else None,
        "baseline_versions": versions,
        "load_before": load_before,
        "load_after": load_after,
        "seconds": best,
        "ratio_vs_neural_tangents": ratios,
        "rates": rates,
        "roofline": roof,
        "roofline_fraction": fractions,
        "agreement_max_rel_diff_overall_offdiag": agreement,
        "targets": {"ratio_vs_neural_tangents": ">= 6 (moonshot 10)"},
        "machine": machine_info(),
    }
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"kernels_{now.date().isoformat()}_cpu.jsonl"
        with path.open("a") as fh:
            fh.write(line + "\n")
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
