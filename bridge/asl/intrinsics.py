"""ASL intrinsic functions (``States.Format(...)``, ``States.Array(...)``, ...).

Role in the flow: payload templates (Parameters, ResultSelector, ItemSelector) call
:func:`evaluate` for every ``"key.$"`` whose value is an intrinsic call; the definition loader
calls :func:`validate` so that a malformed call fails at deploy time, not mid-process.

Expressions are parsed by a small recursive-descent parser into a frozen tree (cached) and
interpreted; nothing is ever ``eval``-ed. Arguments are string literals in single quotes (with
the escapes ``\\'``, ``\\{``, ``\\}`` and ``\\\\``), numbers, ``true``/``false``/``null``, Paths
(``$...``/``$$...``, read with :func:`bridge.asl.paths.read_path`) and nested calls.

Randomness comes from an injected :class:`IntrinsicContext` so that the interpreter stays
deterministic under replay; ``States.MathRandom`` with a seed uses a generator derived from the
seed alone. Failures raise ``StatesError(States.IntrinsicFailure, cause)``; a definite path
argument that matches nothing raises :class:`bridge.asl.paths.PathNotFound`, which the template
builder reports as ``States.ParameterPathFailure`` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Protocol, TypeAlias

from bridge.asl import paths
from bridge.asl.errors import INTRINSIC_FAILURE, StatesError
from bridge.asl.paths import JSON

__all__ = ["IntrinsicContext", "evaluate", "is_intrinsic", "validate"]


class IntrinsicContext(Protocol):
    """The source of randomness for States.MathRandom and States.UUID."""

    def random_int(self, low: int, high: int) -> int:
        """A random integer with ``low <= n < high`` (States.MathRandom semantics)."""
        ...

    def uuid4(self) -> str:
        """A random version 4 UUID in its canonical string form."""
        ...


#: AWS: "You can nest up to 10 intrinsic functions within a field".
MAX_NESTING: Final = 10
#: AWS limit on the input of Base64Encode/Base64Decode/Hash.
MAX_STRING_INPUT: Final = 10_000
#: AWS limit on the array States.ArrayRange may build.
MAX_RANGE_ITEMS: Final = 1_000
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1

_INTRINSIC_START: Final = re.compile(r"\s*States\.[A-Za-z0-9]+\s*\(", re.ASCII)
_FUNCTION_NAME: Final = re.compile(r"States\.([A-Za-z0-9]+)", re.ASCII)
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", re.ASCII)
_KEYWORDS: Final = {"true": True, "false": False, "null": None}
_ESCAPABLE: Final = "'{}\\"


# --------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True, slots=True)
class _Literal:
    value: JSON
    #: For string literals: the text split at unescaped ``{}``, so that States.Format can tell
    #: a placeholder from the escaped braces ``\{\}``.
    pieces: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class _PathArg:
    path: str


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[_Arg, ...]


_Arg: TypeAlias = _Literal | _PathArg | _Call


class _SyntaxProblem(ValueError):
    """An intrinsic expression that cannot be parsed or has the wrong number of arguments."""


# --------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> _SyntaxProblem:
        return _SyntaxProblem(f"{message} at position {self.pos} in {self.text!r}")

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> _Call:
        self.skip_blanks()
        call = self.call(1)
        self.skip_blanks()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after the function call")
        return call

    def call(self, depth: int) -> _Call:
        if depth > MAX_NESTING:
            raise self.fail(f"intrinsic functions may be nested at most {MAX_NESTING} deep")
        match = _FUNCTION_NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected an intrinsic function such as States.Format(...)")
        name = match.group(0)
        if name not in _FUNCTIONS:
            raise self.fail(f"unknown intrinsic function {name}")
        self.pos = match.end()
        self.skip_blanks()
        if self.peek() != "(":
            raise self.fail(f"expected '(' after {name}")
        self.pos += 1
        args: list[_Arg] = []
        self.skip_blanks()
        if self.peek() == ")":
            self.pos += 1
        else:
            while True:
                self.skip_blanks()
                args.append(self.argument(depth))
                self.skip_blanks()
                c = self.peek()
                if c not in (",", ")"):
                    raise self.fail(f"expected ',' or ')' in the arguments of {name}")
                self.pos += 1
                if c == ")":
                    break
        _check_call(name, args)
        return _Call(name, tuple(args))

    def argument(self, depth: int) -> _Arg:
        c = self.peek()
        if c == "'":
            return self.string()
        if c == "$":
            return self.path()
        if self.text.startswith("States.", self.pos):
            return self.call(depth + 1)
        number = _NUMBER.match(self.text, self.pos)
        if number is not None:
            self.pos = number.end()
            text = number.group(0)
            if number.group(1) is None and number.group(2) is None:
                return _Literal(int(text))
            return _Literal(float(text))
        for keyword, value in _KEYWORDS.items():
            if self.text.startswith(keyword, self.pos):
                self.pos += len(keyword)
                return _Literal(value)
        raise self.fail(
            "expected an argument (a 'string', number, true, false, null, path "
            "or intrinsic function)"
        )

    def string(self) -> _Literal:
        self.pos += 1  # the opening quote
        pieces: list[str] = []
        current: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\":
                escaped = self.text[self.pos + 1 : self.pos + 2]
                if escaped == "" or escaped not in _ESCAPABLE:
                    raise self.fail("open escape: a backslash must be followed by one of ' { } \\")
                current.append(escaped)
                self.pos += 2
            elif c == "'":
                self.pos += 1
                pieces.append("".join(current))
                return _Literal("".join(pieces), tuple(pieces))
            elif c == "{" and self.text.startswith("{}", self.pos):
                pieces.append("".join(current))
                current = []
                self.pos += 2
            else:
                current.append(c)
                self.pos += 1
        raise self.fail("unterminated string literal")

    def path(self) -> _PathArg:
        start = self.pos
        depth = 0
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in "'\"":
                self.skip_quoted(c)
                continue
            if c in "[(":
                depth += 1
            elif c in "])":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0:
                break
            self.pos += 1
        path = self.text[start : self.pos].rstrip()
        problem = paths.validate_path(path)
        if problem is not None:
            raise _SyntaxProblem(f"invalid path argument {path!r}: {problem}")
        return _PathArg(path)

    def skip_quoted(self, quote: str) -> None:
        self.pos += 1
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if c == quote:
                return
        raise self.fail("unterminated quoted name in a path argument")


def _check_call(name: str, args: list[_Arg]) -> None:
    low, high = _FUNCTIONS[name].arity
    count = len(args)
    if count < low or (high is not None and count > high):
        if high is None:
            expected = f"at least {low}"
        elif low == high:
            expected = str(low)
        else:
            expected = f"{low} to {high}"
        raise _SyntaxProblem(f"{name} takes {expected} argument(s), got {count}")
    if name == "States.Format":
        first = args[0]
        if isinstance(first, _Literal):
            if not isinstance(first.value, str):
                raise _SyntaxProblem("the first argument of States.Format must be a string")
            assert first.pieces is not None
            placeholders = len(first.pieces) - 1
            if placeholders != count - 1:
                raise _SyntaxProblem(
                    f"States.Format has {placeholders} placeholder(s) but {count - 1} value "
                    "argument(s)"
                )
    if name == "States.JsonMerge":
        flag = args[2]
        if isinstance(flag, _Literal) and flag.value is not False:
            raise _SyntaxProblem(
                "the third argument of States.JsonMerge must be false: only a shallow merge is "
                "supported"
            )
    if name == "States.Hash":
        algorithm = args[1]
        if isinstance(algorithm, _Literal) and algorithm.value not in _HASHES:
            raise _SyntaxProblem(
                f"States.Hash does not support the algorithm {algorithm.value!r}; use one of "
                + ", ".join(_HASHES)
            )


@lru_cache(maxsize=2048)
def _parse(expression: str) -> _Call:
    return _Parser(expression).parse()


# --------------------------------------------------------------------------------------------
# Helpers shared by the functions


def _fail(name: str, message: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, f"Invalid arguments in {name}: {message}")


def _is_number(value: JSON) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: JSON) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _integer(name: str, what: str, value: JSON) -> int:
    """An integer argument; AWS rounds a non-integer number to the nearest integer."""
    if not _is_number(value):
        raise _fail(name, f"{what} must be a number, got {_short(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(name, f"{what} must be a finite number")
        # Step Functions runs on the JVM: Math.round rounds halves up (towards +infinity).
        return math.floor(value + 0.5)
    return int(value)


def _string(name: str, what: str, value: JSON) -> str:
    if not isinstance(value, str):
        raise _fail(name, f"{what} must be a string, got {_short(value)}")
    return value


def _array(name: str, what: str, value: JSON) -> list[JSON]:
    if not isinstance(value, list):
        raise _fail(name, f"{what} must be an array, got {_short(value)}")
    return value


def _limited(name: str, value: str) -> str:
    if len(value) > MAX_STRING_INPUT:
        raise _fail(name, f"the input string is longer than {MAX_STRING_INPUT} characters")
    return value


def _canonical(value: JSON) -> object:
    """A hashable key under which equal JSON values coincide (1 == 1.0; true != 1)."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", int(value) if float(value).is_integer() else value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))


