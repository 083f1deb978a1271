"""The module map: imports between the web app's modules, and between the stream processors', go
one way (no cycles, function-level imports included), and the app's shared keys come from
approvals/keys.py, not from another handler module. (bridge/ still has cycles through type-only
imports: the batch's parts take the batch itself.)"""

from __future__ import annotations

import ast
from pathlib import Path

from aiohttp import web

import approvals.keys

ROOT = Path(__file__).resolve().parents[2]


def imports_of(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (at any level of the file)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).glob("*.py")):
        name = path.stem
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == package:
                    found |= {alias.name for alias in node.names}
                elif node.module.startswith(package + "."):
                    found.add(node.module.split(".")[1])
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
