"""Writing a batch: the processes it touched, their history, and the rows their effects ask for.

Processes are written first (tokens, approvals and history point at them; their pending timers
are in their state, with the wake time of the earliest in their row); then what their effects
ask for, effect by effect (task tokens, approval rows, votes) or gathered (HTTP calls, closed
waits); then the outbox messages, in one row (commands, approval requests
and reminders, lifecycle events, dead letters), the history and the inputs' dedupe marks. Each
outbox message and HTTP call carries the trace context of the step that asked for it. What the
writer reads of the batch it writes is ``WriterBatch``; the rows and messages of approvals come
from the batch's approvals part, given to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, assert_never

from opentelemetry.trace import SpanContext

from bridge import messages, tracing
from bridge.approval_rows import Approvals
from bridge.asl.effects import (
    CancelTimer,
    ChangeSeats,
    CloseWait,
    ConcludeApproval,
    Effect,
    ExpectCallback,
    ExpectEvent,
    HistoryEntry,
    InvokeHttp,
    NotifyApprovers,
    NotifyParent,
    RecordHolders,
    RecordVote,
    RemindApproval,
    RequestApproval,
    SendMessage,
    StartChild,
    StartTimer,
    StopChild,
)
from bridge.asl.process import Process
from bridge.asl.search import SKIPPED
from bridge.batch_parts import BatchScope, Bookkeeping, Touched
from bridge.store import (
    correlation,
    deliveries,
    http_calls,
    inbox,
    outbox,
    search,
    waits,
)
from bridge.store import processes as store
from bridge.store.write_set import WriteSet


class WriterBatch(BatchScope, Bookkeeping, Protocol):
    """What the writer reads of the batch it writes (``bridge.batch.Batch``)."""

    @property
    def touched(self) -> Mapping[str, Touched]:
        """The processes the batch changed, by id, with their history."""
        ...

    @property
    def effects(self) -> Sequence[tuple[str, Effect]]:
        """The effects of every step, in order, with the process that asked for each."""
        ...

    @property
    def effect_traces(self) -> Sequence[SpanContext | None]:
        """The trace context each effect was written in, effect by effect."""
        ...


class EffectsWriter:
    """Writes one batch at its end; ``send`` queues an outbox row for it on the way."""

    def __init__(self, batch: WriterBatch, approvals: Approvals) -> None:
        self.batch = batch
        self.approvals = approvals
        #: The outbox messages queued so far, written in one statement at the end.
        self.outbox_rows: list[dict[str, Any]] = []

    async def write(self) -> None:
        conn, now = self.batch.conn, self.batch.now
        # Processes first: tokens, approvals and history point at them.
        history_rows = []
        new_processes: list[tuple[Process, int, Mapping[str, str | None]]] = []
        changed: list[tuple[Process, int, int, Mapping[str, str | None]]] = []
        #: Processes whose search attributes are new, or differ from what was read.
        indexed: list[Process] = []
        reindexed: list[Process] = []
        for process_id, touched in self.batch.touched.items():
            seq = touched.loaded.history_seq if touched.loaded else 0
            for entry, context in zip(touched.history, touched.traces, strict=True):
                seq += 1
                history_rows.append((process_id, seq, entry))
                self._lifecycle(touched.process, entry, context)
                if entry.type == "StateEntered":
                    self.batch.tally.steps[touched.process.definition] += 1
                elif entry.type == SKIPPED:
                    self.batch.tally.attributes_skipped[touched.process.definition] += 1
            trace_columns = tracing.columns(touched.trace)
            if touched.loaded is None:
                new_processes.append((touched.process, seq, trace_columns))
                if touched.process.search_attributes:
                    indexed.append(touched.process)
            elif touched.history or touched.process != touched.loaded.process:
                changed.append((touched.process, touched.loaded.row_version, seq, trace_columns))
                attributes = touched.process.search_attributes
                if attributes != touched.loaded.process.search_attributes:
                    reindexed.append(touched.process)
        await store.insert_processes(conn, new_processes, now)
        # What needs no answer goes at the end, in one round trip (bridge.store.write_set); an
        # update's guard counts the rows it changed there.
        writes = WriteSet(conn)
        await store.update_processes(conn, changed, now, writes=writes)
        closed: dict[str, list[str]] = {"callback": [], "approval": [], "event": [], "http": []}
        calls: list[dict[str, Any]] = []
        notices: list[dict[str, Any]] = []
        for (process_id, effect), context in zip(
            self.batch.effects, self.batch.effect_traces, strict=True
        ):
            process = self.batch.touched[process_id].process
            match effect:
                case SendMessage():
                    self.send(messages.command(process, effect, now), context)
                case ExpectCallback():
                    pass  # the wait keeps its token's hash (bridge.asl.task_tokens)
                case RequestApproval():
                    self.send(await self.approvals.request(process, effect), context)
                case RecordHolders():
                    await waits.record_holders(conn, effect.wait_id, dict(effect.holders))
                case RecordVote():
                    vote = {
                        "seat": effect.seat,
                        "decision": effect.decision or ("approve" if effect.approved else "reject"),
                        "by": effect.decided_by,
                        "comment": effect.comment,
                        "at": now.isoformat(),
                        **({"values": effect.values} if effect.values is not None else {}),
                    }
                    await waits.record_vote(conn, effect.wait_id, vote)
                case ConcludeApproval():
                    await waits.conclude(conn, effect.wait_id, effect.outcome, now)
                    self.batch.tally.approvals[effect.outcome] += 1
                case RemindApproval():
                    self.send(await self.approvals.reminder(process, effect), context)
                case NotifyApprovers():
                    notices += await self.approvals.deliveries(process, effect)
                case ChangeSeats():
                    await waits.change_seats(conn, effect.wait_id, list(effect.seats))
                case CloseWait():
                    closed[effect.kind].append(effect.wait_id)
                case StartTimer():
                    # Kept in the process's state and its wake time (bridge.store.timers).
                    self.batch.written.due(effect.due_at)
                case CancelTimer():
                    pass
                case ExpectEvent():
                    pass  # indexed as it happened (Batch.follow_effects, bridge.correlate)
                case InvokeHttp():
                    calls.append(self._http_call(process_id, effect, context))
                case StartChild() | StopChild() | NotifyParent():
                    # Carried out as it happened (Batch.follow_effects, bridge.child_processes).
                    pass
                case _:
                    assert_never(effect)
        await search.write(conn, indexed, reindexed, writes)
        # Calls first: a wait opened and closed in one batch cancels its call.
        await http_calls.add(conn, calls)
        written = self.batch.written
        written.http_calls = written.http_calls or bool(calls)
        await deliveries.add(conn, notices)
        written.deliveries = written.deliveries or bool(notices)
        # A task's wait has no rows to close (its token's row says nothing of it being open).
        await http_calls.cancel(conn, closed["http"], now)
        await waits.close_waits(conn, closed["approval"], now)
        await correlation.remove_waits(conn, closed["event"])
        await outbox.add(conn, self.outbox_rows, writes=writes)
        written.outbox = written.outbox or bool(self.outbox_rows)
        await store.append_history(conn, history_rows, writes=writes)
        await inbox.mark(conn, list(self.batch.marks.values()), writes=writes)
        await writes.flush()

    def _http_call(
        self, process_id: str, effect: InvokeHttp, context: SpanContext | None
    ) -> dict[str, Any]:
        """The work-queue row of an HTTP call, in the trace context of the step that asked."""
        return {
            "id": effect.wait_id,
            "process_id": process_id,
            "state": effect.state,
            "request": effect.request,
            "timeout_seconds": effect.timeout_seconds,
            "deadline": effect.deadline,
            "created_at": self.batch.now,
            **tracing.columns(context),
        }

    def send(self, row: dict[str, Any], context: SpanContext | None) -> None:
        """An outbox message, sent on in the trace context of the step that wrote it."""
        if context is not None:
            row.update(tracing.columns(context))
        self.outbox_rows.append(row)

    def _lifecycle(
        self, process: Process, entry: HistoryEntry, context: SpanContext | None
    ) -> None:
        topic = self.batch.config.lifecycle_topic
        if not topic:
            return
        kind = messages.LIFECYCLE.get(entry.type)
        if kind is None and self.batch.config.lifecycle_steps:
            kind = messages.STEPS.get(entry.type)
        if kind is not None:
            self.send(
                messages.lifecycle(self.batch.entropy.new_id(), process, entry, kind, topic),
                context,
            )
