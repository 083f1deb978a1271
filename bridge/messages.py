"""The messages the bridge publishes, as outbox rows: commands, approval requests, lifecycle
events and dead letters. Every one is a CloudEvent (binary mode) whose ``ce_id`` never changes,
so that consumers can drop the copies an at-least-once relay may publish."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from bridge.asl.effects import HistoryEntry, SendMessage
from bridge.asl.process import Process
from bridge.asl.types import JSON
from bridge.events import KafkaRecord

#: History entries that become lifecycle events, and their CloudEvents types.
LIFECYCLE = {
    "ProcessStarted": "bridge.process.started",
    "ProcessSucceeded": "bridge.process.succeeded",
    "ProcessFailed": "bridge.process.failed",
    "ProcessTimedOut": "bridge.process.timed_out",
    "ProcessAborted": "bridge.process.aborted",
}
STATUS_AFTER = {
    "ProcessSucceeded": "SUCCEEDED",
    "ProcessFailed": "FAILED",
    "ProcessTimedOut": "TIMED_OUT",
    "ProcessAborted": "ABORTED",
}
STEPS = {
    "StateEntered": "bridge.process.state_entered",
    "StateExited": "bridge.process.state_exited",
}


def headers(message_id: str, kind: str, source: str, subject: str | None) -> dict[str, str]:
    """CloudEvents binary-mode headers."""
    found = {
        "ce_specversion": "1.0",
        "ce_id": message_id,
        "ce_source": source,
        "ce_type": kind,
        "content-type": "application/json",
    }
    if subject is not None:
        found["ce_subject"] = subject
        found["bridge_process_id"] = subject
    return found


def about_process(
    message_id: str, process: Process, topic: str, kind: str, value: JSON, now: datetime
) -> dict[str, Any]:
    """A message about one process (approval requests, reminders), keyed by its id."""
    found = headers(message_id, kind, f"bridge/{process.definition}", process.id)
    return row(message_id, process.id, topic, process.id, value, found, now)


def command(process: Process, effect: SendMessage, now: datetime) -> dict[str, Any]:
    value = effect.value
    kind = value.get("type") if isinstance(value, dict) else None
    found = headers(
        effect.message_id,
        kind if isinstance(kind, str) else "bridge.Command",
        f"bridge/{process.definition}",
        process.id,
    )
    found.update(effect.headers)
    return row(effect.message_id, process.id, effect.topic, effect.key, value, found, now)


def lifecycle(
    message_id: str, process: Process, entry: HistoryEntry, kind: str, topic: str
) -> dict[str, Any]:
    value: dict[str, JSON] = {
        "type": kind,
        "processId": process.id,
        "definition": process.definition,
        "version": process.version,
        "correlationKey": process.correlation_key,
        # The status this entry tells of, not the one at the end of the batch.
        "status": STATUS_AFTER.get(entry.type, "RUNNING"),
        "state": entry.state,
        "at": entry.at.isoformat(),
    }
    for key in ("output", "error", "cause"):
        if key in entry.details:
            value[key] = entry.details[key]
    if process.parent is not None:
        value["parentId"] = process.parent.id
    return row(
        message_id,
        process.id,
        topic,
        process.correlation_key or process.id,
        value,
        headers(message_id, kind, f"bridge/{process.definition}", process.id),
        entry.at,
    )


#: The most of an event's value a dead letter carries: with its envelope the letter stays far
#: below a producer's 1 MB limit, however large the event was (its position says where the
#: rest is).
LETTER_VALUE_BYTES = 128 * 1024
#: The most of a record's key, and of each header value, a dead letter carries.
LETTER_FIELD_BYTES = 4 * 1024
#: The most headers a dead letter carries.
LETTER_HEADERS = 64
#: The longest message key the outbox keeps (its column holds 500 characters).
MAX_MESSAGE_KEY = 500


def dead_letter(
    message_id: str,
    topic: str,
    record: KafkaRecord | None,
    reason: str,
    now: datetime,
    *,
    event_key: str | None = None,
    event: JSON = None,
) -> dict[str, Any]:
    """A dead letter: the reason, where the event came from, when, and the event itself.

    Whatever the record holds, the letter can be stored and published: text with a NUL
    character, or that is not UTF-8, goes as base64; a large value, key or header is cut
    (``valueBytes`` tells the whole size, ``valueTruncated`` that it was cut).
    """
    value: dict[str, JSON] = {"type": "bridge.DeadLetter", "reason": reason, "at": now.isoformat()}
    if event_key is not None:
        value["eventKey"] = event_key
    if record is not None:
        data = record.value
        value.update(
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": _text(record.key, LETTER_FIELD_BYTES),
                "value": _text(data, LETTER_VALUE_BYTES),
                "headers": {
                    _text_key(name): _text(header, LETTER_FIELD_BYTES)
                    for name, header in record.headers[:LETTER_HEADERS]
                },
            }
        )
        if data is not None and len(data) > LETTER_VALUE_BYTES:
            value["valueTruncated"] = True
            value["valueBytes"] = len(data)
        if len(record.headers) > LETTER_HEADERS:
            value["headersTruncated"] = len(record.headers)
    if event is not None:
        value["event"] = event
    return row(
        message_id,
        None,
        topic,
        _message_key(record.key) if record is not None else None,
        value,
        headers(message_id, "bridge.DeadLetter", "bridge", None),
        now,
    )


def _text(data: bytes | None, limit: int) -> JSON:
    """At most ``limit`` bytes of ``data``: UTF-8 text as it is; anything else (not UTF-8, or
    holding a NUL character, which PostgreSQL cannot store) as {"base64": ...}."""
    if data is None:
        return None
    data = data[:limit]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut may split the last character: keep what decodes, unless that is little.
        if exc.start >= len(data) - 3 and len(data) == limit:
            text = data[: exc.start].decode("utf-8", "replace")
        else:
            return {"base64": base64.b64encode(data).decode()}
    if "\x00" in text:
        return {"base64": base64.b64encode(data).decode()}
    return text


def _text_key(name: str) -> str:
    name = name[:200]
    return name.replace("\x00", "\\u0000") if "\x00" in name else name


def _message_key(key: bytes | None) -> str | None:
    """A record's key, to key its dead letter by; None when it cannot be kept as text."""
    if key is None or len(key) > MAX_MESSAGE_KEY:
        return None
    text = key.decode("utf-8", "replace")
    return None if "\x00" in text else text


def row(
    message_id: str,
    process_id: str | None,
    topic: str,
    key: str | None,
    value: JSON,
    found_headers: dict[str, str],
    now: datetime,
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "process_id": process_id,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": found_headers,
        "created_at": now,
        # Set by the engine to the trace context of the step that wrote the message.
        "traceparent": None,
        "tracestate": None,
    }
