"""The outbox relay: publishes committed outbox rows to Kafka, at least once, in order.

A crash between publishing and marking sent publishes the rows again with the same ``ce_id``
header, which is what consumers deduplicate on. A row's trace context goes out as its
``traceparent``/``tracestate`` headers: the context of a publish span when tracing records, else
the one stored with the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge import faults
from bridge.metrics import Metrics
from bridge.store import outbox
from bridge.store.database import is_postgres, reading
from bridge.tracing import Tracing, format_traceparent, format_tracestate, kafka_headers, parse

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 30.0


def encode_value(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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

    async def run(self) -> None:
        backoff = self.poll_seconds
        while True:
            try:
                count = await self.publish_once()
                backoff = self.poll_seconds
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the relay failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if count < self.batch_size:
                await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=self.poll_seconds)
        self.wake.clear()

    async def publish_once(self) -> int:
        """Publish one batch of unsent rows and mark them sent; the number published."""
        if is_postgres(self.db):
            # The claim's advisory lock lives as long as this transaction: one relay at a time.
            async with self.db.begin() as conn:
                batch = await outbox.claim(conn, self.batch_size)
                await self._publish(batch)
                await outbox.mark_sent(conn, [message.id for message in batch], datetime.now(UTC))
        else:
            # SQLite has one writer: never hold its write lock while waiting for Kafka.
            async with reading(self.db) as conn:
                batch = await outbox.claim(conn, self.batch_size)
            await self._publish(batch)
            if batch:
                async with self.db.begin() as conn:
                    await outbox.mark_sent(
                        conn, [message.id for message in batch], datetime.now(UTC)
                    )
        self.published += len(batch)
        if self.metrics is not None:
            self.metrics.published.inc(len(batch))
        return len(batch)

    async def _publish(self, batch: list[outbox.OutboxMessage]) -> None:
        spans: list[Span] = []
        sends = []
        for message in batch:
            traceparent, tracestate = message.traceparent, message.tracestate
            if traceparent is not None and self.tracing.recording:
                span = self._span(message)
                spans.append(span)
                context = span.get_span_context()
                traceparent, tracestate = format_traceparent(context), format_tracestate(context)
            sends.append(
                await self.producer.send(
                    message.topic,
                    value=encode_value(message.value),
                    key=None if message.key is None else message.key.encode("utf-8"),
                    headers=kafka_headers(message.headers, traceparent, tracestate),
                )
            )
        try:
            # A send the broker never answers must not hold the relay forever: give up, and the
            # next round publishes the batch again (same ce_id, so consumers drop the copies).
            await asyncio.wait_for(asyncio.gather(*sends), timeout=SEND_TIMEOUT_SECONDS)
        except BaseException as exc:
            for span in spans:
                span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            for span in spans:
                span.end()
        if batch:
            faults.point("after-publish-before-mark")

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
        """Publish what is left, for a clean shutdown."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if await self.publish_once() == 0:
                return
