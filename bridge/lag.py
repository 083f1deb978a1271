"""Consumer lag of the bridge's consumer group, read from Kafka for ``/metrics``.

Lag per partition is the high watermark minus the group's committed offset. Any process that
knows the brokers can read it (the web process serves ``/metrics`` too), so it is read from
Kafka when scraped, not exported by the workers. Reads are cached for ``ttl`` seconds, a scrape
waits for a fresh read at most ``wait`` seconds (else it shows the figures it has), and when
Kafka cannot be reached the lag is simply not shown: ``/metrics`` never fails because of it.
Partitions the group has never committed an offset for are not shown.

The partitions are those of the topics the bridge consumes, named by the caller: asking the
group for all its offsets at once is not understood by every Kafka-compatible broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported at the first read: aiokafka is about 5 MiB of a web process, which reads the lag
    # only when its /metrics is scraped.
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


def lag_of(
    committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition): end offset minus committed offset, never below zero."""
    return {
        (tp.topic, tp.partition): max(ends[tp] - offset, 0)
        for tp, offset in committed.items()
        if offset >= 0 and tp in ends
    }


class ConsumerLag:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Callable[[], Iterable[str]],
        *,
        ttl: float = 5.0,
        wait: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics
        self.ttl = ttl
        self.wait = wait
        self.timeout = timeout
        self._lag: dict[tuple[str, int], int] = {}
        self._read_at = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._failing = False

    async def read(self) -> dict[tuple[str, int], int]:
        """The lag as last read; refreshed first when older than ``ttl`` (waiting ``wait``)."""
        if self._task is None and time.monotonic() - self._read_at >= self.ttl:
            self._task = asyncio.create_task(self._refresh(), name="consumer-lag")
        if self._task is not None:
            # Shielded by asyncio.wait: a slow broker delays no scrape beyond ``wait``.
            await asyncio.wait({self._task}, timeout=self.wait)
        return dict(self._lag)

    async def _refresh(self) -> None:
        try:
            self._lag = await asyncio.wait_for(self._fetch(), timeout=self.timeout)
            if self._failing:
                log.info("consumer lag can be read again")
            self._failing = False
        except Exception as exc:
            if not self._failing:
                log.warning("consumer lag cannot be read (%r); not shown until it can", exc)
            self._failing = True
            self._lag = {}
            await self._close_clients()
        finally:
            self._read_at = time.monotonic()
            self._task = None

    async def _fetch(self) -> dict[tuple[str, int], int]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.structs import TopicPartition

        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=5000,
            )
            await consumer.start()
            self._consumer = consumer
        names = sorted(set(self.topics()))
        if not names:
            return {}
        partitions = [
            TopicPartition(found["topic"], partition["partition"])
            for found in await self._admin.describe_topics(names)
            if not found["error_code"]
            for partition in found["partitions"]
        ]
        offsets = await self._admin.list_consumer_group_offsets(
            self.group_id, partitions=partitions
        )
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        wanted = [tp for tp, offset in committed.items() if offset >= 0]
        ends = await self._consumer.end_offsets(wanted) if wanted else {}
        return lag_of(committed, ends)

    async def _close_clients(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close_clients()
