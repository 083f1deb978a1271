"""A log line about one input carries that input's context, not another's."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.integration.harness import running_bridge

pytestmark = pytest.mark.integration


class Recorder(logging.Handler):
    """Keeps each record with the structlog context bound when it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), structlog.contextvars.get_contextvars()))


async def test_an_invalid_event_is_logged_with_its_own_position(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    recorder = Recorder()
    logger = logging.getLogger("bridge")
    logger.addHandler(recorder)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        async with running_bridge(
            database_url, kafka, tmp_path, batch_max_wait_ms=200, log_processes=True
        ) as bridge:
            # Two events in one batch: a good one first, then one that is no event.
            good = bridge.producer.send(
                bridge.topics["orders.events"],
                b'{"type": "OrderPlaced", "eventId": "e-good", "orderId": "o-log", '
                b'"amount": 10, "customerId": "c", "items": []}',
                key=b"o-log",
            )
            bad = bridge.producer.send(bridge.topics["orders.events"], b"{not json", key=b"x")
            sent = await asyncio.gather(await good, await bad)
            bad_offset = sent[1].offset
            await bridge.process_for("o-log", "RUNNING")
            deadline = asyncio.get_running_loop().time() + 10
            while not any(m.startswith("invalid event") for m, _ in recorder.seen):
                assert asyncio.get_running_loop().time() < deadline, recorder.seen
                await asyncio.sleep(0.05)
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(previous)

    [(_, invalid)] = [(m, c) for m, c in recorder.seen if m.startswith("invalid event")]
    assert invalid["offset"] == bad_offset
    assert "event_id" not in invalid and "process_id" not in invalid
    started = [c for m, c in recorder.seen if m.endswith("started") and "o-log" in m]
    assert started and started[0]["correlation_key"] == "o-log"
    assert "offset" not in started[0], "a process's line is about the process"
