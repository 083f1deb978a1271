"""Events, shell part: what a batch does with an event from Kafka, and with the waits it opens.

An event is correlated here: it may start processes (triggers), complete event waits
(``bridge:event:waitFor``), or, when something may want it later, be kept in the buffer until
its time to live ends; an event that cannot be read, or that no wait took before its time to
live ended, goes to the dead-letter topic. A wait that begins takes a buffered event at once (the
batch hands each new event wait here as it appears: ``Batch.follow_effects``). Every step goes
through the batch, in its one transaction; what this part uses of the batch is ``EventsBatch``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from bridge import logs, messages
from bridge.asl import inputs as core
from bridge.asl.effects import ExpectEvent
from bridge.asl.model import Definition
from bridge.asl.process import ProcessStatus
from bridge.asl.types import JSON
from bridge.batch_parts import Bookkeeping, Sending, Stepping, Touched
from bridge.definitions import Registry
from bridge.events import (
    Candidate,
    DomainEvent,
    InvalidEvent,
    Match,
    candidates,
    decode,
    event_type,
    glimpse,
    identity,
    match,
    payload,
)
from bridge.intake import BufferExpired, EventReceived, Outcome
from bridge.store import correlation, inbox
from bridge.store import processes as store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadEvent:
    """An event decoded, with what its triggers and the waits' interests make of it."""

    event: DomainEvent
    key: str
    matches: list[Match]
    candidates: list[Candidate]


class EventsBatch(Stepping, Sending, Bookkeeping, Protocol):
    """What the events part needs of the batch it works for (``bridge.batch.Batch``)."""

    @property
    def registry(self) -> Registry:
        """The triggers and event waits' interests of the loaded definitions."""
        ...

    @property
    def touched(self) -> Mapping[str, Touched]:
        """The processes changed in this batch so far, by id."""
        ...

    def start_process(self, process_id: str, definition: Definition, start: core.Start) -> None:
        """A new process, stepped from ``start`` and written with the others."""
        ...

    async def follow_effects(self) -> None:
        """Carry out the effects that appeared since the last call (see ``Batch``)."""
        ...


