"""The package's layers: no import circle between modules, lower layers never import upper ones,
and no experiment module grows past about 500 lines.

The graph is built from the source with ``ast``: only module-level ``import`` / ``from ... import``
statements count (relative imports resolved). Imports inside functions (deliberately lazy) and
under ``if TYPE_CHECKING:`` (annotations only) are left out: they do not run at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import netbonsai

PACKAGE = "netbonsai"
SOURCE = Path(netbonsai.__file__).resolve().parent

# layer -> the layers it must not import (each a subpackage or module of netbonsai)
FORBIDDEN = {
    "nets": ("grow", "prune", "gates", "surgery", "residual", "search", "methods", "experiments", "cli"),
    "data": ("grow", "prune", "gates", "surgery", "residual", "search", "methods", "experiments", "cli"),
    "train": ("grow", "prune", "gates", "surgery", "residual", "search", "methods", "experiments", "cli"),
    "analysis": ("search", "methods", "experiments", "cli"),
    "gates": ("grow", "prune", "surgery", "methods", "experiments", "cli"),
    "surgery": ("grow", "prune", "methods", "experiments", "cli"),
    "residual": ("grow", "prune", "gates", "surgery", "search", "methods", "experiments", "cli"),
    "search": ("grow", "prune", "gates", "surgery", "residual", "methods", "experiments", "cli"),
    "methods": ("experiments", "cli"),
}
MAX_EXPERIMENT_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(body: list[ast.stmt]):
    """Import statements that run when the module is imported (into if/try blocks, not into
    functions, classes or ``if TYPE_CHECKING:``)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level_imports(block)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> nx.DiGraph:
    """Module -> the netbonsai modules it imports at module level."""
    paths = {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, module, is_package)
                # ``from pkg import name``: the submodule pkg.name when there is one, else pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            for target in targets:
                while target and target not in paths:  # ``import a.b.c`` of a name inside a module
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != module:
                    graph.add_edge(module, target)
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_import_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "netbonsai.experiments.image_runs" in graph
    assert graph.has_edge("netbonsai.methods.dense", "netbonsai.train.sweep")
    assert graph.has_edge("netbonsai.cli_progress", "netbonsai.runs")  # the CLI reporter


def test_no_import_cycle() -> None:
    graph = import_graph()
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    pytest.fail("import cycle: " + " -> ".join([a for a, _ in cycle] + [cycle[-1][1]]))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(layer: str) -> None:
    graph = import_graph()
    wrong = sorted(
        f"{source} imports {target}"
        for source, target in graph.edges
        if _layer(source) == layer and _layer(target) in FORBIDDEN[layer]
    )
    assert not wrong, "\n".join(wrong)


def test_experiment_modules_stay_short() -> None:
    long = {path.name: n for path in sorted((SOURCE / "experiments").glob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_EXPERIMENT_LINES}
    assert not long, f"over {MAX_EXPERIMENT_LINES} lines (split them by job): {long}"
