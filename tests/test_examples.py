"""Run every gallery example ``examples/plot_*.py`` as a user would.

Each example runs in a fresh interpreter with ``MPLBACKEND=Agg`` from a
temporary folder; it must exit cleanly, draw at least one figure and print no
warning. An example is skipped only when a sknetk name it imports does not
exist (yet) in this checkout, and the reason names it.
"""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PLOT_EXAMPLES = sorted(EXAMPLES.glob("plot_*.py"))
ALL_EXAMPLES = sorted(EXAMPLES.glob("*.py"))

# Runs the example as __main__ and reports how many figures it left open.
RUNNER = """
import runpy, sys
import matplotlib.pyplot as plt
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
print("N_FIGURES", len(plt.get_fignums()))
"""


def _sknetk_imports(path):
    """``(module, name or None)`` for every sknetk import in a script."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and (node.module == "sknetk" or node.module.startswith("sknetk."))
        ):
            found.extend((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(
                (alias.name, None)
                for alias in node.names
                if alias.name == "sknetk" or alias.name.startswith("sknetk.")
            )
    return found


def _missing_sknetk_names(path):
    """The sknetk imports of ``path`` that this checkout cannot satisfy."""
    missing = []
    for module, name in _sknetk_imports(path):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            missing.append(module)
            continue
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    return missing


def test_examples_found():
    """The gallery is not empty, so the parametrized test below is not vacuous."""
    assert len(PLOT_EXAMPLES) >= 5


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: p.name)
def test_example_has_banner_and_cells(path):
    """Each example opens with a title banner and a paragraph, in ``# %%`` cells."""
    source = path.read_text()
    doc = ast.get_docstring(ast.parse(source), clean=False)
    assert doc is not None, "no module docstring"
    lines = doc.strip("\n").splitlines()
    assert set(lines[0]) == {"="} and set(lines[2]) == {"="}, "no title banner"
    assert len(lines[0]) >= len(lines[1].strip()), "banner shorter than the title"
    paragraphs = [p for p in doc.split("\n\n")[1:] if p.strip()]
    assert paragraphs, "no paragraph after the title"
    assert "# %%" in source, "no '# %%' cells"


@pytest.mark.slow
@pytest.mark.parametrize("path", PLOT_EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, tmp_path):
    """The example runs to the end under Agg, draws figures and prints no warning."""
    missing = _missing_sknetk_names(path)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}, not in this checkout")
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    n_figures = int(proc.stdout.rsplit("N_FIGURES", 1)[1])
    assert n_figures >= 1
    assert "Warning" not in proc.stderr, proc.stderr[-4000:]
