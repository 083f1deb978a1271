"""How the test broker's CPU grows with the length of a partition, with nothing else running.

    python bench/broker_growth.py --phases 6 --rate 100

Starts the embedded Tansu broker (in memory), one producer sending ``--rate`` small records per
second, one at a time (one batch each, as a relay at low load sends them), and one consumer in a
group reading them with a 10 ms fetch wait. For ``--phases`` phases of ``--seconds`` each, first
without offset commits, then committing after every fetch that brought records, it prints the
broker's CPU (in percent of a core) and the partition's length.

On this machine (2026-12-03) the broker's CPU rose from 8 % to 12 % of a core over 2,500 records
without commits, and from 15 % to 20 % with commits, while an idle consumer at the end of a
40,000-record partition cost a flat 5 %: each fetch or produce that touches records costs more
the longer the partition is. In ``order_saga.py --rate 50 --duration 60`` the broker's CPU grows
from 14 % to 73 % of a core over the minute, and the bridge's latency with it.

Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.broker import EmbeddedBroker, free_port

TOPIC = "growth"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace) -> None:
    broker = EmbeddedBroker(free_port())
    broker.start()
    assert broker.process is not None
    pid = broker.process.pid
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=broker.bootstrap,
        group_id="growth",
        fetch_max_wait_ms=10,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    commit = False
    stop = asyncio.Event()
    written = 0

    async def read() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            if commit and any(batches.values()):
                await consumer.commit()

    reader = asyncio.create_task(read())
    try:
        for commit in (False, True):
            for phase in range(args.phases):
                before, start = cpu_seconds(pid), time.monotonic()
                while time.monotonic() - start < args.seconds:
                    await (await producer.send(TOPIC, b"x" * 300))
                    written += 1
                    await asyncio.sleep(1 / args.rate)
                busy = (cpu_seconds(pid) - before) / (time.monotonic() - start)
                print(
                    f"commits {'on ' if commit else 'off'}  phase {phase}  partition length "
                    f"{written:6d}  broker CPU {busy * 100:5.1f} % of a core",
                    flush=True,
                )
    finally:
        stop.set()
        await reader
        await consumer.stop()
        await producer.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=100.0, help="records per second")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
