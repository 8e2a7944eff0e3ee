"""The layout DESIGN.md draws: imports run one way (flows -> tasks -> blocks -> profiles ->
voxflow), nothing imports a flow from below, and no module takes part in an import cycle, with
the imports inside functions counted too (a lazy import hides a cycle; it does not break one).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("flows", "tasks", "blocks", "profiles", "voxflow")
"""Top to bottom: a package may import itself and those after it, never one before it."""


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its body."""
    modules = {_module(path): path for layer in LAYERS for path in (ROOT / layer).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from a.b import c` imports a.b.c when c is a module, else a name of a.b.
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(f"{target}."):
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_takes_part_in_an_import_cycle():
    assert _cycles(_graph()) == []


def test_imports_run_one_way():
    upward = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        for target in targets
        if LAYERS.index(target.split(".")[0]) < LAYERS.index(name.split(".")[0])
    ]
    assert upward == []


def test_the_finder_sees_a_cycle_and_an_upward_import():
    """The checks above can fail: on a made-up graph they find what they look for."""
    graph = {"flows.a": {"flows.b"}, "flows.b": {"flows.a", "tasks.c"}, "tasks.c": set()}
    assert _cycles(graph) == [["flows.a", "flows.b"]]
    assert _cycles({"flows.a": {"tasks.c"}, "tasks.c": set()}) == []
