"""Data flow helpers of the interpreter: paths with ASL's error rules, numbers and times read
from the input, the payload limit, and the Kafka message a send task asks for. Pure functions."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bridge.asl import errors, json_text, limits, paths
from bridge.asl.errors import Failure, StatesError
from bridge.asl.model import WaitState, event_wait_specs

JSON = Any
Number = TypeVar("Number", int, float, int | None, float | None)

#: Step Functions' limit on a state's input and output.
MAX_PAYLOAD_BYTES = 256 * 1024


def count(fixed: int, path: str | None, data: JSON, field_name: str) -> int:
    if path is None:
        return fixed
    value = read_or_runtime(path, data)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StatesError(errors.RUNTIME, f"{field_name}Path {path} must be a non-negative integer")
    return value


def optional_count(fixed: int | None, path: str | None, data: JSON) -> int | None:
    if path is None:
        return fixed
    return count(0, path, data, "ToleratedFailureCount")


def optional_percentage(fixed: float | None, path: str | None, data: JSON) -> float | None:
    if path is None:
        return fixed
    value = read_or_runtime(path, data)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise StatesError(
            errors.RUNTIME, f"ToleratedFailurePercentagePath {path} must be a number from 0 to 100"
        )
    return float(value)


def input_path(path: str | None, data: JSON, context: JSON) -> JSON:
    if path is None:
        return {}
    return read_or_runtime(path, data, context)


def output_path(path: str | None, data: JSON, context: JSON) -> JSON:
    if path is None:
        return {}
    return read_or_runtime(path, data, context)


def read_or_runtime(path: str, data: JSON, context: JSON = None) -> JSON:
    if path == "$":
        return data
    try:
        return paths.read_path(path, data, context or {})
    except paths.PathNotFound:
        raise StatesError(errors.RUNTIME, f"Invalid path '{path}' : No results for path") from None


# Every step builds its context object with the same few times (the start, the state's entry).
@functools.lru_cache(maxsize=4096)
def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds(fixed: int | None, path: str | None, data: JSON, context: JSON) -> int | None:
    if fixed is not None:
        return fixed
    if path is None:
        return None
    try:
        value = paths.read_path(path, data, context)
    except paths.PathNotFound:
        raise StatesError(errors.RUNTIME, f"Invalid path '{path}' : No results for path") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StatesError(errors.RUNTIME, f"The value at {path} must be a positive integer")
    return value


def wait_due(state: WaitState, data: JSON, context: JSON, now: datetime) -> datetime:
    if state.seconds is not None:
        return now + timedelta(seconds=fixed(state.seconds))
    if state.timestamp is not None:
        return parse_timestamp(state.timestamp, "Timestamp")
    if state.seconds_path is not None:
        seconds = read_or_runtime(state.seconds_path, data, context)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise StatesError(
                errors.RUNTIME,
                f"SecondsPath {state.seconds_path} must point to a non-negative number",
            )
        return now + timedelta(seconds=seconds)
    assert state.timestamp_path is not None
    value = read_or_runtime(state.timestamp_path, data, context)
    return parse_timestamp(value, f"TimestampPath {state.timestamp_path}")


def parse_timestamp(value: JSON, where: str) -> datetime:
    if not isinstance(value, str):
        raise StatesError(errors.RUNTIME, f"{where} is not an RFC 3339 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise StatesError(errors.RUNTIME, f"{where} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise StatesError(errors.RUNTIME, f"{where} needs a time zone")
    return moment


def fixed(value: Number | str) -> Number:
    """A number field of a JSONPath state: validation refuses {% %} expressions there."""
    assert not isinstance(value, str), f"an expression in a JSONPath state: {value}"
    return value


def event_subscriptions(parameters: JSON, state: str) -> tuple[tuple[str, str, str], ...]:
    """(topic, type, key) for every event the wait accepts; the key comes from the process data."""
    found: list[tuple[str, str, str]] = []
    for spec in event_wait_specs(parameters):
        key = spec.get("CorrelationKey")
        if isinstance(key, bool) or not isinstance(key, str | int | float) or key == "":
            raise StatesError(
                "Event.InvalidCorrelationKey",
                f"State {state}: CorrelationKey must be a non-empty string or a number, "
                f"not {key!r}",
            )
        if len(str(key)) > limits.MAX_KEY_LENGTH or "\x00" in str(key):
            raise StatesError(
                "Event.InvalidCorrelationKey",
                f"State {state}: CorrelationKey must be at most {limits.MAX_KEY_LENGTH} "
                "characters, without NUL characters",
            )
        types = spec["EventType"]
        for event_type in [types] if isinstance(types, str) else types:
            found.append((str(spec["Topic"]), str(event_type), str(key)))
    return tuple(dict.fromkeys(found))


#: The deepest nesting of a state's output: deeper than any value from outside (64 levels) with
#: room for what Parameters, Map and Parallel wrap around it, and well below the nesting at which
#: the process state could no longer be serialised.
MAX_OUTPUT_DEPTH = 128


def unstorable(value: JSON, state: str) -> Failure | None:
    """Why a state's output could not be kept with the process, as the failure it ends in."""
    if too_large(value):
        return Failure(
            errors.DATA_LIMIT_EXCEEDED,
            f"The state/task output of {state} exceeds {MAX_PAYLOAD_BYTES} bytes",
        )
    problem = limits.problem(value, max_depth=MAX_OUTPUT_DEPTH)
    if problem is None:
        return None
    if problem.startswith("is nested"):
        return Failure(errors.DATA_LIMIT_EXCEEDED, f"The state/task output of {state} {problem}")
    return Failure(errors.RUNTIME, f"The state/task output of {state} {problem}")


