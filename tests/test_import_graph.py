"""scaling_rec's modules import each other without cycles (lazy imports inside functions included).

A cycle makes import order matter and hides which module is the lower layer; the usual fix is to move
what both sides share into a third module.
"""

from __future__ import annotations

import ast
import pathlib

import scaling_rec

PACKAGE = pathlib.Path(scaling_rec.__file__).resolve().parent

# The one cycle left, with its modules: load_events (issue 18, 4909e07) opens a prepared directory through
# scaling_rec.data.prepared, which reads logs through scaling_rec.data.events. Breaking it moves that
# directory dispatch to the caller (scaling_rec.data.registry) or the shared readers to a third module; then
# delete this entry (test_the_allowed_cycle_is_still_there says when).
ALLOWED_CYCLE = frozenset({"scaling_rec.data.events", "scaling_rec.data.prepared"})


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The scaling_rec modules `module` imports anywhere in its body (not under `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import submodule` imports the submodule, else a name of pkg
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
    """module -> the scaling_rec modules it imports."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {m: _imported(ast.parse(p.read_text()), m, p.name == "__init__.py", modules) for m, p in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle [a, b, ..., a] of `graph`, or None (depth-first search with three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "scaling_rec.models.ctr_common" in graph["scaling_rec.models.ctr.dlrm"]
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100


def _without_allowed_cycle(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: deps - ALLOWED_CYCLE if m in ALLOWED_CYCLE else deps for m, deps in graph.items()}


def test_the_allowed_cycle_is_still_there():
    graph = import_graph()
    cycle = find_cycle({m: graph[m] & ALLOWED_CYCLE for m in ALLOWED_CYCLE})
    assert cycle is not None, "scaling_rec.data.events and .prepared no longer form a cycle: delete ALLOWED_CYCLE"


def test_scaling_rec_has_no_import_cycle():
    cycle = find_cycle(_without_allowed_cycle(import_graph()))
    assert cycle is None, (
        "import cycle in scaling_rec: " + " -> ".join(cycle) + ". Move what the modules share into a third "
        "module that both import (as scaling_rec/kernels/hstu_pallas_layout.py does for the Pallas kernels).")
