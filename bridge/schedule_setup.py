"""Schedules' setups: what a request or a definition's ``Schedules`` ask for, checked, and
written (``bridge.schedules`` for the API's requests; ``sync_declared`` for a deploy, in its
transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl import json_text, limits
from bridge.asl.dataflow import rfc3339
from bridge.asl.errors import BridgeError
from bridge.asl.model import Definition, ScheduleDeclaration
from bridge.asl.schedule_times import ScheduleSpec, next_after, spec_problems
from bridge.schedule_policy import CatchUp, Overlap
from bridge.store import schedules as store
from bridge.store.schedules import Schedule, Setup

#: The largest input a schedule keeps (as an event's, it becomes a process's input).
MAX_INPUT_BYTES = 256 * 1024


class ScheduleRefused(BridgeError):
    """The schedule cannot be made or changed so; ``problems`` say why, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Request:
    """A schedule as someone asks for it (the API's body, the CLI's flags)."""

    definition: str
    cron: str | None = None
    time_zone: str | None = None
    rate_seconds: int | None = None
    at: str | None = None
    input: Any = None
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.RUN_ONCE
    paused: bool = False
    description: str = ""


def setup_of(schedule_id: str, request: Request, declared_by: str | None = None) -> Setup:
    """The setup ``request`` asks for; ``ScheduleRefused`` naming each problem."""
    problems = [
        f"{field}: {problem}"
        for field, value in (
            ("Definition", request.definition),
            ("Cron", request.cron),
            ("TimeZone", request.time_zone),
            ("At", request.at),
            ("Description", request.description),
            ("Input", request.input),
        )
        if (problem := limits.problem(value)) is not None
    ]
    if not problems and len(json_text.dumps(request.input)) > MAX_INPUT_BYTES:
        problems.append(f"Input: larger than {MAX_INPUT_BYTES // 1024} KiB")
    if problems:
        raise ScheduleRefused(problems)
    at: datetime | None = None
    if request.at is not None:
        at = rfc3339(request.at)
        if at is None:
            problems.append(f"At: {request.at[:100]!r} is not an RFC 3339 timestamp")
    if not problems:
        problems += spec_problems(request.cron, request.time_zone, request.rate_seconds, at)
    if not 1 <= len(request.definition) <= 300:
        problems.append("Definition: NAME, NAME:VERSION or NAME:ALIAS is needed")
    if len(request.description) > 1000:
        problems.append("Description: longer than 1000 characters")
    if problems:
        raise ScheduleRefused(problems)
    spec = ScheduleSpec(
        cron=request.cron,
        time_zone=request.time_zone or "UTC",
        rate_seconds=request.rate_seconds,
        at=at,
    )
    return Setup(
        id=schedule_id,
        definition=request.definition,
        spec=spec,
        input={} if request.input is None else request.input,
        description=request.description,
        overlap=request.overlap,
        catch_up=request.catch_up,
        declared_by=declared_by,
    )


def request_of(definition: str, declared: ScheduleDeclaration) -> Request:
    return Request(
        definition=definition,
        cron=declared.cron,
        time_zone=declared.time_zone,
        rate_seconds=declared.rate_seconds,
        at=declared.at,
        input=declared.input,
        overlap=Overlap(declared.overlap),
        catch_up=CatchUp(declared.catch_up),
        paused=declared.paused,
        description=declared.description,
    )


async def write(
    conn: AsyncConnection, setup: Setup, existing: Schedule | None, paused: bool, now: datetime
) -> None:
    if existing is None:
        await store.add(conn, setup, paused=paused, next_at=next_after(setup.spec, now), now=now)
        return
    if _setup_of(existing) == setup:
        return
    # A changed spec counts from now; an unchanged one keeps the tick it waits for.
    same_times = existing.spec == setup.spec
    next_at = existing.next_at if same_times else next_after(setup.spec, now)
    await store.replace(conn, setup, next_at=next_at, now=now)


def _setup_of(schedule: Schedule) -> Setup:
    return Setup(
        id=schedule.id,
        definition=schedule.definition,
        spec=schedule.spec,
        input=schedule.input,
        description=schedule.description,
        overlap=schedule.overlap,
        catch_up=schedule.catch_up,
        declared_by=schedule.declared_by,
    )


async def sync_declared(conn: AsyncConnection, definition: Definition, now: datetime) -> None:
    """Make the schedules ``definition`` (a newly deployed version) declares, change those
    that differ, and remove those it no longer declares, in the caller's transaction."""
    existing = {
        schedule.id: schedule
        for schedule in await store.listing(conn, definition=definition.name)
        if schedule.declared_by == definition.name
    }
    declared = set()
    for item in definition.schedules:
        schedule_id = f"{definition.name}.{item.name}"
        declared.add(schedule_id)
        setup = setup_of(schedule_id, request_of(definition.name, item), definition.name)
        await write(conn, setup, existing.get(schedule_id), item.paused, now)
    await store.remove(
        conn, [schedule_id for schedule_id in existing if schedule_id not in declared]
    )
