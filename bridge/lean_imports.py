"""SQLAlchemy's asyncio engine without its ORM: about 6 MiB less in every bridge process.

The package module ``sqlalchemy.ext.asyncio`` imports its ORM session classes along with the
engine, and the ORM is about 6 MiB of a bridge process's resident memory (bench/README.md). The
bridge uses only the engine's names (``AsyncEngine``, ``AsyncConnection``, ``create_async_engine``,
the results). ``install()`` puts a finder in front of Python's own for that one module: it loads
the package's ``engine`` and ``result`` submodules and the names its ``__init__`` takes from them,
and runs the rest of the real ``__init__`` (sessions, scoping) the first time any other name is
asked for, so code that wants ``AsyncSession`` still gets it. Anything unexpected falls back to
the ordinary import.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

PACKAGE = "sqlalchemy.ext.asyncio"
#: The package's submodules that hold the engine; importing them does not import the ORM.
ENGINE_PARTS = frozenset({"engine", "result"})


class _EngineFirst(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader, init_source: str) -> None:
        self.real = real
        self.init_source = init_source

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        names = _engine_names(self.init_source)
        if not names:
            self.real.exec_module(module)
            return
        try:
            for part, found in names.items():
                source = importlib.import_module(f"{PACKAGE}.{part}")
                for name, alias in found:
                    setattr(module, alias, getattr(source, name))
        except (ImportError, AttributeError):  # the package's layout changed: import it whole
            self.real.exec_module(module)
            return
        real = self.real

        def rest(name: str) -> object:
            if name.startswith("__"):
                raise AttributeError(name)
            del module.__getattr__
            real.exec_module(module)
            try:
                return module.__dict__[name]
            except KeyError:
                raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

        module.__getattr__ = rest  # type: ignore[method-assign]


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or spec.origin is None:
            return None
        try:
            with open(spec.origin, encoding="utf-8") as file:
                source = file.read()
        except OSError:
            return None
        spec.loader = _EngineFirst(spec.loader, source)
        return spec


def _engine_names(init_source: str) -> dict[str, list[tuple[str, str]]]:
    """What the package's ``__init__`` imports from its engine parts, as (name, alias) pairs:
    ``{"engine": [("AsyncEngine", "AsyncEngine"), ...]}``."""
    try:
        tree = ast.parse(init_source)
    except SyntaxError:
        return {}
    found: dict[str, list[tuple[str, str]]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in ENGINE_PARTS:
            found.setdefault(node.module, []).extend(
                (alias.name, alias.asname or alias.name) for alias in node.names
            )
    return found


def install() -> None:
    """Before anything imports ``sqlalchemy.ext.asyncio``; does nothing after."""
    if PACKAGE in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
