"""Packing history entries into chunk rows and unpacking them (bridge.store.history_chunks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.asl.effects import HistoryEntry
from bridge.store.history_chunks import MAX_ENTRIES, chunks, encode, entries

T0 = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def _entry(n: int) -> HistoryEntry:
    return HistoryEntry(T0 + timedelta(seconds=n), f"Type{n}", f"S{n}", {"n": n})


def test_consecutive_entries_of_one_process_share_a_row() -> None:
    rows = [("a", 4, _entry(4)), ("a", 5, _entry(5)), ("b", 1, _entry(1)), ("a", 6, _entry(6))]

    found = chunks(rows)

    assert [(c["process_id"], c["seq"], c["last_seq"], len(c["entries"])) for c in found] == [
        ("a", 4, 5, 2),
        ("b", 1, 1, 1),
        ("a", 6, 6, 1),
    ]


def test_a_gap_in_the_numbers_starts_a_new_row() -> None:
    found = chunks([("a", 1, _entry(1)), ("a", 3, _entry(3))])

    assert [(c["seq"], c["last_seq"]) for c in found] == [(1, 1), (3, 3)]


def test_a_row_holds_at_most_max_entries() -> None:
    count = 2 * MAX_ENTRIES + 1
    found = chunks([("a", n, _entry(n)) for n in range(1, count + 1)])

    assert [(c["seq"], c["last_seq"]) for c in found] == [
        (1, MAX_ENTRIES),
        (MAX_ENTRIES + 1, 2 * MAX_ENTRIES),
        (count, count),
    ]
    assert [e["seq"] for c in found for e in entries(c["seq"], c["entries"])] == list(
        range(1, count + 1)
    )


def test_entries_come_back_as_they_went_in_with_their_numbers() -> None:
    at = datetime(2026, 12, 3, 11, 30, tzinfo=timezone(timedelta(hours=1)))
    stored = [
        encode(HistoryEntry(at, "ProcessStarted", None, {})),
        encode(HistoryEntry(at, "StateEntered", "Pay", {"input": {"x": [1, None]}})),
    ]

    assert stored[0]["at"] == "2026-12-03T10:30:00.000000+00:00"
    assert list(entries(7, stored)) == [
        {"seq": 7, "at": at, "type": "ProcessStarted", "state": None, "details": {}},
        {
            "seq": 8,
            "at": at,
            "type": "StateEntered",
            "state": "Pay",
            "details": {"input": {"x": [1, None]}},
        },
    ]
    assert next(entries(7, stored))["at"].tzinfo is UTC


def test_entries_up_to_after_seq_are_left_out() -> None:
    stored = [encode(_entry(n)) for n in range(3)]

    assert [e["seq"] for e in entries(10, stored, after_seq=10)] == [11, 12]
    assert [e["seq"] for e in entries(10, stored, after_seq=12)] == []
    assert [e["seq"] for e in entries(10, stored, after_seq=3)] == [10, 11, 12]


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        encode(HistoryEntry(datetime(2026, 12, 3), "ProcessStarted"))
