"""The package's modules import each other in one direction only: no circle, however hidden.

Every import counts: at module level, inside functions, and under
``TYPE_CHECKING``. A circle of imports is how the first runtime's layers
leaked into each other (nine modules, hidden by imports inside functions).
"""

from __future__ import annotations

import ast
from pathlib import Path

import vactor_cloud

PACKAGE = Path(vactor_cloud.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            owner = target
            while owner and owner not in known:
                owner = owner.rpartition(".")[0]
            if owner and owner != name:
                found.add(owner)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_package_has_no_import_circle() -> None:
    modules = _modules()
    known = set(modules)
    # The package's own __init__ only re-exports (lazily): importing ``vactor_cloud`` is
    # how users and tools reach everything, so edges *into* it are not layering.
    graph = {
        name: {t for t in _imports(name, path, known) if t != "vactor_cloud"}
        for name, path in modules.items()
    }
    assert _cycles(graph) == []


def test_the_circle_detector_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: what the core never imports
ABOVE_THE_CORE = frozenset(
    {
        "vactor_cloud.runtime",
        "vactor_cloud.handle",
        "vactor_cloud.actor",
        "vactor_cloud.events",
        "vactor_cloud.inbox",
        "vactor_cloud.history",
    }
)


def test_the_core_does_not_reach_up_to_handles_events_or_the_runtime() -> None:
    modules = _modules()
    known = set(modules)
    core = _imports("vactor_cloud.core", modules["vactor_cloud.core"], known)
    assert not core & ABOVE_THE_CORE


def test_contention_combining_sits_below_the_core() -> None:
    """The poster's side and the folder's side of combining are parts of ``ActorCore`` (its
    bases): what they need of the core they declare, and neither imports it; the folder's
    side builds on the poster's, never the reverse."""
    modules = _modules()
    known = set(modules)
    poster = _imports("vactor_cloud.poster", modules["vactor_cloud.poster"], known)
    folding = _imports("vactor_cloud.folding", modules["vactor_cloud.folding"], known)
    assert not poster & {"vactor_cloud.core", "vactor_cloud.folding"}
    assert "vactor_cloud.core" not in folding
    # (The core reaches both through its commit loop, ``vactor_cloud.committer`` and its parts.)
    loop = set().union(
        *(
            _imports(name, modules[name], known)
            for name in (
                "vactor_cloud.committer",
                "vactor_cloud.attempt_stops",
                "vactor_cloud.step_attempt",
                "vactor_cloud.after_commit",
            )
        )
    )
    assert {"vactor_cloud.poster", "vactor_cloud.folding"} <= loop
