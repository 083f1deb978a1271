"""A batch is freed when it is done: nothing of it waits for the garbage collector.

Its parts (correlation, approvals, children, schedules, the writer) reach back to the batch;
were those strong references, every batch would be a reference cycle and would keep each
process, history entry and message it touched in memory until the collector ran, which under a
burst is most of a worker's peak memory (bench/README.md). SQLite and PostgreSQL.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from bridge.batch import Batch
from bridge.batch_parts import Touched
from bridge.bootstrap import open_core
from bridge.intake import StartRequested
from bridge.settings import Settings

pytestmark = pytest.mark.integration

DEFINITION = {
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {
                "Topic": "stock.commands",
                "Message": {"token.$": "$$.Task.Token", "order.$": "$.order"},
            },
            "TimeoutSeconds": 60,
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}


def alive(kind: type) -> int:
    return sum(1 for found in gc.get_objects() if isinstance(found, kind))


async def test_an_applied_batch_leaves_no_batch_or_process_behind(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "ask.asl.json").write_text(json.dumps(DEFINITION))
    core = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    try:
        # The first batch fills what is cached on first use (statements, pools).
        await core.engine.apply([StartRequested("ask", {"order": "warm-up"})])
        gc.collect()
        gc.disable()
        try:
            outcomes = await core.engine.apply(
                [StartRequested("ask", {"order": f"o-{n}"}) for n in range(5)]
            )
            # With the collector off, an object in a cycle stays among the tracked objects.
            batches, touched = alive(Batch), alive(Touched)
        finally:
            gc.enable()
    finally:
        await core.close()
    assert all(outcome.ok for outcome in outcomes)
    assert (batches, touched) == (0, 0)
