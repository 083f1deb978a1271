"""Data flow helpers of the interpreter: paths with ASL's error rules, numbers and times read
from the input, the payload limit, and the Kafka message a send task asks for. Pure functions."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from bridge.asl import errors, json_text, limits, paths
from bridge.asl.errors import Failure, StatesError
from bridge.asl.model import WaitState, event_wait_specs
from bridge.asl.types import JSON

Number = TypeVar("Number", int, float, int | None, float | None)

#: Step Functions' limit on a state's input and output.
MAX_PAYLOAD_BYTES = 256 * 1024


def count(fixed: int, path: str | None, data: JSON, context: JSON, field_name: str) -> int:
    """MaxConcurrency or ToleratedFailureCount: fixed, or read by its *Path (the input, the
    context object or a variable; a numeric string counts as its number, as on AWS)."""
    if path is None:
        return fixed
    value = _path_number(path, data, context, field_name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StatesError(
            errors.RUNTIME,
            f"The {field_name}Path field refers to value {_quoted(value)} which is not a valid "
            f"integer: {path}",
        )
    if value < 0:
        raise StatesError(errors.RUNTIME, f"{field_name} cannot be negative.")
    return value


def optional_count(fixed: int | None, path: str | None, data: JSON, context: JSON) -> int | None:
    if path is None:
        return fixed
    return count(0, path, data, context, "ToleratedFailureCount")


def optional_percentage(
    fixed: float | None, path: str | None, data: JSON, context: JSON
) -> float | None:
    if path is None:
        return fixed
    value = _path_number(path, data, context, "ToleratedFailurePercentage")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StatesError(
            errors.RUNTIME,
            f"The ToleratedFailurePercentagePath field refers to value {_quoted(value)} which is "
            f"not a valid float: {path}",
        )
    if not 0 <= value <= 100:
        raise StatesError(errors.RUNTIME, "ToleratedFailurePercentage must be between 0 and 100.")
    return float(value)


def _path_number(path: str, data: JSON, context: JSON, field_name: str) -> JSON:
    value = read_or_runtime(path, data, context)
    return number_text(value) if isinstance(value, str) else value


def _quoted(value: JSON) -> str:
    """A value as AWS shows it in a *Path error: its text in double quotes."""
    return f'"{_shown(value)}"'


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
    except paths.PathNotFound as missing:
        raise StatesError(errors.RUNTIME, f"Invalid path '{path}' : {missing.detail}") from None


# Every step builds its context object with the same few times (the start, the state's entry),
# and a Map or Parallel builds one per branch: those repeats are what the cache is for. Each
# entry holds a distinct moment (1.35 MiB for 4 096 of them, which a worker filled in seconds
# and the web process over minutes), so it is kept small.
@functools.lru_cache(maxsize=256)
def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds(fixed: int | None, path: str | None, data: JSON, context: JSON) -> int | None:
    if fixed is not None:
        return fixed
    if path is None:
        return None
    value = read_or_runtime(path, data, context)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StatesError(errors.RUNTIME, f"The value at {path} must be a positive integer")
    return value


def wait_due(state: WaitState, data: JSON, context: JSON, now: datetime) -> datetime:
    if state.seconds is not None:
        return now + timedelta(seconds=fixed(state.seconds))
    if state.timestamp is not None:
        moment = rfc3339(state.timestamp)
        assert moment is not None, "validated: a fixed Timestamp is RFC 3339"
        return moment
    if state.seconds_path is not None:
        return now + timedelta(seconds=_seconds_at(state.seconds_path, data, context))
    path = state.timestamp_path
    assert path is not None
    value = _wait_value("TimestampPath", path, data, context)
    moment = rfc3339(value) if isinstance(value, str) else None
    if moment is None:
        raise StatesError(
            errors.RUNTIME,
            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset "
            f"date-time format string: {path} == {_shown(value)}",
        )
    return moment


def jsonata_timestamp(value: JSON) -> datetime:
    """A JSONata Wait's Timestamp, as AWS reads it."""
    moment = rfc3339(value) if isinstance(value, str) else None
    if moment is None:
        raise StatesError(
            errors.QUERY_EVALUATION_ERROR,
            "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time "
            f"format string: {_shown(value)}",
        )
    return moment


def _seconds_at(path: str, data: JSON, context: JSON) -> int:
    """A Wait's SecondsPath value: a whole number of seconds, at least 0 (AWS's texts)."""
    value = _wait_value("SecondsPath", path, data, context)
    if isinstance(value, str):
        value = number_text(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StatesError(
            errors.RUNTIME,
            f"The SecondsPath parameter cannot be parsed as a long value: {path} == "
            f"{_shown(value)}",
        )
    if value < 0:
        raise StatesError(
            errors.RUNTIME,
            f"The SecondsPath parameter references a negative value: {path} == {value}",
        )
    return value


def _wait_value(field: str, path: str, data: JSON, context: JSON) -> JSON:
    try:
        return data if path == "$" else paths.read_path(path, data, context or {})
    except paths.PathNotFound:
        raise StatesError(
            errors.RUNTIME, f"The {field} parameter does not reference an input value: {path}"
        ) from None


def number_text(text: str) -> JSON:
    """A numeric string as its number (AWS reads "5" as 5 in *Path fields), else the string."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text.strip())
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _shown(value: JSON) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


# RFC 3339 as AWS reads it (Java's ISO_OFFSET_DATE_TIME): a T between date and time, seconds
# and their fraction optional, an offset (Z or +hh:mm) required.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2})(?::(\d{2}))?)"
)


def rfc3339(text: str) -> datetime | None:
    """``text`` as an aware datetime when it is an RFC 3339 date-time, else None."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om, osec = match.groups()
    try:
        offset = timedelta(0)
        if not zulu:
            offset = timedelta(hours=int(oh), minutes=int(om), seconds=int(osec or 0))
            if offset > timedelta(hours=18):
                return None
            offset = -offset if sign == "-" else offset
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micro,
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None


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
