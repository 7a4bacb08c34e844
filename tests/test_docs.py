"""The documentation builds with warnings as errors, and docstrings are complete.

The build test runs Sphinx on ``docs/`` as ``make -C docs html`` does, but
renders the gallery without executing it (``tests/test_examples.py`` runs the
examples). The docstring tests apply ``numpydoc.validate`` to every public
object, as scikit-learn does.
"""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sknetk

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Modules whose ``__all__`` is public API documented in ``docs/api.rst``.
PUBLIC_MODULES = (
    "kernels",
    "dynamics",
    "spectrum",
    "exceptions",
    "gaussian_process",
    "empirical",
    "conv",
)

#: numpydoc checks that are not enforced, for every object:
#: ES01 (an extended summary) and SA01 (a See Also section) are optional;
#: RT02 would forbid naming returned values (``K : ndarray``), which these
#: docstrings do, as scikit-learn's do.
IGNORED_EVERYWHERE = {"ES01", "SA01", "RT02"}
#: Methods and exception classes need no Examples section of their own; public
#: classes and functions do.
IGNORED_FOR_METHODS = IGNORED_EVERYWHERE | {"EX01"}


def _public_objects():
    """``(import path, is_method_or_exception)`` for every public object."""
    found = []
    for name in sknetk.__all__:
        obj = getattr(sknetk, name)
        if inspect.isclass(obj):
            found.append((f"sknetk.{name}", False))
            for attr, value in vars(obj).items():
                if attr.startswith("_") or (
                    attr.startswith("set_") and attr.endswith("_request")
                ):
                    continue
                if inspect.isfunction(value) or isinstance(value, property):
                    found.append((f"sknetk.{name}.{attr}", True))
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(f"sknetk.{module_name}")
        for name in module.__all__:
            obj = getattr(module, name)
            if not callable(obj):
                continue  # constants such as ACTIVATION_NAMES
            is_exception = inspect.isclass(obj) and issubclass(obj, BaseException)
            found.append((f"sknetk.{module_name}.{name}", is_exception))
    found.append(("sknetk.cli.main", False))
    return found


PUBLIC_OBJECTS = _public_objects()


def test_public_objects_found():
    """The docstring tests cover the estimators and the kernel functions."""
    paths = {path for path, _ in PUBLIC_OBJECTS}
    assert {
        "sknetk.NTKRegressor",
        "sknetk.NTKRegressor.fit",
        "sknetk.kernels.ntk_kernel",
    } <= paths


@pytest.mark.parametrize(
    "import_path, is_method", PUBLIC_OBJECTS, ids=[p for p, _ in PUBLIC_OBJECTS]
)
def test_docstring(import_path, is_method):
    """numpydoc.validate finds no error outside the documented ignore list."""
    validate = pytest.importorskip("numpydoc.validate").validate
    ignored = IGNORED_FOR_METHODS if is_method else IGNORED_EVERYWHERE
    errors = [
        f"{code}: {message}"
        for code, message in validate(import_path)["errors"]
        if code not in ignored
    ]
    assert not errors, f"{import_path}:\n" + "\n".join(errors)


def _api_entries():
    """Names listed under autosummary directives in docs/api.rst, qualified."""
    entries, module = set(), "sknetk"
    in_autosummary = False
    for line in (DOCS / "api.rst").read_text().splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line)
        if match:
            module = match.group(1)
        if line.startswith(".. autosummary::"):
            in_autosummary = True
            continue
        if in_autosummary:
            if line and not line.startswith(" "):
                in_autosummary = False
            elif line.strip() and not line.strip().startswith(":"):
                entries.add(f"{module}.{line.strip()}")
    return entries


def test_api_reference_lists_every_public_name():
    """docs/api.rst names every public class and function, and nothing else."""
    expected = {
        path
        for path, is_method in PUBLIC_OBJECTS
        if path.count(".") == 1
        or not is_method
        or path.startswith("sknetk.exceptions.")
    }
    listed = _api_entries()
    assert expected - listed == set(), "missing from docs/api.rst"
    for entry in listed:  # every listed name exists
        module, name = entry.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), entry


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    """Sphinx builds the HTML docs with -W (warnings are errors)."""
    for module in ("sphinx", "sphinx_gallery", "numpydoc", "matplotlib"):
        pytest.importorskip(module)
    env = {
        **os.environ,
        "SKNETK_DOCS_NO_GALLERY_EXEC": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    out = tmp_path / "html"
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "-q",
        "-d",
        str(tmp_path / "doctrees"),
        str(DOCS),
        str(out),
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    for page in (
        "index.html",
        "api.html",
        "install.html",
        "user_guide.html",
        "whats_new.html",
        "auto_examples/index.html",
        "auto_examples/plot_fourier_features.html",
        "generated/sknetk.NTKRegressor.html",
        "generated/sknetk.kernels.ntk_kernel.html",
    ):
        assert (out / page).is_file(), page
    # The command-line section is linked from the user guide.
    assert 'id="command-line"' in (out / "user_guide.html").read_text()
