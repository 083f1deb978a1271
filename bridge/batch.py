"""One transaction's worth of inputs: correlate, step, write.

A ``Batch`` reads the processes its inputs touch, runs the pure interpreter for each input in
order, and writes state, history, outbox rows, tokens, timers, event waits and the inputs' dedupe
marks, all inside the caller's transaction.

Events are correlated here: an event may start processes (triggers), complete event waits
(``bridge:event:waitFor``), or, when something may want it later, be kept in the buffer until
its time to live ends. A wait that begins takes a buffered event at once.

Each input is applied in a span ("bridge.apply <kind>") under the trace context it brought (an
event's headers, an HTTP request's) or, when it brought none, under its process's. What a step
writes (outbox rows, the trace context of a new process) carries the context it ran in.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, StatusCode
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge import messages, tracing
from bridge.aliases import Reference, choose_version, parse_reference
from bridge.asl import inputs as core
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    ConcludeApproval,
    Effect,
    ExpectCallback,
    ExpectEvent,
    HistoryEntry,
    InvokeHttp,
    NotifyParent,
    RecordVote,
    RemindApproval,
    RequestApproval,
    SendMessage,
    StartChild,
    StartTimer,
    StopChild,
)
from bridge.asl.interpreter import Step, step
from bridge.asl.model import Definition
from bridge.asl.process import Process, ProcessStatus
from bridge.events import (
    Candidate,
    DomainEvent,
    InvalidEvent,
    Match,
    candidates,
    decode,
    event_type,
    identity,
    match,
    payload,
)
from bridge.intake import (
    KINDS,
    ApprovalViewed,
    BufferExpired,
    CallbackReceived,
    DecisionReceived,
    EngineInput,
    EventReceived,
    HttpCallEnded,
    Outcome,
    PoisonInput,
    RedriveRequested,
    StartRequested,
    StopRequested,
    TimerDue,
)
from bridge.metrics import Tally
from bridge.nesting import Nesting
from bridge.store import aliases, correlation, http_calls, inbox, outbox, timers, waits
from bridge.store import processes as store
from bridge.store.database import database_now
from bridge.store.processes import ConcurrentUpdate, Loaded

if TYPE_CHECKING:
    from bridge.engine import Engine

log = logging.getLogger(__name__)
JSON = Any


class MissingDefinition(Exception):
    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"definition {name} v{version} is not loaded")
        self.name = name
        self.version = version


@dataclass
class _Touched:
    """A process changed in this batch and everything to write for it."""

    process: Process
    loaded: Loaded | None
    history: list[HistoryEntry] = field(default_factory=list)
    #: The trace context each history entry was written in, entry by entry.
    traces: list[SpanContext | None] = field(default_factory=list)
    #: The process's own trace context (the one it started in), kept with its row.
    trace: SpanContext | None = None

    @classmethod
    def of(cls, loaded: Loaded) -> _Touched:
        return cls(
            loaded.process, loaded, trace=tracing.parse(loaded.traceparent, loaded.tracestate)
        )


@dataclass(frozen=True)
class _Read:
    """An event decoded, with what its triggers and the waits' interests make of it."""

    event: DomainEvent
    key: str
    matches: list[Match]
    candidates: list[Candidate]