def _format_value(value: JSON) -> str:
    """How States.Format prints a value (strings bare; containers as the JVM prints them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_format_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


# --------------------------------------------------------------------------------------------
# The functions. Each takes its evaluated arguments and the randomness source.


def _format(args: list[JSON], pieces: tuple[str, ...]) -> str:
    values = args[1:]
    if len(pieces) - 1 != len(values):
        raise _fail(
            "States.Format",
            f"the format string has {len(pieces) - 1} placeholder(s) but {len(values)} "
            "value(s) were given",
        )
    out = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        out.append(_format_value(value))
        out.append(piece)
    return "".join(out)


def _string_to_json(args: list[JSON], rng: IntrinsicContext) -> JSON:
    text = _string("States.StringToJson", "the argument", args[0])
    if not text.strip():
        return None  # as on AWS: an empty or blank string is null

    def reject_constant(constant: str) -> JSON:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=reject_constant)
    except ValueError as exc:
        raise _fail("States.StringToJson", f"the string is not valid JSON ({exc})") from None


def _json_to_string(args: list[JSON], rng: IntrinsicContext) -> JSON:
    return json.dumps(args[0], separators=(",", ":"), ensure_ascii=False)


def _array_of(args: list[JSON], rng: IntrinsicContext) -> JSON:
    return list(args)


def _array_partition(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.ArrayPartition"
    items = _array(name, "the first argument", args[0])
    size = _integer(name, "the chunk size", args[1])
    if size <= 0:
        raise _fail(name, f"the chunk size must be a positive integer, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def _array_contains(args: list[JSON], rng: IntrinsicContext) -> JSON:
    items = _array("States.ArrayContains", "the first argument", args[0])
    wanted = _canonical(args[1])
    return any(_canonical(item) == wanted for item in items)


def _array_range(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.ArrayRange"
    first = _integer(name, "the start", args[0])
    last = _integer(name, "the end", args[1])
    step = _integer(name, "the step", args[2])
    if step == 0:
        raise _fail(name, "the step must not be 0")
    count = max(0, (last - first) // step + 1)
    if count > MAX_RANGE_ITEMS:
        raise _fail(name, f"the range would have {count} items; the limit is {MAX_RANGE_ITEMS}")
    return list(range(first, last + (1 if step > 0 else -1), step))


def _array_get_item(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.ArrayGetItem"
    items = _array(name, "the first argument", args[0])
    index = args[1]
    if isinstance(index, float) and index.is_integer():
        index = int(index)
    if not isinstance(index, int) or isinstance(index, bool):
        raise _fail(name, f"the index must be an integer, got {_short(index)}")
    if not 0 <= index < len(items):
        raise _fail(name, f"index {index} is out of bounds for an array of length {len(items)}")
    return items[index]


def _array_length(args: list[JSON], rng: IntrinsicContext) -> JSON:
    return len(_array("States.ArrayLength", "the argument", args[0]))


def _array_unique(args: list[JSON], rng: IntrinsicContext) -> JSON:
    seen: set[object] = set()
    out: list[JSON] = []
    for item in _array("States.ArrayUnique", "the argument", args[0]):
        key = _canonical(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _base64_encode(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.Base64Encode"
    text = _limited(name, _string(name, "the argument", args[0]))
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _base64_decode(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.Base64Decode"
    text = _limited(name, _string(name, "the argument", args[0]))
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _fail(name, "the argument is not Base64-encoded UTF-8 text") from None


#: ASL algorithm names -> hashlib names.
_HASHES: Final[dict[str, str]] = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _hash(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.Hash"
    data = _limited(name, _string(name, "the data", args[0]))
    algorithm = args[1]
    if not isinstance(algorithm, str) or algorithm not in _HASHES:
        raise _fail(
            name, f"unsupported algorithm {_short(algorithm)}; use one of {', '.join(_HASHES)}"
        )
    return hashlib.new(_HASHES[algorithm], data.encode("utf-8")).hexdigest()


def _json_merge(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.JsonMerge"
    left, right, deep = args
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise _fail(name, "the first two arguments must be JSON objects")
    if deep is not False:
        raise _fail(name, "the third argument must be false: only a shallow merge is supported")
    return {**left, **right}


def _math_random(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.MathRandom"
    low = _integer(name, "the start", args[0])
    high = _integer(name, "the end", args[1])
    if low >= high:
        raise _fail(name, f"the start ({low}) must be less than the end ({high})")
    if len(args) == 3:
        seed = _integer(name, "the seed", args[2])
        # Seeded: the same arguments give the same number, independent of the injected source.
        return random.Random(seed).randrange(low, high)
    return rng.random_int(low, high)


def _math_add(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.MathAdd"
    total = 0
    for what, value in (("the first argument", args[0]), ("the second argument", args[1])):
        number = _integer(name, what, value)
        if not _INT32_MIN <= number <= _INT32_MAX:
            raise _fail(name, f"{what} is outside the range {_INT32_MIN}..{_INT32_MAX}")
        total += number
    return total


def _string_split(args: list[JSON], rng: IntrinsicContext) -> JSON:
    name = "States.StringSplit"
    text = _string(name, "the first argument", args[0])
    delimiters = _string(name, "the delimiter", args[1])
    if not delimiters:
        return [text] if text else []
    # Every character of the second argument is a delimiter; empty tokens are dropped.
    pattern = "[" + "".join(re.escape(c) for c in delimiters) + "]"
    return [token for token in re.split(pattern, text) if token]


def _uuid(args: list[JSON], rng: IntrinsicContext) -> JSON:
    return rng.uuid4()


@dataclass(frozen=True, slots=True)
class _Function:
    arity: tuple[int, int | None]
    run: Callable[[list[JSON], IntrinsicContext], JSON] | None


_FUNCTIONS: Final[dict[str, _Function]] = {
    "States.Format": _Function((1, None), None),  # needs the literal's pieces: see _call
    "States.StringToJson": _Function((1, 1), _string_to_json),
    "States.JsonToString": _Function((1, 1), _json_to_string),
    "States.Array": _Function((0, None), _array_of),
    "States.ArrayPartition": _Function((2, 2), _array_partition),
    "States.ArrayContains": _Function((2, 2), _array_contains),
    "States.ArrayRange": _Function((3, 3), _array_range),
    "States.ArrayGetItem": _Function((2, 2), _array_get_item),
    "States.ArrayLength": _Function((1, 1), _array_length),
    "States.ArrayUnique": _Function((1, 1), _array_unique),
    "States.Base64Encode": _Function((1, 1), _base64_encode),
    "States.Base64Decode": _Function((1, 1), _base64_decode),
    "States.Hash": _Function((2, 2), _hash),
    "States.JsonMerge": _Function((3, 3), _json_merge),
    "States.MathRandom": _Function((2, 3), _math_random),
    "States.MathAdd": _Function((2, 2), _math_add),
    "States.StringSplit": _Function((2, 2), _string_split),
    "States.UUID": _Function((0, 0), _uuid),
}


# --------------------------------------------------------------------------------------------
# Interpreter


def _argument(arg: _Arg, data: JSON, context: JSON, rng: IntrinsicContext) -> JSON:
    if isinstance(arg, _Literal):
        return arg.value
    if isinstance(arg, _PathArg):
        return paths.read_path(arg.path, data, context)
    return _call(arg, data, context, rng)


def _call(call: _Call, data: JSON, context: JSON, rng: IntrinsicContext) -> JSON:
    args = [_argument(arg, data, context, rng) for arg in call.args]
    if call.name == "States.Format":
        first = call.args[0]
        if isinstance(first, _Literal) and first.pieces is not None:
            pieces = first.pieces
        else:
            # A format string read from the data has no escapes: every "{}" is a placeholder.
            pieces = tuple(_string(call.name, "the first argument", args[0]).split("{}"))
        return _format(args, pieces)
    run = _FUNCTIONS[call.name].run
    assert run is not None
    return run(args, rng)


# --------------------------------------------------------------------------------------------
# Public API


def is_intrinsic(expr: str) -> bool:
    """Whether a ``"key.$"`` value is an intrinsic call (``States.Name(...)``), not a Path."""
    return _INTRINSIC_START.match(expr) is not None


def validate(expr: str) -> str | None:
    """Check syntax, function names, arity and literal arguments: None if fine, else why."""
    try:
        _parse(expr)
    except _SyntaxProblem as exc:
        return str(exc)
    return None


def evaluate(expr: str, data: JSON, context: JSON, rng: IntrinsicContext) -> JSON:
    """Evaluate an intrinsic call against the input ``data`` and the ``context`` object.

    Raises ``StatesError(States.IntrinsicFailure)`` for a malformed call or bad arguments, and
    :class:`bridge.asl.paths.PathNotFound` when a definite path argument matches nothing.
    """
    try:
        call = _parse(expr)
    except _SyntaxProblem as exc:
        raise StatesError(INTRINSIC_FAILURE, str(exc)) from None
    return _call(call, data, context, rng)
