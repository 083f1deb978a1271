"""A schedule under crashes: two workers tick a one-second schedule while one of them at a time
is SIGKILLed (or dies inside a transaction at a fault point) and comes back. Every tick from the
first to the last starts exactly one process: none doubled by the race between the workers or by
a crash, none lost while the other worker lives."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.definitions import deploy
from bridge.schedule_starts import process_id_of
from bridge.store.database import reading
from bridge.store.schema import processes, schedules
from tests.faults.rig import Rig
from tests.faults.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TICKING = {
    "StartAt": "Done",
    "States": {"Done": {"Type": "Pass", "End": True}},
    "Schedules": [{"Name": "EverySecond", "RateSeconds": 1, "Overlap": "Allow"}],
}


@pytest.mark.timeout(180)
async def test_each_tick_starts_one_process_while_workers_die(kafka: str, tmp_path: Path) -> None:
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    async with Rig(tmp_path, kafka, seed=seed) as rig:
        assert rig.core is not None
        await deploy(rig.core.db, [("ticking", TICKING)])
        live: list[WorkerProcess] = [await rig.start_worker(), await rig.start_worker()]
        # Dies inside its third write transaction (a tick, or anything else it applies), maybe
        # before its consumer has joined the group (the schedules run from the start).
        faulty = await rig.start_worker("after-step-before-commit:3", wait=False)
        for _ in range(3):
            await asyncio.sleep(chance.uniform(0.5, 2.0))
            victim = live.pop(chance.randrange(len(live)))
            victim.kill()
            live.append(await rig.start_worker(wait=False))
        await asyncio.sleep(2.5)
        assert await faulty.exited(timeout=20) == 137, faulty.tail()
        assert "fault injected at after-step-before-commit" in faulty.text()
        for worker in live:
            worker.kill()

        async with reading(rig.core.db) as conn:
            started = set(
                await conn.scalars(
                    select(processes.c.id).where(processes.c.definition == "ticking")
                )
            )
            row = (
                await conn.execute(select(schedules).where(schedules.c.id == "ticking.EverySecond"))
            ).one()
        last = row.last_tick_at
        assert last is not None, f"no tick was handled (seed {seed})"
        # Walk back from the last tick: each second has its one process, down to the first.
        ticks = []
        tick = last
        while process_id_of("ticking.EverySecond", tick) in started:
            ticks.append(tick)
            tick -= timedelta(seconds=1)
        assert len(ticks) == len(started), (
            f"{len(started)} processes, but only the last {len(ticks)} ticks run without a gap "
            f"(seed {seed})"
        )
        assert row.started == len(started) and row.missed == 0, (row.started, row.missed, seed)
        assert len(started) >= 5, f"only {len(started)} ticks in the run (seed {seed})"
        assert datetime.now(UTC) - last < timedelta(seconds=30)
