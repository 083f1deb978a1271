"""Bulk operations: stop or redrive every process that matches a filter, as a tracked job.

An admin asks (``POST /bulk-operations``, ``bridge processes stop-all``, the process list page)
with a filter, a reason and a rate. The operation covers the processes that match and started
before it was asked for; its total is counted then. A worker applies it a chunk at a time through
the engine's one path (the same ``StopRequested`` and ``RedriveRequested`` as one process's stop
and redrive, so the history, tokens, children and lifecycle events are the same), at most
``rate_per_second`` processes a second, and records its progress after each chunk. A process
that no longer qualifies when its turn comes (it ended, or was redriven already) is skipped, and
a chunk applied twice after a crash changes nothing the second time. Cancelling stops it between
two chunks.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Final, Literal

from bridge.asl.errors import BridgeError
from bridge.engine import Engine, EngineInput, RedriveRequested, StopRequested
from bridge.poller import poll
from bridge.store import bulk as store
from bridge.store.bulk import BulkOperation, ProcessFilter
from bridge.store.database import database_now, reading

log = logging.getLogger(__name__)

Action = Literal["stop", "redrive"]
#: The statuses each action applies to.
APPLIES_TO: Final[dict[str, tuple[str, ...]]] = {
    "stop": ("RUNNING",),
    "redrive": ("FAILED", "TIMED_OUT", "ABORTED"),
}
#: The most processes one transaction handles.
MAX_CHUNK: Final = 100
#: How long a worker holds an operation without recording progress before another takes it.
LEASE: Final = timedelta(seconds=30)
#: How often a worker looks for operations to run when none woke it.
LOOK_EVERY_SECONDS: Final = 2.0


class BulkRefused(BridgeError):
    """The operation cannot be asked for: the message says why."""


def scoped(action: Action, wanted: ProcessFilter) -> ProcessFilter:
    """The filter an operation runs with: only the statuses its action applies to."""
    allowed = APPLIES_TO[action]
    if not wanted.statuses:
        return replace(wanted, statuses=allowed)
    outside = [status for status in wanted.statuses if status not in allowed]
    if outside:
        raise BulkRefused(
            f"{action} applies to {', '.join(allowed)} processes, not {', '.join(outside)}"
        )
    return wanted


async def ask(
    engine: Engine, action: Action, wanted: ProcessFilter, reason: str, rate_per_second: int
) -> BulkOperation:
    """Record a new operation (running: a worker takes it up) and answer it."""
    operation_id = str(uuid.uuid4())
    async with engine.db.begin() as conn:
        now = await database_now(conn)
        before = wanted.started_before
        scope = replace(
            scoped(action, wanted),
            started_before=now if before is None or before > now else before,
        )
        total = await store.count(conn, scope)
        await store.add(
            conn,
            operation_id=operation_id,
            action=action,
            wanted=scope,
            reason=reason,
            rate_per_second=rate_per_second,
            total=total,
            now=now,
        )
        found = await store.get(conn, operation_id)
    assert found is not None
    engine.wakeups.bulk.set()
    return found


def inputs_of(operation: BulkOperation, process_ids: list[str]) -> list[EngineInput]:
    if operation.action == "stop":
        cause = f"{operation.reason} (bulk operation {operation.id})"
        return [StopRequested(pid, cause=cause) for pid in process_ids]
    return [RedriveRequested(pid) for pid in process_ids]


class BulkRunner:
    """The worker's loop that carries out running operations."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self) -> None:
        await poll(
            self.run_one,
            name="the bulk operations",
            poll_seconds=LOOK_EVERY_SECONDS,
            wake=self.engine.wakeups.bulk,
        )

    async def run_one(self) -> bool:
        """Claim a running operation and carry it out to its end (or its cancel); False when
        there was none to claim."""
        # Idle, this is one read every few seconds; a write transaction only to claim.
        async with reading(self.engine.db) as conn:
            if not await store.any_to_claim(conn, await database_now(conn)):
                return False
        async with self.engine.db.begin() as conn:
            operation = await store.claim(conn, await database_now(conn), LEASE)
        if operation is None:
            return False
        chunk = max(1, min(operation.rate_per_second, MAX_CHUNK))
        cursor = operation.cursor
        handled = operation.applied + operation.skipped
        while True:
            started = time.monotonic()
            async with reading(self.engine.db) as conn:
                ids = await store.next_ids(conn, operation.filter, cursor, chunk)
            outcomes = await self.engine.apply(inputs_of(operation, ids)) if ids else []
            applied = sum(1 for outcome in outcomes if outcome.ok)
            skipped = len(ids) - applied
            handled += len(ids)
            done = len(ids) < chunk
            if done:
                # Counted in the total but no longer matching when the operation got there
                # (they ended, or were redriven, meanwhile): skipped too.
                skipped += max(operation.total - handled, 0)
            cursor = ids[-1] if ids else cursor
            async with self.engine.db.begin() as conn:
                going = await store.progress(
                    conn,
                    operation.id,
                    cursor=cursor,
                    applied=applied,
                    skipped=skipped,
                    now=await database_now(conn),
                    lease=LEASE,
                    done=done,
                )
            metrics = self.engine.metrics.bulk_processes
            metrics.labels(operation.action, "applied").inc(applied)
            metrics.labels(operation.action, "skipped").inc(skipped)
            if not going:
                log.info(
                    "bulk operation %s (%s) %s",
                    operation.id,
                    operation.action,
                    "done" if done else "cancelled",
                )
                return True
            # The rate: one chunk of ``chunk`` processes per chunk/rate seconds.
            pause = chunk / operation.rate_per_second - (time.monotonic() - started)
            if pause > 0:
                await asyncio.sleep(pause)