class Batch:
    def __init__(self, engine: Engine, conn: AsyncConnection) -> None:
        self.engine = engine
        self.config = engine.config
        self.conn = conn
        self.now = engine.clock() if engine.clock is not None else datetime.now(UTC)
        self.touched: dict[str, _Touched] = {}
        self.effects: list[tuple[str, Effect]] = []
        #: How far ``_correlate_effects`` has looked through ``effects``.
        self.correlated = 0
        self.marks: dict[str, dict[str, Any]] = {}
        self.outbox_rows: list[dict[str, Any]] = []
        #: The processes stepped for the input at hand, to blame if it raises.
        self.stepping: list[str] = []
        self.tracing = engine.tracing
        #: The span context of the input at hand, and whether the input brought its own.
        self.trace: SpanContext | None = None
        self.own_trace = False
        #: The trace context each effect was written in, effect by effect.
        self.effect_traces: list[SpanContext | None] = []
        self.tally = Tally()
        #: HTTP calls this batch queued (the engine wakes the invoker after the commit).
        self.http_calls_queued = 0
        #: Child processes: started, stopped and answered as their effects appear.
        self.nesting = Nesting(self)

    async def run(self, batch: Sequence[EngineInput]) -> list[Outcome]:
        if self.engine.clock is None:
            self.now = await database_now(self.conn)
        read = {
            index: self._read_event(item)
            for index, item in enumerate(batch)
            if isinstance(item, EventReceived)
        }
        keys = [found.key if isinstance(found, _Read) else found[1] for found in read.values()]
        already = await inbox.seen(self.conn, keys)
        tokens = await waits.find_task_tokens(
            self.conn, [item.token for item in batch if isinstance(item, CallbackReceived)]
        )
        links = {
            item.link_token: await waits.find_link(self.conn, item.link_token)
            for item in batch
            if isinstance(item, DecisionReceived)
        }
        wanted = [target.process_id for target in tokens.values()]
        wanted += [link.process_id for link in links.values() if link is not None]
        wanted += [item.process_id for item in batch if isinstance(item, TimerDue)]
        for process_id, loaded in (await store.load_for_update(self.conn, wanted)).items():
            self.touched[process_id] = _Touched.of(loaded)
        # Processes are locked before their timers are claimed, the order every path takes
        # (a callback locks its process, then cancels the timer): no deadlock between them.
        fired = await timers.claim(
            self.conn, [item.timer_id for item in batch if isinstance(item, TimerDue)]
        )

        outcomes: list[Outcome] = []
        # An HTTP request's trace context (its handler runs in this task).
        ambient = tracing.current()
        spans: list[Span] = []
        try:
            for index, item in enumerate(batch):
                self.stepping = []
                self.nesting.starts = 0
                structlog.contextvars.unbind_contextvars(
                    "process_id", "correlation_key", "event_id"
                )
                found = read.get(index)
                span = await self._begin(item, found, ambient, tokens, links)
                spans.append(span)
                attached = (
                    otel_context.attach(trace.set_span_in_context(span))
                    if self.trace is not None
                    else None
                )
                try:
                    outcome = await self._one(item, found, already, tokens, links, fired)
                except (ConcurrentUpdate, DBAPIError, MissingDefinition):
                    raise
                except Exception as exc:
                    if span.is_recording():
                        span.record_exception(exc)
                        span.set_status(StatusCode.ERROR, type(exc).__name__)
                    raise PoisonInput(index, tuple(dict.fromkeys(self.stepping)), exc) from exc
                finally:
                    if attached is not None:
                        otel_context.detach(attached)
                outcomes.append(outcome)
                if span.is_recording():
                    self._describe(span, item, found, outcome)
            self.trace, self.own_trace = None, False
            await self._write()
        finally:
            # The spans last until the batch is written (or fails).
            for span in spans:
                span.end()
        return outcomes

    async def _begin(
        self,
        item: EngineInput,
        read: _Read | tuple[str, str] | None,
        ambient: SpanContext | None,
        tokens: dict[str, waits.TokenTarget],
        links: dict[str, waits.LinkTarget | None],
    ) -> Span:
        """The span ``item`` is applied in: under the trace context it brought, else under the
        context of the one process it is for (a callback, a decision, a timer, a stop)."""
        own: SpanContext | None
        if isinstance(item, EventReceived):
            own = tracing.from_headers(item.record.headers)
            if isinstance(read, _Read):
                structlog.contextvars.bind_contextvars(event_id=read.event.id or read.key)
        elif isinstance(item, CallbackReceived | HttpCallEnded) and item.traceparent is not None:
            own = tracing.parse(item.traceparent, item.tracestate)
        else:
            own = ambient
        parent = own
        if parent is None:
            target: str | None = None
            if isinstance(item, CallbackReceived):
                found = tokens.get(item.token)
                target = found.process_id if found else None
            elif isinstance(item, DecisionReceived):
                link = links.get(item.link_token)
                target = link.process_id if link else None
            elif isinstance(item, TimerDue):
                target = item.process_id
            elif isinstance(item, StopRequested | RedriveRequested):
                target = item.process_id
                await self._load(target)
            touched = self.touched.get(target) if target is not None else None
            parent = touched.trace if touched is not None else None
        span = self.tracing.start(f"bridge.apply {KINDS.get(type(item), 'input')}", parent)
        context = span.get_span_context()
        self.trace = context if context.is_valid else None
        self.own_trace = own is not None
        return span

    def _describe(
        self, span: Span, item: EngineInput, read: _Read | tuple[str, str] | None, outcome: Outcome
    ) -> None:
        """What a span shows of its input: process, definition, correlation key, event id.
        Never a token."""
        span.set_attribute("bridge.outcome", outcome.status)
        ids = outcome.process_ids
        if ids:
            span.set_attribute("bridge.process.id", ids[0])
            if len(ids) > 1:
                span.set_attribute("bridge.process.ids", list(ids))
            touched = self.touched.get(ids[0])
            if touched is not None:
                span.set_attribute("bridge.definition", touched.process.definition)
                if touched.process.correlation_key is not None:
                    span.set_attribute("bridge.correlation_key", touched.process.correlation_key)
        if isinstance(item, EventReceived):
            record = item.record
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.destination.name", record.topic)
            span.set_attribute("messaging.destination.partition.id", str(record.partition))
            span.set_attribute("messaging.kafka.offset", record.offset)
            if isinstance(read, _Read):
                span.set_attribute("bridge.event.id", read.event.id or read.key)
                if read.event.type is not None:
                    span.set_attribute("bridge.event.type", read.event.type)
        elif isinstance(item, CallbackReceived):
            span.set_attribute("bridge.callback.outcome", item.outcome)
            span.set_attribute("bridge.callback.via", item.via)
        elif isinstance(item, StartRequested):
            span.set_attribute("bridge.definition", item.definition)
            if item.name is not None:
                span.set_attribute("bridge.start.name", item.name)

    async def _one(
        self,
        item: EngineInput,
        read: _Read | tuple[str, str] | None,
        already: set[str],
        tokens: dict[str, waits.TokenTarget],
        links: dict[str, waits.LinkTarget | None],
        fired: set[str],
    ) -> Outcome:
        match item:
            case EventReceived():
                assert read is not None
                outcome = await self._event(item, read, already)
            case CallbackReceived():
                outcome = self._callback(item, tokens.get(item.token))
            case DecisionReceived():
                outcome = await self._decision(item, links.get(item.link_token))
            case TimerDue():
                if item.timer_id not in fired:
                    outcome = Outcome("ignored", "the timer was cancelled or fired")
                else:
                    outcome = self._step(item.process_id, core.TimerFired(item.timer_id))
            case BufferExpired():
                outcome = await self._expired(item)
            case HttpCallEnded():
                outcome = await self._http_call_ended(item)
            case ApprovalViewed():
                outcome = await self._viewed(item)
            case StartRequested():
                outcome = await self._start_requested(item)
            case StopRequested():
                if await self._load(item.process_id) is None:
                    outcome = Outcome("not_found", "no such process")
                else:
                    outcome = self._step(item.process_id, core.Stop(item.error, item.cause))
            case RedriveRequested():
                if await self._load(item.process_id) is None:
                    outcome = Outcome("not_found", "no such process")
                else:
                    outcome = self._step(item.process_id, core.Redrive())
        await self._correlate_effects()
        return outcome

    async def _start_requested(self, item: StartRequested) -> Outcome:
        reference = parse_reference(item.definition)
        name = reference.definition
        key = f"start|{name}|{item.name}" if item.name else None
        if key is not None:
            found = await inbox.find(self.conn, key)
            if found or key in self.marks:
                known = found[0]["details"] if found else self.marks[key]["details"]
                return Outcome("duplicate", "started before", (known["processId"],))
        process_id = (
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"bridge:{name}:{item.name}"))
            if item.name
            else self.engine.entropy.new_id()
        )
        definition = await self.definition_to_start(reference, item.version, process_id)
        if isinstance(definition, Outcome):
            return definition
        origin = {
            "via": "http",
            **({"name": item.name} if item.name else {}),
            **({"alias": reference.alias} if reference.alias else {}),
        }
        start = core.Start(process_id, item.input, item.correlation_key, origin)
        result = step(definition, None, start, self.now, self.engine.entropy)
        assert result.process is not None and result.rejected is None
        self.touched[process_id] = _Touched(result.process, None)
        self._effects(process_id, result)
        if key is not None:
            self.marks[key] = {
                "key": key,
                "received_at": self.now,
                "outcome": "started",
                "event_id": item.name,
                "source": "http",
                "topic": None,
                "partition": None,
                "offset": None,
                "event_type": None,
                "details": {"processId": process_id},
                "duplicates": 0,
                "last_duplicate_at": None,
            }
        return Outcome("applied", "started", (process_id,))

    async def definition_to_start(
        self, reference: Reference, version: int | None, process_id: str
    ) -> Definition | Outcome:
        """The definition a start of ``reference`` runs: the version asked for, the one an alias
        routes ``process_id`` to, or the newest. HTTP starts and child processes both use it."""
        chosen = await self._version_to_start(reference, version, process_id)
        if isinstance(chosen, Outcome):
            return chosen
        definition = self.engine.registry.get(reference.definition, chosen)
        if definition is None:
            return Outcome("not_found", f"no definition {reference.definition!r} version {chosen}")
        return definition

    def adopt(self, process_id: str, result: Step, parent: _Touched) -> None:
        """A child process started in this batch: written with the others, in the trace of the
        parent that started it."""
        assert result.process is not None
        self.touched[process_id] = _Touched(result.process, None, trace=parent.trace)
        self._effects(process_id, result)

    async def _version_to_start(
        self, reference: Reference, version: int | None, process_id: str
    ) -> int | Outcome:
        """The version a start runs: asked for, routed by an alias, or the newest."""
        if version is not None and reference.version not in (None, version):
            return Outcome("invalid", "the version field and NAME:VERSION disagree")
        if reference.alias is not None:
            alias = await aliases.get(self.conn, reference.definition, reference.alias)
            if alias is None:
                return Outcome(
                    "not_found", f"no alias {reference.alias!r} of {reference.definition!r}"
                )
            return choose_version(alias.routes, process_id)
        if (asked := version or reference.version) is not None:
            return asked
        latest = self.engine.registry.latest(reference.definition)
        if latest is None:
            return Outcome("not_found", f"no definition {reference.definition!r}")
        return latest.version

    async def quarantine(self, item: EngineInput, reason: str, process_ids: Sequence[str]) -> None:
        """An input that keeps failing: dead-letter it (events) and fail the processes it hit."""
        if isinstance(item, EventReceived):
            record = item.record
            read = self._read_event(item)
            key = read.key if isinstance(read, _Read) else read[1]
            if key not in await inbox.seen(self.conn, [key]):
                self._dead_letter(record, reason, key)
                self._mark_event(key, record, None, None, "dead-lettered", {"deadLetter": reason})
        for process_id in process_ids:
            if await self._load(process_id) is not None:
                self._step(process_id, core.Fault("Bridge.InputFailed", reason))
        await self._correlate_effects()
        await self._write()

    # ----------------------------------------------------------------- events

    def _read_event(self, item: EventReceived) -> _Read | tuple[str, str]:
        """The event and what may become of it, or (reason, position key) when it is invalid."""
        record = item.record
        registry = self.engine.registry
        try:
            event = decode(record, self.config.max_event_bytes)
            matches = [
                found
                for definition, trigger in registry.triggers(record.topic)
                if (found := match(event, trigger, definition)) is not None
            ]
        except InvalidEvent as exc:
            log.warning("invalid event at %s: %s", record.position, exc)
            return str(exc), f"pos|{record.position}"
        interests = registry.interests(record.topic)
        wanted = candidates(event, interests, self.config.buffer_seconds)
        return _Read(event, identity(event, matches, interests), matches, wanted)

    async def _event(
        self, item: EventReceived, read: _Read | tuple[str, str], already: set[str]
    ) -> Outcome:
        record = item.record
        if not isinstance(read, _Read):
            reason, key = read
            if key in already or key in self.marks:
                return Outcome("duplicate", f"event {key} was already dead-lettered")
            self._dead_letter(record, reason, key)
            self._mark_event(key, record, None, None, "dead-lettered", {"deadLetter": reason})
            return Outcome("invalid", reason)
        event, key = read.event, read.key
        if key in already or key in self.marks:
            if key in already:
                await inbox.count_duplicate(self.conn, key, self.now)
            else:
                self.marks[key]["duplicates"] += 1
                self.marks[key]["last_duplicate_at"] = self.now
            return Outcome("duplicate", f"event {key} was already applied")
        details: dict[str, Any] = {"started": [], "delivered": [], "ignored": []}
        kind = (
            event.type
            or next((event_type(event, found.trigger) for found in read.matches), None)
            or next((candidate.type for candidate in read.candidates), None)
        )
        if read.candidates:
            details["keys"] = sorted({candidate.key for candidate in read.candidates})
        if read.matches:
            details["correlationKeys"] = sorted({found.correlation_key for found in read.matches})

        delivered = await self._deliver(read, details)
        started = await self._start(read, details)
        # A start event is kept for the waits that want it too (another definition's, say), but
        # not for a Deliver trigger: it has just started the process it would go to.
        keep = [c for c in read.candidates if c.for_wait or not started]
        if keep and not delivered:
            await self._buffer(read, keep, details)
        outcome = _summary(details)
        self._mark_event(key, record, event, kind, outcome, details)
        if details["started"] or details["delivered"]:
            ids = tuple(
                [entry["processId"] for entry in details["started"]]
                + [entry["processId"] for entry in details["delivered"]]
            )
            return Outcome("applied", outcome, ids)
        return Outcome("ignored", outcome)

    async def _deliver(self, read: _Read, details: dict[str, Any]) -> bool:
        """Complete every wait for this event; whether any took it."""
        delivered = False
        for candidate in read.candidates:
            waiting = await correlation.waiting_for(
                self.conn, candidate.topic, candidate.type, candidate.key
            )
            for wait in waiting:
                arrived = payload(read.event, candidate.type, candidate.key, read.key)
                if await self._load(wait.process_id) is None:
                    continue
                outcome = self._step(wait.process_id, core.EventArrived(wait.wait_id, arrived))
                if outcome.status == "applied":
                    delivered = True
                    details["delivered"].append(
                        {"processId": wait.process_id, "waitId": wait.wait_id, "key": candidate.key}
                    )
                await self._correlate_effects()
        return delivered

    async def _start(self, read: _Read, details: dict[str, Any]) -> bool:
        """Start a process for every trigger that matched, as its OnRunning policy says."""
        started = False
        for found in read.matches:
            if found.trigger.on_running != "StartNew":
                running = await self._running(found.definition.name, found.correlation_key)
                if running:
                    details["ignored"].append(
                        {
                            "definition": found.definition.name,
                            "reason": f"a process with key {found.correlation_key} is running",
                            "policy": found.trigger.on_running,
                            "running": running,
                        }
                    )
                    continue
            process_id = self.engine.entropy.new_id()
            record = read.event.record
            origin = {"eventKey": read.key, "topic": record.topic, "offset": record.offset}
            start = core.Start(process_id, found.input, found.correlation_key, origin)
            result = step(found.definition, None, start, self.now, self.engine.entropy)
            assert result.process is not None and result.rejected is None
            self.touched[process_id] = _Touched(result.process, None)
            self._effects(process_id, result)
            details["started"].append(
                {"processId": process_id, "definition": found.definition.name}
            )
            started = True
            await self._correlate_effects()
        return started

    async def _running(self, definition: str, key: str) -> list[str]:
        stored = await store.running_ids(self.conn, definition, key)
        here = [
            process_id
            for process_id, touched in self.touched.items()
            if touched.process.definition == definition
            and touched.process.correlation_key == key
            and touched.process.status is ProcessStatus.RUNNING
        ]
        return list(dict.fromkeys(stored + here))

    async def _buffer(self, read: _Read, keep: list[Candidate], details: dict[str, Any]) -> None:
        until = None
        for candidate in keep:
            expires = self.now + timedelta(seconds=candidate.buffer_seconds)
            until = max(until or expires, expires)
            await correlation.buffer(
                self.conn,
                event_key=read.key,
                topic=candidate.topic,
                event_type=candidate.type,
                key=candidate.key,
                event=payload(read.event, candidate.type, candidate.key, read.key),
                now=self.now,
                expires_at=expires,
            )
        assert until is not None
        details["bufferedUntil"] = until.isoformat()
        details["bufferedFor"] = [{"type": c.type, "key": c.key, "topic": c.topic} for c in keep]

    async def _expired(self, item: BufferExpired) -> Outcome:
        expired = await correlation.expire(self.conn, item.buffer_id, self.now)
        if expired is None:
            return Outcome("ignored", "the buffered event was taken or already expired")
        event_key = expired.event_key
        consumed, settled = await correlation.siblings_settled(self.conn, event_key)
        if consumed or not settled:
            return Outcome("ignored", "another copy of the event was taken or is still kept")
        reason = "unmatched: no wait took the event before its time to live ended"
        self._dead_letter(None, reason, event_key, event=expired.event)
        await inbox.add_details(
            self.conn,
            event_key,
            "dead-lettered",
            {"deadLetter": reason, "expiredAt": str(self.now)},
        )
        return Outcome("applied", reason)

    def _dead_letter(self, record: Any, reason: str, event_key: str, *, event: JSON = None) -> None:
        self.tally.dead_letters += 1
        self._send(
            messages.dead_letter(
                self.engine.entropy.new_id(),
                self.config.dlq_topic,
                record,
                reason,
                self.now,
                event_key=event_key,
                event=event,
            ),
            self.trace,
        )

    def _mark_event(
        self,
        key: str,
        record: Any,
        event: DomainEvent | None,
        kind: str | None,
        outcome: str,
        details: dict[str, Any],
    ) -> None:
        self.marks[key] = {
            "key": key,
            "received_at": self.now,
            "outcome": outcome[:200],
            "event_id": (event.id if event else None) or _configured_id(key),
            "source": event.source if event else None,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "event_type": kind,
            "details": details,
            "duplicates": 0,
            # Every row of one INSERT needs the same columns.
            "last_duplicate_at": None,
        }

    async def _correlate_effects(self) -> None:
        """Index new event waits (taking a buffered event at once) and drop closed ones.

        Done as effects appear, not at the end of the batch, so that a later event in the same
        batch finds the wait, and a wait that begins finds an event buffered moments before.
        """
        while self.correlated < len(self.effects):
            process_id, effect = self.effects[self.correlated]
            self.correlated += 1
            if isinstance(effect, StartChild | StopChild | NotifyParent):
                await self.nesting.apply(process_id, effect)
            elif isinstance(effect, CloseWait):
                await correlation.remove_waits(self.conn, [effect.wait_id])
            elif isinstance(effect, ExpectEvent):
                taken = await correlation.take_buffered(
                    self.conn, effect.subscriptions, process_id, self.now
                )
                if taken is None:
                    await correlation.add_waits(
                        self.conn, effect.wait_id, process_id, effect.subscriptions, self.now
                    )
                    continue
                outcome = self._step(process_id, core.EventArrived(effect.wait_id, taken.event))
                if outcome.status == "applied":
                    await inbox.add_details(
                        self.conn,
                        taken.event_key,
                        "delivered from the buffer",
                        {
                            "delivered": [
                                {
                                    "processId": process_id,
                                    "waitId": effect.wait_id,
                                    "fromBuffer": True,
                                    "at": self.now.isoformat(),
                                }
                            ]
                        },
                    )

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

    async def _http_call_ended(self, item: HttpCallEnded) -> Outcome:
        """The answer of an HTTP call goes to its wait, and the call is done, in one transaction:
        an answer that comes again (a call made twice) finds it done and changes nothing. An
        answer the process refuses (too late, the process ended) ends the call all the same."""
        call = await http_calls.find(self.conn, item.call_id)
        if call is None:
            return Outcome("not_found", "unknown HTTP call")
        if call.done_at is not None:
            return Outcome("ignored", f"the HTTP call has ended already ({call.outcome})")
        if await self._load(call.process_id) is None:
            return Outcome("not_found", "no such process")
        answer = core.HttpAnswered(call.id, item.response, item.error, item.cause)
        outcome = self._step(call.process_id, answer)
        status = item.response.get("StatusCode") if isinstance(item.response, dict) else None
        described = item.error or str(status)
        if outcome.status != "applied":
            described = f"{described}, refused: {outcome.reason}"
        if not await http_calls.finish(self.conn, call, described, self.now):
            # Another answer to the same call committed in between: apply the batch again.
            raise ConcurrentUpdate(f"HTTP call {call.id} ended concurrently")
        return outcome

    async def _decision(self, item: DecisionReceived, link: waits.LinkTarget | None) -> Outcome:
        if link is None:
            return Outcome("not_found", "unknown approval link")
        approve = link.approve if item.approve is None else item.approve
        decision = "approve" if approve else "reject"
        if item.forged:
            reason = "a form from another page or with a wrong nonce"
            self._audit(link, "ApprovalAttemptRefused", item, reason=reason, decision=decision)
            return Outcome("conflict", reason)
        if link.status != "PENDING":
            reason = f"the approval is already {link.status.lower()}"
            self._audit(link, "ApprovalAttemptRefused", item, reason=reason, decision=decision)
            return Outcome("conflict", reason)
        outcome = self._step(
            link.process_id,
            core.ApprovalDecided(
                link.wait_id, approve, item.decided_by, item.comment, seat=link.seat
            ),
        )
        if outcome.status != "applied":
            self._audit(
                link, "ApprovalAttemptRefused", item, reason=outcome.reason, decision=decision
            )
        return outcome

    def _audit(self, link: waits.LinkTarget, kind: str, item: Any, **details: Any) -> None:
        """A history entry that changes nothing: who looked at or tried a decision link."""
        by = getattr(item, "decided_by", None) or getattr(item, "viewer", None)
        entry = {"approvalId": link.approval_id, "seat": link.seat, "by": by, **details}
        self._step(link.process_id, core.Audit(kind, link.approval.state, entry))

    async def _viewed(self, item: ApprovalViewed) -> Outcome:
        link = await waits.find_link(self.conn, item.link_token)
        if link is None:
            return Outcome("not_found", "unknown approval link")
        if await self._load(link.process_id) is None:
            return Outcome("not_found", "no such process")
        self._audit(link, "ApprovalViewed", item, action="approve" if link.approve else "reject")
        return Outcome("applied", "", (link.process_id,))

    # ----------------------------------------------------------------- stepping

    async def _load(self, process_id: str) -> _Touched | None:
        if process_id not in self.touched:
            loaded = (await store.load_for_update(self.conn, [process_id])).get(process_id)
            if loaded is None:
                return None
            self.touched[process_id] = _Touched.of(loaded)
        return self.touched[process_id]

    def _step(self, process_id: str, trigger: core.Input) -> Outcome:
        self.stepping.append(process_id)
        structlog.contextvars.bind_contextvars(process_id=process_id)
        touched = self.touched.get(process_id)
        if touched is None:
            return Outcome("not_found", "no such process")
        process = touched.process
        if process.correlation_key is not None:
            structlog.contextvars.bind_contextvars(correlation_key=process.correlation_key)
        definition = self.engine.registry.get(process.definition, process.version)
        if definition is None:
            # Deployed by another process since this one looked: the engine reloads and retries.
            raise MissingDefinition(process.definition, process.version)
        result = step(definition, process, trigger, self.now, self.engine.entropy)
        if result.rejected is not None:
            return Outcome("conflict", result.rejected, (process_id,))
        assert result.process is not None
        touched.process = result.process
        self._effects(process_id, result)
        return Outcome("applied", "", (process_id,))

    def _effects(self, process_id: str, result: Step) -> None:
        touched = self.touched[process_id]
        context = self._context_for(touched)
        touched.history.extend(result.history)
        touched.traces.extend([context] * len(result.history))
        self.effects.extend((process_id, effect) for effect in result.effects)
        self.effect_traces.extend([context] * len(result.effects))

    def _context_for(self, touched: _Touched) -> SpanContext | None:
        """The trace context a step of ``touched`` writes in: the input's when it brought one
        (or the input runs in the process's trace), else the process's own. A process without
        one (new, or started untraced) takes the input's."""
        here, stored = self.trace, touched.trace
        if here is None:
            return stored
        if stored is None:
            touched.trace = here
            return here
        return here if self.own_trace or here.trace_id == stored.trace_id else stored

    # ----------------------------------------------------------------- writing

    async def _write(self) -> None:
        conn, now = self.conn, self.now
        # Processes first: tokens, approvals, timers and history point at them.
        history_rows = []
        for process_id, touched in self.touched.items():
            seq = touched.loaded.history_seq if touched.loaded else 0
            for entry, context in zip(touched.history, touched.traces, strict=True):
                seq += 1
                history_rows.append((process_id, seq, entry))
                self._lifecycle(touched.process, entry, context)
                if entry.type == "StateEntered":
                    self.tally.steps[touched.process.definition] += 1
            trace_columns = tracing.columns(touched.trace)
            if touched.loaded is None:
                await store.insert_process(conn, touched.process, seq, now, trace_columns)
            elif touched.history or touched.process != touched.loaded.process:
                await store.update_process(
                    conn, touched.process, touched.loaded.row_version, seq, now, trace_columns
                )
        new_timers: dict[str, dict[str, Any]] = {}
        cancelled: list[str] = []
        closed: list[str] = []
        calls: list[dict[str, Any]] = []
        for (process_id, effect), context in zip(self.effects, self.effect_traces, strict=True):
            process = self.touched[process_id].process
            match effect:
                case SendMessage():
                    self._send(messages.command(process, effect, now), context)
                case ExpectCallback():
                    await waits.add_task_token(
                        conn, effect.token, process_id, effect.wait_id, effect.state, now
                    )
                case RequestApproval():
                    self._send(await self._approval(process, effect), context)
                case RecordVote():
                    vote = {
                        "seat": effect.seat,
                        "decision": "approve" if effect.approved else "reject",
                        "by": effect.decided_by,
                        "comment": effect.comment,
                        "at": now.isoformat(),
                    }
                    await waits.record_vote(conn, effect.wait_id, vote)
                case ConcludeApproval():
                    await waits.conclude(conn, effect.wait_id, effect.outcome, now)
                    self.tally.approvals[effect.outcome] += 1
                case RemindApproval():
                    self._send(await self._reminder(process, effect), context)
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
                case ExpectEvent():
                    pass  # indexed as it happened, by _correlate_effects
                case InvokeHttp():
                    calls.append(self._http_call(process_id, effect, context))
                case StartChild() | StopChild() | NotifyParent():
                    pass  # carried out as it happened, by _correlate_effects (bridge.nesting)
        # Calls first: a wait opened and closed in one batch cancels its call.
        await http_calls.add(conn, calls)
        self.http_calls_queued = len(calls)
        await http_calls.cancel(conn, closed, now)
        await waits.close_waits(conn, closed, now)
        await timers.cancel(conn, cancelled)
        await timers.add(conn, list(new_timers.values()))
        await outbox.add(conn, self.outbox_rows)
        await store.append_history(conn, history_rows)
        await inbox.mark(conn, list(self.marks.values()))

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
            "created_at": self.now,
            **tracing.columns(context),
        }

    def _send(self, row: dict[str, Any], context: SpanContext | None) -> None:
        """An outbox row, sent on in the trace context of the step that wrote it."""
        if context is not None:
            row.update(tracing.columns(context))
        self.outbox_rows.append(row)

    def _lifecycle(
        self, process: Process, entry: HistoryEntry, context: SpanContext | None
    ) -> None:
        topic = self.config.lifecycle_topic
        if not topic:
            return
        kind = messages.LIFECYCLE.get(entry.type)
        if kind is None and self.config.lifecycle_steps:
            kind = messages.STEPS.get(entry.type)
        if kind is not None:
            self._send(
                messages.lifecycle(self.engine.entropy.new_id(), process, entry, kind, topic),
                context,
            )

    async def _approval(self, process: Process, effect: RequestApproval) -> dict[str, Any]:
        """The approval row, a pair of links per seat, and the request on the approvals topic."""
        approval_id = self.engine.entropy.new_id()
        base = self.config.base_url
        links: dict[str, tuple[bool, str]] = {}
        published = []
        for seat in effect.seats:
            approve, reject = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            links[approve] = (True, seat)
            links[reject] = (False, seat)
            kind, _, name = seat.partition(":")
            published.append(
                {
                    "seat": seat,
                    "assignee": name if kind == "user" else None,
                    "group": name if kind == "group" else None,
                    "approveUrl": f"{base}/approve/{approve}",
                    "rejectUrl": f"{base}/reject/{reject}",
                }
            )
        await waits.add_approval(
            self.conn,
            approval_id=approval_id,
            process_id=process.id,
            definition=process.definition,
            wait_id=effect.wait_id,
            state=effect.state,
            title=effect.title,
            description=effect.description,
            data=effect.data,
            seats=list(effect.seats),
            rule=effect.rule,
            expires_at=effect.expires_at,
            on_expiry=effect.on_expiry,
            links=links,
            now=self.now,
        )
        message_id = self.engine.entropy.new_id()
        value = {
            "type": "ApprovalRequested",
            "approvalId": approval_id,
            "processId": process.id,
            "definition": process.definition,
            "correlationKey": process.correlation_key,
            "state": effect.state,
            "title": effect.title,
            "description": effect.description,
            "data": effect.data,
            "rule": effect.rule,
            "expiresAt": effect.expires_at.isoformat() if effect.expires_at else None,
            "onExpiry": effect.on_expiry,
            "links": published,
            # The first seat's links, for the common single-approver case.
            "approveUrl": published[0]["approveUrl"],
            "rejectUrl": published[0]["rejectUrl"],
            "requestedAt": self.now.isoformat(),
            "statusUrl": f"{base}/approvals/{approval_id}",
        }
        return messages.about_process(
            message_id,
            process,
            self.config.approvals_topic,
            "bridge.ApprovalRequested",
            value,
            self.now,
        )

    async def _reminder(self, process: Process, effect: RemindApproval) -> dict[str, Any]:
        message_id = self.engine.entropy.new_id()
        value = {
            "type": "ApprovalReminder",
            "approvalId": await waits.approval_id_of(self.conn, effect.wait_id),
            "processId": process.id,
            "definition": process.definition,
            "state": effect.state,
            "pending": list(effect.pending),
            "expiresAt": effect.expires_at.isoformat() if effect.expires_at else None,
            "remindedAt": self.now.isoformat(),
            "statusUrl": f"{self.config.base_url}/processes/{process.id}",
        }
        return messages.about_process(
            message_id,
            process,
            self.config.approvals_topic,
            "bridge.ApprovalReminder",
            value,
            self.now,
        )


def _configured_id(key: str) -> str | None:
    """The id a trigger's or wait's EventId found (identity keys ``id|topic|value``)."""
    kind, _, rest = key.partition("|")
    return rest.partition("|")[2] or None if kind == "id" else None


def _summary(details: dict[str, Any]) -> str:
    parts = []
    if details["started"]:
        parts.append(f"started {len(details['started'])} process(es)")
    if details["delivered"]:
        parts.append(f"delivered to {len(details['delivered'])} wait(s)")
    if "bufferedUntil" in details:
        parts.append(f"buffered until {details['bufferedUntil']}")
    if details["ignored"] and not parts:
        parts.append("ignored: a process with its key is running")
    if not parts:
        parts.append("ignored: no trigger or wait listens for this event")
    return "; ".join(parts)
