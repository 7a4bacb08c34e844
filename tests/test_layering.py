"""Imports inside the package run downward and use only public names.

Every module of ``sknetk`` is parsed (never imported) and all its import
statements, at module level and inside functions, relative and absolute, make
a graph of the package's modules. The tests fail on any import cycle (a
function-level import does not hide one), on an import of a module of a
higher layer of ``LAYERS`` (the module map of ``docs/contributing.rst``; a new
module must be placed there), and on a name with a leading
underscore taken from another module of the package (``from ._x import _y``,
``from . import _x`` followed by ``_x._y``), unless the pair is listed in
``PRIVATE_IMPORTS_ALLOWED`` below. Private *modules* are fine: what a module
shares with the rest of the package is spelled without an underscore, and what
the package shares with users is exported from ``sknetk/__init__.py`` (and
documented in docs/api.rst).

To allow a new cross-module use of a private name, add one
``(importer, source, name)`` entry with a one-line comment saying why the name
stays private; better, drop the underscore at the definition (the module
being private, the name is still internal to the package).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "sknetk"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# (importing module, defining module, private name) -> why it is allowed.
# Module names without the package prefix ("" is the package itself). Keep
# this short; an entry no longer used fails test_whitelist_has_no_stale_entries.
PRIVATE_IMPORTS_ALLOWED = {
    ("_regression", "_base", "_BaseNTK"): "the estimators' base class",
    ("_classification", "_base", "_BaseNTK"): "the estimators' base class",
}


# The package's layers, bottom first (module names without the package
# prefix; "" is the package itself). A module imports from its own layer or
# the layers below it, never above (cycles inside a layer are caught by
# test_no_import_cycles). docs/contributing.rst shows the same table.
LAYERS = (
    (
        "foundations",
        {"_array_api", "_activations", "_device", "_progress", "_forward_mode"}
        | {"_params", "exceptions"},
    ),
    ("numerics", {"_linalg", "_recursion", "_solver", "_conv", "_conv_compiled"}),
    (
        "kernels and functions of them",
        {"_cuda", "_conv_cuda", "kernels", "conv", "empirical", "gaussian_process"}
        | {"fourier"}
        | {"dynamics", "_gpu_solve", "_dask", "_cache"},
    ),
    ("solvers", {"_nystrom", "_calibration", "_solvers"}),
    (
        "estimators",
        {"_base", "_regression", "_classification", "_cv", "_conv_estimators"}
        | {"spectrum"},
    ),
    ("entry points", {"cli", "__main__", ""}),
)


def _module_name(path):
    """Dotted module name of a file under the package (``sknetk._base``)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer, level, module):
    """Absolute name of the module in ``from <level dots><module> import ...``."""
    if level == 0:
        return module
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _imports(name):
    """``(edges, private)`` of module ``name``.

    ``edges``: the package's modules it imports (anywhere in the file), with
    the line. ``private``: ``(source module, private name, line)`` for every
    private name it takes from another of the package's modules.
    """
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    edges, private = [], []
    module_aliases = {}  # local name -> package module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    edges.append((alias.name, node.lineno))
                    if alias.asname:
                        module_aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, node.level, node.module)
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # ``from . import _x``: a module
                    edges.append((submodule, node.lineno))
                    module_aliases[alias.asname or alias.name] = submodule
                    continue
                edges.append((source, node.lineno))
                if _is_private(alias.name) and source != name:
                    private.append((source, alias.name, node.lineno))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and _is_private(node.attr)
            and module_aliases[node.value.id] != name
        ):
            private.append((module_aliases[node.value.id], node.attr, node.lineno))
    return edges, private


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _short(module):
    return module[len(PACKAGE) + 1 :] if module != PACKAGE else ""


GRAPH = {name: _imports(name) for name in MODULES}


def _find_cycle(graph):
    """One import cycle as a list of modules (first == last), or ``None``."""
    state = {}  # module -> "active" while on the stack, "done" after
    stack = []

    def visit(node):
        state[node] = "active"
        stack.append(node)
        for target, _ in graph[node]:
            if target == node or target not in graph:
                continue
            if state.get(target) == "active":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_every_module_is_parsed():
    # the walk sees the package's modules (a wrong ROOT would pass vacuously)
    assert {"sknetk", "sknetk.kernels", "sknetk._base"} <= set(MODULES)
    assert GRAPH["sknetk"][0], "sknetk/__init__.py imports nothing?"


def test_no_import_cycles():
    edges = {name: GRAPH[name][0] for name in GRAPH}
    cycle = _find_cycle(edges)
    if cycle:
        lines = []
        for a, b in zip(cycle, cycle[1:]):
            line = min(n for target, n in edges[a] if target == b)
            lines.append(f"{MODULES[a].relative_to(ROOT.parent)}:{line} imports {b}")
        pytest.fail("import cycle " + " -> ".join(cycle) + ":\n" + "\n".join(lines))


def _layer_of():
    return {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}


def test_every_module_has_one_layer():
    placed = [module for _, modules in LAYERS for module in modules]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    layer = _layer_of()
    missing = sorted(
        str(MODULES[name].relative_to(ROOT.parent))
        for name in MODULES
        if _short(name) not in layer
    )
    assert not missing, (
        f"place these modules in LAYERS (tests/test_layering.py) and in the "
        f"module map of docs/contributing.rst: {missing}"
    )


def test_imports_run_down_the_layers():
    layer = _layer_of()
    messages = []
    for name, (edges, _) in sorted(GRAPH.items()):
        here = layer.get(_short(name))
        for target, line in edges:
            there = layer.get(_short(target))
            if here is not None and there is not None and there > here:
                messages.append(
                    f"{MODULES[name].relative_to(ROOT.parent)}:{line} "
                    f"({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})"
                )
    assert not messages, "imports up the layers:\n" + "\n".join(messages)


def test_no_private_names_across_modules():
    found = set()
    messages = []
    for name, (_, private) in sorted(GRAPH.items()):
        for source, attr, line in private:
            key = (_short(name), _short(source), attr)
            found.add(key)
            if key not in PRIVATE_IMPORTS_ALLOWED:
                messages.append(
                    f"{MODULES[name].relative_to(ROOT.parent)}:{line} uses "
                    f"{source}.{attr}"
                )
    assert not messages, (
        "private names used across modules (make the name public inside the "
        "package, or whitelist it with a reason):\n" + "\n".join(messages)
    )


def test_whitelist_has_no_stale_entries():
    found = {
        (_short(name), _short(source), attr)
        for name, (_, private) in GRAPH.items()
        for source, attr, _ in private
    }
    stale = sorted(set(PRIVATE_IMPORTS_ALLOWED) - found)
    assert not stale, f"whitelisted but no longer used, remove: {stale}"


def test_cycle_finder_and_resolver():
    # the checks above are only as good as these two helpers
    assert _find_cycle({"a": [("b", 1)], "b": [("c", 2)], "c": []}) is None
    assert _find_cycle({"a": [("b", 1)], "b": [("a", 2)]}) == ["a", "b", "a"]
    assert _resolve("sknetk._cuda", 1, "kernels") == "sknetk.kernels"
    assert _resolve("sknetk._cuda", 1, None) == "sknetk"
    assert _resolve("sknetk", 1, "kernels") == "sknetk.kernels"
    assert _resolve("sknetk.cli", 0, "sknetk.kernels") == "sknetk.kernels"
