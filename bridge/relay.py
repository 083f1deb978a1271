"""The outbox relay: publishes committed outbox rows to Kafka, at least once, in order.

A published row is deleted: commands carry task tokens and approval requests carry their links,
and neither may stay in the database in clear once sent. A crash between publishing and deleting
publishes the rows again with the same ``ce_id`` header, which is what consumers deduplicate on.

A row that can never be published (see ``bridge.send_errors``: too large, an invalid topic, a
value that cannot be encoded) is parked with its reason, counted and logged once, and the rows
after it go on in order. Any other failure (the broker away, a timeout) leaves the row and those
after it for the next round, after a backoff. A row's trace context goes out as its
``traceparent``/``tracestate`` headers: the context of a publish span when tracing records, else
the one stored with the row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge import faults
from bridge.asl import json_text
from bridge.metrics import Metrics
from bridge.poller import poll
from bridge.send_errors import check_topic, describe, is_message_fault
from bridge.store import outbox
from bridge.store.database import is_postgres, reading
from bridge.tracing import Tracing, format_traceparent, format_tracestate, kafka_headers, parse

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 30.0


def encode_value(value: object) -> bytes:
    return json_text.dumps_bytes(value)


class PublishingFailed(Exception):
    """A round could not publish a message for a reason that may pass (tried again later)."""


@dataclass
class Round:
    """What became of one batch: rows published, rows parked (with their reason), and the first
    failure that may pass, from which on the rows are left for the next round."""

    sent: list[int] = field(default_factory=list)
    parked: dict[int, str] = field(default_factory=dict)
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

    async def run(self) -> None:
        await poll(
            self._round,
            name="the outbox relay",
            poll_seconds=self.poll_seconds,
            wake=self.wake,
        )

    async def _round(self) -> bool:
        return await self.publish_once() >= self.batch_size

    async def publish_once(self) -> int:
        """Publish one batch of rows, delete those published and park those that never can be;
        the number of rows taken. ``PublishingFailed`` when a row could not be published for a
        reason that may pass (the rows before it are settled)."""
        batch: list[outbox.OutboxMessage]
        if is_postgres(self.db):
            # The claim's advisory lock lives as long as this transaction: one relay at a time.
            async with self.db.begin() as conn:
                batch = await outbox.claim(conn, self.batch_size)
                done = await self._publish(batch)
                await self._settle(conn, done)
        else:
            # SQLite has one writer: never hold its write lock while waiting for Kafka.
            async with reading(self.db) as conn:
                batch = await outbox.claim(conn, self.batch_size)
            done = await self._publish(batch)
            if done.sent or done.parked:
                async with self.db.begin() as conn:
                    await self._settle(conn, done)
        self._count(batch, done)
        if done.retry is not None:
            raise PublishingFailed(done.retry)
        return len(batch)

    async def _settle(self, conn: AsyncConnection, done: Round) -> None:
        await outbox.delete_sent(conn, done.sent)
        await outbox.park(conn, done.parked, datetime.now(UTC))

    def _count(self, batch: list[outbox.OutboxMessage], done: Round) -> None:
        self.published += len(done.sent)
        self.parked += len(done.parked)
        if self.metrics is not None:
            self.metrics.published.inc(len(done.sent))
            self.metrics.parked.inc(len(done.parked))
        for message in batch:
            reason = done.parked.get(message.id)
            if reason is not None:
                log.error(
                    "parked outbox message %s to topic %s (process %s): it cannot be published: "
                    "%s; see `bridge outbox parked`",
                    message.message_id,
                    message.topic,
                    message.process_id,
                    reason,
                )

    async def _publish(self, batch: list[outbox.OutboxMessage]) -> Round:
        """Send ``batch`` in order and say what became of each row."""
        loop = asyncio.get_running_loop()
        # A send the broker never answers must not hold the relay forever: give up, and the next
        # round publishes the rows again (same ce_id, so consumers drop the copies).
        deadline = loop.time() + SEND_TIMEOUT_SECONDS
        spans: dict[int, Span] = {}
        sends: dict[int, asyncio.Future[object]] = {}
        failed: dict[int, BaseException] = {}
        try:
            for index, message in enumerate(batch):
                try:
                    sends[index] = await self._send(message, deadline, spans, index)
                except Exception as exc:
                    failed[index] = exc
                    if not is_message_fault(exc):
                        break  # the rest waits for the next round, in order
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
        return _outcome(batch, sends.keys(), failed)

    async def _send(
        self,
        message: outbox.OutboxMessage,
        deadline: float,
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
        async with asyncio.timeout_at(deadline):
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


def _outcome(
    batch: list[outbox.OutboxMessage],
    sent: Collection[int],
    failed: dict[int, BaseException],
) -> Round:
    """Fold the sends of ``batch`` in order: published and parked rows up to the first failure
    that may pass."""
    done = Round()
    for index, message in enumerate(batch):
        error = failed.get(index)
        if error is None and index in sent:
            done.sent.append(message.id)
        elif error is not None and is_message_fault(error):
            done.parked[message.id] = describe(error)
        else:
            shown = describe(error) if error is not None else "not sent"
            done.retry = f"message {message.message_id} to {message.topic}: {shown}"
            break
    return done
