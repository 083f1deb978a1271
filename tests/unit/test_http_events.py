"""Events posted over HTTP become the Kafka records a producer would have written, checked by the
consumer's own reader; what the workers would refuse is refused before it is produced."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge import tracing
from bridge.events import KafkaRecord, decode, identity
from bridge.http_events import EventRefused, OutgoingEvent, outgoing_event, traced

TOPICS = {"orders.events", "shipments.events"}


def post(
    body: Any,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    topic: str | None = "orders.events",
    key: str | None = None,
    max_bytes: int = 64 * 1024,
) -> OutgoingEvent:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return outgoing_event(
        topic=topic,
        key=key,
        content_type=content_type,
        headers={"Content-Type": content_type, **(headers or {})},
        body=raw,
        topics=TOPICS,
        max_bytes=max_bytes,
    )


def refusal(**kwargs: Any) -> EventRefused:
    with pytest.raises(EventRefused) as caught:
        post(**kwargs)
    return caught.value


def consumed(event: OutgoingEvent) -> KafkaRecord:
    """The record as a worker reads it back."""
    return KafkaRecord(event.topic, 0, 7, event.key, event.value, event.headers)


BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "evt-1",
    "ce-source": "/shop",
    "ce-type": "OrderPlaced",
}


def test_plain_json_goes_out_as_it_came_with_its_key() -> None:
    event = post({"type": "OrderPlaced", "orderId": "o-1"}, key="o-1")

    assert (event.topic, event.key, event.headers) == ("orders.events", b"o-1", ())
    assert json.loads(event.value) == {"type": "OrderPlaced", "orderId": "o-1"}
    assert event.event_id is None
    read = decode(consumed(event), 64 * 1024)
    assert read.data == {"type": "OrderPlaced", "orderId": "o-1"}
    # No id: a plain event is found by its position, as from any producer.
    assert identity(read, []) == "pos|orders.events/0/7"


def test_a_binary_cloudevent_becomes_a_kafka_binary_cloudevent() -> None:
    event = post(
        {"orderId": "o-1"},
        headers={**BINARY, "CE-Subject": "o-1", "ce-partitionkey": "o-1", "X-Other": "kept out"},
    )

    assert dict(event.headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-1",
        "ce_source": b"/shop",
        "ce_type": b"OrderPlaced",
        "ce_subject": b"o-1",
        "ce_partitionkey": b"o-1",
        "content-type": b"application/json",
    }
    # The CloudEvents Kafka binding: partitionkey is the record's key.
    assert event.key == b"o-1"
    read = decode(consumed(event), 64 * 1024)
    assert (read.id, read.source, read.type, read.data) == (
        "evt-1",
        "/shop",
        "OrderPlaced",
        {"orderId": "o-1"},
    )
    assert identity(read, []) == "ce|/shop|evt-1"


def test_the_key_parameter_wins_over_partitionkey() -> None:
    event = post({}, headers={**BINARY, "ce-partitionkey": "a"}, key="b")
    assert event.key == b"b"


def test_binary_attributes_are_percent_decoded() -> None:
    event = post({}, headers={**BINARY, "ce-source": "/shop%20n%C3%B8rth"})
    assert event.source == "/shop nørth"
    assert dict(event.headers)["ce_source"] == "/shop nørth".encode()


def test_a_structured_cloudevent_is_written_structured() -> None:
    envelope = {
        "specversion": "1.0",
        "id": "evt-2",
        "source": "/shop",
        "type": "OrderPlaced",
        "partitionkey": "o-2",
        "data": {"orderId": "o-2"},
    }
    event = post(envelope, content_type="application/cloudevents+json; charset=utf-8")

    assert event.headers == (("content-type", b"application/cloudevents+json"),)
    assert event.key == b"o-2"
    assert (event.event_id, event.source, event.type) == ("evt-2", "/shop", "OrderPlaced")
    read = decode(consumed(event), 64 * 1024)
    assert read.data == {"orderId": "o-2"}


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        ({"topic": None}, 400, "?topic="),
        ({"topic": "bridge.replies"}, 422, "no deployed definition reads 'bridge.replies'"),
        ({"key": "k" * 501}, 400, "longer than 500"),
        ({"body": [1, 2]}, 400, "an event must be a JSON object, not an array"),
        ({"body": b"{not json"}, 400, "not JSON"),
        ({"body": b'{"a": "\\u0000"}'}, 400, "NUL"),
        ({"body": b"\xff\xfe"}, 400, "not UTF-8"),
        ({"body": b"[" * 100 + b"]" * 100}, 400, "deeper"),
        ({"body": {"big": "x" * 2000}, "max_bytes": 1000}, 413, "larger than 1000 bytes"),
        ({"body": {}, "content_type": "text/plain"}, 415, "not text/plain"),
        ({"body": b"[]", "content_type": "application/cloudevents-batch+json"}, 415, "batch"),
        (
            {"body": {}, "headers": {**BINARY, "ce-specversion": "0.3"}},
            400,
            "not specversion '0.3'",
        ),
        ({"body": {}, "headers": {"ce-specversion": "1.0", "ce-id": "x"}}, 400, "source, type"),
        ({"body": {}, "headers": {**BINARY, "ce-id": ""}}, 400, "needs id"),
        ({"body": {}, "headers": {**BINARY, "ce-bad_name": "x"}}, 400, "lower-case letters"),
        ({"body": {}, "headers": {**BINARY, "ce-source": "%ff"}}, 400, "percent-encoded"),
        ({"body": {}, "headers": {**BINARY, "ce-id": "a%00b"}}, 400, "NUL"),
        ({"body": {}, "headers": {**BINARY, "ce-id": "i" * 300}}, 400, "longer than 256"),
        (
            {"body": b"<xml/>", "headers": BINARY, "content_type": "application/xml"},
            415,
            "JSON data, not application/xml",
        ),
        (
            {
                "body": {
                    "specversion": "1.0",
                    "id": "1",
                    "source": "s",
                    "type": "t",
                    "data_base64": "AA==",
                },
                "content_type": "application/cloudevents+json",
            },
            415,
            "data_base64",
        ),
        (
            {
                "body": {"specversion": "1.0", "id": 1, "source": "s", "type": "t"},
                "content_type": "application/cloudevents+json",
            },
            400,
            "id is a string",
        ),
        ({"body": [], "content_type": "application/cloudevents+json"}, 400, "JSON object"),
    ],
)
def test_what_a_worker_could_not_read_is_refused_with_its_reason(
    kwargs: dict[str, Any], status: int, says: str
) -> None:
    kwargs.setdefault("body", {})
    refused = refusal(**kwargs)
    assert refused.status == status
    assert says in refused.detail


def test_an_unknown_topic_lists_the_known_ones() -> None:
    refused = refusal(body={}, topic="payments.events")
    assert "orders.events, shipments.events" in refused.detail


def test_a_trace_context_rides_in_the_kafka_headers() -> None:
    event = post({}, headers={**BINARY})
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    with_trace = traced(event, parent, "vendor=1")

    headers = dict(with_trace.headers)
    assert headers["traceparent"] == parent.encode()
    assert headers["tracestate"] == b"vendor=1"
    assert headers["ce_id"] == b"evt-1"
    assert tracing.from_headers(with_trace.headers) is not None
