"""Which send failures are a message's own (parked) and which may pass (tried again)."""

from __future__ import annotations

import pytest
from aiokafka import errors

from bridge.send_errors import Unpublishable, check_topic, is_message_fault


@pytest.mark.parametrize(
    "error",
    [
        errors.MessageSizeTooLargeError("5 MB"),
        errors.RecordListTooLargeError(),
        errors.InvalidTopicError(),
        errors.TopicAuthorizationFailedError("orders"),
        Unpublishable("no"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        ValueError("Out of range float values are not JSON compliant"),
    ],
)
def test_the_message_s_own_faults_are_permanent(error: Exception) -> None:
    assert is_message_fault(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.KafkaConnectionError(),
        errors.KafkaTimeoutError(),
        errors.RequestTimedOutError(),
        errors.NotLeaderForPartitionError(),
        errors.UnknownTopicOrPartitionError(),
        errors.ProducerClosed(),
        errors.KafkaError("something else"),
        TimeoutError(),
        ConnectionResetError(),
        RuntimeError("unknown"),
    ],
)
def test_everything_else_is_tried_again(error: Exception) -> None:
    assert not is_message_fault(error)


@pytest.mark.parametrize("topic", ["orders.events", "a-b_c.1", "x" * 249])
def test_kafka_topic_names_pass(topic: str) -> None:
    check_topic(topic)


@pytest.mark.parametrize("topic", ["", ".", "..", "not a topic", "a/b", "x" * 250, "é"])
def test_other_topic_names_cannot_be_published(topic: str) -> None:
    with pytest.raises(Unpublishable):
        check_topic(topic)
