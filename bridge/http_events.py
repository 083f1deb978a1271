"""Events posted over HTTP (``POST /events``), as the Kafka records a producer would have written.

A service without a Kafka client posts an event to the bridge's web endpoint; the bridge produces
it to the named topic, and from there it is consumed like any other record: ordered per key by
Kafka's partitioner, deduplicated by the same identity (CloudEvents source and id, a trigger's
``EventId``, else the record's position). Three forms are read:

- a CloudEvent in HTTP binary mode (``ce-specversion``, ``ce-id``, ``ce-source``, ``ce-type``
  and other ``ce-`` headers, the data as a JSON body), written as a Kafka binary-mode CloudEvent
  (``ce_`` headers, the data as the value);
- a CloudEvent in structured mode (``Content-Type: application/cloudevents+json``), written as a
  structured-mode record (the envelope as the value, the same content type);
- plain JSON (``Content-Type: application/json``), written as it is.

The Kafka key is ``?key=``, else a CloudEvent's ``partitionkey`` extension (the CloudEvents Kafka
binding's key). The record is checked with the consumer's own reader (``bridge.events.decode``)
before it is produced, so that what the bridge accepts over HTTP is exactly what its workers can
read, and what they would refuse is refused here, with the same reason.

Pure: the web handler reads the request and produces the record (approvals/publishing.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import unquote

from bridge.asl import limits
from bridge.asl.errors import BridgeError
from bridge.events import InvalidEvent, KafkaRecord, decode

STRUCTURED_TYPE: Final = "application/cloudevents+json"
BATCH_TYPE: Final = "application/cloudevents-batch+json"
JSON_TYPE: Final = "application/json"
SPEC_VERSION: Final = "1.0"
#: Attributes a CloudEvent must have (CloudEvents 1.0, "REQUIRED Attributes").
REQUIRED: Final = ("id", "source", "specversion", "type")
#: The longest attribute or extension name read (CloudEvents 1.0 asks for at most 20 characters,
#: as a SHOULD; producers are known to go beyond).
MAX_ATTRIBUTE_NAME: Final = 64


@dataclass(frozen=True)
class EventRefused(BridgeError):
    """The posted event cannot be produced: the HTTP status, a title and what to change."""

    status: int
    title: str
    detail: str


@dataclass(frozen=True)
class OutgoingEvent:
    """The Kafka record to produce, and the CloudEvents id and source it carries (if any)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_id: str | None
    source: str | None
    type: str | None


def traced(event: OutgoingEvent, traceparent: str, tracestate: str | None) -> OutgoingEvent:
    """``event`` carrying a W3C trace context in its Kafka headers (the request's), so that the
    process it starts or wakes continues the caller's trace."""
    extra = [("traceparent", traceparent.encode())]
    if tracestate:
        extra.append(("tracestate", tracestate.encode()))
    kept = [
        (name, value) for name, value in event.headers if name not in ("traceparent", "tracestate")
    ]
    return replace(event, headers=(*kept, *extra))


def outgoing_event(
    *,
    topic: str | None,
    key: str | None,
    content_type: str,
    headers: Mapping[str, str],
    body: bytes,
    topics: Collection[str],
    max_bytes: int,
    max_depth: int = limits.MAX_DEPTH,
) -> OutgoingEvent:
    """The record an HTTP request asks for. ``headers``: the request's headers (any case);
    ``topics``: the topics the deployed definitions read, the only ones an event may go to.
    Raises ``EventRefused``."""
    topic = _topic(topic, topics)
    if key is not None and len(key) > limits.MAX_KEY_LENGTH:
        raise EventRefused(
            400, "Invalid key", f"the key is longer than {limits.MAX_KEY_LENGTH} characters"
        )
    lowered = {name.lower(): value for name, value in headers.items()}
    kind = content_type.split(";", 1)[0].strip().lower()
    if "ce-specversion" in lowered:
        record_headers, key = _binary(lowered, kind, key)
    elif kind == STRUCTURED_TYPE:
        record_headers = (("content-type", STRUCTURED_TYPE.encode()),)
        key = _structured_key(body, key, max_depth)
    elif kind == BATCH_TYPE:
        raise EventRefused(
            415, "Unsupported media type", "post one CloudEvent per request, not a batch"
        )
    elif kind == JSON_TYPE:
        record_headers = ()
    else:
        raise EventRefused(
            415,
            "Unsupported media type",
            f"post {JSON_TYPE}, {STRUCTURED_TYPE}, or a CloudEvent in binary mode "
            f"(ce- headers) with JSON data (not {kind or 'no Content-Type'})",
        )
    record = KafkaRecord(
        topic=topic,
        partition=-1,
        offset=-1,
        key=None if key is None else key.encode(),
        value=body,
        headers=record_headers,
    )
    if len(body) > max_bytes:
        raise EventRefused(413, "Event too large", f"the event is larger than {max_bytes} bytes")
    try:
        event = decode(record, max_bytes, max_depth)
    except InvalidEvent as exc:
        raise EventRefused(400, "Invalid event", str(exc)) from None
    if record_headers and (event.id is None or event.source is None or event.type is None):
        raise EventRefused(
            400, "Invalid CloudEvent", "a CloudEvent needs a non-empty id, source and type"
        )
    return OutgoingEvent(
        topic, record.key, body, record_headers, event.id, event.source, event.type
    )


