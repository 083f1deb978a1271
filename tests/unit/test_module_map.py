"""The module map: imports go one way (no cycles) in the engine (bridge/ with its subpackages:
the batch and its parts, the pure core, the store), in the web app and in the stream processors.
Every import counts, wherever it stands in a file: at the top, inside a function, under ``if
TYPE_CHECKING:``. The app's shared keys come from approvals/keys.py, not from another handler
module."""

from __future__ import annotations

import ast
from pathlib import Path

from aiohttp import web

import approvals.keys

ROOT = Path(__file__).resolve().parents[2]


def modules_of(package: str) -> dict[str, Path]:
    """The dotted name of every module of ``package`` and its subpackages (a package by its own
    name, for its __init__.py), with its file."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package (subpackages included) it imports, at any level
    of the file. ``from p import name`` counts as an import of p.name when that is a module, else
    of p itself."""
    modules = modules_of(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        found.add(f"{node.module}.{alias.name}")
                    elif node.module in modules:
                        found.add(node.module)
        graph[name] = found - {name}
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_web_app_and_the_stream_processors_import_one_way() -> None:
    assert cycle_in(imports_of("approvals")) is None
    assert cycle_in(imports_of("processors")) is None


def test_the_engine_imports_one_way() -> None:
    graph = imports_of("bridge")
    # The graph is the real one: subpackages, type-only imports and function-level ones count.
    assert "bridge.asl.interpreter" in graph["bridge.batch"]
    assert "bridge.batch_parts" in graph["bridge.correlate"]
    assert "bridge.engine" in graph["bridge.bootstrap"]
    assert "bridge.local" in graph["bridge"]
    assert cycle_in(graph) is None


def test_the_check_sees_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_app_keys_live_in_one_module() -> None:
    keys = {name for name, value in vars(approvals.keys).items() if isinstance(value, web.AppKey)}
    assert {"ENGINE", "SECRET", "PUBLIC_ORIGIN", "PRODUCER"} <= keys
    borrowed = []
    for path in sorted((ROOT / "approvals").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("approvals.")
                and node.module != "approvals.keys"
            ):
                borrowed += [
                    f"{path.name}: {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name in keys
                ]
    assert borrowed == []


def test_every_error_the_bridge_defines_descends_from_one_root() -> None:
    import importlib
    import inspect
    import pkgutil

    import approvals
    import bridge
    import processors
    from bridge.asl.errors import BridgeError

    strays = []
    for package in (bridge, processors, approvals):
        for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in found.name or found.name.endswith(".__main__"):
                continue
            module = importlib.import_module(found.name)
            for name, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and value.__module__ == module.__name__
                    and not issubclass(value, BridgeError)
                ):
                    strays.append(f"{module.__name__}.{name}")
    assert strays == []