class Correlator:
    """The events of one batch and the event waits its steps open and close."""

    def __init__(self, batch: EventsBatch) -> None:
        self.batch = batch
        #: Waits closed in this batch: no event goes to them any more.
        self.closed: set[str] = set()

    def read(self, item: EventReceived) -> ReadEvent | tuple[str, str]:
        """The event and what may become of it, or (reason, position key) when it is invalid."""
        record = item.record
        registry = self.batch.registry
        try:
            event = decode(
                record, self.batch.config.max_event_bytes, self.batch.config.max_event_depth
            )
            matches = [
                found
                for definition, trigger in registry.triggers(record.topic)
                if (found := match(event, trigger, definition)) is not None
            ]
            interests = registry.interests(record.topic)
            key = identity(event, matches, interests)
        except InvalidEvent as exc:
            with logs.about(topic=record.topic, partition=record.partition, offset=record.offset):
                log.warning("invalid event at %s: %s", record.position, exc)
            return str(exc), f"pos|{record.position}"
        wanted = candidates(event, interests, self.batch.config.buffer_seconds)
        return ReadEvent(event, key, matches, wanted)

    async def event(
        self, item: EventReceived, read: ReadEvent | tuple[str, str], already: set[str]
    ) -> Outcome:
        record = item.record
        if not isinstance(read, ReadEvent):
            reason, key = read
            if key in already or key in self.batch.marks:
                return Outcome("duplicate", f"event {key} was already dead-lettered")
            self.dead_letter(record, reason, key)
            # What can still be read of it, so that it is found by its id and shows its type.
            seen = glimpse(
                record,
                [trigger for _, trigger in self.batch.registry.triggers(record.topic)],
            )
            self.mark_event(
                key,
                record,
                DomainEvent(None, seen.type, seen.id, seen.source, record) if seen.id else None,
                seen.type,
                "dead-lettered",
                {"deadLetter": reason},
            )
            return Outcome("invalid", reason)
        event, key = read.event, read.key
        if key in already or key in self.batch.marks:
            if key in already:
                await inbox.count_duplicate(self.batch.conn, key, self.batch.now)
            else:
                self.batch.marks[key]["duplicates"] += 1
                self.batch.marks[key]["last_duplicate_at"] = self.batch.now
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
        self.mark_event(key, record, event, kind, outcome, details)
        if details["started"] or details["delivered"]:
            ids = tuple(
                [entry["processId"] for entry in details["started"]]
                + [entry["processId"] for entry in details["delivered"]]
            )
            return Outcome("applied", outcome, ids)
        return Outcome("ignored", outcome)

    async def _deliver(self, read: ReadEvent, details: dict[str, Any]) -> bool:
        """Complete every wait for this event; whether any took it."""
        delivered = False
        for candidate in read.candidates:
            waiting = await correlation.waiting_for(
                self.batch.conn, candidate.topic, candidate.type, candidate.key
            )
            for wait in waiting:
                if wait.wait_id in self.closed:
                    continue
                arrived = payload(read.event, candidate.type, candidate.key, read.key)
                if await self.batch.load(wait.process_id) is None:
                    continue
                outcome = self.batch.step_process(
                    wait.process_id, core.EventArrived(wait.wait_id, arrived)
                )
                if outcome.status == "applied":
                    delivered = True
                    details["delivered"].append(
                        {"processId": wait.process_id, "waitId": wait.wait_id, "key": candidate.key}
                    )
                await self.batch.follow_effects()
        return delivered

    async def _start(self, read: ReadEvent, details: dict[str, Any]) -> bool:
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
            process_id = self.batch.entropy.new_id()
            record = read.event.record
            origin = {"eventKey": read.key, "topic": record.topic, "offset": record.offset}
            start = core.Start(process_id, found.input, found.correlation_key, origin)
            self.batch.start_process(process_id, found.definition, start)
            details["started"].append(
                {"processId": process_id, "definition": found.definition.name}
            )
            started = True
            await self.batch.follow_effects()
        return started

    async def _running(self, definition: str, key: str) -> list[str]:
        stored = await store.running_ids(self.batch.conn, definition, key)
        here = [
            process_id
            for process_id, touched in self.batch.touched.items()
            if touched.process.definition == definition
            and touched.process.correlation_key == key
            and touched.process.status is ProcessStatus.RUNNING
        ]
        return list(dict.fromkeys(stored + here))

    async def _buffer(
        self, read: ReadEvent, keep: list[Candidate], details: dict[str, Any]
    ) -> None:
        until = None
        for candidate in keep:
            expires = self.batch.now + timedelta(seconds=candidate.buffer_seconds)
            until = max(until or expires, expires)
            await correlation.buffer(
                self.batch.conn,
                event_key=read.key,
                topic=candidate.topic,
                event_type=candidate.type,
                key=candidate.key,
                event=payload(read.event, candidate.type, candidate.key, read.key),
                now=self.batch.now,
                expires_at=expires,
            )
            self.batch.written.due(expires)
        assert until is not None
        details["bufferedUntil"] = until.isoformat()
        details["bufferedFor"] = [{"type": c.type, "key": c.key, "topic": c.topic} for c in keep]

    async def expired(self, item: BufferExpired) -> Outcome:
        expired = await correlation.expire(self.batch.conn, item.buffer_id, self.batch.now)
        if expired is None:
            return Outcome("ignored", "the buffered event was taken or already expired")
        event_key = expired.event_key
        consumed, settled = await correlation.siblings_settled(self.batch.conn, event_key)
        if consumed or not settled:
            return Outcome("ignored", "another copy of the event was taken or is still kept")
        reason = "unmatched: no wait took the event before its time to live ended"
        self.dead_letter(None, reason, event_key, event=expired.event)
        await inbox.add_details(
            self.batch.conn,
            event_key,
            "dead-lettered",
            {"deadLetter": reason, "expiredAt": str(self.batch.now)},
        )
        return Outcome("applied", reason)

    def dead_letter(self, record: Any, reason: str, event_key: str, *, event: JSON = None) -> None:
        self.batch.tally.dead_letters += 1
        self.batch.send(
            messages.dead_letter(
                self.batch.entropy.new_id(),
                self.batch.config.dlq_topic,
                record,
                reason,
                self.batch.now,
                event_key=event_key,
                event=event,
            ),
            self.batch.trace,
        )

    def mark_event(
        self,
        key: str,
        record: Any,
        event: DomainEvent | None,
        kind: str | None,
        outcome: str,
        details: dict[str, Any],
    ) -> None:
        self.batch.marks[key] = {
            "key": key,
            "received_at": self.batch.now,
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

    def wait_closed(self, wait_id: str) -> None:
        """An event wait closed in this batch: no event goes to it any more. Its rows go in one
        statement when the batch is written; until then this hides them."""
        self.closed.add(wait_id)

    async def wait_begins(self, process_id: str, effect: ExpectEvent) -> None:
        """An event wait that begins: it takes an event buffered for it at once, else it is
        indexed, so that a later event of the same batch finds it."""
        taken = await correlation.take_buffered(
            self.batch.conn, effect.subscriptions, process_id, self.batch.now
        )
        if taken is None:
            await correlation.add_waits(
                self.batch.conn,
                effect.wait_id,
                process_id,
                effect.subscriptions,
                self.batch.now,
            )
            return
        outcome = self.batch.step_process(
            process_id, core.EventArrived(effect.wait_id, taken.event)
        )
        if outcome.status == "applied":
            await inbox.add_details(
                self.batch.conn,
                taken.event_key,
                "delivered from the buffer",
                {
                    "delivered": [
                        {
                            "processId": process_id,
                            "waitId": effect.wait_id,
                            "fromBuffer": True,
                            "at": self.batch.now.isoformat(),
                        }
                    ]
                },
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