def too_large(value: JSON) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return False
    if isinstance(value, str):
        return len(value) > MAX_PAYLOAD_BYTES // 4 and len(value.encode()) > MAX_PAYLOAD_BYTES
    return len(json_text.dumps_bytes(value)) > MAX_PAYLOAD_BYTES


def text(value: JSON) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def kafka_message(parameters: JSON, resource: str) -> dict[str, Any]:
    """The Kafka message a send task asks for, checked: Topic, Key, Message, Headers."""
    if not isinstance(parameters, Mapping):
        raise StatesError("Kafka.InvalidParameters", f"{resource} needs an object of parameters")
    topic = parameters.get("Topic")
    if not isinstance(topic, str) or not topic:
        raise StatesError("Kafka.InvalidParameters", "Topic must be a non-empty string")
    if "Message" not in parameters:
        raise StatesError("Kafka.InvalidParameters", "Message is missing")
    if len(topic) > limits.MAX_TOPIC_LENGTH or "\x00" in topic:
        raise StatesError(
            "Kafka.InvalidParameters",
            f"Topic must be at most {limits.MAX_TOPIC_LENGTH} characters, without NUL characters",
        )
    key = parameters.get("Key")
    if key is not None and not isinstance(key, str | int):
        raise StatesError("Kafka.InvalidParameters", "Key must be a string or a number")
    if key is not None and (len(str(key)) > limits.MAX_KEY_LENGTH or "\x00" in str(key)):
        raise StatesError(
            "Kafka.InvalidParameters",
            f"Key must be at most {limits.MAX_KEY_LENGTH} characters, without NUL characters",
        )
    headers = parameters.get("Headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(value, str) for value in headers.values()
    ):
        raise StatesError("Kafka.InvalidParameters", "Headers must map names to strings")
    problem = limits.problem({"headers": dict(headers), "message": parameters["Message"]})
    if problem is not None:
        raise StatesError("Kafka.InvalidParameters", f"The message {problem}")
    return {
        "topic": topic,
        "key": None if key is None else str(key),
        "value": parameters["Message"],
        "headers": dict(headers),
    }
