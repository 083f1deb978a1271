"""The worker half of a bridge: stream processors, the outbox relay, the timer scanner, the HTTP
invoker, the deliverer of approval notices and the other pollers, around a ``Core``
(bridge.bootstrap). ``bridge worker`` runs one; ``bridge dev`` runs one beside the web endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from aiokafka import AIOKafkaProducer

from bridge.announce import Listener
from bridge.bootstrap import Core
from bridge.bulk import BulkRunner
from bridge.deliverer import Deliverer, smtp_server
from bridge.invoker import Invoker
from bridge.lag import ConsumerLag
from bridge.partitioner import partition_for
from bridge.relay import Relay
from bridge.retention import Retention
from bridge.schedule_runner import ScheduleRunner
from bridge.scheduler import TimerScanner
from bridge.store.database import is_postgres
from bridge.worker_health import GroupState, WorkerHealth

log = logging.getLogger(__name__)

#: How often a worker looks for topics that newly deployed definitions read.
FOLLOW_TOPICS_EVERY_SECONDS = 3.0


class Worker:
    """Stream processors, the outbox relay, the timer scanner, the HTTP invoker and the
    deliverer of approval notices."""

    def __init__(
        self,
        core: Core,
        bootstrap: str,
        *,
        embedded_broker: bool = False,
        listen: bool = False,
        serve_health: bool = False,
    ) -> None:
        """``embedded_broker``: ``bootstrap`` is the broker ``bridge dev`` started. ``listen``:
        other processes (``bridge web``) write work for this one's pollers, and say so on
        PostgreSQL (see bridge.announce). ``serve_health``: serve /livez, /readyz and /metrics
        on the worker's own port (``bridge worker``; in ``bridge dev`` the web serves them)."""
        self.core = core
        self.bootstrap = bootstrap
        settings = core.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            # The outbox gives dedupe through ce_id; the test broker refuses idempotence.
            enable_idempotence=False,
            # No linger: the relay already sends in batches, and with a linger the test broker
            # was seen to leave a new producer's first batch unanswered.
            max_batch_size=256 * 1024,
            partitioner=partition_for,
        )
        self.relay = Relay(
            core.db,
            self.producer,
            core.engine.wakeups.relay,
            poll_seconds=settings.relay_poll_ms / 1000,
            batch_size=settings.relay_batch_size,
            metrics=core.engine.metrics,
            tracing=core.engine.tracing,
        )
        self.scanner = TimerScanner(
            core.engine,
            poll_seconds=settings.relay_poll_ms / 1000,
            batch_size=settings.relay_batch_size,
            retention=timedelta(hours=settings.dedupe_retention_hours),
        )
        self.invoker = Invoker(
            core.engine,
            allowed_hosts=settings.http_allowed_hosts,
            concurrency=settings.http_concurrency,
            lease_seconds=settings.http_lease_seconds,
            poll_seconds=settings.relay_poll_ms / 1000,
        )
        self.deliverer = Deliverer(
            core.engine,
            smtp=smtp_server(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_security,
                settings.smtp_username,
                settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                settings.smtp_from,
            ),
            allowed_hosts=settings.http_allowed_hosts,
            timeout_seconds=settings.smtp_timeout_seconds,
            max_attempts=settings.delivery_max_attempts,
            backoff_seconds=settings.delivery_backoff_seconds,
            max_backoff_seconds=settings.delivery_backoff_max_seconds,
            concurrency=settings.delivery_concurrency,
            poll_seconds=settings.relay_poll_ms / 1000,
        )
        self.retention = Retention(
            core.db, core.registry, settings.retention_days, core.engine.metrics
        )
        # Imported here: faust and the stream processors are the worker's, not the web's (about
        # 9 MB of a bridge web process).
        from processors.app import build_app as build_processors

        self.app = build_processors(
            settings,
            core.engine,
            bootstrap,
            sorted(core.registry.topics()),
            embedded_broker=embedded_broker,
        )
        assert self.app.event_topics is not None
        self.event_topics = self.app.event_topics
        self.listener = (
            Listener(core.db, core.engine.wakeups) if listen and is_postgres(core.db) else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        # /metrics (served by the web endpoint of this or another process) shows the lag.
        self.lag = ConsumerLag(
            bootstrap,
            settings.kafka_group_id,
            lambda: [*self.event_topics.names, settings.kafka_replies_topic],
        )
        core.engine.metrics.lag_source = self.lag
        self.health = (
            WorkerHealth(
                core.db,
                core.engine.metrics,
                self.group_state,
                lambda: self._tasks,
                settings.ready_max_outbox_age_seconds,
            )
            if serve_health and settings.worker_http_port
            else None
        )

    @property
    def topics(self) -> list[str]:
        """The domain-event topics consumed now."""
        return self.event_topics.names

    async def follow_topics(self, every_seconds: float = FOLLOW_TOPICS_EVERY_SECONDS) -> None:
        """Consume the topics of definitions deployed while the worker runs (by this process, or
        by another: the timer scanner reads the deployed definitions every few seconds)."""
        while True:
            await asyncio.sleep(every_seconds)
            try:
                added = self.event_topics.follow(self.core.registry.topics())
                if added:
                    log.info("consuming %s too: a deployed definition reads it", ", ".join(added))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not look for the topics of new definitions; trying later")

    def group_state(self) -> GroupState:
        """Whether the consumer group has given this worker its partitions, and how many."""
        app = self.app
        joined = app.rebalancing_count > 0 and not app.rebalancing
        try:
            partitions = len(app.consumer.assignment()) if joined else 0
        except Exception:  # no consumer yet
            partitions = 0
        return GroupState(joined, partitions)

    async def start(self) -> None:
        if self.health is not None:
            # First: a taken port stops the start before anything is consumed; until the group
            # has given this worker its partitions, /readyz says so.
            settings = self.core.settings
            await self.health.start(settings.worker_http_host, settings.worker_http_port)
        await self.producer.start()
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="relay"),
            asyncio.create_task(self.scanner.run(), name="timers"),
            asyncio.create_task(self.invoker.run(), name="http-invoker"),
            asyncio.create_task(self.deliverer.run(), name="deliveries"),
            asyncio.create_task(self.retention.run(), name="retention"),
            asyncio.create_task(self.follow_topics(), name="topics"),
            asyncio.create_task(BulkRunner(self.core.engine).run(), name="bulk-operations"),
            asyncio.create_task(ScheduleRunner(self.core.engine).run(), name="schedules"),
        ]
        if self.listener is not None:
            self._tasks.append(asyncio.create_task(self.listener.run(), name="listener"))
        await self.app.start()

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch at hand, stop consuming, flush the outbox; bounded by ``timeout``,
        even while the database is away (nothing is lost by not waiting: what was not
        committed is consumed again, what was not published is published at the next start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # faust's stop waits for the events in hand to be applied and acknowledged. It does not
        # always give way to cancellation, so the bound is kept by not waiting any longer; the
        # rest of the stop gets a quarter of the time.
        if self.health is not None:
            await self.health.stop()
        stopping = asyncio.ensure_future(self.app.stop())
        done, _ = await asyncio.wait({stopping}, timeout=timeout * 0.7)
        if not done:
            log.warning("the stream processors did not stop within %.0fs", timeout * 0.7)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=max(deadline - loop.time() - 6, 0.1))
        try:
            await asyncio.wait_for(self.relay.drain(), timeout=max(deadline - loop.time() - 3, 0.1))
        except Exception:
            log.exception("could not flush the outbox; it is published at the next start")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.producer.stop(), timeout=max(deadline - loop.time() - 1, 0.1)
            )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lag.close(), timeout=max(deadline - loop.time(), 0.1))
