"""Waking the pollers of other processes on PostgreSQL: NOTIFY in the writing transaction, LISTEN
in the worker.

A ``bridge web`` process runs no relay, timer scanner or HTTP invoker: the outbox rows, timers
and HTTP calls it commits (a decision, a callback, a start) are the worker's to carry out. The
worker's pollers rest until something wakes them, so the web process says what it wrote with
``pg_notify`` in the same transaction (PostgreSQL delivers a notification only when, and once,
the transaction commits), and the worker listens on a connection of its own. A notification lost
while that connection was down costs at most one poll interval: the pollers still look that
often, and the listener wakes them all when it connects again.

SQLite has no such channel; the processes of ``bridge dev`` share one engine and wake each other
directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.poller import backoff
from bridge.store import notifications
from bridge.wakeups import Wakeups, Written

log = logging.getLogger(__name__)

CHANNEL = "bridge_work"

#: The longest wait between two attempts to listen again.
MAX_RECONNECT_SECONDS = 5.0


def encode(written: Written) -> str:
    return json.dumps(
        {
            "outbox": written.outbox,
            "httpCalls": written.http_calls,
            "deliveries": written.deliveries,
            "due": None if written.earliest_due is None else written.earliest_due.isoformat(),
        },
        separators=(",", ":"),
    )


def decode(payload: str) -> Written:
    """What a notification says was written; anything unreadable wakes every poller."""
    try:
        data = json.loads(payload)
        due = data.get("due")
        return Written(
            outbox=bool(data.get("outbox")),
            http_calls=bool(data.get("httpCalls")),
            deliveries=bool(data.get("deliveries")),
            earliest_due=None if due is None else datetime.fromisoformat(due),
        )
    except (ValueError, TypeError, AttributeError):
        return everything()


def everything() -> Written:
    return Written(
        outbox=True, http_calls=True, deliveries=True, earliest_due=datetime.min.replace(tzinfo=UTC)
    )


async def announce(conn: AsyncConnection, written: Written) -> None:
    """Tell the listening workers, at commit, what this transaction wrote."""
    await notifications.notify(conn, CHANNEL, encode(written))


def _setter(event: asyncio.Event) -> Any:
    return lambda _connection: event.set()


class Listener:
    """Listens for what other processes wrote and wakes this process's pollers."""

    def __init__(self, db: AsyncEngine, wakeups: Wakeups) -> None:
        self.db = db
        self.wakeups = wakeups
        self.connected = asyncio.Event()

    def _heard(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.wakeups.after_commit(decode(payload))

    async def run(self) -> None:
        failures = 0
        while True:
            lost = asyncio.Event()
            try:
                async with self.db.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver = raw.driver_connection
                    assert driver is not None
                    driver.add_termination_listener(_setter(lost))
                    await driver.add_listener(CHANNEL, self._heard)
                    # What was written while nobody listened: every poller looks once.
                    self.wakeups.after_commit(everything())
                    self.connected.set()
                    if failures:
                        log.info("listening for other processes' work again")
                    failures = 0
                    try:
                        await lost.wait()
                    finally:
                        self.connected.clear()
                        if not driver.is_closed():
                            await driver.remove_listener(CHANNEL, self._heard)
                log.warning("lost the connection that listens for other processes' work")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot listen for other processes' work: %r", exc)
            await asyncio.sleep(backoff(0.5, max(failures, 1), MAX_RECONNECT_SECONDS))
