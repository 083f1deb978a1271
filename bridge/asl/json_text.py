"""JSON text of the values the bridge keeps and sends: compact UTF-8, made one way everywhere.

Writing JSON is a large share of a step's cost (process state, history, outbox values, the
payload size bound), so it goes through orjson, several times faster than the standard library.
orjson refuses some values the standard library writes (integers beyond 64 bits, dictionary keys
that are not strings): those fall back to the standard library, so every value that was written
before still is, to the same JSON value. Reading what the bridge wrote (``loads``) goes through
orjson too, except where it would differ from the standard library: orjson turns integers beyond
64 bits into floats, so text with a run of 19 digits or more is read by the standard library, as
is text orjson refuses (lone surrogates, NaN). Input from outside is read by
``bridge.asl.limits.loads``, with its own bounds.

Non-finite numbers (NaN, Infinity) are not JSON; the bounds in ``bridge.asl.limits`` refuse
them before a value is kept or sent.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text of ``value``."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return _standard(value)


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON of ``value``, UTF-8 encoded."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _standard(value).encode("ascii")


def _standard(value: Any) -> str:
    # ASCII with escapes: a lone surrogate (which orjson refuses) still makes text.
    return json.dumps(value, separators=(",", ":"))


#: Every digit becomes "0", so that a run of 19 digits or more, a number that may not fit 64 bits
#: (or such a run inside a string, read the slow way), is a plain substring; translating bytes and
#: searching them costs a fraction of what a regular expression over the text did.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def loads(text: str | bytes) -> Any:
    """The value of JSON text, as the standard library reads it."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_RUN not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
