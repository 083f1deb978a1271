"""Schedules, the pure parts: when ticks fall (cron in a time zone across DST, rates, one-off
times), what a due tick does (overlap and catch-up policies), and how a definition declares
them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.asl.errors import DefinitionError
from bridge.asl.loading import parse_definition
from bridge.asl.schedule_times import ScheduleSpec, next_after, spec_problems, ticks_until, upcoming
from bridge.schedule_policy import (
    GRACE,
    CatchUp,
    Decision,
    Overlap,
    TickResult,
    decide_buffered,
    decide_due,
)

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
QUICK = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)
zones = st.sampled_from(
    ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
)
crons = st.sampled_from(
    [
        "*/30 * * * *",
        "30 2 * * *",
        "0 * * * *",
        "15 1-3 * * 0",
        "0 0 1 * *",
        "@daily",
        "5 4 * * 1-5",
    ]
)


@settings(max_examples=300, deadline=None)
@given(moment=moments, zone=zones, cron=crons)
def test_cron_ticks_come_strictly_after_and_in_order(
    moment: datetime, zone: str, cron: str
) -> None:
    spec = ScheduleSpec(cron=cron, time_zone=zone)
    ticks = upcoming(spec, moment, 6)
    assert len(ticks) == 6
    assert ticks[0] > moment
    assert all(earlier < later for earlier, later in itertools.pairwise(ticks))
    # Deterministic: asking again from a tick gives the rest.
    assert upcoming(spec, ticks[0], 5) == ticks[1:]


@settings(max_examples=300, deadline=None)
@given(moment=moments, rate=st.integers(min_value=1, max_value=10 * 86_400))
def test_rate_ticks_are_the_epochs_multiples(moment: datetime, rate: int) -> None:
    spec = ScheduleSpec(rate_seconds=rate)
    tick = next_after(spec, moment)
    assert tick is not None and moment < tick <= moment + timedelta(seconds=rate)
    assert (tick - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(seconds=rate) == timedelta(0)


@settings(max_examples=200, deadline=None)
@given(
    start=moments,
    rate=st.integers(min_value=1, max_value=3600),
    later=st.integers(min_value=0, max_value=500_000),
)
def test_ticks_until_finds_the_latest_and_counts_them(
    start: datetime, rate: int, later: int
) -> None:
    spec = ScheduleSpec(rate_seconds=rate)
    first = next_after(spec, start)
    assert first is not None
    moment = first + timedelta(seconds=later)
    latest, count = ticks_until(spec, first, moment, cap=10**9)
    assert latest <= moment < latest + timedelta(seconds=rate)
    assert count == later // rate + 1


def test_a_cron_on_the_days_clocks_change() -> None:
    nightly = ScheduleSpec(cron="30 2 * * *", time_zone="Europe/Berlin")
    # 2026-03-29: 02:30 does not happen in Berlin; it runs at 03:30 (01:30 UTC), once.
    spring = upcoming(nightly, datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    assert [tick.isoformat() for tick in spring] == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:30:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]
    # 2026-10-25: 02:30 happens twice; it runs at the first.
    autumn = upcoming(nightly, datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert [tick.isoformat() for tick in autumn] == [
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
        "2026-10-27T01:30:00+00:00",
    ]
    half_hourly = ScheduleSpec(cron="*/30 * * * *", time_zone="Europe/Berlin")
    ticks = upcoming(half_hourly, datetime(2026, 10, 24, 23, 10, tzinfo=UTC), 6)
    assert len(set(ticks)) == 6 and ticks == sorted(ticks)


def test_a_one_off_time_has_one_tick() -> None:
    spec = ScheduleSpec(at=T0)
    assert next_after(spec, T0 - timedelta(seconds=1)) == T0
    assert next_after(spec, T0) is None
    assert upcoming(spec, T0 - timedelta(days=1), 5) == [T0]


@pytest.mark.parametrize(
    ("cron", "zone", "rate", "at", "word"),
    [
        (None, None, None, None, "exactly one"),
        ("0 * * * *", None, 60, None, "exactly one"),
        ("61 * * * *", None, None, None, "Cron"),
        ("0 0 * * * *", None, None, None, "five fields"),
        ("0 * * * *", "Mars/Olympus", None, None, "IANA"),
        (None, "Europe/Berlin", 60, None, "only a Cron"),
        (None, None, 0, None, "RateSeconds"),
        (None, None, None, datetime(2026, 1, 1), "offset"),
    ],
)
def test_a_bad_spec_names_its_field(
    cron: str | None, zone: str | None, rate: int | None, at: datetime | None, word: str
) -> None:
    problems = spec_problems(cron, zone, rate, at)
    assert problems and word in " ".join(problems)


def test_good_specs_have_no_problem() -> None:
    assert spec_problems("@hourly", None, None, None) == []
    assert spec_problems("0 9 * * 1-5", "Asia/Tokyo", None, None) == []
    assert spec_problems(None, None, 300, None) == []
    assert spec_problems(None, None, None, T0) == []


MINUTE = ScheduleSpec(rate_seconds=60)


def decide(
    tick: datetime,
    now: datetime,
    *,
    overlap: Overlap = Overlap.SKIP,
    catch_up: CatchUp = CatchUp.RUN_ONCE,
    running: bool = False,
    buffered: datetime | None = None,
    spec: ScheduleSpec = MINUTE,
) -> Decision:
    return decide_due(
        spec, overlap, catch_up, tick, now, previous_running=running, buffered_at=buffered
    )


def test_an_on_time_tick_starts_and_the_next_follows() -> None:
    decision = decide(T0, T0 + timedelta(seconds=5))
    assert decision == Decision(T0, TickResult.STARTED, T0 + timedelta(minutes=1), None, 0)


def test_overlap_policies_while_the_previous_runs() -> None:
    skip = decide_due(
        MINUTE, Overlap.SKIP, CatchUp.RUN_ONCE, T0, T0, previous_running=True, buffered_at=None
    )
    assert (skip.start, skip.result) == (None, TickResult.SKIPPED)
    allow = decide_due(
        MINUTE, Overlap.ALLOW, CatchUp.RUN_ONCE, T0, T0, previous_running=True, buffered_at=None
    )
    assert (allow.start, allow.result) == (T0, TickResult.STARTED)
    buffer = decide_due(
        MINUTE,
        Overlap.BUFFER_ONE,
        CatchUp.RUN_ONCE,
        T0,
        T0,
        previous_running=True,
        buffered_at=None,
    )
    assert (buffer.start, buffer.result, buffer.buffered_at) == (None, TickResult.BUFFERED, T0)
    earlier = T0 - timedelta(minutes=1)
    full = decide_due(
        MINUTE,
        Overlap.BUFFER_ONE,
        CatchUp.RUN_ONCE,
        T0,
        T0,
        previous_running=True,
        buffered_at=earlier,
    )
    assert (full.result, full.buffered_at) == (TickResult.SKIPPED, earlier)
    # The buffered tick starts once the previous process has ended, not before, and once.
    assert decide_buffered(earlier, earlier, T0, previous_running=True) is None
    started = decide_buffered(earlier, earlier, T0, previous_running=False)
    assert started is not None and (started.start, started.buffered_at) == (earlier, None)
    assert decide_buffered(None, earlier, T0, previous_running=False) is None


@settings(max_examples=300, deadline=None)
@given(
    late=st.integers(min_value=0, max_value=10 * 86_400),
    rate=st.sampled_from([1, 7, 60, 300, 3600, 86_400]),
    catch_up=st.sampled_from(list(CatchUp)),
    running=st.booleans(),
    overlap=st.sampled_from(list(Overlap)),
)
def test_a_late_tick_never_bursts(
    late: int, rate: int, catch_up: CatchUp, running: bool, overlap: Overlap
) -> None:
    spec = ScheduleSpec(rate_seconds=rate)
    tick = next_after(spec, T0)
    assert tick is not None
    now = tick + timedelta(seconds=late)
    decision = decide_due(
        spec, overlap, catch_up, tick, now, previous_running=running, buffered_at=None
    )
    # At most one start, for a tick at or before now; the next tick is in the future (or, on
    # time, the one after this).
    assert decision.next_at is not None
    if now - tick > GRACE:
        assert decision.next_at > now
    else:
        assert decision.next_at == tick + timedelta(seconds=rate)
    if decision.start is not None:
        assert tick <= decision.start <= now
        assert decision.result is TickResult.STARTED
    # Late: every tick from ``tick`` to now is accounted for (started, skipped or buffered, or
    # missed). On time: this tick alone (the next ones due come one by one).
    due = min((now - tick) // timedelta(seconds=rate) + 1, 1000)
    handled = 0 if decision.result is TickResult.MISSED else 1
    assert decision.missed + handled == (due if now - tick > GRACE else 1)
    if catch_up is CatchUp.SKIP and now - tick > GRACE:
        latest = ticks_until(spec, tick, now, 10)[0]
        if now - latest > GRACE:
            assert decision.start is None and decision.result is TickResult.MISSED


def test_a_definition_declares_schedules_and_bad_ones_are_named() -> None:
    good = parse_definition(
        {
            **QUICK,
            "Schedules": [
                {"Name": "Nightly", "Cron": "0 2 * * *", "TimeZone": "Europe/Berlin"},
                {"Name": "Often", "RateSeconds": 60, "Input": {"a": 1}, "Overlap": "BufferOne"},
                {"Name": "Launch", "At": "2026-12-24T18:00:00Z", "CatchUp": "Skip"},
            ],
        },
        "report",
    )
    assert [item.name for item in good.schedules] == ["Nightly", "Often", "Launch"]
    with pytest.raises(DefinitionError) as refused:
        parse_definition(
            {
                **QUICK,
                "Schedules": [
                    {"Name": "Twice", "RateSeconds": 60},
                    {"Name": "Twice", "Cron": "0 2 * * *"},
                    {"Name": "Bad", "Cron": "every night"},
                    {"Name": "Zone", "Cron": "0 2 * * *", "TimeZone": "Nowhere/Land"},
                    {"Name": "When", "At": "tomorrow"},
                    {"Name": "None"},
                ],
            },
            "report",
        )
    problems = "\n".join(refused.value.problems)
    assert "Schedules[1].Name: another schedule is named 'Twice'" in problems
    assert "Schedules[2].Cron:" in problems
    assert "Schedules[3].TimeZone:" in problems
    assert "Schedules[4].At:" in problems
    assert "Schedules[5].exactly one of Cron, RateSeconds and At" in problems
    with pytest.raises(DefinitionError) as named:
        parse_definition({**QUICK, "Schedules": [{"Name": "has.dot", "RateSeconds": 5}]}, "r")
    assert "Schedules" in "\n".join(named.value.problems)
