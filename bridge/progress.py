"""One short log line each time a process starts, waits, or ends, after the batch committed.

So that someone trying the demo sees the flow in the terminal: `bridge dev` writes these lines
by default, `bridge worker` and `bridge web` only with BRIDGE_LOG_PROCESSES=true (at thousands
of processes a second they are noise and cost CPU). Pure: ``lines`` says what to write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from bridge import logs
from bridge.asl.effects import HistoryEntry
from bridge.asl.process import Process

log = logging.getLogger("bridge.progress")

ENDINGS = {
    "ProcessSucceeded": "succeeded",
    "ProcessFailed": "failed",
    "ProcessTimedOut": "timed out",
    "ProcessAborted": "was stopped",
}
WAITS = {
    "callback": "a callback",
    "approval": "an approval",
    "event": "an event",
    "http": "an HTTP answer",
    "child": "a child process",
    "timer": "a timer",
    "retry": "a retry",
}
#: Causes are cut to this many characters: one line each.
MAX_CAUSE = 160


def lines(process: Process, history: Sequence[HistoryEntry]) -> list[str]:
    """What one batch did to ``process``, given the history entries it wrote."""
    if not history:
        return []
    name = f"process {process.id} ({process.definition}"
    name += f", key {process.correlation_key})" if process.correlation_key else ")"
    found: list[str] = []
    for entry in history:
        if entry.type == "ProcessStarted":
            found.append(f"{name} started")
        elif entry.type in ENDINGS:
            ending = f"{name} {ENDINGS[entry.type]}"
            error = entry.details.get("error")
            if error:
                cause = str(entry.details.get("cause") or "")
                cut = cause[:MAX_CAUSE] + ("..." if len(cause) > MAX_CAUSE else "")
                ending += f": {error}" + (f": {cut}" if cut else "")
            found.append(ending)
    position = process.position
    entered = any(entry.type in ("StateEntered", "RetryScheduled") for entry in history)
    if not process.status.ended and entered and position is not None:
        waiting = _waiting(position)
        if waiting:
            found.append(f"{name} waits at {waiting}")
    return found


def _waiting(position: object) -> str:
    """Where a running process waits: its state and what for, branches included."""
    wait = getattr(position, "wait", None)
    state = getattr(position, "state", "?")
    if wait is not None:
        return f"{state} for {WAITS.get(wait.kind, wait.kind)}"
    inner = [
        _waiting(branch.position)
        for branch in getattr(position, "branches", ())
        if branch.status == "running" and branch.position is not None
    ]
    inner = [text for text in inner if text]
    if inner:
        return f"{state} ({'; '.join(inner)})"
    return ""


def write(touched: Iterable[tuple[Process, Sequence[HistoryEntry]]]) -> None:
    for process, history in touched:
        found = lines(process, history)
        if found:
            with logs.about(process_id=process.id, correlation_key=process.correlation_key):
                for line in found:
                    log.info("%s", line)
