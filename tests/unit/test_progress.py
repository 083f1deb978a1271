"""The demo terminal's line per process start, wait and end (bridge.progress)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from bridge import progress
from bridge.asl.effects import HistoryEntry
from bridge.asl.process import Position, Process, ProcessStatus, Wait

NOW = datetime.now(UTC)
WAITING = Process(
    id="p-1",
    definition="saga",
    version=1,
    correlation_key="o-1",
    started_at=NOW,
    position=Position(
        state="Reserve", input={}, entered_at=NOW, wait=Wait(id="w", kind="callback")
    ),
)


def test_a_start_a_wait_and_an_end_each_make_one_line() -> None:
    started = [HistoryEntry(NOW, "ProcessStarted"), HistoryEntry(NOW, "StateEntered", "Reserve")]
    assert progress.lines(WAITING, started) == [
        "process p-1 (saga, key o-1) started",
        "process p-1 (saga, key o-1) waits at Reserve for a callback",
    ]
    failed = WAITING.model_copy(update={"status": ProcessStatus.FAILED})
    ending = [HistoryEntry(NOW, "ProcessFailed", "Reserve", {"error": "Out", "cause": "x" * 500})]
    [line] = progress.lines(failed, ending)
    assert line.startswith("process p-1 (saga, key o-1) failed: Out: xxx") and line.endswith("...")
    assert len(line) < 250
    # A heartbeat writes history but moves nothing: no line.
    assert progress.lines(WAITING, [HistoryEntry(NOW, "TaskHeartbeat", "Reserve")]) == []


def test_lines_go_to_the_progress_logger(caplog: pytest.LogCaptureFixture) -> None:
    done = WAITING.model_copy(
        update={"status": ProcessStatus.SUCCEEDED, "correlation_key": None, "position": None}
    )
    with caplog.at_level(logging.INFO, logger="bridge.progress"):
        progress.write([(done, [HistoryEntry(NOW, "ProcessSucceeded")])])
    assert [record.getMessage() for record in caplog.records] == ["process p-1 (saga) succeeded"]
