"""``flyteauth_core`` has no import cycle, counting every import: module level, inside functions, and under
``TYPE_CHECKING``.  A cycle hidden in a function or a type-only import still couples two modules both ways.

The graph is read from the source with ``ast`` (nothing is imported), so the check is exact and fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "flyteauth_core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    # `from . import x` / `from .pkg import mod` may name submodules
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "_proto" not in p.parts}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(name, is_package, node)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    # the package's own __init__ re-exports everything; importing `flyteauth_core.x` runs it, but a module
    # inside the package depending on its parent package is not a design cycle: leave the root out.
    graph.pop("flyteauth_core", None)
    for deps in graph.values():
        deps.discard("flyteauth_core")
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    assert "flyteauth_core.config" in graph["flyteauth_core.types"]  # under TYPE_CHECKING
    assert "flyteauth_core.plugins" in graph["flyteauth_core.config"]  # inside load_config
    assert "flyteauth_core.transports.grpc_sync" in graph["flyteauth_core.session"]  # inside a method


def test_find_cycle_reports_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_flyteauth_core_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_plugin_contract_modules_are_leaves() -> None:
    """What a plugin imports (types, protocols, options, parsers, hookspecs) pulls in no machinery."""
    graph = import_graph()
    allowed = {"flyteauth_core.errors", "flyteauth_core.token", "flyteauth_core.events", "flyteauth_core.parsers",
               "flyteauth_core.options", "flyteauth_core.hookspecs", "flyteauth_core.types",
               "flyteauth_core.config", "flyteauth_core.discovery"}  # the last two: type-only, for annotations
    for leaf in ("types", "protocols", "options", "parsers", "hookspecs"):
        extra = graph[f"flyteauth_core.{leaf}"] - allowed
        assert not extra, f"{leaf} imports {extra}"
