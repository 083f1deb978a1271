"""Definitions at run time: loading files, deploying versions to the store, the live registry."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.aliases import Route, route_problems
from bridge.asl.errors import BridgeError, DefinitionError
from bridge.asl.loading import parse_definition
from bridge.asl.model import Definition, EventInterest, Trigger, event_interests
from bridge.schedule_setup import sync_declared
from bridge.store import aliases as stored_aliases
from bridge.store import definitions as stored
from bridge.store.aliases import Alias
from bridge.store.database import database_now, reading

SUFFIXES = (".asl.json", ".asl.yaml", ".asl.yml", ".json", ".yaml", ".yml")


def _examples_dir() -> Path:
    """The shipped examples: the checkout's examples/ folder, or (installed from a wheel) the
    package's copy of it."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "examples"
    return checkout if (checkout / "order-saga.asl.yaml").is_file() else here / "examples"


EXAMPLES_DIR = _examples_dir()


def definition_name(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_document(path: Path) -> dict[str, Any]:
    """A definition file as a JSON object; ``DefinitionError`` if it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.name.endswith(".json") else _yaml_document(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DefinitionError([f"{path.name}: cannot be read: {exc}"]) from None
    if not isinstance(document, dict):
        raise DefinitionError([f"{path.name}: the definition must be a JSON/YAML object"])
    return document


def definition_files(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.iterdir() if path.is_file() and path.name.endswith(SUFFIXES)
    )


def load_file(path: Path) -> tuple[str, dict[str, Any]]:
    """Read and validate one file; ``DefinitionError`` names the file, state and field."""
    name = definition_name(path)
    document = read_document(path)
    try:
        parse_definition(document, name)
    except DefinitionError as exc:
        raise DefinitionError([f"{path.name}: {problem}" for problem in exc.problems]) from None
    return name, document


@dataclass(frozen=True)
class Deployed:
    name: str
    version: int
    new: bool


async def deploy(
    db: AsyncEngine, documents: Iterable[tuple[str, dict[str, Any]]]
) -> list[Deployed]:
    """Store each document as a new version when it differs from the newest one."""
    result = []
    for name, document in documents:
        for attempt in range(5):
            try:
                async with db.begin() as conn:
                    now = await database_now(conn)
                    version, new = await stored.add_version(conn, name, document, now)
                    if new:
                        # The newest version's Schedules hold, from the moment it is deployed.
                        definition = parse_definition(document, name, version.version)
                        await sync_declared(conn, definition, now)
                break
            except stored.IntegrityError:
                if attempt == 4:
                    raise
        result.append(Deployed(name, version.version, new))
    return result


async def set_alias(
    db: AsyncEngine, definition: str, name: str, description: str, routes: Sequence[Route]
) -> Alias | list[str]:
    """Create or change an alias once its routes name deployed versions; else the problems."""
    async with db.begin() as conn:
        known = set(await stored.versions_of(conn, definition))
        problems = route_problems(routes, known)
        if problems:
            return problems
        alias = Alias(definition, name, description, tuple(routes), await database_now(conn))
        await stored_aliases.put(conn, alias)
    return alias


class MissingDefinition(BridgeError):
    """A process, or a start, names a definition version this registry has not loaded (deployed
    through another replica since): the engine refreshes the registry and runs the batch again."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"definition {name} v{version} is not loaded")
        self.name = name
        self.version = version


class Registry:
    """Every deployed version, parsed once; processes keep the version they started on."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, int], Definition] = {}
        self._latest: dict[str, Definition] = {}
        self._interests: dict[str, dict[EventInterest, None]] = {}

    def add(self, definition: Definition) -> None:
        self._versions[(definition.name, definition.version)] = definition
        current = self._latest.get(definition.name)
        if current is None or definition.version > current.version:
            self._latest[definition.name] = definition
        # Every version counts: a process on an old version may still wait for its events.
        for interest in event_interests(definition):
            self._interests.setdefault(interest.topic, {})[interest] = None

    def interests(self, topic: str) -> list[EventInterest]:
        """What the waits of any loaded version want from ``topic``."""
        return list(self._interests.get(topic, {}))

    def get(self, name: str, version: int) -> Definition | None:
        return self._versions.get((name, version))

    def latest(self, name: str) -> Definition | None:
        return self._latest.get(name)

    def names(self) -> list[str]:
        return sorted(self._latest)

    def triggers(self, topic: str) -> list[tuple[Definition, Trigger]]:
        """Start rules of the newest versions that listen on ``topic``."""
        return [
            (definition, trigger)
            for definition in self._latest.values()
            for trigger in definition.triggers
            if trigger.topic == topic
        ]

    def topics(self) -> set[str]:
        """Every topic a trigger or an event wait reads."""
        triggers = {
            trigger.topic for definition in self._latest.values() for trigger in definition.triggers
        }
        return triggers | set(self._interests)

    async def refresh(self, db: AsyncEngine) -> None:
        """Load versions deployed since the last look (by this or another process)."""
        async with reading(db) as conn:
            rows = await stored.all_versions(conn)
        for row in rows:
            if (row.name, row.version) not in self._versions:
                self.add(parse_definition(row.document, row.name, row.version))


def _yaml_document(text: str) -> Any:
    """YAML text read; ``ValueError`` if it is not YAML."""
    # Imported here: a bridge whose definitions are all JSON never needs PyYAML's memory.
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
