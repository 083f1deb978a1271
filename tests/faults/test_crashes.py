"""Crash tests: the order saga under load while the worker process dies, PostgreSQL restarts,
the broker stalls, or one of two workers in a group is killed.

After recovery every order must have completed exactly once: one process per order, SUCCEEDED,
its history one pass through the saga, one distinct ``ce_id`` per step on every command topic and
on ``orders.done`` (copies with the same ``ce_id``, which the at-least-once relay may publish, are
counted and reported, not failed). Each scenario prints one ``FAULTS ...`` line with its figures
(``pytest -s`` shows it; it is also attached to the test report as a user property).

Also: a SIGTERM (graceful stop) mid-run. ``BRIDGE_SOAK=1`` adds a soak run (minutes of load,
random SIGKILLs and workers restarted with a random fault point armed; BRIDGE_SOAK_SECONDS,
BRIDGE_SOAK_ORDERS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.broker import EmbeddedBroker, free_port
from tests.faults.private_postgres import private_postgres
from tests.faults.rig import Rig
from tests.faults.verdict import now, report

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SOAK = os.environ.get("BRIDGE_SOAK") == "1"
ORDERS = 100
#: Orders per second: the load lasts 2.5 s, so faults hit while orders are in flight.
RATE = 40.0
#: Generous: a restarted worker waits for the dead member's session (2 s) to end, and more
#: on a loaded machine.
RECOVERY_TIMEOUT = 90.0


def _explain(rig: Rig) -> str:
    return "\n".join(f"--- {w.name} (exit {w.returncode}):\n{w.tail(25)}" for w in rig.workers)


# --------------------------------------------------------------------- worker crashes


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("point", "nth"),
    [
        # Passes counted in the worker: every engine transaction (events, replies)...
        # A loaded machine applies bigger batches, so fewer of them: early passes keep each
        # crash inside the run, with orders in flight, however busy the machine is.
        ("after-step-before-commit", 15),
        # ...every applied batch of domain events...
        ("after-commit-before-offset", 10),
        # ...every non-empty batch the relay published (a loaded machine publishes bigger
        # batches, so fewer of them: an early one keeps the crash inside the run).
        ("after-publish-before-mark", 12),
    ],
)
async def test_worker_killed_at_fault_point(
    kafka: str, tmp_path: Path, request: pytest.FixtureRequest, point: str, nth: int
) -> None:
    async with Rig(tmp_path, kafka, seed=nth) as rig:
        victim = await rig.start_worker(f"{point}:{nth}")
        orders = rig.orders(ORDERS)
        rig.publish(orders, RATE)
        code = await victim.exited(timeout=45)
        fault_at = now()
        assert code == 137, f"the worker did not die at {point}:{nth}\n{_explain(rig)}"
        assert f"fault injected at {point}" in victim.text()
        done_before = len(rig.observed.completed_at)
        restart_at = now()
        await rig.start_worker(wait=False)
        await rig.wait_done(RECOVERY_TIMEOUT)
        await rig.settle()
        result = await rig.verify(f"{point}:{nth}", fault_at=fault_at, resume_after=restart_at)
        result.notes.append(f"{done_before}/{len(orders)} orders completed before the crash")
        report(result, request)
        assert done_before < len(orders), "the fault hit after the run, not in the middle of it"
        assert not result.problems, _explain(rig)


@pytest.mark.timeout(180)
async def test_worker_sigkilled_at_a_random_moment(
    kafka: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    async with Rig(tmp_path, kafka, seed=seed) as rig:
        victim = await rig.start_worker()
        orders = rig.orders(ORDERS)
        rig.publish(orders, RATE)
        # Somewhere in the middle: after a random number of completions, plus a random instant.
        await rig.wait_completed(chance.randint(1, ORDERS * 2 // 3), timeout=30)
        await asyncio.sleep(chance.uniform(0, 0.05))
        victim.kill()
        fault_at = now()
        done_before = len(rig.observed.completed_at)
        await rig.start_worker(wait=False)
        restart_at = now()
        await rig.wait_done(RECOVERY_TIMEOUT)
        await rig.settle()
        result = await rig.verify(
            f"SIGKILL (seed {seed})", fault_at=fault_at, resume_after=restart_at
        )
        result.notes.append(f"{done_before}/{len(orders)} orders completed before the kill")
        report(result, request)
        assert done_before < len(orders), "the kill came after the run, not in the middle of it"
        assert not result.problems, _explain(rig)
        await _the_checks_see_doubles(rig)


async def _the_checks_see_doubles(rig: Rig) -> None:
    """The checks are not blind: a copy of a command (same ce_id) counts as redelivered, a
    second command for the same step (another ce_id) as a duplicated effect and a problem."""
    assert rig.producer is not None
    before = await rig.verify("before forging")
    topic = rig.topics["payments.commands"]
    record = (await rig.read_topics(["payments.commands"]))["payments.commands"][0]
    headers = list(record.headers)
    forged = [(k, b"forged-" + v if k == "ce_id" else v) for k, v in headers]
    for copy in (headers, forged):
        await rig.producer.send_and_wait(topic, record.value, key=record.key, headers=copy)
    after = await rig.verify("after forging")
    assert after.redelivered["ChargePayment"] == before.redelivered["ChargePayment"] + 1
    assert after.duplicated["ChargePayment"] == before.duplicated["ChargePayment"] + 1
    assert [p for p in after.problems if "distinct ChargePayment messages" in p], after.problems


#: How long a SIGTERMed worker may take before it is SIGKILLed, as an orchestrator would (the
#: batch at hand and the outbox flush take well under a second here; a hung stop was seen to
#: last for minutes).
GRACE_SECONDS = 20.0


@pytest.mark.timeout(240)
async def test_worker_stopped_gracefully_mid_run(
    kafka: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A deploy: SIGTERM while orders flow, then a new worker. The batch at hand finishes, the
    offsets of applied batches only are committed, the outbox is flushed. A worker that has not
    exited after the grace period is SIGKILLed, as an orchestrator would; nothing may be lost or
    doubled either way."""
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    async with Rig(tmp_path, kafka, seed=seed) as rig:
        old = await rig.start_worker()
        orders = rig.orders(ORDERS)
        rig.publish(orders, RATE)
        await rig.wait_completed(chance.randint(1, ORDERS // 2), timeout=30)
        old.popen.send_signal(signal.SIGTERM)
        fault_at = now()
        code = await old.exited(timeout=GRACE_SECONDS)
        stopped_in = now() - fault_at
        hung = code is None
        if hung:
            old.kill()
        done_before = len(rig.observed.completed_at)
        restart_at = now()
        await rig.start_worker(wait=False)
        await rig.wait_done(RECOVERY_TIMEOUT)
        await rig.settle()
        result = await rig.verify(
            f"SIGTERM (seed {seed})", fault_at=fault_at, resume_after=restart_at
        )
        result.notes.append(
            f"{'did NOT stop' if hung else 'stopped'} in {stopped_in:.1f}s"
            + (" (SIGKILLed)" if hung else f" with exit code {code}")
            + f"; {done_before}/{len(orders)} orders completed before the stop"
        )
        report(result, request)
        assert not result.problems, _explain(rig)
        assert not hung, "a worker SIGTERMed under load must exit within its grace period"
        assert code == 0, _explain(rig)


@pytest.mark.skipif(not SOAK, reason="soak run: set BRIDGE_SOAK=1")
@pytest.mark.timeout(1800)
async def test_soak_repeated_crashes(
    kafka: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Minutes of load while the worker is SIGKILLed at random moments, or restarted with a
    random fault point armed so that it dies by itself. BRIDGE_SOAK_SECONDS (default 180) and
    BRIDGE_SOAK_ORDERS (default 3000) size the run."""
    seconds = float(os.environ.get("BRIDGE_SOAK_SECONDS", "180"))
    orders_count = int(os.environ.get("BRIDGE_SOAK_ORDERS", "3000"))
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    points = ["after-step-before-commit", "after-commit-before-offset", "after-publish-before-mark"]
    async with Rig(tmp_path, kafka, seed=seed) as rig:
        worker = await rig.start_worker()
        orders = rig.orders(orders_count)
        rig.publish(orders, orders_count / seconds)
        end = now() + seconds
        fault_at = now()
        kills = faults = 0
        armed = False
        while now() < end:
            await asyncio.sleep(chance.uniform(6.0, 18.0))
            if worker.alive:
                worker.kill()
                kills += 1
            else:
                faults += 1
            fault_at = now()
            armed = chance.random() < 0.5
            fault = f"{chance.choice(points)}:{chance.randint(5, 200)}" if armed else None
            worker = await rig.start_worker(fault, wait=False)
        if armed or not worker.alive:  # finish with a worker that has no fault armed
            worker.kill()
            worker = await rig.start_worker(wait=False)
            fault_at = now()
        await rig.wait_done(RECOVERY_TIMEOUT * 2)
        await rig.settle()
        result = await rig.verify(
            f"soak {seconds:.0f}s, {kills} SIGKILLs, {faults} fault-point deaths (seed {seed})",
            fault_at=fault_at,
        )
        report(result, request)
        assert not result.problems, _explain(rig)


# --------------------------------------------------------------------- PostgreSQL restart


@pytest.mark.timeout(180)
async def test_postgres_restart_mid_run(
    kafka: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL stopped (fast shutdown: sessions cut mid-transaction) and started again after
    a few seconds, while orders flow; the worker must ride it out and lose or double nothing.
    The server is the test's own (tests/faults/private_postgres.py): the suite's shared one
    serves other tests meanwhile."""
    server = await asyncio.to_thread(private_postgres)
    if isinstance(server, str):
        pytest.skip(server)
    down = 3.0
    try:
        await asyncio.to_thread(server.start)
        async with Rig(tmp_path, kafka, seed=5, postgres_admin_url=server.admin_url) as rig:
            try:
                worker = await rig.start_worker()
                orders = rig.orders(ORDERS)
                rig.publish(orders, RATE / 2)
                await rig.wait_completed(15, timeout=30)
                done_before = len(rig.observed.completed_at)
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(down)
                await asyncio.to_thread(server.start)
                fault_at = now()
            finally:
                if not await asyncio.to_thread(server.running):
                    await asyncio.to_thread(server.start)
            await rig.wait_done(RECOVERY_TIMEOUT)
            await rig.settle()
            result = await rig.verify(f"PostgreSQL down {down:.0f}s", fault_at=fault_at)
            result.notes.append(f"{done_before}/{len(orders)} orders completed before the stop")
            report(result, request)
            assert worker.alive, f"the worker died with the database\n{_explain(rig)}"
            assert done_before < len(orders), "the outage came after the run"
            assert not result.problems, _explain(rig)
    finally:
        await asyncio.to_thread(server.remove)


# --------------------------------------------------------------------- broker stall


@contextlib.contextmanager
def _dedicated_broker() -> Iterator[EmbeddedBroker]:
    # Started from the event loop's (main) thread: the broker dies with this process.
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        if broker.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()
        Path(broker.log.name).unlink(missing_ok=True)


@pytest.mark.timeout(180)
async def test_broker_stalled_longer_than_the_session_timeout(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    stall = 9.0  # > BRIDGE_KAFKA_SESSION_TIMEOUT_MS=2000 (the rig's)
    with _dedicated_broker() as broker:
        assert broker.process is not None
        pid = broker.process.pid
        async with Rig(tmp_path, broker.bootstrap, seed=9) as rig:
            try:
                worker = await rig.start_worker()
                orders = rig.orders(ORDERS)
                rig.publish(orders, RATE)
                await rig.wait_completed(20, timeout=30)
                os.kill(pid, signal.SIGSTOP)
                done_before = len(rig.observed.completed_at)
                await asyncio.sleep(stall)
            finally:
                os.kill(pid, signal.SIGCONT)
            fault_at = now()
            await rig.wait_done(RECOVERY_TIMEOUT)
            await rig.settle()
            result = await rig.verify(f"broker stalled {stall:.0f}s", fault_at=fault_at)
            result.notes.append(f"{done_before}/{len(orders)} orders completed before the stall")
            report(result, request)
            assert worker.alive, f"the worker died with the broker stall\n{_explain(rig)}"
            assert done_before < len(orders), "the stall came after the run"
            assert not result.problems, _explain(rig)


# --------------------------------------------------------------------- two workers, one dies


def _listening_ports(pid: int) -> list[str] | None:
    """TCP ports ``pid`` listens on, or None when ``ss`` cannot tell."""
    if not shutil.which("ss"):
        return None
    listing = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, timeout=30)
    if listing.returncode != 0:
        return None
    return [
        line.split()[3] for line in listing.stdout.splitlines() if f"pid={pid}," in line.split()[-1]
    ]


async def _group_members(rig: Rig, wanted: int, timeout: float) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=rig.bootstrap)
    await admin.start()
    members = 0
    try:
        deadline = now() + timeout
        while now() < deadline:
            groups = await admin.describe_consumer_groups([rig.settings.kafka_group_id])
            group = groups[0].groups[0]
            members = len(group[5]) if group[2] == "Stable" else 0
            if members == wanted:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return members


@pytest.mark.timeout(180)
async def test_one_of_two_workers_killed(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with _dedicated_broker() as broker:
        async with Rig(tmp_path, broker.bootstrap, partitions=4, seed=4) as rig:
            first = await rig.start_worker(wait=False)
            second = await rig.start_worker(wait=False)
            await first.ready()
            await second.ready()
            members = await _group_members(rig, 2, timeout=30)
            assert members == 2, f"the group has {members} stable members\n{_explain(rig)}"
            # Workers do not serve HTTP (faust's web server is off): two fit on one machine.
            ports = {w.name: _listening_ports(w.pid) for w in (first, second)}
            orders = rig.orders(ORDERS)
            rig.publish(orders, RATE)
            await rig.wait_completed(25, timeout=30)
            first.kill()
            fault_at = now()
            done_before = len(rig.observed.completed_at)
            # The orders of the dead worker's partitions stop; the survivor's go on (its orders
            # take milliseconds): orders older than a second and not done are the stuck ones.
            await asyncio.sleep(1.5)
            stuck = {o for o in rig.pending() if rig.observed.sent_at[o] < now() - 1.0}
            await rig.wait_done(RECOVERY_TIMEOUT)
            await rig.settle()
            result = await rig.verify(
                "one of two workers SIGKILLed (4 partitions)", fault_at=fault_at, stuck=stuck
            )
            result.notes.append(f"{len(stuck)} orders stuck on the dead worker's partitions")
            result.notes.append(f"{done_before}/{len(orders)} orders completed before the kill")
            result.notes.append(f"listening ports of the workers: {ports}")
            report(result, request)
            assert second.alive, f"the surviving worker died\n{_explain(rig)}"
            assert stuck, "the killed worker held no partition with work: nothing was taken over"
            assert await _group_members(rig, 1, timeout=5) == 1
            assert all(found in (None, []) for found in ports.values()), ports
            assert done_before < len(orders), "the kill came after the run"
            assert not result.problems, _explain(rig)
