"""STANDARD against EXPRESS: the same ten-state definition started and run to its end, through the
engine (the one path every input takes), on a fresh database. Prints starts per second, history
rows and outbox rows per process for each type. Nothing here asserts on speed.

    python bench/express.py --processes 2000 --database sqlite
    python bench/express.py --processes 2000 --database postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.bootstrap import open_core
from bridge.intake import StartRequested
from bridge.settings import Settings
from bridge.store.database import reading
from bridge.store.schema import history, outbox, processes

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"


async def _postgres(statement: str) -> None:
    server = create_async_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await server.dispose()


def definition(process_type: str) -> dict[str, Any]:
    states: dict[str, Any] = {}
    for index in range(8):
        states[f"Step{index}"] = {
            "Type": "Pass",
            "Parameters": {"n.$": f"States.MathAdd($.n, {index})", "tag": f"step-{index}"},
            "Next": f"Step{index + 1}" if index < 7 else "Decide",
        }
    states["Decide"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.n", "NumericGreaterThan": 100, "Next": "Big"}],
        "Default": "Big",
    }
    states["Big"] = {"Type": "Succeed"}
    return {"ProcessType": process_type, "StartAt": "Step0", "States": states}


async def run(database_url: str, count: int, batch: int) -> dict[str, dict[str, float]]:
    folder = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    for kind in ("STANDARD", "EXPRESS"):
        (folder / f"{kind.lower()}.asl.json").write_text(json.dumps(definition(kind)))
    settings = Settings(database_url=database_url, definitions_dir=folder)
    core = await open_core(settings)
    figures: dict[str, dict[str, float]] = {}
    try:
        for kind in ("standard", "express"):
            started = time.perf_counter()
            for first in range(0, count, batch):
                items = [
                    StartRequested(kind, {"n": i}) for i in range(first, min(count, first + batch))
                ]
                outcomes = await core.engine.apply(items)
                assert all(outcome.ok for outcome in outcomes), outcomes[0]
            elapsed = time.perf_counter() - started
            async with reading(core.db) as conn:
                ids = select(processes.c.id).where(processes.c.definition == kind)
                rows = await conn.scalar(
                    select(func.count()).select_from(history).where(history.c.process_id.in_(ids))
                )
                sent = await conn.scalar(select(func.count()).select_from(outbox))
            figures[kind] = {
                "processes_per_second": round(count / elapsed, 1),
                "history_rows_per_process": round((rows or 0) / count, 2),
                "outbox_rows_so_far": float(sent or 0),
            }
    finally:
        await core.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50, help="starts per engine transaction")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    if args.database == "sqlite":
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bridge-bench-')}/bench.db"
        figures = await run(url, args.processes, args.batch)
    else:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        await _postgres(f'CREATE DATABASE "{name}"')
        try:
            figures = await run(f"{PG_SERVER}/{name}", args.processes, args.batch)
        finally:
            await _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for kind, values in figures.items():
        print(
            f"{kind:>8}: {values['processes_per_second']:>8} processes/s, "
            f"{values['history_rows_per_process']} history rows per process"
        )
    print(json.dumps({"database": args.database, "processes": args.processes, **figures}))


if __name__ == "__main__":
    asyncio.run(main())
