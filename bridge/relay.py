"""The outbox relay: publishes committed outbox messages to Kafka, at least once, in order.

An outbox row holds the messages of one transaction; the relay takes rows in id order and sends
their messages in order. A row whose messages all went out is deleted: commands carry task
tokens and approval requests carry their links, and neither may stay in the database in clear
once sent. A crash between publishing and deleting publishes the messages again with the same
``ce_id`` header, which is what consumers deduplicate on.

A message that can never be published (see ``bridge.send_errors``: too large, an invalid topic,
a value that cannot be encoded) is moved to a row of its own, parked with its reason, counted and
logged once, and the messages after it go on in order. Any other failure (the broker away, a
timeout) leaves that message and those after it for the next round, after a backoff; its row
keeps only the messages still to send, so that nothing already sent stays behind. A message's
trace context goes out as its ``traceparent``/``tracestate`` headers: the context of a publish
span when tracing records, else the one stored with the message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge import faults
from bridge.asl import json_text
from bridge.asl.errors import BridgeError
from bridge.metrics import Metrics
from bridge.poller import poll
from bridge.send_errors import check_topic, describe, is_message_fault
from bridge.store import outbox
from bridge.store.database import is_postgres, reading
from bridge.tracing import Tracing, format_traceparent, format_tracestate, kafka_headers, parse

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 30.0
#: How soon a relay looks again after finding another one publishing.
BUSY_RETRY_SECONDS = 0.02


def encode_value(value: object) -> bytes:
    return json_text.dumps_bytes(value)


class PublishingFailed(BridgeError):
    """A round could not publish a message for a reason that may pass (tried again later)."""


@dataclass
class Round:
    """What became of the rows of one round: messages published, messages to park (with their
    reason), rows settled (every message published or parked), the row cut short by the first
    failure that may pass (with the messages it keeps) and that failure; the rows after it are
    left as they are for the next round."""

    sent: list[outbox.OutboxMessage] = field(default_factory=list)
    parked: list[outbox.Parking] = field(default_factory=list)
    settled: list[int] = field(default_factory=list)
    rest: tuple[int, Sequence[outbox.OutboxMessage]] | None = None
    retry: str | None = None


class Relay:
    def __init__(
        self,
        db: AsyncEngine,
        producer: AIOKafkaProducer,
        wake: asyncio.Event,
        *,
        poll_seconds: float,
        batch_size: int,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self.db = db
        self.producer = producer
        self.wake = wake
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.published = 0
        self.parked = 0
        #: The last round found another relay publishing (PostgreSQL's advisory lock).
        self.lock_busy = False

    async def run(self) -> None:
        await poll(
            self._round,
            name="the outbox relay",
            poll_seconds=self.poll_seconds,
            wake=self.wake,
        )

    async def _round(self) -> bool | float:
        taken = await self.publish_once()
        if self.lock_busy:
            # Another relay publishes: rows committed after its claim would wait for the next
            # wake-up, so look again soon.
            return BUSY_RETRY_SECONDS
        return taken >= self.batch_size

    async def publish_once(self) -> int:
        """Publish one round of rows (about ``batch_size`` messages), delete the rows published
        and park the messages that never can be; the number of messages taken.
        ``PublishingFailed`` when a message could not be published for a reason that may pass
        (the messages before it are settled)."""
        claimed: list[outbox.OutboxRow] | None
        if is_postgres(self.db):
            # The claim's advisory lock lives as long as this transaction: one relay at a time.
            # The rows are deleted as they are claimed; what the round does not settle goes back.
            async with self.db.begin() as conn:
                claimed = await outbox.take(conn, self.batch_size)
                rows = claimed or []
                done = await self._publish(rows)
                await outbox.restore(conn, _unsettled(rows, done))
                await outbox.park(conn, done.parked, datetime.now(UTC))
        else:
            # SQLite has one writer: never hold its write lock while waiting for Kafka.
            async with reading(self.db) as conn:
                claimed = await outbox.claim(conn, self.batch_size)
            rows = claimed or []
            done = await self._publish(rows)
            if done.settled or done.rest is not None:
                async with self.db.begin() as conn:
                    await self._settle(conn, done)
        self.lock_busy = claimed is None
        self._count(done)
        if done.retry is not None:
            raise PublishingFailed(done.retry)
        return sum(len(row.messages) for row in rows)

    async def _settle(self, conn: AsyncConnection, done: Round) -> None:
        """Delete the settled rows, trim the row cut short, and park what never goes out, in one
        transaction: a message parked is never also left in the row it came from."""
        await outbox.delete_sent(conn, done.settled)
        if done.rest is not None:
            await outbox.keep_only(conn, *done.rest)
        await outbox.park(conn, done.parked, datetime.now(UTC))

    def _count(self, done: Round) -> None:
        self.published += len(done.sent)
        self.parked += len(done.parked)
        if self.metrics is not None:
            self.metrics.published.inc(len(done.sent))
            self.metrics.parked.inc(len(done.parked))
        for message, reason, _ in done.parked:
            log.error(
                "parked outbox message %s to topic %s (process %s): it cannot be published: "
                "%s; see `bridge outbox parked`",
                message.message_id,
                message.topic,
                message.process_id,
                reason,
            )

    async def _publish(self, rows: list[outbox.OutboxRow]) -> Round:
        """Send the messages of ``rows`` in order and say what became of each."""
        batch = [message for row in rows for message in row.messages]
        loop = asyncio.get_running_loop()
        # A send the broker never answers must not hold the relay forever: give up, and the next
        # round publishes the messages again (same ce_id, so consumers drop the copies).
        deadline = loop.time() + SEND_TIMEOUT_SECONDS
        spans: dict[int, Span] = {}
        sends: dict[int, asyncio.Future[object]] = {}
        failed: dict[int, BaseException] = {}
        try:
            index = 0
            try:
                # One deadline for the round's sends, not a timer per message (a send returns
                # at once unless the producer's buffer is full or a topic's metadata is missing).
                async with asyncio.timeout_at(deadline):
                    for index, message in enumerate(batch):
                        try:
                            sends[index] = await self._send(message, spans, index)
                        except Exception as exc:
                            failed[index] = exc
                            if not is_message_fault(exc):
                                break  # the rest waits for the next round, in order
            except TimeoutError as exc:
                failed[index] = exc  # this send and the rest wait for the next round
            if sends:
                await asyncio.wait(sends.values(), timeout=max(deadline - loop.time(), 0.0))
            for index, future in sends.items():
                if not future.done() or future.cancelled():
                    failed[index] = TimeoutError(f"no answer within {SEND_TIMEOUT_SECONDS:g}s")
                elif (error := future.exception()) is not None:
                    failed[index] = error
            for index, error in failed.items():
                if index in spans:
                    spans[index].set_status(StatusCode.ERROR, type(error).__name__)
        finally:
            for span in spans.values():
                span.end()
        if batch:
            faults.point("after-publish-before-mark")
        return _outcome(rows, sends.keys(), failed)

    async def _send(
        self,
        message: outbox.OutboxMessage,
        spans: dict[int, Span],
        index: int,
    ) -> asyncio.Future[object]:
        check_topic(message.topic)
        value = encode_value(message.value)
        key = None if message.key is None else message.key.encode("utf-8")
        traceparent, tracestate = message.traceparent, message.tracestate
        if traceparent is not None and self.tracing.recording:
            span = spans[index] = self._span(message)
            context = span.get_span_context()
            traceparent, tracestate = format_traceparent(context), format_tracestate(context)
        headers = kafka_headers(message.headers, traceparent, tracestate)
        future: asyncio.Future[object] = await self.producer.send(
            message.topic, value=value, key=key, headers=headers
        )
        return future

    def _span(self, message: outbox.OutboxMessage) -> Span:
        """A producer span under the step that wrote the message (messages of a traced step)."""
        source = message.headers.get("ce_source", "")
        attributes: dict[str, str] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": message.topic,
            "messaging.message.id": message.message_id,
        }
        if message.process_id is not None:
            attributes["bridge.process.id"] = message.process_id
        if source.startswith("bridge/"):
            attributes["bridge.definition"] = source.removeprefix("bridge/")
        kind = message.headers.get("ce_type")
        if kind is not None:
            attributes["bridge.message.type"] = kind
        return self.tracing.start(
            "bridge.relay publish",
            parse(message.traceparent, message.tracestate),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )

    async def drain(self, timeout: float = 5.0) -> None:
        """Publish what is left, for a clean shutdown; gives up after ``timeout`` (what is left is
        published at the next start)."""
        async with asyncio.timeout(timeout):
            while await self.publish_once() > 0:
                pass


def _unsettled(rows: list[outbox.OutboxRow], done: Round) -> list[outbox.OutboxRow]:
    """The rows of a round that must stay: the row cut short with the messages it keeps, and
    the rows after it whole."""
    settled = set(done.settled)
    kept: list[outbox.OutboxRow] = []
    for row in rows:
        if row.id in settled:
            continue
        if done.rest is not None and done.rest[0] == row.id:
            row = outbox.OutboxRow(row.id, row.created_at, tuple(done.rest[1]))
        kept.append(row)
    return kept


def _outcome(
    rows: list[outbox.OutboxRow],
    sent: Collection[int],
    failed: dict[int, BaseException],
) -> Round:
    """Fold the sends of the messages of ``rows`` (numbered in order across the rows) in order:
    published and parked messages, and the rows they settle, up to the first failure that may
    pass."""
    done = Round()
    numbers = itertools.count()
    for row in rows:
        for position, message in enumerate(row.messages):
            index = next(numbers)
            error = failed.get(index)
            if error is None and index in sent:
                done.sent.append(message)
            elif error is not None and is_message_fault(error):
                done.parked.append(outbox.Parking(message, describe(error), row.created_at))
            else:
                shown = describe(error) if error is not None else "not sent"
                done.retry = f"message {message.message_id} to {message.topic}: {shown}"
                if position > 0:
                    done.rest = (row.id, row.messages[position:])
                return done
        done.settled.append(row.id)
    return done
