"""History chunks: how the entries of a process's history are packed into rows, and unpacked.

A batch adds entries ``seq, seq + 1, ...`` to each process it touches; they are stored as one row
of the ``history`` table per process and batch (``seq`` to ``last_seq``, the entries as a JSON
array), so that a step writes one history row, not one per entry. A chunk holds at most
``MAX_ENTRIES`` entries: a batch that adds more to one process writes several rows, which bounds
the size of a row and what a page of the history has to decode beyond the entries it shows.

Pure: no I/O. Migration 0008 writes the same entry format in SQL; the two must agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from bridge.asl.effects import HistoryEntry

#: The most entries one row holds.
MAX_ENTRIES: Final = 100


def chunks(rows: Sequence[tuple[str, int, HistoryEntry]]) -> list[dict[str, Any]]:
    """The ``history`` rows for ``(process_id, seq, entry)`` triples, given in the order they
    were added: consecutive entries of one process with consecutive numbers share a row."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    # The entries of a batch share a handful of times: each is formatted once.
    times: dict[datetime, str] = {}
    for process_id, seq, entry in rows:
        if (
            current is None
            or current["process_id"] != process_id
            or current["last_seq"] + 1 != seq
            or len(current["entries"]) >= MAX_ENTRIES
        ):
            current = {"process_id": process_id, "seq": seq, "last_seq": seq, "entries": []}
            found.append(current)
        current["last_seq"] = seq
        current["entries"].append(encode(entry, times))
    return found


def encode(entry: HistoryEntry, times: dict[datetime, str] | None = None) -> dict[str, Any]:
    """One entry as a chunk holds it. The time is UTC text of fixed width, so that a migration
    can turn it back into a column value with string functions alone. ``times``: the texts of
    times formatted before, kept and reused."""
    at = entry.at
    text = None if times is None else times.get(at)
    if text is None:
        if at.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        text = at.astimezone(UTC).isoformat(timespec="microseconds")
        if times is not None:
            times[at] = text
    return {
        "at": text,
        "type": entry.type,
        "state": entry.state,
        "details": entry.details,
    }


def entries(seq: int, stored: Sequence[Any], *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """The entries of the chunk that starts at ``seq``, numbered, those up to ``after_seq``
    left out: ``{seq, at, type, state, details}`` each, ``at`` an aware UTC datetime."""
    for number, entry in enumerate(stored, start=seq):
        if number > after_seq:
            yield {
                "seq": number,
                "at": datetime.fromisoformat(entry["at"]).astimezone(UTC),
                "type": entry["type"],
                "state": entry["state"],
                "details": entry["details"],
            }
