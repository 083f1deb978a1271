"""Definition aliases, pure part: which version a start through an alias gets.

An alias (like a Step Functions state machine alias) routes starts to one version, or splits
them between two by weight for a canary. The draw is a hash of the process id, so the same
start (an idempotent name gives the same id) always lands on the same version, and replays agree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Definition names: what a file name or a deploy call may use (no ``:``, which separates a
#: qualifier, and nothing a URL path would need to escape).
DEFINITION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
#: Alias names start with a letter, so that ``NAME:3`` always means version 3.
ALIAS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,79}$")


@dataclass(frozen=True)
class Route:
    version: int
    weight: int


@dataclass(frozen=True)
class Reference:
    """What a start names: ``NAME``, ``NAME:VERSION`` or ``NAME:ALIAS``."""

    definition: str
    version: int | None = None
    alias: str | None = None


def parse_reference(text: str) -> Reference:
    name, colon, qualifier = text.partition(":")
    if not colon:
        return Reference(name)
    if qualifier.isascii() and qualifier.isdigit():
        return Reference(name, version=int(qualifier))
    return Reference(name, alias=qualifier)


def route_problems(routes: Sequence[Route], known_versions: set[int]) -> list[str]:
    """What is wrong with a routing configuration (Step Functions' rules), or nothing."""
    problems = []
    if not 1 <= len(routes) <= 2:
        problems.append("an alias routes to one or two versions")
    versions = [route.version for route in routes]
    if len(set(versions)) != len(versions):
        problems.append("each version may appear once")
    if sum(route.weight for route in routes) != 100:
        problems.append("the weights must add up to 100")
    for version in versions:
        if version not in known_versions:
            problems.append(f"version {version} is not deployed")
    return problems


def choose_version(routes: Sequence[Route], process_id: str) -> int:
    """The version a start with ``process_id`` runs: a stable draw in [0, 100) against the
    cumulative weights."""
    draw = int.from_bytes(hashlib.sha256(process_id.encode()).digest()[:8], "big") % 100
    total = 0
    for route in routes:
        total += route.weight
        if draw < total:
            return route.version
    return routes[-1].version
