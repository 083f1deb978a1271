"""Domain events from Kafka: decoding records (plain JSON or CloudEvents) and matching triggers.

Pure functions over a ``KafkaRecord``; the processors build records from what they consume.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.asl import json_text, jsonata, limits, paths
from bridge.asl.errors import BridgeError, StatesError
from bridge.asl.model import Definition, EventInterest, Trigger
from bridge.asl.types import JSON


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class InvalidEvent(BridgeError):
    """The record cannot be read as an event; the message says why."""


@dataclass(frozen=True)
class DomainEvent:
    data: JSON
    #: Set for CloudEvents; plain JSON events are typed by each trigger's TypePath.
    type: str | None
    id: str | None
    source: str | None
    record: KafkaRecord


@dataclass(frozen=True)
class Glimpse:
    """What can still be read of an event that is dead-lettered, so that it can be found by
    its id and shows its type: each None when it cannot be read."""

    id: str | None = None
    type: str | None = None
    source: str | None = None


#: A dead-lettered value larger than this is not parsed for its id and type.
MAX_GLIMPSE_BYTES = 4 * 1024 * 1024


def glimpse(record: KafkaRecord, triggers: Sequence[Trigger]) -> Glimpse:
    """Best effort, never raising: the id, type and source of an event that failed to decode,
    from CloudEvents headers, a structured CloudEvent, or where the topic's triggers read them
    (EventId, TypePath); cut and cleaned to fit their columns."""
    headers: dict[str, Any] = {}
    try:
        headers = {name.lower(): value for name, value in record.headers}
        found = Glimpse(
            _header(headers, "ce_id"), _header(headers, "ce_type"), _header(headers, "ce_source")
        )
        if found.id is None and record.value and len(record.value) <= MAX_GLIMPSE_BYTES:
            found = _from_body(json_text.loads(record.value), triggers) or found
    except Exception:
        found = Glimpse()
    return Glimpse(_fit(found.id, 500), _fit(found.type, 200), _fit(found.source, 500))


def _from_body(body: JSON, triggers: Sequence[Trigger]) -> Glimpse | None:
    if not isinstance(body, dict):
        return None
    if "specversion" in body:
        return Glimpse(_text(body.get("id")), _text(body.get("type")), _text(body.get("source")))
    ids = [trigger.event_id for trigger in triggers if trigger.event_id]
    types = [trigger.type_path for trigger in triggers] or ["$.type"]
    return Glimpse(_first(body, ids), _first(body, types), None)


def _first(body: JSON, where: Sequence[str]) -> str | None:
    for path in where:
        try:
            value = paths.read_path(path, body, {})
        except Exception:
            continue
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return None


def _fit(value: str | None, limit: int) -> str | None:
    return limits.clean_text(value, limit) if value else None


def decode(record: KafkaRecord, max_bytes: int, max_depth: int = limits.MAX_DEPTH) -> DomainEvent:
    """The event a record holds, checked against the bounds of what can be stored; raises
    ``InvalidEvent`` with the bound it breaks."""
    if record.value is None:
        raise InvalidEvent("the record has no value")
    if len(record.value) > max_bytes:
        raise InvalidEvent(f"the record is larger than {max_bytes} bytes")
    headers = {name.lower(): value for name, value in record.headers}
    try:
        text = record.value.decode("utf-8")
        body = limits.parse_json(text)
    except UnicodeDecodeError:
        raise InvalidEvent("the value is not UTF-8") from None
    except RecursionError:
        raise InvalidEvent(f"the value is nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise InvalidEvent(f"the value is not JSON: {exc}") from None
    problem = limits.problem(body, max_depth=max_depth)
    if problem is not None:
        raise InvalidEvent(f"the value {problem}")
    if "ce_specversion" in headers:
        return _checked(
            DomainEvent(
                data=body,
                type=_header(headers, "ce_type"),
                id=_header(headers, "ce_id"),
                source=_header(headers, "ce_source"),
                record=record,
            )
        )
    content_type = _header(headers, "content-type") or ""
    if content_type.startswith("application/cloudevents") or (
        isinstance(body, dict) and "specversion" in body and "type" in body and "id" in body
    ):
        if not isinstance(body, dict):
            raise InvalidEvent("a structured CloudEvent must be a JSON object")
        data = body.get("data")
        return _checked(
            DomainEvent(
                data=data,
                type=_text(body.get("type")),
                id=_text(body.get("id")),
                source=_text(body.get("source")),
                record=record,
            )
        )
    if not isinstance(body, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {paths.kind_of(body)}")
    return DomainEvent(data=body, type=None, id=None, source=None, record=record)


#: The longest CloudEvents id and source: the event's identity (source + id) is its dedupe key.
MAX_ID_LENGTH = 256


def _checked(event: DomainEvent) -> DomainEvent:
    """A CloudEvent whose attributes fit where they are kept."""
    for name, value, limit in (
        ("id", event.id, MAX_ID_LENGTH),
        ("source", event.source, MAX_ID_LENGTH),
        ("type", event.type, limits.MAX_TYPE_LENGTH),
    ):
        if value is not None and len(value) > limit:
            raise InvalidEvent(f"the CloudEvents {name} is longer than {limit} characters")
        if value is not None and "\x00" in value:
            raise InvalidEvent(f"the CloudEvents {name} holds a NUL character")
    return event


def _header(headers: dict[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("utf-8", "replace")


def _text(value: JSON) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Match:
    definition: Definition
    trigger: Trigger
    correlation_key: str
    input: JSON


def event_type(event: DomainEvent, trigger: Trigger) -> str | None:
    if event.type is not None:
        return event.type
    try:
        value = paths.read_path(trigger.type_path, event.data, {})
    except paths.PathNotFound:
        return None
    return value if isinstance(value, str) else None


def match(event: DomainEvent, trigger: Trigger, definition: Definition) -> Match | None:
    """The start this trigger makes of the event, None if the type differs.

    Raises ``InvalidEvent`` when the type matches but the correlation key or input is unusable.
    """
    if not trigger.matches_type(event_type(event, trigger)):
        return None
    key = _extract(trigger.correlation_key, event.data, definition.name)
    data = _extract(trigger.input_path, event.data, definition.name)
    if isinstance(key, bool) or not isinstance(key, str | int | float) or key == "":
        raise InvalidEvent(
            f"{definition.name}: the correlation key {trigger.correlation_key} must be a "
            "non-empty string or a number"
        )
    if len(text := str(key)) > limits.MAX_KEY_LENGTH:
        raise InvalidEvent(
            f"{definition.name}: the correlation key {trigger.correlation_key} is longer than "
            f"{limits.MAX_KEY_LENGTH} characters"
        )
    return Match(definition, trigger, text, data)


class _Randomness:
    """For the odd JSONata start expression that asks for randomness."""

    def random_int(self, low: int, high: int) -> int:
        return low + secrets.randbelow(max(high - low, 1))

    def uuid4(self) -> str:
        return str(uuid.uuid4())


def _extract(expression: str, data: JSON, definition: str) -> JSON:
    """A trigger's JSONPath or JSONata expression over the event's data."""
    if jsonata.is_expression(expression):
        try:
            value = jsonata.evaluate(
                expression, {"states": {"input": data}}, _Randomness(), field="Trigger"
            )
        except StatesError as exc:
            raise InvalidEvent(f"{definition}: {exc.cause}") from None
        if value is jsonata.UNDEFINED:
            raise InvalidEvent(f"{definition}: {expression} yields nothing for this event")
        return value
    try:
        return paths.read_path(expression, data, {})
    except paths.PathNotFound as exc:
        raise InvalidEvent(f"{definition}: the event has no value at {exc.path}") from None


@dataclass(frozen=True)
class Candidate:
    """An event as some wait could want it: (topic, type, key) and how long to keep it."""

    topic: str
    type: str
    key: str
    #: The longest time to live of the interests behind it (the default for those without one).
    buffer_seconds: int
    #: Whether an event wait (not only a Deliver trigger) wants it.
    for_wait: bool


def candidates(
    event: DomainEvent, interests: list[EventInterest], default_seconds: int
) -> list[Candidate]:
    """The (topic, type, key) under which waits may want this event, one per distinct key."""
    found: dict[tuple[str, str, str], Candidate] = {}
    for interest in interests:
        kind = event.type
        if kind is None:
            try:
                kind = paths.read_path(interest.type_path, event.data, {})
            except paths.PathNotFound:
                continue
        if not isinstance(kind, str) or kind not in interest.types:
            continue
        try:
            key = paths.read_path(interest.key_path, event.data, {})
        except paths.PathNotFound:
            continue
        if isinstance(key, bool) or not isinstance(key, str | int | float) or key == "":
            continue
        if len(str(key)) > limits.MAX_KEY_LENGTH:
            # No wait listens for a key that long: waits' keys are bounded alike.
            continue
        ident = (interest.topic, kind, str(key))
        seconds = default_seconds if interest.buffer_seconds is None else interest.buffer_seconds
        known = found.get(ident)
        found[ident] = Candidate(
            interest.topic,
            kind,
            str(key),
            max(seconds, known.buffer_seconds if known else 0),
            (known.for_wait if known else False) or not interest.from_trigger,
        )
    return list(found.values())


def payload(event: DomainEvent, event_type: str | None, key: str | None, event_key: str) -> JSON:
    """What a wait receives as its result, and what the buffer keeps."""
    record = event.record
    return {
        "type": event_type,
        "key": key,
        "id": event.id,
        "source": event.source,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "eventKey": event_key,
        "data": event.data,
    }


def identity(
    event: DomainEvent, matches: list[Match], interests: list[EventInterest] | None = None
) -> str:
    """The event's dedupe key: CloudEvents source + id, the EventId of a trigger or event wait,
    else its position (topic, partition, offset)."""
    record = event.record
    if event.id is not None:
        return f"ce|{event.source or ''}|{event.id}"
    id_paths = [found.trigger.event_id for found in matches]
    id_paths += [interest.id_path for interest in interests or []]
    for id_path in id_paths:
        if id_path is None:
            continue
        try:
            value = paths.read_path(id_path, event.data, {})
        except paths.PathNotFound:
            continue
        if value is not None and value != "":
            if len(str(value)) > MAX_ID_LENGTH:
                raise InvalidEvent(
                    f"the event id at {id_path} is longer than {MAX_ID_LENGTH} characters"
                )
            return f"id|{record.topic}|{value}"
    return f"pos|{record.position}"
