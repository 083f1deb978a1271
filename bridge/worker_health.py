"""The worker's own small HTTP listener: liveness, readiness and its metrics.

In the split deployment the worker serves no API, yet it is the process whose counters matter
(inputs, steps, dead letters, lag) and the one an orchestrator must know to restart. So it
serves three read-only paths on ``BRIDGE_WORKER_HTTP_HOST:BRIDGE_WORKER_HTTP_PORT`` (8081):

- ``/livez``: 200 while its loops run; 503 naming the loop that ended (restart the worker);
- ``/readyz``: 200 when the database answers, the consumer group has given it its partitions
  (possibly none, when there are more workers than partitions), and no message has waited
  longer than ``BRIDGE_READY_MAX_OUTBOX_AGE_SECONDS`` to be published; else 503 with the reasons;
- ``/metrics``: the Prometheus exposition of this worker (the same families as the web's).

Nothing here writes, takes input or shows a secret, so there are no tokens; bind it where only
the orchestrator and the scraper reach it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.errors import BridgeError
from bridge.metrics import Metrics
from bridge.store import outbox
from bridge.store.database import database_now, reading

#: How long a probe waits for the database before it counts as away.
DATABASE_PATIENCE_SECONDS = 3.0


class PortTaken(BridgeError):
    """The probes' port is taken; the message says which setting to change."""


@dataclass(frozen=True)
class GroupState:
    """The worker's place in its consumer group."""

    joined: bool
    partitions: int


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: list[str] = field(default_factory=list)


def readiness(
    database_problem: str | None,
    group: GroupState,
    outbox_age_seconds: float | None,
    max_outbox_age_seconds: float,
) -> Readiness:
    """Whether a worker is ready, and if not why: every failing check is named."""
    reasons = []
    if database_problem is not None:
        reasons.append(f"the database does not answer: {database_problem}")
    if not group.joined:
        reasons.append("the consumer group has not given this worker its partitions yet")
    if outbox_age_seconds is not None and outbox_age_seconds > max_outbox_age_seconds:
        reasons.append(
            f"a message has waited {outbox_age_seconds:.0f}s to be published (more than "
            f"{max_outbox_age_seconds:.0f}s: is the broker away?)"
        )
    return Readiness(not reasons, reasons)


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max((now - then).total_seconds(), 0.0)


class WorkerHealth:
    def __init__(
        self,
        db: AsyncEngine,
        metrics: Metrics,
        group: Callable[[], GroupState],
        tasks: Callable[[], Sequence[asyncio.Task[None]]],
        max_outbox_age_seconds: float,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.group = group
        self.tasks = tasks
        self.max_outbox_age_seconds = max_outbox_age_seconds
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        return app

    async def livez(self, request: web.Request) -> web.Response:
        ended = [task.get_name() for task in self.tasks() if task.done()]
        if ended:
            return web.json_response(
                {"status": "dead", "ended": ended, "detail": f"{', '.join(ended)} stopped"},
                status=503,
            )
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        problem: str | None = None
        age: float | None = None
        try:
            async with asyncio.timeout(DATABASE_PATIENCE_SECONDS):
                async with reading(self.db) as conn:
                    age = _age(await database_now(conn), await outbox.oldest_waiting(conn))
        except Exception as exc:
            problem = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)[:200]
        group = self.group()
        found = readiness(problem, group, age, self.max_outbox_age_seconds)
        body = {
            "status": "ready" if found.ready else "not ready",
            "reasons": found.reasons,
            "partitions": group.partitions,
            "outboxAgeSeconds": age,
        }
        return web.json_response(body, status=200 if found.ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = await self.metrics.scrape(self.db)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise PortTaken(
                f"the worker's probes cannot listen on {host}:{port} ({exc.strerror}): set "
                "BRIDGE_WORKER_HTTP_PORT to a free port (0: any free port, 8081 by default)"
            ) from None
        # Port 0 asks the system for a free one: say which.
        self.port = int(self._runner.addresses[0][1]) if self._runner.addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
