"""Sphinx configuration for the sknetk documentation.

Build with ``make -C docs html`` or, equivalently::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Set ``SKNETK_DOCS_NO_GALLERY_EXEC=1`` to render the gallery without running the
examples (the test suite does this to keep the build fast).
"""

import os
import sys
import warnings

# Document the checkout this file belongs to, installed or not.
sys.path.insert(0, os.path.abspath(".."))

import sknetk  # noqa: E402

project = "sknetk"
author = "The sknetk developers"
copyright = "The sknetk developers"
version = release = sknetk.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "README_section.md",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "sg_execution_times.rst",
]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False



def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters.

    ``set_fit_request`` and friends are created by scikit-learn on every
    estimator whose methods take ``sample_weight``; their docstrings point
    into scikit-learn's own documentation.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)


# -- intersphinx is off: the build must work without network -----------------

# -- sphinx-gallery -----------------------------------------------------------
_execute = os.environ.get("SKNETK_DOCS_NO_GALLERY_EXEC", "") in ("", "0")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Only plot_*.py run; bench_*.py are rendered with their code, not run.
    "filename_pattern": r"plot_",
    "ignore_pattern": r"__init__\.py|/_",
    "plot_gallery": "True" if _execute else "False",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 1,
    "matplotlib_animations": False,
}

# Examples run in this process: keep matplotlib off screens.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message="Matplotlib is currently using agg",
)

# -- HTML ----------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "Infinite-width neural network kernels for scikit-learn",
    "fixed_sidebar": True,
}
html_static_path = []
html_show_sourcelink = False
