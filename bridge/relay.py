"""The outbox relay: publishes committed outbox rows to Kafka, at least once, in order.

A crash between publishing and marking sent publishes the rows again with the same ``ce_id``
header, which is what consumers deduplicate on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge import faults
from bridge.metrics import Metrics
from bridge.store import outbox
from bridge.store.database import is_postgres, reading

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
    ) -> None:
        self.metrics = metrics
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
        sends = [
            await self.producer.send(
                message.topic,
                value=encode_value(message.value),
                key=None if message.key is None else message.key.encode("utf-8"),
                headers=[(name, value.encode("utf-8")) for name, value in message.headers.items()],
            )
            for message in batch
        ]
        # A send the broker never answers must not hold the relay forever: give up, and the
        # next round publishes the batch again (same ce_id, so consumers drop the copies).
        await asyncio.wait_for(asyncio.gather(*sends), timeout=SEND_TIMEOUT_SECONDS)
        if batch:
            faults.point("after-publish-before-mark")

    async def drain(self, timeout: float = 5.0) -> None:
        """Publish what is left, for a clean shutdown."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if await self.publish_once() == 0:
                return
