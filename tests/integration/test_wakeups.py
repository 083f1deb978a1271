"""Pollers rest until there is work: a commit wakes them, the timer scanner wakes when the next
timer is due, and on PostgreSQL a web process's commits wake the worker's pollers (NOTIFY)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.announce import Listener, announce, decode
from bridge.bootstrap import open_core
from bridge.intake import StartRequested
from bridge.scheduler import TimerScanner
from bridge.settings import Settings
from bridge.store import processes as store
from bridge.store.database import open_database, reading
from bridge.store.migrate import upgrade
from bridge.wakeups import Wakeups, Written
from tests.conftest import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.integration


def test_a_commit_wakes_the_scanner_only_for_something_due_before_its_next_look() -> None:
    wakeups = Wakeups()
    looks_at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    wakeups.scanner_looks_at = looks_at
    wakeups.after_commit(Written(earliest_due=looks_at + timedelta(minutes=5)))
    assert not wakeups.timer_scanner.is_set(), "a task timeout minutes away wakes no one"
    wakeups.after_commit(Written(outbox=True, earliest_due=looks_at - timedelta(seconds=1)))
    assert wakeups.timer_scanner.is_set() and wakeups.relay.is_set()
    assert not wakeups.http_invoker.is_set()


def test_a_commit_during_a_look_shortens_the_rest_after_it_and_wakes_no_one() -> None:
    """The look's reads may have missed what commits meanwhile: the rest after the look ends
    no later than that is due. Waking the scanner instead kept it looking without a pause
    while batches committed task timeouts (each look the time of a few batches)."""
    wakeups = Wakeups()
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    wakeups.scanner_looking()
    wakeups.after_commit(Written(outbox=True, earliest_due=now + timedelta(days=1)))
    assert not wakeups.timer_scanner.is_set(), "a timeout a day away wakes no one"
    assert wakeups.scanner_rests(now, 1.0) == 1.0
    assert wakeups.scanner_looks_at == now + timedelta(seconds=1)

    wakeups.scanner_looking()
    wakeups.after_commit(Written(earliest_due=now + timedelta(seconds=0.25)))
    wakeups.after_commit(Written(earliest_due=now + timedelta(seconds=0.5)))
    assert not wakeups.timer_scanner.is_set()
    assert wakeups.scanner_rests(now, 1.0) == 0.25
    wakeups.scanner_looking()
    wakeups.after_commit(Written(earliest_due=now - timedelta(seconds=3)))
    assert wakeups.scanner_rests(now, 1.0) == 0.0, "already due: look again at once"
    # Resting again: a commit due before the next look wakes it as before.
    assert wakeups.scanner_looks_at == now
    wakeups.scanner_rests(now, 1.0)
    wakeups.after_commit(Written(earliest_due=now + timedelta(seconds=0.5)))
    assert wakeups.timer_scanner.is_set()


def test_an_unreadable_notification_wakes_every_poller() -> None:
    written = decode("not json")
    assert written.outbox and written.http_calls and written.earliest_due is not None
    heard = decode(json.dumps({"outbox": True, "httpCalls": False, "due": None}))
    assert heard.outbox and not heard.http_calls and heard.earliest_due is None


async def test_the_scanner_rests_until_the_next_timer_is_due(
    database_url: str, tmp_path: Path
) -> None:
    document = {
        "StartAt": "Nap",
        "States": {"Nap": {"Type": "Wait", "Seconds": 1, "End": True}},
    }
    (tmp_path / "nap.asl.json").write_text(json.dumps(document))
    core = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    # A poll interval far longer than the test: only the due time can wake the scan.
    scanner = TimerScanner(core.engine, poll_seconds=60.0, batch_size=100)
    task = asyncio.create_task(scanner.run())
    try:
        await asyncio.sleep(0.3)  # the scanner found nothing and rests (60 s at most)
        started = time.monotonic()
        outcome = await core.engine.apply_one(StartRequested("nap", {}))
        assert outcome.ok
        status = None
        while status != "SUCCEEDED" and time.monotonic() - started < 10:
            await asyncio.sleep(0.05)
            async with reading(core.db) as conn:
                found = await store.get(conn, outcome.process_ids[0])
            status = found.status.value if found else None
        elapsed = time.monotonic() - started
        assert status == "SUCCEEDED"
        assert 0.9 <= elapsed < 3.0, f"the one-second wait ended after {elapsed:.2f}s"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await core.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.mark.postgres
async def test_another_process_commits_wake_this_ones_pollers(postgres_url: str) -> None:
    """NOTIFY is PostgreSQL's; on SQLite the processes of bridge dev share one engine."""
    writer, worker_db = open_database(postgres_url), open_database(postgres_url)
    await upgrade(writer)
    wakeups = Wakeups()
    listener = Listener(worker_db, wakeups)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        for event in (wakeups.relay, wakeups.http_invoker, wakeups.timer_scanner):
            event.clear()  # the wake-up of connecting
        # The scanner rests for a minute.
        wakeups.scanner_looks_at = datetime.now(UTC) + timedelta(minutes=1)

        with pytest.raises(RuntimeError):
            async with writer.begin() as conn:
                await announce(conn, Written(outbox=True))
                raise RuntimeError("rolled back")

        # Notifications arrive in commit order: once this later one is heard, the rolled-back
        # one (the only one to name the outbox) would have been heard before it.
        async with writer.begin() as conn:
            await announce(conn, Written(http_calls=True, earliest_due=datetime.now(UTC)))
        await asyncio.wait_for(wakeups.http_invoker.wait(), 5)
        await asyncio.wait_for(wakeups.timer_scanner.wait(), 5)
        assert not wakeups.relay.is_set(), "a transaction that did not commit wakes no one"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.dispose()
        await worker_db.dispose()
