"""The web endpoint's Kafka producer for events posted over HTTP (see bridge.http_events).

Started at the first posted event, not with the web process: most web processes never publish,
and a broker that is away at start must not keep the approval pages from serving. Each event is
produced with ``acks=all`` and answered only once the broker has it, so a 202 means the event is
in the topic; a broker that does not answer in time is a 503 the client retries (and a retried
CloudEvent is deduplicated by its id when it is consumed).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.asl.errors import BridgeError
from bridge.http_events import OutgoingEvent
from bridge.partitioner import partition_for

if TYPE_CHECKING:
    # Imported when the first event is posted: aiokafka is about 5 MiB of a web process that
    # may never publish.
    from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)


class ProducerUnavailable(BridgeError):
    """No broker took the event; the message says why."""


@dataclass(frozen=True)
class Produced:
    """Where the broker wrote the event."""

    topic: str
    partition: int
    offset: int

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class EventProducer:
    def __init__(self, bootstrap: str | None, *, timeout_seconds: float = 10.0) -> None:
        """``bootstrap``: the brokers; None when this process knows none (every event is then
        refused as unavailable, saying which setting is missing)."""
        self.bootstrap = bootstrap
        self.timeout_seconds = timeout_seconds
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def send(self, event: OutgoingEvent) -> Produced:
        producer = await self._started()
        from aiokafka.errors import KafkaError

        try:
            metadata = await asyncio.wait_for(
                producer.send_and_wait(
                    event.topic, event.value, key=event.key, headers=list(event.headers)
                ),
                self.timeout_seconds,
            )
        except (KafkaError, TimeoutError) as exc:
            raise ProducerUnavailable(f"the broker did not take the event: {exc!r}") from None
        return Produced(metadata.topic, metadata.partition, metadata.offset)

    async def _started(self) -> AIOKafkaProducer:
        if self.bootstrap is None:
            raise ProducerUnavailable("this web process has no broker: set BRIDGE_KAFKA_BOOTSTRAP")
        async with self._starting:
            if self._producer is not None:
                return self._producer
            from aiokafka import AIOKafkaProducer
            from aiokafka.errors import KafkaError

            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                # The test broker refuses idempotence; a retried send may write twice, which the
                # consumer's dedupe absorbs for events with an identity.
                enable_idempotence=False,
                request_timeout_ms=int(self.timeout_seconds * 1000),
                partitioner=partition_for,
            )
            try:
                await asyncio.wait_for(producer.start(), self.timeout_seconds)
            except (KafkaError, TimeoutError, OSError) as exc:
                await producer.stop()
                raise ProducerUnavailable(
                    f"no broker answered at {self.bootstrap}: {exc!r}"
                ) from None
            self._producer = producer
            return producer

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()
            except Exception:
                log.exception("could not stop the event producer")
