"""Dead letters: reading the dead-letter topic, and re-injecting a letter once its cause is fixed.

A replayed letter is published again to the topic it came from, with its key, value and headers
as they were (for an event kept in the buffer, rebuilt from what was kept). Its dedupe mark is
forgotten first, so that the copy is not taken for a duplicate of the dead-lettered one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.errors import BridgeError
from bridge.asl.types import JSON
from bridge.store import inbox


@dataclass(frozen=True)
class Letter:
    offset: int
    partition: int
    value: dict[str, JSON]

    @property
    def reason(self) -> str:
        return str(self.value.get("reason", ""))

    def summary(self) -> dict[str, JSON]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "at": self.value.get("at"),
            "eventKey": self.value.get("eventKey"),
            "source": (
                f"{self.value['topic']}/{self.value['partition']}/{self.value['offset']}"
                if "topic" in self.value
                else (self.value.get("event") or {}).get("topic")
            ),
        }


class BrokerUnreachable(BridgeError):
    """No broker answered at the bootstrap address."""


async def read_letters(bootstrap: str, topic: str, fetch_max_wait_ms: int = 10) -> list[Letter]:
    """Every letter on the dead-letter topic, oldest first."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    try:
        await consumer.start()
    except KafkaConnectionError:
        await consumer.stop()
        raise BrokerUnreachable(
            f"no Kafka broker answers at {bootstrap}: start `bridge dev`, or name the cluster "
            "with BRIDGE_KAFKA_BOOTSTRAP"
        ) from None
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer.topics()  # refresh the metadata once
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        letters: list[Letter] = []
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*assigned, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        value = json.loads(record.value or b"{}")
                    except ValueError:
                        continue
                    if isinstance(value, dict):
                        letters.append(Letter(record.offset, record.partition, value))
        return letters
    finally:
        await consumer.stop()


def original(letter: Letter) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of the event as it first arrived."""
    value = letter.value
    if value.get("valueTruncated") or value.get("headersTruncated"):
        # Publishing what is left would be a different event: fetch it from its position.
        raise ValueError(
            f"letter at offset {letter.offset} carries only the start of its event "
            f"({value.get('valueBytes')} bytes at {value.get('topic')}/{value.get('partition')}/"
            f"{value.get('offset')}): replay it from there"
        )
    if "topic" in value and "value" in value:
        headers = [(name, _bytes(data)) for name, data in (value.get("headers") or {}).items()]
        key = value.get("key")
        return (
            str(value["topic"]),
            None if key is None else _bytes(key),
            _bytes(value["value"]),
            headers,
        )
    event = value.get("event")
    if not isinstance(event, dict) or "topic" not in event:
        raise ValueError(f"letter at offset {letter.offset} carries no event to replay")
    headers = []
    if event.get("id") is not None:
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", str(event["id"]).encode()),
            ("ce_source", str(event.get("source") or "").encode()),
            ("ce_type", str(event.get("type") or "").encode()),
            ("content-type", b"application/json"),
        ]
    data = json.dumps(event.get("data"), separators=(",", ":")).encode()
    key = event.get("key")
    return str(event["topic"]), None if key is None else str(key).encode(), data, headers


def _bytes(data: JSON) -> bytes:
    if isinstance(data, dict) and "base64" in data:
        return base64.b64decode(data["base64"])
    return str(data).encode("utf-8")


async def replay(letters: list[Letter], bootstrap: str, db: AsyncEngine) -> list[dict[str, JSON]]:
    """Re-publish each letter's event where it came from; forget its dedupe mark first."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    done = []
    try:
        for letter in letters:
            try:
                topic, key, value, headers = original(letter)
            except ValueError as exc:
                # One letter that cannot be replayed leaves the others to go.
                done.append(
                    {"partition": letter.partition, "offset": letter.offset, "skipped": str(exc)}
                )
                continue
            marks = [letter.value.get("eventKey")]
            if "topic" in letter.value:
                v = letter.value
                marks.append(f"pos|{v['topic']}/{v['partition']}/{v['offset']}")
            async with db.begin() as conn:
                await inbox.forget(conn, [mark for mark in marks if mark])
            sent = await producer.send_and_wait(topic, value, key=key, headers=headers)
            done.append(
                {
                    "partition": letter.partition,
                    "offset": letter.offset,
                    "topic": topic,
                    "newOffset": sent.offset,
                }
            )
    finally:
        await producer.stop()
    return done
