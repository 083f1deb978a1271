"""When a schedule's ticks fall: cron expressions in a time zone, fixed rates, one-off times.

Pure: no clock, no I/O. A tick is a moment (aware UTC) at which a schedule starts a process; it
is the start's identity, so every function here is deterministic: the same spec and moment give
the same ticks in every worker, before and after a restart.

Cron expressions are read by croniter (five fields, or its ``@daily``-style nicknames) over
wall-clock time in the schedule's zone. Daylight saving time: a wall-clock time that happens twice
(clocks go back) runs once, at its first occurrence; one that does not happen (clocks go forward)
runs as if the old offset still held (02:30 on that day runs at 03:30). A rate's ticks are
counted from 1970-01-01T00:00Z (as Temporal's intervals are), so every 300 seconds falls on :00,
:05, :10 of each hour whenever the schedule was made; a one-off time has one tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: The shortest rate: a schedule is for minutes and hours, not a busy loop.
MIN_RATE_SECONDS: Final = 1
#: The longest rate (ten years).
MAX_RATE_SECONDS: Final = 10 * 366 * 86_400
#: How many wall-clock candidates are looked at before a cron expression is judged to have no
#: next tick (one that names 30 February, say).
_MAX_CANDIDATES: Final = 1000


@dataclass(frozen=True)
class ScheduleSpec:
    """When a schedule's ticks fall: exactly one of ``cron``, ``rate_seconds`` and ``at``."""

    cron: str | None = None
    #: The IANA zone a cron expression's wall-clock times are in.
    time_zone: str = "UTC"
    rate_seconds: int | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in {
                "cron": self.cron,
                "timeZone": self.time_zone if self.cron is not None else None,
                "rateSeconds": self.rate_seconds,
                "at": _iso(self.at),
            }.items()
            if value is not None
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleSpec:
        return cls(
            cron=data.get("cron"),
            time_zone=data.get("timeZone") or "UTC",
            rate_seconds=data.get("rateSeconds"),
            at=_moment(data.get("at")),
        )

    def describe(self) -> str:
        """The spec in a few words, for pages and the CLI."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.time_zone})"
        if self.rate_seconds is not None:
            return f"every {_duration(self.rate_seconds)}"
        assert self.at is not None
        return f"once at {self.at.isoformat()}"


def spec_problems(
    cron: str | None, time_zone: str | None, rate_seconds: int | None, at: datetime | None
) -> list[str]:
    """What is wrong with a spec, each problem naming its field (empty: it is fine)."""
    given = [
        name
        for name, value in (("Cron", cron), ("RateSeconds", rate_seconds), ("At", at))
        if value is not None
    ]
    if len(given) != 1:
        return ["exactly one of Cron, RateSeconds and At is required" + _named(given)]
    problems = []
    if cron is not None:
        if len(cron) > 200 or not _croniter().is_valid(cron) or len(cron.split()) not in (1, 5):
            problems.append(
                f"Cron: {cron[:200]!r} is not a cron expression of five fields "
                "(minute hour day-of-month month day-of-week) or a nickname such as @daily"
            )
        if time_zone is not None and zone_problem(time_zone):
            problems.append(f"TimeZone: {zone_problem(time_zone)}")
    elif time_zone not in (None, "UTC"):
        problems.append("TimeZone: only a Cron schedule has a time zone")
    if rate_seconds is not None and not MIN_RATE_SECONDS <= rate_seconds <= MAX_RATE_SECONDS:
        problems.append(
            f"RateSeconds: must be from {MIN_RATE_SECONDS} to {MAX_RATE_SECONDS}, "
            f"not {rate_seconds}"
        )
    if at is not None and at.tzinfo is None:
        problems.append("At: a timestamp needs its offset (e.g. 2026-12-24T18:00:00Z)")
    return problems


def zone_problem(name: str) -> str | None:
    if name in _zones():
        return None
    return f"{name[:100]!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)"


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def next_after(spec: ScheduleSpec, moment: datetime) -> datetime | None:
    """The first tick strictly after ``moment``; None when there is none (a one-off time that
    has passed, a cron expression that never matches)."""
    if spec.at is not None:
        at = spec.at.astimezone(UTC)
        return at if at > moment else None
    if spec.rate_seconds is not None:
        rate = spec.rate_seconds
        elapsed = (moment - EPOCH) // timedelta(microseconds=1)
        steps = elapsed // (rate * 1_000_000) + 1
        return EPOCH + timedelta(seconds=rate * steps)
    assert spec.cron is not None
    return _next_cron(spec.cron, spec.time_zone, moment)


def _next_cron(cron: str, zone_name: str, moment: datetime) -> datetime | None:
    # croniter walks naive wall-clock times (it mishandles aware ones around DST changes);
    # each is then placed in the zone at its first occurrence, and the first one after
    # ``moment`` wins: a repeated hour's second pass is never after its first.
    zone = _zone(zone_name)
    wall = moment.astimezone(zone).replace(tzinfo=None)
    candidates = _croniter()(cron, wall)
    for _ in range(_MAX_CANDIDATES):
        try:
            candidate = candidates.get_next(datetime)
        except Exception:  # croniter's own "no match within its search horizon"
            return None
        placed: datetime = candidate.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if placed > moment:
            return placed
    return None


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def upcoming(spec: ScheduleSpec, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` ticks after ``after`` (fewer when the schedule ends)."""
    ticks: list[datetime] = []
    moment = after
    while len(ticks) < count:
        tick = next_after(spec, moment)
        if tick is None:
            break
        ticks.append(tick)
        moment = tick
    return ticks


def ticks_until(
    spec: ScheduleSpec, first: datetime, moment: datetime, cap: int
) -> tuple[datetime, int]:
    """From tick ``first`` (at or before ``moment``): the last tick at or before ``moment``, and
    how many ticks that is counting ``first`` (at most ``cap``: counting stops there)."""
    if spec.rate_seconds is not None:
        steps = (moment - first) // timedelta(seconds=spec.rate_seconds)
        return first + timedelta(seconds=spec.rate_seconds * steps), min(steps + 1, cap)
    last, counted = first, 1
    while True:
        tick = next_after(spec, last)
        if tick is None or tick > moment:
            return last, counted
        last = tick
        if counted < cap:
            counted += 1
        elif spec.cron is not None:
            # Too many to count one by one: the last is found from the moment itself.
            before = _previous_cron(spec, moment)
            return (before if before is not None and before > last else last), cap


def _previous_cron(spec: ScheduleSpec, moment: datetime) -> datetime | None:
    assert spec.cron is not None
    zone = _zone(spec.time_zone)
    wall = moment.astimezone(zone).replace(tzinfo=None)
    candidates = _croniter()(spec.cron, wall + timedelta(seconds=1))
    for _ in range(_MAX_CANDIDATES):
        try:
            candidate = candidates.get_prev(datetime)
        except Exception:
            return None
        placed: datetime = candidate.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if placed <= moment:
            return placed
    return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _moment(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value)).astimezone(UTC)


def _named(given: list[str]) -> str:
    return f" (given: {', '.join(given)})" if given else ""


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}" if count != 1 else unit
    return f"{seconds} seconds" if seconds != 1 else "second"


def _croniter() -> Any:
    # Imported on first use: a bridge without cron schedules is spared croniter and the
    # date libraries it brings (about 1 MiB in every process, bench/README.md).
    from croniter import croniter

    return croniter
