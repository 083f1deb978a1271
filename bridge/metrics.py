"""Prometheus metrics: counters and histograms the engine updates as it works, and gauges read
when ``/metrics`` is scraped: from the database (processes by status, outbox backlog and parked
messages, timer lag) and from Kafka (consumer lag, through ``bridge.lag``, cached and bounded in
time).

Each bridge process has its own ``Metrics`` (its own registry), so tests and several apps in one
process do not mix their figures.
"""

from __future__ import annotations

from collections import Counter as Tallies
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.intake import KINDS, CallbackReceived, EngineInput, Outcome
from bridge.store import gauges
from bridge.store.database import reading


@dataclass
class Tally:
    """What one batch did besides its outcomes, counted as it wrote."""

    #: States entered, by definition.
    steps: Tallies[str] = field(default_factory=Tallies)
    #: Approvals concluded, by outcome (APPROVED, REJECTED, EXPIRED).
    approvals: Tallies[str] = field(default_factory=Tallies)
    #: Search attribute values not kept (SearchAttributeSkipped), by definition.
    attributes_skipped: Tallies[str] = field(default_factory=Tallies)
    dead_letters: int = 0
    #: Schedule ticks, by what became of them (started, skipped, buffered, missed, failed).
    schedule_ticks: Tallies[str] = field(default_factory=Tallies)


