"""The engine: the one path every input takes. Load, step, save, in one transaction.

``Engine.apply(inputs)`` takes a batch (Kafka events, replies, HTTP callbacks, approval decisions,
fired timers), reads the processes it touches in bulk, runs the pure interpreter for each input in
order, and writes state, history, outbox rows, tokens, timers and the inputs' dedupe marks in one
database transaction. Kafka offsets are committed by the caller after ``apply`` returns.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.asl import inputs as core
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    Effect,
    ExpectCallback,
    HistoryEntry,
    RequestApproval,
    SendMessage,
    StartTimer,
)
from bridge.asl.interpreter import Step, step
from bridge.asl.process import Process
from bridge.definitions import Registry
from bridge.events import DomainEvent, InvalidEvent, KafkaRecord, Match, decode, identity, match
from bridge.store import inbox, outbox, timers, waits
from bridge.store import processes as store
from bridge.store.processes import ConcurrentUpdate, Loaded

log = logging.getLogger(__name__)
JSON = Any


# --------------------------------------------------------------------- what comes in


@dataclass(frozen=True)
class EventReceived:
    record: KafkaRecord


@dataclass(frozen=True)
class CallbackReceived:
    token: str
    outcome: Literal["success", "failure", "heartbeat"]
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    via: str = "http"


@dataclass(frozen=True)
class DecisionReceived:
    link_token: str
    comment: str | None = None
    decided_by: str | None = None


@dataclass(frozen=True)
class TimerDue:
    timer_id: str
    process_id: str


EngineInput = EventReceived | CallbackReceived | DecisionReceived | TimerDue


# --------------------------------------------------------------------- what comes out


OutcomeStatus = Literal["applied", "duplicate", "ignored", "invalid", "not_found", "conflict"]


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    reason: str = ""
    process_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("applied", "duplicate", "ignored")


class SystemEntropy:
    """Randomness for the interpreter: ids, unguessable tokens, intrinsic functions."""

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def new_token(self) -> str:
        return secrets.token_urlsafe(32)

    def random_int(self, low: int, high: int) -> int:
        return low + secrets.randbelow(max(high - low, 1))

    def uuid4(self) -> str:
        return str(uuid.uuid4())


@dataclass
class _Touched:
    """A process changed in this batch and everything to write for it."""

    process: Process
    loaded: Loaded | None
    history: list[HistoryEntry] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        db: AsyncEngine,
        registry: Registry,
        *,
        base_url: str,
        approvals_topic: str,
        max_event_bytes: int,
        entropy: SystemEntropy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.registry = registry
        self.base_url = base_url
        self.approvals_topic = approvals_topic
        self.max_event_bytes = max_event_bytes
        self.entropy = entropy or SystemEntropy()
        self.clock = clock
        #: Set after every commit that wrote outbox rows or timers, to wake the relay at once.
        self.committed = asyncio.Event()

    async def apply(self, batch: Sequence[EngineInput]) -> list[Outcome]:
        """Apply ``batch`` in one transaction; retried when a concurrent writer got in between."""
        for attempt in range(10):
            try:
                async with self.db.begin() as conn:
                    outcomes = await _Batch(self, conn).run(batch)
                self.committed.set()
                return outcomes
            except (ConcurrentUpdate, IntegrityError) as exc:
                if attempt == 9:
                    raise
                log.info("retrying a batch after a concurrent update: %s", type(exc).__name__)
            except DBAPIError as exc:
                if attempt == 9 or not _is_transient(exc):
                    raise
                log.info("retrying a batch after a transient database error: %s", exc.orig)
            await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def apply_one(self, item: EngineInput) -> Outcome:
        return (await self.apply([item]))[0]


def _is_transient(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in ("deadlock", "serialization", "database is locked"))


class _Batch:
    """One transaction's worth of inputs."""

    def __init__(self, engine: Engine, conn: AsyncConnection) -> None:
        self.engine = engine
        self.conn = conn
        self.now = engine.clock()
        self.touched: dict[str, _Touched] = {}
        self.effects: list[tuple[str, Effect]] = []
        self.marks: dict[str, str] = {}

    async def run(self, batch: Sequence[EngineInput]) -> list[Outcome]:
        events = {
            index: self._read_event(item.record)
            for index, item in enumerate(batch)
            if isinstance(item, EventReceived)
        }
        event_keys = [found[1] for found in events.values() if not isinstance(found, Outcome)]
        already = await inbox.seen(self.conn, event_keys)
        tokens = await waits.find_task_tokens(
            self.conn, [item.token for item in batch if isinstance(item, CallbackReceived)]
        )
        links = {
            item.link_token: await waits.find_link(self.conn, item.link_token)
            for item in batch
            if isinstance(item, DecisionReceived)
        }
        fired = await timers.claim(
            self.conn, [item.timer_id for item in batch if isinstance(item, TimerDue)]
        )
        wanted = [target.process_id for target in tokens.values()]
        wanted += [link.process_id for link in links.values() if link is not None]
        wanted += [item.process_id for item in batch if isinstance(item, TimerDue)]
        for process_id, loaded in (await store.load_for_update(self.conn, wanted)).items():
            self.touched[process_id] = _Touched(loaded.process, loaded)

        outcomes: list[Outcome] = []
        for index, item in enumerate(batch):
            match item:
                case EventReceived():
                    outcomes.append(self._event(events[index], already))
                case CallbackReceived():
                    outcomes.append(self._callback(item, tokens.get(item.token)))
                case DecisionReceived():
                    outcomes.append(await self._decision(item, links.get(item.link_token)))
                case TimerDue():
                    if item.timer_id not in fired:
                        outcomes.append(Outcome("ignored", "the timer was cancelled or fired"))
                    else:
                        outcomes.append(self._step(item.process_id, core.TimerFired(item.timer_id)))
        await self._write()
        return outcomes

    # ----------------------------------------------------------------- events

    def _read_event(self, record: KafkaRecord) -> Outcome | tuple[DomainEvent, str, list[Match]]:
        try:
            event = decode(record, self.engine.max_event_bytes)
            matches = [
                found
                for definition, trigger in self.engine.registry.triggers(record.topic)
                if (found := match(event, trigger, definition)) is not None
            ]
        except InvalidEvent as exc:
            log.warning("invalid event at %s: %s", record.position, exc)
            return Outcome("invalid", str(exc))
        return event, identity(event, matches), matches

    def _event(
        self, found: Outcome | tuple[DomainEvent, str, list[Match]], already: set[str]
    ) -> Outcome:
        if isinstance(found, Outcome):
            return found
        event, key, matches = found
        if key in already or key in self.marks:
            return Outcome("duplicate", f"event {key} was already applied")
        if not matches:
            self.marks[key] = "no trigger matched"
            return Outcome("ignored", "no trigger matched the event")
        started = []
        for found_match in matches:
            process_id = self.engine.entropy.new_id()
            origin = {"eventKey": key, "topic": event.record.topic, "offset": event.record.offset}
            start = core.Start(process_id, found_match.input, found_match.correlation_key, origin)
            result = step(found_match.definition, None, start, self.now, self.engine.entropy)
            assert result.process is not None and result.rejected is None
            self.touched[process_id] = _Touched(result.process, None)
            self._effects(process_id, result)
            started.append(process_id)
        self.marks[key] = "started " + ",".join(started)
        return Outcome("applied", "started", tuple(started))

    # ----------------------------------------------------------------- callbacks and decisions

    def _callback(self, item: CallbackReceived, target: waits.TokenTarget | None) -> Outcome:
        if target is None:
            return Outcome("not_found", "unknown task token")
        if not target.open:
            return Outcome("conflict", "the task token was already used or has expired")
        trigger: core.Input
        if item.outcome == "success":
            trigger = core.TaskSucceeded(target.wait_id, item.output)
        elif item.outcome == "failure":
            trigger = core.TaskFailed(target.wait_id, item.error or "", item.cause or "")
        else:
            trigger = core.TaskHeartbeat(target.wait_id)
        return self._step(target.process_id, trigger)

    async def _decision(self, item: DecisionReceived, link: waits.LinkTarget | None) -> Outcome:
        if link is None:
            return Outcome("not_found", "unknown approval link")
        if link.status != "PENDING":
            return Outcome("conflict", f"the approval is already {link.status.lower()}")
        outcome = self._step(
            link.process_id,
            core.ApprovalDecided(link.wait_id, link.approve, item.decided_by, item.comment),
        )
        if outcome.status == "applied" and not await waits.record_decision(
            self.conn,
            link.approval_id,
            approved=link.approve,
            decided_by=item.decided_by,
            comment=item.comment,
            now=self.now,
        ):
            raise ConcurrentUpdate(link.process_id)
        return outcome

    # ----------------------------------------------------------------- stepping

    def _step(self, process_id: str, trigger: core.Input) -> Outcome:
        touched = self.touched.get(process_id)
        if touched is None:
            return Outcome("not_found", "no such process")
        process = touched.process
        definition = self.engine.registry.get(process.definition, process.version)
        if definition is None:
            return Outcome(
                "conflict", f"definition {process.definition} v{process.version} is not loaded"
            )
        result = step(definition, process, trigger, self.now, self.engine.entropy)
        if result.rejected is not None:
            return Outcome("conflict", result.rejected, (process_id,))
        assert result.process is not None
        touched.process = result.process
        self._effects(process_id, result)
        return Outcome("applied", "", (process_id,))

    def _effects(self, process_id: str, result: Step) -> None:
        self.touched[process_id].history.extend(result.history)
        self.effects.extend((process_id, effect) for effect in result.effects)

    # ----------------------------------------------------------------- writing

    async def _write(self) -> None:
        conn, now = self.conn, self.now
        # Processes first: tokens, approvals, timers and history point at them.
        history_rows = []
        for process_id, touched in self.touched.items():
            seq = touched.loaded.history_seq if touched.loaded else 0
            for entry in touched.history:
                seq += 1
                history_rows.append((process_id, seq, entry))
            if touched.loaded is None:
                await store.insert_process(conn, touched.process, seq, now)
            elif touched.history or touched.process != touched.loaded.process:
                await store.update_process(
                    conn, touched.process, touched.loaded.row_version, seq, now
                )
        outbox_rows: list[dict[str, Any]] = []
        new_timers: dict[str, dict[str, Any]] = {}
        cancelled: list[str] = []
        closed: list[str] = []
        for process_id, effect in self.effects:
            process = self.touched[process_id].process
            match effect:
                case SendMessage():
                    outbox_rows.append(_command_row(process, effect, now))
                case ExpectCallback():
                    await waits.add_task_token(
                        conn, effect.token, process_id, effect.wait_id, effect.state, now
                    )
                case RequestApproval():
                    outbox_rows.append(await self._approval(process, effect))
                case CloseWait():
                    closed.append(effect.wait_id)
                case StartTimer():
                    new_timers[effect.timer_id] = {
                        "id": effect.timer_id,
                        "process_id": process_id,
                        "due_at": effect.due_at,
                    }
                case CancelTimer():
                    if new_timers.pop(effect.timer_id, None) is None:
                        cancelled.append(effect.timer_id)
        await waits.close_waits(conn, closed, now)
        await timers.cancel(conn, cancelled)
        await timers.add(conn, list(new_timers.values()))
        await outbox.add(conn, outbox_rows)
        await store.append_history(conn, history_rows)
        await inbox.mark(conn, self.marks, now)

    async def _approval(self, process: Process, effect: RequestApproval) -> dict[str, Any]:
        approval_id = self.engine.entropy.new_id()
        approve_token = secrets.token_urlsafe(32)
        reject_token = secrets.token_urlsafe(32)
        await waits.add_approval(
            self.conn,
            approval_id=approval_id,
            process_id=process.id,
            wait_id=effect.wait_id,
            state=effect.state,
            title=effect.title,
            description=effect.description,
            data=effect.data,
            links={approve_token: True, reject_token: False},
            now=self.now,
        )
        base = self.engine.base_url
        message_id = self.engine.entropy.new_id()
        return {
            "message_id": message_id,
            "process_id": process.id,
            "topic": self.engine.approvals_topic,
            "key": process.id,
            "value": {
                "type": "ApprovalRequested",
                "approvalId": approval_id,
                "processId": process.id,
                "definition": process.definition,
                "state": effect.state,
                "title": effect.title,
                "description": effect.description,
                "data": effect.data,
                "approveUrl": f"{base}/approve/{approve_token}",
                "rejectUrl": f"{base}/reject/{reject_token}",
                "requestedAt": self.now.isoformat(),
                "statusUrl": f"{base}/processes/{process.id}",
            },
            "headers": _cloudevent_headers(message_id, "bridge.ApprovalRequested", process),
            "created_at": self.now,
        }


def _command_row(process: Process, effect: SendMessage, now: datetime) -> dict[str, Any]:
    value = effect.value
    kind = (
        value.get("type")
        if isinstance(value, dict) and isinstance(value.get("type"), str)
        else None
    )
    headers = _cloudevent_headers(effect.message_id, kind or "bridge.Command", process)
    headers.update(effect.headers)
    return {
        "message_id": effect.message_id,
        "process_id": process.id,
        "topic": effect.topic,
        "key": effect.key,
        "value": value,
        "headers": headers,
        "created_at": now,
    }


def _cloudevent_headers(message_id: str, kind: str, process: Process) -> dict[str, str]:
    """CloudEvents binary-mode headers: consumers dedupe on ce_id, which never changes."""
    return {
        "ce_specversion": "1.0",
        "ce_id": message_id,
        "ce_source": f"bridge/{process.definition}",
        "ce_type": kind,
        "ce_subject": process.id,
        "content-type": "application/json",
        "bridge_process_id": process.id,
    }
