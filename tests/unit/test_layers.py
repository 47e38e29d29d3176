"""The layers are folders, and lower ones never import higher ones (DESIGN.md, "Layout").

Read from the source with :mod:`ast`, so every import counts: inside
functions and under ``if TYPE_CHECKING:`` too. Ranks, lowest first::

    core                      imports nothing of ours
    policy, edges             import core (never each other)
    runtime                   imports policy and edges
    gateway, replay, langchain
                              import runtime (never each other)
    cli                       the command line, over all of them

No module imports itself back through any chain (no cycle), and no module is
over ~400 lines (pykka's and anyio's habit: one concern per module).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "actors"
RANK = {"core": 0, "policy": 1, "edges": 1, "runtime": 2, "gateway": 3, "replay": 3, "langchain": 3, "cli": 4}
MAX_LINES = 420


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``actors...`` modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "actors")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] == "actors":
                found.add(module)
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {_module_name(p): _imports(p) for p in SOURCES}


def test_the_graph_sees_the_layers() -> None:
    """The walk finds modules in every layer, and their imports (it would pass vacuously on nothing)."""
    assert {_layer(m) for m in GRAPH} >= set(RANK)
    assert "actors.core.messages" in GRAPH["actors.policy.priority_selector"]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _layer(m)))
def test_lower_layers_never_import_higher_ones(module: str) -> None:
    """A module imports only from its own layer or a lower rank, never a peer layer."""
    mine = _layer(module)
    assert mine is not None
    bad = []
    for target in sorted(GRAPH[module]):
        theirs = _layer(target)
        if theirs is None:
            if target != "actors":  # the top-level face (actors/__init__, testing, ...) is above all layers
                bad.append(target)
            continue
        if theirs != mine and RANK[theirs] >= RANK[mine]:
            bad.append(target)
    assert bad == [], f"{module} imports {bad}"


def test_no_import_cycle() -> None:
    """No module reaches itself through its imports, not even under TYPE_CHECKING."""
    def targets(module: str) -> set[str]:
        out = set()
        for t in GRAPH.get(module, ()):
            # ``from actors.x import y`` may name a submodule y: count the package and the module.
            out.add(t)
        return {t for t in out if t in GRAPH}

    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(targets(module)):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_is_too_long(path: Path) -> None:
    """Every module holds one concern: at most ~400 lines."""
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split its pure helpers out"
