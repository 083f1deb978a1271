"""Following the topics of definitions deployed at run time: a change that faust drops (it clears
its flag while the group rebalances) is flagged again until the subscription holds the topic."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest

from processors.transport import EventTopics


class Conductor:
    """The parts of faust's TopicConductor that EventTopics uses, driven by the test."""

    def __init__(self) -> None:
        self._subscription_changed = asyncio.Event()
        self._topic_name_index: dict[str, set[object]] = defaultdict(set)
        self.flagged = 0

    def _flag_changes(self) -> None:
        self.flagged += 1
        self._subscription_changed.set()

    def drop_change(self) -> None:
        """What faust's conductor does with a change flagged while the group rebalances."""
        self._subscription_changed.clear()

    def subscribe(self, topics: list[str]) -> None:
        self._subscription_changed.clear()
        self._topic_name_index.clear()
        for name in topics:
            self._topic_name_index[name].add(object())


def following(*names: str) -> tuple[EventTopics, Conductor, list[str]]:
    conductor = Conductor()
    topic = SimpleNamespace(topics=list(names))
    conductor.subscribe(list(names))
    app = cast(faust.App, SimpleNamespace(topics=conductor))
    return EventTopics(app, cast(Any, topic)), conductor, topic.topics


async def test_a_new_topic_is_flagged_again_until_the_consumer_subscribes_to_it() -> None:
    topics, conductor, names = following("orders")
    assert topics.follow(["orders", "late"]) == ["late"]
    assert names == ["orders", "late"] and conductor.flagged == 1

    # Flagged again while the flag is up: nothing to add, faust has not looked yet.
    assert topics.follow(["orders", "late"]) == []
    assert conductor.flagged == 1

    conductor.drop_change()  # the group was rebalancing
    assert topics.unsubscribed() == ["late"]
    assert topics.follow(["orders", "late"]) == []
    assert conductor.flagged == 2, "the dropped change is flagged again"

    conductor.subscribe(names)
    assert topics.unsubscribed() == []
    assert topics.follow(["orders", "late"]) == []
    assert conductor.flagged == 2, "a subscription that holds every topic is left alone"


async def test_nothing_new_flags_nothing() -> None:
    topics, conductor, _ = following("orders", "payments")
    assert topics.follow(["payments"]) == []
    assert topics.follow([]) == []
    assert conductor.flagged == 0


def test_other_topics_read_by_the_same_agent_are_no_event_topics() -> None:
    conductor = Conductor()
    topic = SimpleNamespace(topics=["bridge.replies", "orders"])
    conductor.subscribe(list(topic.topics))
    app = cast(faust.App, SimpleNamespace(topics=conductor))
    topics = EventTopics(app, cast(Any, topic), others=("bridge.replies",))
    assert topics.names == ["orders"]
    assert topics.follow(["orders", "bridge.replies", "late"]) == ["late"]
    assert topics.names == ["late", "orders"]


def test_a_definition_reading_the_replies_topic_is_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conductor = Conductor()
    topic = SimpleNamespace(topics=["bridge.replies", "orders"])
    conductor.subscribe(list(topic.topics))
    app = cast(faust.App, SimpleNamespace(topics=conductor))
    topics = EventTopics(app, cast(Any, topic), others=("bridge.replies",))
    with caplog.at_level(logging.WARNING, logger="processors.transport"):
        assert topics.follow(["orders", "bridge.replies"]) == []
        assert topics.follow(["orders", "bridge.replies"]) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bridge.replies" in warnings[0]
    assert topics.names == ["orders"]
