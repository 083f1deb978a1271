"""What the bridge can store: bounds on JSON values, checked the same way at every edge.

PostgreSQL refuses NUL characters in text and JSONB, pydantic's serialiser stops near a nesting
depth of 255 and Python's ``json`` raises ``RecursionError`` on deep input. Rather than let the
database (or a serialiser) discover a bad value in the middle of a batch, every value that comes
in from outside (an event, a reply, an HTTP body) and every value a step produces is checked here
first, and refused with a reason that names the bound.

Pure: no I/O; the core (``bridge.asl``) and the shell both use it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

import orjson

from bridge.asl.errors import BridgeError
from bridge.asl.types import JSON

#: The deepest nesting of objects and arrays in a value from outside (the top level is depth 1).
#: Process state wraps such a value a few levels deeper still, far below the serialiser's limit.
MAX_DEPTH: Final = 64
#: The deepest nesting of a definition document: Parallel and Map states nest their branches
#: (about four levels a state), so definitions may nest deeper than values. Kept below the depth
#: at which pydantic's serialiser stops (about 255; the API answers a document one level down).
MAX_DEFINITION_DEPTH: Final = 200
#: The longest correlation key, event id or event source (the columns hold 500 characters).
MAX_KEY_LENGTH: Final = 500
#: The longest event type or topic name kept with an event (the columns hold 200 characters).
MAX_TYPE_LENGTH: Final = 200
#: Kafka's own limit on a topic name.
MAX_TOPIC_LENGTH: Final = 249


class Unstorable(BridgeError, ValueError):
    """A value the bridge cannot keep; the message names the bound it breaks."""


def check(value: JSON, what: str = "the value", *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``Unstorable`` when ``value`` nests deeper than ``max_depth``, holds a NUL
    character (in a string or an object key) or a number that is not finite.

    Iterative, so that a value nested far deeper than the interpreter's recursion limit is
    refused, not crashed on.
    """
    reason = problem(value, max_depth=max_depth)
    if reason is not None:
        raise Unstorable(f"{what} {reason}")


def problem(value: JSON, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``value`` cannot be stored (a phrase to follow "the value ..."), or None."""
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, float):
        return None if math.isfinite(value) else _NOT_FINITE
    if not isinstance(value, dict | list):
        return None
    if _plainly_storable(value, max_depth):
        return None
    return _walk(value, max_depth)


def _walk(value: dict[Any, Any] | list[Any], max_depth: int) -> str | None:
    stack: list[tuple[JSON, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return f"is nested deeper than {max_depth} levels"
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict):
            for key in node:
                if isinstance(key, str) and (reason := _text_problem(key)) is not None:
                    return reason
        for child in children:
            if isinstance(child, str):
                if (reason := _text_problem(child)) is not None:
                    return reason
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif isinstance(child, float) and not math.isfinite(child):
                return _NOT_FINITE
    return None


def _plainly_storable(value: dict[Any, Any] | list[Any], max_depth: int) -> bool:
    """True when orjson's encoding of ``value`` shows that nothing is wrong with it; False when
    it cannot tell, and the walk must decide. Most values pass here, in C, at a fraction of the
    walk's cost.

    orjson refuses lone surrogates, keys that are not strings and integers beyond 64 bits; it
    escapes NUL as ``\\u0000`` (so the escape's absence proves there is none, its presence may
    be a backslash in the text); it writes NaN and Infinity as ``null`` (so text without
    ``null`` has none); and no value nests deeper than it has brackets.
    """
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return (
        b"\\u0000" not in encoded
        and b"null" not in encoded
        and encoded.count(b"[") + encoded.count(b"{") <= max_depth
    )


_NOT_FINITE: Final = "holds a number that is not finite (NaN or Infinity), which JSON cannot carry"


def refuse_constant(name: str) -> None:
    # Python's json reads NaN and Infinity, which are not JSON.
    raise ValueError(f"{name} is not a JSON value")


#: ``json.loads`` with an argument builds a decoder per call; every input goes through this one.
_DECODER: Final = json.JSONDecoder(parse_constant=refuse_constant)


def parse_json(text: str) -> JSON:
    """The value of JSON ``text`` from outside, NaN and Infinity refused (``ValueError``); a
    value nested past the interpreter's limit raises ``RecursionError``."""
    if text.startswith("\ufeff"):
        raise ValueError("the text starts with a byte order mark")
    return _DECODER.decode(text)


#: Lone UTF-16 surrogates: JSON's "\ud800" escapes decode to them, and no UTF-8 encoder (the
#: database driver's, the producer's) takes them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which cannot be stored"
    if not text.isascii() and _SURROGATE.search(text) is not None:
        return "holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def loads(text: str | bytes, what: str = "the body", *, max_depth: int = MAX_DEPTH) -> JSON:
    """Parse JSON from outside and check it: ``Unstorable`` (a ``ValueError``) names what is
    wrong, whether the text is not UTF-8, not JSON, nests too deep or holds a NUL character.

    ``json.loads`` guards its own recursion (a value nested past the interpreter's limit raises
    ``RecursionError``, refused here); the check after it is iterative.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise Unstorable(f"{what} is not UTF-8") from None
    try:
        value = parse_json(text)
    except RecursionError:
        raise Unstorable(f"{what} is nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise Unstorable(f"{what} is not JSON: {exc}") from None
    check(value, what, max_depth=max_depth)
    return value


def clean_text(text: str, limit: int) -> str:
    """``text`` fit for a text column: NUL characters shown as ``\\u0000``, cut to ``limit``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