class LagSource(Protocol):
    """Consumer lag per (topic, partition); empty when it cannot be read just now."""

    async def read(self) -> dict[tuple[str, int], int]: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inputs = Counter(
            "bridge_inputs", "Inputs applied, by kind and result", ["kind", "result"], registry=r
        )
        self.dead_letters = Counter(
            "bridge_dead_letters", "Inputs sent to the dead-letter topic", registry=r
        )
        self.given_up = Counter(
            "bridge_inputs_given_up",
            "Inputs that kept failing and were given up on (dead-lettered, their processes "
            "failed with Bridge.InputFailed, or answered with the reason), by kind",
            ["kind"],
            registry=r,
        )
        self.dedupe_hits = Counter(
            "bridge_dedupe_hits",
            "Inputs recognised as already applied (events, named starts), by kind",
            ["kind"],
            registry=r,
        )
        self.steps = Counter(
            "bridge_steps", "States entered, by definition", ["definition"], registry=r
        )
        self.attributes_skipped = Counter(
            "bridge_search_attributes_skipped",
            "Search attribute values not kept (an object, a too-long string, ...), by "
            "definition: the history says which and why (SearchAttributeSkipped)",
            ["definition"],
            registry=r,
        )
        self.callbacks = Counter(
            "bridge_callbacks",
            "Task callbacks (success, failure, heartbeat) by channel (http, kafka) and result",
            ["outcome", "via", "result"],
            registry=r,
        )
        self.approvals_decided = Counter(
            "bridge_approvals_concluded",
            "Approvals concluded, by outcome (APPROVED, REJECTED, EXPIRED)",
            ["outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "bridge_batch_size",
            "Inputs per engine transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "bridge_batch_seconds",
            "Time to apply one batch (one transaction)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.http_events = Counter(
            "bridge_http_events",
            "Events posted to POST /events, by result: accepted (produced to Kafka), refused "
            "(invalid, or a topic no definition reads), unavailable (no broker took it)",
            ["result"],
            registry=r,
        )
        self.schedule_ticks = Counter(
            "bridge_schedule_ticks",
            "Schedule ticks, by what became of them: started (a process), skipped (the "
            "previous one still ran), buffered, missed (late, catch-up Skip), failed (the start "
            "was refused)",
            ["result"],
            registry=r,
        )
        self.bulk_processes = Counter(
            "bridge_bulk_processes",
            "Processes handled by bulk operations, by action (stop, redrive) and result "
            "(applied; skipped: it no longer qualified when its turn came)",
            ["action", "result"],
            registry=r,
        )
        self.retention_deleted = Counter(
            "bridge_retention_deleted",
            "Finished processes deleted with their history once past their retention, by "
            "definition",
            ["definition"],
            registry=r,
        )
        self.published = Counter(
            "bridge_outbox_published", "Outbox messages published to Kafka", registry=r
        )
        self.parked = Counter(
            "bridge_outbox_parked",
            "Outbox messages parked because they can never be published (too large, an invalid "
            "topic, ...): they wait for `bridge outbox retry`",
            registry=r,
        )
        self.http_calls = Counter(
            "bridge_http_calls",
            "HTTP calls of bridge:http:invoke tasks, by result: the status class (2xx to 5xx) or "
            "the error of a call without a response (Http.Timeout, Http.Forbidden, ...)",
            ["result"],
            registry=r,
        )
        self.deliveries = Counter(
            "bridge_deliveries",
            "Approval notices (mails, webhook posts) by channel (email, webhook) and result: sent, "
            "retried (a try failed, another comes later), failed (for good: in the history and "
            "the dead-letter topic), skipped (decided before the request went out)",
            ["channel", "result"],
            registry=r,
        )
        self.processes = Gauge(
            "bridge_processes",
            "Processes by definition and status",
            ["definition", "status"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "bridge_outbox_backlog", "Outbox messages not yet published", registry=r
        )
        self.outbox_age = Gauge(
            "bridge_outbox_oldest_seconds", "Age of the oldest unpublished message", registry=r
        )
        self.outbox_parked = Gauge(
            "bridge_outbox_parked_rows",
            "Outbox messages parked now, not in the backlog",
            registry=r,
        )
        self.timer_lag = Gauge(
            "bridge_timer_lag_seconds", "How late the most overdue timer is", registry=r
        )
        self.pending_approvals = Gauge(
            "bridge_approvals_pending", "Approvals waiting for a decision", registry=r
        )
        self.consumer_lag = Gauge(
            "bridge_consumer_lag",
            "Records not yet consumed by the bridge's consumer group (high watermark minus "
            "committed offset), by topic and partition",
            ["topic", "partition"],
            registry=r,
        )
        #: Where consumer lag is read from; None: not shown (no Kafka known to this process).
        self.lag_source: LagSource | None = None

    def applied(
        self,
        batch: Sequence[EngineInput],
        outcomes: Sequence[Outcome],
        seconds: float,
        tally: Tally | None = None,
    ) -> None:
        self.batch_size.observe(len(batch))
        self.batch_seconds.observe(seconds)
        for item, outcome in zip(batch, outcomes, strict=False):
            kind = KINDS.get(type(item), "other")
            self.inputs.labels(kind, outcome.status).inc()
            if outcome.status == "duplicate":
                self.dedupe_hits.labels(kind).inc()
            if isinstance(item, CallbackReceived):
                self.callbacks.labels(item.outcome, item.via, outcome.status).inc()
        if tally is not None:
            self.counted(tally)

    def counted(self, tally: Tally) -> None:
        for definition, count in tally.steps.items():
            self.steps.labels(definition).inc(count)
        for outcome, count in tally.approvals.items():
            self.approvals_decided.labels(outcome).inc(count)
        for definition, count in tally.attributes_skipped.items():
            self.attributes_skipped.labels(definition).inc(count)
        if tally.dead_letters:
            self.dead_letters.inc(tally.dead_letters)
        for result, count in tally.schedule_ticks.items():
            self.schedule_ticks.labels(result).inc(count)

    async def scrape(self, db: AsyncEngine) -> bytes:
        """The text exposition, with the database gauges read now."""
        async with reading(db) as conn:
            found = await gauges.read(conn)
        self.processes.clear()
        for definition, status, count in found.processes:
            self.processes.labels(definition, status).set(count)
        self.outbox_backlog.set(found.outbox_backlog)
        self.outbox_age.set(_age(found.now, found.outbox_oldest))
        self.outbox_parked.set(found.outbox_parked)
        self.timer_lag.set(max(_age(found.now, found.earliest_timer), 0.0))
        self.pending_approvals.set(found.pending_approvals)
        if self.lag_source is not None:
            lag = await self.lag_source.read()
            self.consumer_lag.clear()
            for (topic, partition), behind in lag.items():
                self.consumer_lag.labels(topic, str(partition)).set(behind)
        return generate_latest(self.registry)


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=now.tzinfo)
    return max((now - then).total_seconds(), 0.0)
