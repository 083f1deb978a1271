"""Retention policy: how long each definition's finished processes are kept, and the cutoffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bridge.asl.loading import parse_definition
from bridge.asl.model import Definition
from bridge.retention import cutoffs, days_of, retained_until, retention_days

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def definition(name: str, version: int = 1, **extra: object) -> Definition:
    document = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}, **extra}
    return parse_definition(document, name=name, version=version)


def test_a_definition_without_retention_days_takes_the_default() -> None:
    assert days_of(definition("a"), 90) == 90
    assert days_of(definition("a", RetentionDays=7), 90) == 7
    assert days_of(definition("a", RetentionDays=0), 90) == 0
    assert days_of(None, 30) == 30


def test_the_cutoffs_name_only_definitions_that_differ_from_the_default() -> None:
    days = retention_days(
        [definition("a"), definition("b", RetentionDays=7), definition("c", RetentionDays=0)],
        90,
    )
    assert days == {"a": 90, "b": 7, "c": 0}

    found = cutoffs(NOW, 90, days)

    assert found.default == NOW - timedelta(days=90)
    assert dict(found.by_definition) == {"b": NOW - timedelta(days=7), "c": None}


def test_a_default_of_zero_keeps_everything_a_definition_does_not_limit() -> None:
    found = cutoffs(NOW, 0, {"a": 0, "b": 3})
    assert found.default is None
    assert dict(found.by_definition) == {"b": NOW - timedelta(days=3)}


def test_a_running_process_or_one_kept_for_good_has_no_deletion_time() -> None:
    assert retained_until(None, 90) is None
    assert retained_until(NOW, 0) is None
    assert retained_until(NOW, 2) == NOW + timedelta(days=2)


@given(st.integers(min_value=1, max_value=36_500), st.integers(min_value=0, max_value=36_500))
def test_a_process_is_deleted_exactly_when_its_end_passes_the_cutoff(
    days: int, age_hours: int
) -> None:
    ended = NOW - timedelta(hours=age_hours)
    cutoff = cutoffs(NOW, days, {}).default
    assert cutoff is not None
    until = retained_until(ended, days)
    assert until is not None
    assert (ended < cutoff) == (until < NOW)
