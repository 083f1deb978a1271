"""One transaction's worth of inputs: correlate, step, write.

A ``Batch`` reads the processes its inputs touch, runs the pure interpreter for each input in
order, and writes state (with its pending timers), history, outbox rows, tokens, event waits and
the inputs' dedupe marks, all inside the caller's transaction.

This module dispatches the inputs, loads and steps the processes and follows the effects that
cannot wait for the end of the batch; the rest is split by concern, each part declaring as a
protocol what it uses of the batch (and importing nothing of this module):

- ``bridge.correlate``: events (triggers, event waits, the buffer, dead letters), ``EventsBatch``;
- ``bridge.approval_rows``: approval decisions and views, approval rows, links and reminders,
  ``ApprovalsBatch``;
- ``bridge.child_processes``: child processes, ``ChildrenBatch``;
- ``bridge.schedule_starts``: schedules' due ticks, ``Starter``;
- ``bridge.effects_writer``: writing the processes and the rows their effects ask for,
  ``WriterBatch``.

What they share (``Touched``, the ``Stepping`` calls) is in ``bridge.batch_parts``. What the batch
uses of the engine that runs it is ``Services``.

Each input is applied in a span ("bridge.apply <kind>") under the trace context it brought (an
event's headers, an HTTP request's) or, when it brought none, under its process's. What a step
writes (outbox rows, the trace context of a new process) carries the context it ran in.
"""

from __future__ import annotations

import contextlib
import uuid
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, assert_never

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, StatusCode
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge import logs, tracing
from bridge.aliases import Reference, choose_version, parse_reference
from bridge.approval_rows import Approvals
from bridge.asl import inputs as core
from bridge.asl import task_tokens
from bridge.asl.effects import (
    CloseWait,
    Effect,
    ExpectEvent,
    NotifyParent,
    StartChild,
    StopChild,
)
from bridge.asl.interpreter import Step, step
from bridge.asl.model import Definition
from bridge.asl.types import Clock, Entropy
from bridge.batch_parts import Touched
from bridge.child_processes import ChildProcesses
from bridge.correlate import Correlator, ReadEvent
from bridge.definitions import MissingDefinition, Registry
from bridge.effects_writer import EffectsWriter
from bridge.engine_config import EngineConfig
from bridge.events import KafkaRecord
from bridge.failures import Retry, classify
from bridge.intake import (
    KINDS,
    BufferExpired,
    CallbackReceived,
    DecisionReceived,
    DeliveryEnded,
    EngineInput,
    EventReceived,
    HttpCallEnded,
    InvalidInput,
    Outcome,
    PoisonInput,
    RedriveRequested,
    ScheduleDue,
    SeatChangeRequested,
    StartRequested,
    StopRequested,
    TimerDue,
    TracedInput,
)
from bridge.metrics import Tally
from bridge.schedule_starts import ScheduleStarts
from bridge.store import aliases, correlation, http_calls, inbox, timers, waits
from bridge.store import processes as store
from bridge.store.batch_reads import open_batch
from bridge.store.database import database_now
from bridge.store.processes import ConcurrentUpdate
from bridge.tracing import Tracing
from bridge.wakeups import Written


class Services(Protocol):
    """What a batch uses of the engine that runs it (``bridge.engine.Engine``)."""

    @property
    def config(self) -> EngineConfig: ...

    @property
    def clock(self) -> Clock | None:
        """The time of a batch; None: the database's clock, read as the batch begins."""
        ...

    @property
    def entropy(self) -> Entropy:
        """New ids, for the interpreter and the rows it asks for."""
        ...

    @property
    def registry(self) -> Registry:
        """The loaded definitions."""
        ...

    @property
    def tracing(self) -> Tracing:
        """Spans, one per input applied."""
        ...


