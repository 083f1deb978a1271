"""The worker reads domain events and task replies with one agent: each record becomes the input
its topic carries, and a fetch's records of both kinds make one batch."""

from __future__ import annotations

import json
from typing import Any, cast

from bridge.engine import CallbackReceived, Engine, EventReceived, InvalidInput
from bridge.events import KafkaRecord
from bridge.settings import Settings
from processors.app import build_app, engine_input


def record(topic: str, value: object) -> KafkaRecord:
    return KafkaRecord(topic, 0, 7, b"key", json.dumps(value).encode())


SETTINGS = Settings(kafka_group_id="test-worker-inputs")


def test_a_record_on_the_replies_topic_is_a_callback() -> None:
    item = engine_input(record("bridge.replies", {"taskToken": "t1", "output": 1}), SETTINGS)
    assert isinstance(item, CallbackReceived)
    assert (item.token, item.outcome, item.output, item.via) == ("t1", "success", 1, "kafka")


def test_a_record_on_the_replies_topic_that_is_no_reply_is_dead_lettered() -> None:
    item = engine_input(record("bridge.replies", {"orderId": "o1"}), SETTINGS)
    assert isinstance(item, InvalidInput) and "taskToken" in item.reason


def test_a_record_on_any_other_topic_is_a_domain_event() -> None:
    # Even one shaped like a reply: what a record is depends on where it was published.
    event = record("orders.events", {"taskToken": "t1", "output": 1})
    assert engine_input(event, SETTINGS) == EventReceived(event)


def test_the_replies_topic_is_a_setting() -> None:
    chosen = Settings(kafka_group_id="test-worker-inputs", kafka_replies_topic="my.replies")
    assert isinstance(
        engine_input(record("my.replies", {"taskToken": "t"}), chosen), CallbackReceived
    )
    assert isinstance(
        engine_input(record("bridge.replies", {"taskToken": "t"}), chosen), EventReceived
    )


def test_one_agent_reads_the_replies_and_the_event_topics() -> None:
    # The agents only use the engine when records arrive; none do here.
    app: Any = build_app(SETTINGS, cast(Engine, None), "127.0.0.1:9", ["orders.events"])
    agents = list(app.agents.values())
    assert len(agents) == 1
    assert sorted(agents[0].channel.topics) == ["bridge.replies", "orders.events"]
    # The topics followed for definitions are the domain-event topics only.
    assert app.event_topics.names == ["orders.events"]
    assert app.event_topics.follow(["orders.events", "bridge.replies"]) == []