def _topic(topic: str | None, topics: Collection[str]) -> str:
    known = ", ".join(sorted(topics)) or "none: no definition reads events"
    if not topic:
        raise EventRefused(400, "Topic missing", f"name the topic with ?topic= (one of: {known})")
    if topic not in topics:
        # Only topics the bridge reads: the API must not become a way to write to the replies,
        # approvals or lifecycle topics, or to any other service's.
        raise EventRefused(
            422,
            "Unknown topic",
            f"no deployed definition reads {topic[: limits.MAX_TOPIC_LENGTH]!r} (one of: {known})",
        )
    return topic


def _binary(
    headers: Mapping[str, str], kind: str, key: str | None
) -> tuple[tuple[tuple[str, bytes], ...], str | None]:
    """The Kafka headers of a binary-mode CloudEvent (``ce-x`` becomes ``ce_x``), and its key."""
    if kind and kind != JSON_TYPE and not kind.endswith("+json"):
        raise EventRefused(415, "Unsupported media type", f"the bridge reads JSON data, not {kind}")
    attributes: dict[str, str] = {}
    for name, value in headers.items():
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if not attribute.isascii() or not attribute.isalnum() or attribute != attribute.lower():
            raise EventRefused(
                400,
                "Invalid CloudEvent",
                f"{name!r} names no CloudEvents attribute: lower-case letters and digits only",
            )
        if len(attribute) > MAX_ATTRIBUTE_NAME:
            raise EventRefused(
                400,
                "Invalid CloudEvent",
                f"the attribute {attribute[:MAX_ATTRIBUTE_NAME]}... is longer than "
                f"{MAX_ATTRIBUTE_NAME} characters",
            )
        try:
            # The HTTP binding percent-encodes what a header cannot carry.
            attributes[attribute] = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise EventRefused(
                400, "Invalid CloudEvent", f"{name!r} is not percent-encoded UTF-8"
            ) from None
    _check_attributes(attributes)
    pairs = [(f"ce_{name}", value.encode()) for name, value in sorted(attributes.items())]
    pairs.append(("content-type", (kind or JSON_TYPE).encode()))
    return tuple(pairs), key if key is not None else attributes.get("partitionkey")


def _check_attributes(attributes: Mapping[str, object]) -> None:
    missing = [name for name in REQUIRED if not attributes.get(name)]
    if missing:
        raise EventRefused(
            400,
            "Invalid CloudEvent",
            f"a CloudEvent needs {', '.join(missing)} (CloudEvents {SPEC_VERSION})",
        )
    if attributes["specversion"] != SPEC_VERSION:
        raise EventRefused(
            400,
            "Invalid CloudEvent",
            f"the bridge reads CloudEvents {SPEC_VERSION}, not specversion "
            f"{str(attributes['specversion'])[:20]!r}",
        )


def _structured_key(body: bytes, key: str | None, max_depth: int) -> str | None:
    try:
        envelope = limits.loads(body, "the CloudEvent", max_depth=max_depth)
    except limits.Unstorable as exc:
        raise EventRefused(400, "Invalid CloudEvent", str(exc)) from None
    if not isinstance(envelope, dict):
        raise EventRefused(400, "Invalid CloudEvent", "a structured CloudEvent is a JSON object")
    if "data_base64" in envelope:
        raise EventRefused(
            415, "Unsupported media type", "the bridge reads JSON data, not data_base64"
        )
    _check_attributes(envelope)
    for name in ("id", "source", "type"):
        if not isinstance(envelope[name], str):
            raise EventRefused(400, "Invalid CloudEvent", f"the CloudEvents {name} is a string")
    if key is not None:
        return key
    partition_key = envelope.get("partitionkey")
    return None if partition_key is None else str(partition_key)