class Batch:
    def __init__(self, services: Services, conn: AsyncConnection) -> None:
        self.services = services
        self.config = services.config
        self.entropy = services.entropy
        self.registry = services.registry
        self.conn = conn
        self.now = services.clock() if services.clock is not None else datetime.now(UTC)
        self.touched: dict[str, Touched] = {}
        self.effects: list[tuple[str, Effect]] = []
        #: How far ``follow_effects`` has looked through ``effects``.
        self.followed = 0
        self.marks: dict[str, dict[str, Any]] = {}
        #: The processes stepped for the input at hand, to blame if it raises.
        self.stepping: list[str] = []
        self.tracing = services.tracing
        #: The span context of the input at hand, and whether the input brought its own.
        self.trace: SpanContext | None = None
        self.own_trace = False
        #: The trace context each effect was written in, effect by effect.
        self.effect_traces: list[SpanContext | None] = []
        self.tally = Tally()
        #: What this batch wrote that a poller acts on (woken after the commit).
        self.written = Written()
        # The parts reach back to the batch through a weak reference: a strong one would make
        # each batch a reference cycle, so that it and every process and history entry it
        # holds would stay in memory until the garbage collector ran (bench/README.md).
        me = weakref.proxy(self)
        #: Events and event waits: triggers, waits, the buffer, dead letters.
        self.correlator = Correlator(me)
        #: Approval decisions and views, and the rows and messages of approvals.
        self.approvals = Approvals(me)
        #: Child processes: started, stopped and answered as their effects appear.
        self.children = ChildProcesses(me)
        #: Schedules' due ticks: the starts they make.
        self.schedules = ScheduleStarts(me)
        #: Writes the batch at its end.
        self.writer = EffectsWriter(me, self.approvals)

    async def run(self, batch: Sequence[EngineInput]) -> list[Outcome]:
        # What the last input of an earlier batch bound says nothing of these.
        structlog.contextvars.unbind_contextvars(*logs.INPUT_FIELDS)
        read = {
            index: self.correlator.read(item)
            for index, item in enumerate(batch)
            if isinstance(item, EventReceived)
        }
        keys = [found.key if isinstance(found, ReadEvent) else found[1] for found in read.values()]
        keys += [_position_key(item.record) for item in batch if isinstance(item, InvalidInput)]
        answered = [item.token for item in batch if isinstance(item, CallbackReceived)]
        # A token names its wait; only older ones are looked up by their rows.
        named = {token: ids for token in answered if (ids := task_tokens.named(token))}
        opening = await open_batch(
            self.conn, keys, [token for token in answered if token not in named]
        )
        if self.services.clock is None:
            self.now = opening.now
        already = opening.seen
        tokens = {
            **opening.tokens,
            **{token: waits.TokenTarget(*ids, named=True) for token, ids in named.items()},
        }
        links = {
            item.link_token: await waits.find_link(self.conn, item.link_token)
            for item in batch
            if isinstance(item, DecisionReceived)
        }
        wanted = [target.process_id for target in tokens.values()]
        wanted += [link.process_id for link in links.values() if link is not None]
        wanted += [item.process_id for item in batch if isinstance(item, TimerDue)]
        for process_id, loaded in (await store.load_for_update(self.conn, wanted)).items():
            self.touched[process_id] = Touched.of(loaded)

        outcomes: list[Outcome] = []
        # An HTTP request's trace context (its handler runs in this task).
        ambient = tracing.current()
        spans: list[Span] = []
        try:
            for index, item in enumerate(batch):
                self.stepping = []
                self.children.starts = 0
                structlog.contextvars.unbind_contextvars(*logs.INPUT_FIELDS)
                if isinstance(item, EventReceived):
                    structlog.contextvars.bind_contextvars(
                        topic=item.record.topic,
                        partition=item.record.partition,
                        offset=item.record.offset,
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
                    outcome = await self._one(item, found, already, tokens, links)
                except (ConcurrentUpdate, MissingDefinition):
                    raise
                except Exception as exc:
                    if classify(exc) is not Retry.NEVER:
                        # The database away or busy: the whole batch again, not this input's
                        # fault.
                        raise
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
            # Writing is about the whole batch, not its last input.
            structlog.contextvars.unbind_contextvars(*logs.INPUT_FIELDS)
            await self.writer.write()
        finally:
            # The spans last until the batch is written (or fails).
            for span in spans:
                span.end()
        return outcomes

    async def _begin(
        self,
        item: EngineInput,
        read: ReadEvent | tuple[str, str] | None,
        ambient: SpanContext | None,
        tokens: dict[str, waits.TokenTarget],
        links: dict[str, waits.LinkTarget | None],
    ) -> Span:
        """The span ``item`` is applied in: under the trace context it brought, else under the
        context of the one process it is for (a callback, a decision, a timer, a stop)."""
        own: SpanContext | None
        if isinstance(item, EventReceived):
            own = tracing.from_headers(item.record.headers)
            if isinstance(read, ReadEvent):
                structlog.contextvars.bind_contextvars(event_id=read.event.id or read.key)
        elif isinstance(item, TracedInput) and item.traceparent is not None:
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
                await self.load(target)
            touched = self.touched.get(target) if target is not None else None
            parent = touched.trace if touched is not None else None
        span = self.tracing.start(f"bridge.apply {KINDS.get(type(item), 'input')}", parent)
        context = span.get_span_context()
        self.trace = context if context.is_valid else None
        self.own_trace = own is not None
        return span

    def _describe(
        self,
        span: Span,
        item: EngineInput,
        read: ReadEvent | tuple[str, str] | None,
        outcome: Outcome,
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
            if isinstance(read, ReadEvent):
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
        read: ReadEvent | tuple[str, str] | None,
        already: set[str],
        tokens: dict[str, waits.TokenTarget],
        links: dict[str, waits.LinkTarget | None],
    ) -> Outcome:
        match item:
            case EventReceived():
                assert read is not None
                outcome = await self.correlator.event(item, read, already)
            case InvalidInput():
                outcome = self._invalid_record(item, already)
            case CallbackReceived():
                outcome = self._callback(item, tokens.get(item.token))
            case DecisionReceived():
                outcome = await self.approvals.decision(item, links.get(item.link_token))
            case TimerDue():
                outcome = self._timer_due(item)
            case BufferExpired():
                outcome = await self.correlator.expired(item)
            case HttpCallEnded():
                outcome = await self._http_call_ended(item)
            case DeliveryEnded():
                outcome = await self.approvals.delivery_ended(item)
            case StartRequested():
                outcome = await self._start_requested(item)
            case ScheduleDue():
                outcome = await self.schedules.due(item)
            case SeatChangeRequested():
                outcome = await self.approvals.seat_change(item)
            case StopRequested():
                if await self.load(item.process_id) is None:
                    outcome = Outcome("not_found", "no such process")
                else:
                    outcome = self.step_process(item.process_id, core.Stop(item.error, item.cause))
            case RedriveRequested():
                if await self.load(item.process_id) is None:
                    outcome = Outcome("not_found", "no such process")
                else:
                    outcome = self.step_process(item.process_id, core.Redrive())
            case _:
                assert_never(item)
        await self.follow_effects()
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
            else self.entropy.new_id()
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
        self.start_process(process_id, definition, start)
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
        definition = self.registry.get(reference.definition, chosen)
        if definition is None:
            return Outcome("not_found", f"no definition {reference.definition!r} version {chosen}")
        return definition

    def adopt(self, process_id: str, result: Step, parent: Touched) -> None:
        """A child process started in this batch: written with the others, in the trace of the
        parent that started it."""
        assert result.process is not None
        self.touched[process_id] = Touched(result.process, None, trace=parent.trace)
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
        latest = self.registry.latest(reference.definition)
        if latest is None:
            return Outcome("not_found", f"no definition {reference.definition!r}")
        return latest.version

    def _invalid_record(self, item: InvalidInput, already: set[str]) -> Outcome:
        """A record that is not what its topic carries: dead-lettered once, with the reason."""
        key = _position_key(item.record)
        if key in already or key in self.marks:
            return Outcome("duplicate", f"record {item.record.position} was already dead-lettered")
        self.correlator.dead_letter(item.record, item.reason, key)
        self.correlator.mark_event(
            key, item.record, None, None, "dead-lettered", {"deadLetter": item.reason}
        )
        return Outcome("invalid", item.reason)

    async def give_up(
        self, item: EngineInput, reason: str, process_ids: Sequence[str], *, thorough: bool
    ) -> Outcome:
        """An input that keeps failing, given up on: what came from Kafka goes to the
        dead-letter topic (once: its mark says so), a timer is removed, an HTTP call ends, a
        buffered event expires, and, when ``thorough``, the processes it was for are failed with
        ``Bridge.InputFailed``. An HTTP request's input keeps nothing: the answer says why."""
        if self.services.clock is None:
            self.now = await database_now(self.conn)
        targets = list(process_ids)
        match item:
            case EventReceived(record=record):
                key = _position_key(record)
                with contextlib.suppress(Exception):
                    read = self.correlator.read(item)
                    key = read.key if isinstance(read, ReadEvent) else read[1]
                await self._dead_letter_once(record, reason, key)
            case InvalidInput(record=record):
                await self._dead_letter_once(record, reason, _position_key(record))
            case CallbackReceived(token=token, record=record):
                if record is not None:
                    await self._dead_letter_once(record, reason, _position_key(record))
                if (ids := task_tokens.named(token)) is not None:
                    targets.append(ids[0])
                else:
                    found = await waits.find_task_tokens(self.conn, [token])
                    targets += [target.process_id for target in found.values()]
            case DecisionReceived(link_token=link_token):
                link = await waits.find_link(self.conn, link_token)
                targets += [link.process_id] if link is not None else []
            case TimerDue(process_id=process_id):
                # Given up on: the process's timers no longer wake it (failed, it has none).
                await timers.forget(self.conn, [process_id])
                targets.append(process_id)
            case BufferExpired(buffer_id=buffer_id):
                await correlation.expire(self.conn, buffer_id, self.now)
            case HttpCallEnded(call_id=call_id):
                call = await http_calls.find(self.conn, call_id)
                if call is not None and call.done_at is None:
                    await http_calls.finish(self.conn, call, f"given up: {reason}"[:200], self.now)
                    targets.append(call.process_id)
            case StopRequested(process_id=process_id) | RedriveRequested(process_id=process_id):
                targets.append(process_id)
            case DeliveryEnded(delivery_id=delivery_id):
                # Ended as failed with the reason; its process stays as it is.
                await self.approvals.delivery_given_up(delivery_id, reason)
                targets = []
            case StartRequested():
                # Nothing was kept of a start that failed.
                targets = []
            case ScheduleDue():
                await self.schedules.given_up(item, reason)
                targets = []
            case SeatChangeRequested():
                # Nothing was kept of a change of seat that failed: the answer says why.
                targets = []
            case _:
                assert_never(item)
        targets = list(dict.fromkeys(targets))
        if thorough:
            for process_id in targets:
                if await self.load(process_id) is not None:
                    self.step_process(process_id, core.Fault("Bridge.InputFailed", reason))
            await self.follow_effects()
        await self.writer.write()
        return Outcome("invalid", reason, tuple(targets))

    async def _dead_letter_once(self, record: KafkaRecord, reason: str, key: str) -> None:
        if key in self.marks or key in await inbox.seen(self.conn, [key]):
            return
        self.correlator.dead_letter(record, reason, key)
        self.correlator.mark_event(key, record, None, None, "dead-lettered", {"deadLetter": reason})

    # ----------------------------------------------------------------- timers, callbacks, HTTP

    def _timer_due(self, item: TimerDue) -> Outcome:
        """A timer fires once: the process (locked) still has it pending, and the step it fires
        removes it, also when the process refuses it."""
        touched = self.touched.get(item.process_id)
        if touched is None:
            return Outcome("not_found", "no such process")
        if item.timer_id not in touched.process.timers:
            return Outcome("ignored", "the timer was cancelled or fired")
        outcome = self.step_process(item.process_id, core.TimerFired(item.timer_id))
        if outcome.status == "conflict":
            touched.process = touched.process.spend_timer(item.timer_id)
        return outcome

    def _callback(self, item: CallbackReceived, target: waits.TokenTarget | None) -> Outcome:
        if target is None or not self._token_holds(item.token, target):
            return Outcome("not_found", "unknown task token")
        trigger: core.Input
        if item.outcome == "success":
            trigger = core.TaskSucceeded(target.wait_id, item.output)
        elif item.outcome == "failure":
            trigger = core.TaskFailed(target.wait_id, item.error or "", item.cause or "")
        else:
            trigger = core.TaskHeartbeat(target.wait_id)
        outcome = self.step_process(target.process_id, trigger)
        if outcome.status == "conflict":
            # The wait the token opened is closed: answered, timed out or aborted.
            reason = f"the task token was already used or has expired ({outcome.reason})"
            return Outcome("conflict", reason, outcome.process_ids)
        return outcome

    def _token_holds(self, token: str, target: waits.TokenTarget) -> bool:
        """Whether a token that names its wait is that wait's (its hash is in the process's
        state). A wait that is no longer open is for the step to refuse (used or expired); a
        token with a row was checked by finding it."""
        if not target.named:
            return True
        touched = self.touched.get(target.process_id)
        if touched is None:
            return False  # no such process (any more): as unknown as a forged token
        wait = touched.process.open_wait(target.wait_id)
        return wait is None or task_tokens.holds(token, wait.token_hash)

    async def _http_call_ended(self, item: HttpCallEnded) -> Outcome:
        """The answer of an HTTP call goes to its wait, and the call is done, in one transaction:
        an answer that comes again (a call made twice) finds it done and changes nothing. An
        answer the process refuses (too late, the process ended) ends the call all the same."""
        call = await http_calls.find(self.conn, item.call_id)
        if call is None:
            return Outcome("not_found", "unknown HTTP call")
        if call.done_at is not None:
            return Outcome("ignored", f"the HTTP call has ended already ({call.outcome})")
        if await self.load(call.process_id) is None:
            return Outcome("not_found", "no such process")
        answer = core.HttpAnswered(call.id, item.response, item.error, item.cause)
        outcome = self.step_process(call.process_id, answer)
        status = item.response.get("StatusCode") if isinstance(item.response, dict) else None
        described = item.error or str(status)
        if outcome.status != "applied":
            described = f"{described}, refused: {outcome.reason}"
        if not await http_calls.finish(self.conn, call, described, self.now):
            # Another answer to the same call committed in between: apply the batch again.
            raise ConcurrentUpdate(f"HTTP call {call.id} ended concurrently")
        return outcome

    # ----------------------------------------------------------------- stepping

    async def follow_effects(self) -> None:
        """Carry out the effects that cannot wait for the end of the batch, in the order they
        appeared since the last call: child processes are started, stopped and answered, event
        waits indexed (taking a buffered event at once) and closed ones hidden.

        Done as effects appear, so that a later event in the same batch finds the wait, a wait
        that begins finds an event buffered moments before, and a child that ends at once
        answers its parent in the same batch. A step taken here adds effects; the loop goes on
        until there are none left.
        """
        while self.followed < len(self.effects):
            process_id, effect = self.effects[self.followed]
            self.followed += 1
            if isinstance(effect, StartChild | StopChild | NotifyParent):
                await self.children.apply(process_id, effect)
            elif isinstance(effect, CloseWait) and effect.kind == "event":
                self.correlator.wait_closed(effect.wait_id)
            elif isinstance(effect, ExpectEvent):
                await self.correlator.wait_begins(process_id, effect)

    def send(self, row: dict[str, Any], context: SpanContext | None) -> None:
        """An outbox message (a dead letter, say), written with the batch and sent on in trace
        context ``context``."""
        self.writer.send(row, context)

    def start_process(self, process_id: str, definition: Definition, start: core.Start) -> None:
        """A new process (an HTTP start, a trigger's), stepped from its start and written with
        the others."""
        result = step(definition, None, start, self.now, self.entropy)
        assert result.process is not None and result.rejected is None
        self.touched[process_id] = Touched(result.process, None)
        self._effects(process_id, result)

    async def exists(self, process_id: str) -> bool:
        """Whether process ``process_id`` exists (written before, or in this batch)."""
        return await self.load(process_id) is not None

    async def load(self, process_id: str) -> Touched | None:
        """Process ``process_id``, read and locked once per batch, kept with those it touched;
        None when there is no such process."""
        if process_id not in self.touched:
            loaded = (await store.load_for_update(self.conn, [process_id])).get(process_id)
            if loaded is None:
                return None
            self.touched[process_id] = Touched.of(loaded)
        return self.touched[process_id]

    def blame(self, process_id: str) -> None:
        """Process ``process_id`` is stepped for the input at hand: if the input raises, it is
        one of the processes the input failed for (``PoisonInput``)."""
        self.stepping.append(process_id)

    def step_process(self, process_id: str, trigger: core.Input) -> Outcome:
        """Step process ``process_id`` (loaded) with ``trigger``; its history and effects are
        kept for the write. A refused trigger is a ``conflict`` and changes nothing; a
        definition not loaded here raises ``MissingDefinition`` (the engine reloads)."""
        self.blame(process_id)
        structlog.contextvars.bind_contextvars(process_id=process_id)
        touched = self.touched.get(process_id)
        if touched is None:
            return Outcome("not_found", "no such process")
        process = touched.process
        if process.correlation_key is not None:
            structlog.contextvars.bind_contextvars(correlation_key=process.correlation_key)
        definition = self.registry.get(process.definition, process.version)
        if definition is None:
            # Deployed by another process since this one looked: the engine reloads and retries.
            raise MissingDefinition(process.definition, process.version)
        result = step(definition, process, trigger, self.now, self.entropy)
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

    def _context_for(self, touched: Touched) -> SpanContext | None:
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


def _position_key(record: KafkaRecord) -> str:
    """The identity of a record by its position, for records read as no event."""
    return f"pos|{record.position}"
