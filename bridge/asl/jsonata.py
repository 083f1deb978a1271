"""JSONata, ASL's second query language (``"QueryLanguage": "JSONata"``).

Role in the flow: in a JSONata state every string of the form ``"{% <expression> %}"`` in a
field (``Arguments``, ``Output``, ``Assign``, ``Condition``, ``Items``, ``TimeoutSeconds``, ...)
is an expression. The definition loader calls :func:`validate_template` so that a malformed
expression fails at deploy time naming the field; the interpreter calls :func:`evaluate_template`
(or :func:`evaluate` for a single expression) with the reserved variable ``$states`` and the
workflow variables as bindings.

AWS behaviour this module follows (AWS Step Functions developer guide, "Transforming data with
JSONata in Step Functions" and "Passing data between states with variables"):

* A string is an expression only if it starts with ``{%`` and ends with ``%}``, with no space
  outside the delimiters; ``" {% $x %}"`` is a plain string. A string that opens with ``{%``
  but does not close is a validation error.
* ``$states`` is ``{"input", "result", "errorOutput", "context"}`` (only the members available
  in the field); workflow variables are ``$name``. The expression has no context item: ``$``
  is undefined.
* "JSON cannot represent an undefined value": an expression that yields nothing fails with
  ``States.QueryEvaluationError``, also inside an object or array; the field is not dropped.
  AWS's cause reads ``The JSONata expression '<expr>' specified for the field
  'Arguments/Input/x' returned nothing (undefined).``, and :func:`evaluate_template` words it so.
  :func:`evaluate` returns :data:`UNDEFINED` and leaves the decision to its caller.
* Type errors, memory limit, timeout and stack overflow all raise
  ``States.QueryEvaluationError``.
* Step Functions adds ``$partition``, ``$range``, ``$hash``, ``$random``, ``$uuid`` and
  ``$parse`` and disables ``$eval``. Non-integer arguments are truncated toward zero. Arguments
  that make no sense (a chunk size below 1, an empty array, a missing or wrongly signed
  ``$range`` step, a missing ``$hash`` algorithm) give undefined rather than an error, and a
  one-element ``$range`` is the bare number (JSONata's sequence rule). These details are not in
  the guide; they are how emulators that were checked against AWS describe it.

Determinism: randomness comes only from the injected :class:`IntrinsicContext` (``$random()``,
``$uuid()`` and ``$shuffle``, which JSONata would otherwise take from the global ``random``
module); ``$random(seed)`` depends on the seed alone. ``$now()`` and ``$millis()`` give the
state's entry time, ``$states.context.State.EnteredTime`` (or ``Execution.StartTime`` when the
state time is missing), not the wall clock, so a replayed evaluation gives the same value.
AWS reads the clock; that difference is deliberate. The library still calls ``time.time()``
once per evaluation to stamp it, but nothing can see that stamp once ``$now``/``$millis`` are
replaced.

Bounds, all deterministic (no clock): at most :data:`MAX_DEPTH` nested evaluations (AWS refuses
``1+1+...+1`` past 100 terms; this counts the same way), at most :data:`MAX_STEPS` evaluated
nodes (this stands in for AWS's one-second timeout), and at most :data:`MAX_BUILT` characters
and elements in the strings, arrays and objects an expression builds (for AWS's memory limit).
Values taken from the bindings cost nothing. ``$pad`` and ``$string`` are checked before they
build. A result larger than :data:`MAX_RESULT_BYTES` serialized raises
``States.DataLimitExceeded``. Not covered: one built-in call that multiplies its input, such as
``$replace`` with a long replacement, is limited only by the size of its arguments.

Parsed expressions are cached by their text. Nothing is ever passed to Python's ``eval``; the
library interprets its own syntax tree.
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import json
import math
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn

from bridge.asl.errors import DATA_LIMIT_EXCEEDED, QUERY_EVALUATION_ERROR, StatesError
from bridge.asl.intrinsics import IntrinsicContext
from bridge.asl.paths import JSON

if TYPE_CHECKING:
    from jsonata.jexception import JException


class _Library(NamedTuple):
    """The parts of jsonata-python used here."""

    jsonata: Any
    error: type[JException]
    functions: Any
    utils: Any
    #: JSON null inside the library (its None is undefined).
    null: Any


@cache
def _lib() -> _Library:
    """jsonata-python, imported the first time an expression is read or evaluated: a bridge
    whose definitions use JSONPath only is spared its memory (bench/README.md)."""
    # jsonata-python raises the interpreter's recursion limit to 10,000 when it is imported.
    # Put it back: the depth bound below keeps evaluation far from the default limit.
    limit = sys.getrecursionlimit()
    from jsonata.functions import Functions
    from jsonata.jexception import JException
    from jsonata.jsonata import Jsonata
    from jsonata.utils import Utils

    sys.setrecursionlimit(limit)
    return _Library(Jsonata, JException, Functions, Utils, Utils.NULL_VALUE)


__all__ = [
    "MAX_BUILT",
    "MAX_DEPTH",
    "MAX_RESULT_BYTES",
    "MAX_STEPS",
    "UNDEFINED",
    "evaluate",
    "evaluate_template",
    "is_expression",
    "validate",
    "validate_template",
]


class _Undefined(enum.Enum):
    UNDEFINED = "UNDEFINED"

    def __repr__(self) -> str:
        return "UNDEFINED"


#: What :func:`evaluate` returns for an expression that yields nothing (JSONata's undefined).
UNDEFINED: Final = _Undefined.UNDEFINED

#: Deepest nesting of evaluations. AWS accepts ``1+1+...+1`` with 100 terms and no more.
MAX_DEPTH: Final = 100
#: Evaluated nodes per expression: one to two seconds of work in CPython.
MAX_STEPS: Final = 500_000
#: Characters plus elements of the strings, arrays and objects one expression may build.
MAX_BUILT: Final = 4_000_000
#: Largest serialized (UTF-8) result: the Step Functions payload limit, 256 KiB.
MAX_RESULT_BYTES: Final = 256 * 1024

_OPEN: Final = "{%"
_CLOSE: Final = "%}"
_HASHES: Final = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MAX_SAFE_INTEGER: Final = 2**53


# --------------------------------------------------------------------------------------------
# Public API


def is_expression(value: object) -> bool:
    """Whether ``value`` is a JSONata expression string: ``{%`` first and ``%}`` last, exactly."""
    return (
        isinstance(value, str)
        and len(value) >= len(_OPEN) + len(_CLOSE)
        and value.startswith(_OPEN)
        and value.endswith(_CLOSE)
    )


def evaluate(
    expression: str, bindings: Mapping[str, JSON], rng: IntrinsicContext, *, field: str = ""
) -> JSON:
    """Evaluate one expression (``"{% ... %}"`` or its inner text) against ``bindings``.

    ``bindings`` maps variable names without ``$`` to JSON values, e.g. ``{"states": {...},
    "myVar": 1}``; it is never modified. Returns the JSON result, or :data:`UNDEFINED` when the
    expression yields nothing. Raises ``StatesError(States.QueryEvaluationError)`` for a syntax
    or runtime error or a broken bound and ``StatesError(States.DataLimitExceeded)`` for a
    result over :data:`MAX_RESULT_BYTES`. ``field`` only names the field in error causes.
    """
    run = _Evaluation(bindings, rng)
    result = run.expression(_inner(expression), field)
    if result is not UNDEFINED:
        _check_size(result, field)
    return result


def evaluate_template(
    template: JSON, bindings: Mapping[str, JSON], rng: IntrinsicContext, *, field: str = ""
) -> JSON:
    """Copy ``template`` with every expression string replaced by its value.

    Objects and arrays are walked at any depth; other values are copied as they are. An
    expression that yields nothing raises ``States.QueryEvaluationError`` naming its field as
    AWS does (``Output/a/b[0]``, under the prefix ``field``). The whole result is limited to
    :data:`MAX_RESULT_BYTES`.
    """
    run = _Evaluation(bindings, rng)
    result = run.template(template, field)
    _check_size(result, field)
    return result


def validate(expression: str) -> str | None:
    """Parse ``expression`` (``"{% ... %}"`` or its inner text); a message if it is malformed."""
    _, problem = _compile(_inner(expression))
    return problem


def validate_template(template: JSON, where: str) -> list[str]:
    """Every problem with the expressions in ``template``, each naming ``where`` and the field.

    Fields are named as AWS names them: ``/key`` for an object member, ``[i]`` for an array
    element, so ``validate_template({"a": ["{% 1 + %}"]}, "Output")`` names ``Output/a[0]``.
    """
    problems: list[str] = []
    for path, value in _strings(template, where):
        if is_expression(value):
            problem = validate(value)
            if problem is not None:
                problems.append(f"{path}: invalid JSONata expression {value!r}: {problem}")
        elif value.startswith(_OPEN):
            problems.append(
                f"{path}: {value!r} opens a JSONata expression with '{{%' but does not end "
                "with '%}' (no space may follow it)"
            )
    return problems


# --------------------------------------------------------------------------------------------
# Parsing


def _inner(expression: str) -> str:
    if is_expression(expression):
        expression = expression[len(_OPEN) : -len(_CLOSE)]
    return expression.strip()


@lru_cache(maxsize=1024)
def _compile(text: str) -> tuple[Any, str | None]:
    """The parsed expression, or ``None`` and why it does not parse. Cached by text."""
    if not text:
        return None, "the expression is empty"
    try:
        compiled = _lib().jsonata(text)
    except _lib().error as exc:
        return None, f"{_message(exc)} (JSONata error {exc.error} at character {exc.location})"
    except RecursionError:
        return None, "the expression is nested too deeply to parse"
    # Keep JSON null (Utils.NULL_VALUE) apart from undefined (None) in results.
    compiled.set_output_convert_nulls(False)
    return compiled, None


def _message(exc: BaseException) -> str:
    message = str(exc)
    if isinstance(exc, _lib().error) and str(exc.error).startswith("T04"):
        # The Python port names functions "Object" in its signature messages.
        message = message.replace("Object", "function")
    return message


# --------------------------------------------------------------------------------------------
# Evaluation


class _Guard:
    """Counts depth, steps and built size of one evaluation through the library's hooks."""

    __slots__ = ("built", "depth", "failure", "field", "fresh", "shared", "steps", "text")

    def __init__(self, shared: Mapping[int, object], text: str, field: str) -> None:
        self.shared = shared
        #: Values already charged, kept alive so that their ids stay unique meanwhile.
        self.fresh: dict[int, object] = {}
        self.text = text
        self.field = field
        self.depth = 0
        self.steps = 0
        self.built = 0
        self.failure: StatesError | None = None

    def enter(self, expr: object, focus: object, env: object) -> None:
        self.depth += 1
        self.steps += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"Stack overflow error: the expression nests deeper than {MAX_DEPTH} levels")
        if self.steps > MAX_STEPS:
            self.fail(
                f"Expression evaluation timeout: the expression took more than {MAX_STEPS} "
                "evaluation steps"
            )

    def leave(self, expr: object, focus: object, env: object, result: object) -> None:
        # The library skips this hook when a node raises; the evaluation is over then anyway.
        self.depth -= 1
        if isinstance(result, str | list | dict):
            key = id(result)
            if key not in self.shared and key not in self.fresh:
                self.fresh[key] = result
                self.charge(len(result))

    def charge(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT:
            self.fail(
                "Expression evaluation memory limit exceeded: the expression built more than "
                f"{MAX_BUILT} characters and elements"
            )

    def room(self) -> int:
        return MAX_BUILT - self.built

    def fail(self, cause: str) -> NoReturn:
        # Recorded because the library turns some exceptions into its own (inside and/or).
        self.failure = StatesError(
            QUERY_EVALUATION_ERROR, f"{_named(self.text, self.field)} failed: {cause}"
        )
        raise self.failure


class _Native:
    """Adapts a Python callable to the library's function protocol (``call(input, args)``)."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function

    def call(self, focus: object, args: list[Any] | None) -> Any:
        return self._function(*(args or []))


class _Evaluation:
    """One call of the public API: converted bindings, the random source and the functions."""

    def __init__(self, bindings: Mapping[str, JSON], rng: IntrinsicContext) -> None:
        self._source = bindings
        self._rng = rng
        #: Every string and container of the converted bindings, by id: built by nobody.
        self._shared: dict[int, object] = {}
        converted = {name: _to_jsonata(value, self._shared) for name, value in bindings.items()}
        self._guard = _Guard(self._shared, "", "")
        functions = {
            name: _lib().jsonata.JFunction(_Native(implementation), signature)
            for name, (signature, implementation) in self._functions().items()
        }
        # Workflow variables shadow functions of the same name, as they shadow JSONata's own.
        self._environment: dict[str, Any] = {**functions, **converted}

    # ---- walking

    def template(self, node: JSON, field: str) -> JSON:
        if isinstance(node, str):
            if not is_expression(node):
                return node
            text = _inner(node)
            value = self.expression(text, field)
            if value is UNDEFINED:
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"{_named(text, field)} returned nothing (undefined).",
                )
            return value
        if isinstance(node, Mapping):
            return {key: self.template(value, _member(field, key)) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [self.template(value, _element(field, i)) for i, value in enumerate(node)]
        return node

    def expression(self, text: str, field: str) -> JSON:
        compiled, problem = _compile(text)
        if compiled is None:
            raise StatesError(
                QUERY_EVALUATION_ERROR, f"{_named(text, field)} is invalid: {problem}"
            )
        guard = self._guard = _Guard(self._shared, text, field)
        environment = dict(self._environment)
        environment["__evaluate_entry"] = guard.enter
        environment["__evaluate_exit"] = guard.leave
        try:
            raw = compiled.evaluate(None, environment)
        except StatesError:
            raise
        except RecursionError:
            if guard.failure is not None:
                raise guard.failure from None
            raise StatesError(
                QUERY_EVALUATION_ERROR, f"{_named(text, field)} failed: Stack overflow error"
            ) from None
        except Exception as exc:
            if guard.failure is not None:
                raise guard.failure from None
            if isinstance(exc, _lib().error):
                # AWS's words: "... threw an error during evaluation. T1006: <message>".
                cause = f"threw an error during evaluation. {exc.error}: {_message(exc)}"
            else:
                cause = f"failed: {_message(exc)}"
            raise StatesError(QUERY_EVALUATION_ERROR, f"{_named(text, field)} {cause}") from None
        if raw is None:
            return UNDEFINED
        if _larger_than(raw, MAX_RESULT_BYTES):
            raise StatesError(
                DATA_LIMIT_EXCEEDED,
                f"{_named(text, field)} produced more than {MAX_RESULT_BYTES} bytes",
            )
        try:
            return _from_jsonata(raw)
        except _NotJSON:
            # AWS says no more (a function, a number JSON cannot hold).
            raise StatesError(
                QUERY_EVALUATION_ERROR,
                f"{_named(text, field)} returned an unsupported result type.",
            ) from None
        except RecursionError:
            raise StatesError(
                QUERY_EVALUATION_ERROR, f"{_named(text, field)} returned a value nested too deeply"
            ) from None

    # ---- functions

    def _functions(self) -> dict[str, tuple[str, Callable[..., Any]]]:
        """Name -> (JSONata signature, implementation) of the functions Step Functions adds or
        changes; bound per evaluation so that they see its random source and time."""
        return {
            "partition": ("<an:a>", self._partition),
            "range": ("<nnn?:a>", self._range),
            "hash": ("<ss?:s>", self._hash),
            "random": ("<n?:n>", self._random),
            "uuid": ("<:s>", self._uuid),
            "parse": ("<s:x>", self._parse),
            "eval": ("<sx?:x>", self._eval),
            "now": ("<s?s?:s>", self._now),
            "millis": ("<:n>", self._millis),
            "shuffle": ("<a:a>", self._shuffle),
            "pad": ("<s-ns?:s>", self._pad),
            "string": ("<x-b?:s>", self._string),
        }

    def _fail(self, cause: str) -> NoReturn:
        self._guard.fail(cause)

    def _partition(self, array: list[Any] | None, size: float | None) -> Any:
        if array is None or size is None:
            return None
        chunk = int(size)
        items = list(array)
        if chunk < 1 or not items:
            return None
        self._guard.charge(len(items))
        return [items[start : start + chunk] for start in range(0, len(items), chunk)]

    def _range(self, start: float | None, end: float | None, step: float | None) -> Any:
        if start is None or end is None or step is None or int(step) == 0:
            return None
        first, last, stride = int(start), int(end), int(step)
        if (last - first) * stride < 0:
            return None
        count = (last - first) // stride + 1
        if count > self._guard.room():
            self._fail(
                f"Expression evaluation memory limit exceeded: $range would build {count} numbers"
            )
        # A sequence, so that a single number stands alone as AWS returns it.
        stop = last + (1 if stride > 0 else -1)
        return _lib().utils.create_sequence_from_iter(range(first, stop, stride))

    def _hash(self, value: str | None, algorithm: str | None) -> Any:
        if value is None or algorithm is None:
            return None
        name = _HASHES.get(algorithm)
        if name is None:
            self._fail(f"$hash: the algorithm {algorithm!r} is not one of {', '.join(_HASHES)}")
        return hashlib.new(name, value.encode("utf-8")).hexdigest()

    def _random(self, seed: float | None) -> float:
        if seed is not None:
            # Seeded: the same seed gives the same number, independent of the injected source.
            return random.Random(int(seed)).random()
        return self._rng.random_int(0, _MAX_SAFE_INTEGER) / _MAX_SAFE_INTEGER

    def _uuid(self) -> str:
        return self._rng.uuid4()

    def _parse(self, text: str | None) -> Any:
        if text is None:
            return None
        self._guard.charge(len(text))
        try:
            parsed = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            self._fail(f"$parse: the argument is not valid JSON ({exc})")
        return _to_jsonata(parsed, {})

    def _eval(self, text: str, focus: Any = None) -> NoReturn:
        self._fail("$eval is not supported in Step Functions; use $parse to read JSON text")

    def _now(self, picture: str | None, timezone: str | None) -> Any:
        return _lib().functions.datetime_from_millis(self._millis(), picture, timezone)

    def _millis(self) -> int:
        entered = _entered_time(self._source)
        if entered is None:
            self._fail(
                "$now() and $millis() give the time the state was entered "
                "($states.context.State.EnteredTime), which is not available here"
            )
        try:
            moment = _dt.datetime.fromisoformat(entered.replace("Z", "+00:00"))
        except ValueError:
            self._fail(f"$now(): the state's entry time {entered!r} is not an ISO 8601 time")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)
        return (moment - _EPOCH) // _dt.timedelta(milliseconds=1)

    def _shuffle(self, array: list[Any] | None) -> Any:
        if array is None:
            return None
        items = list(array)
        self._guard.charge(len(items))
        for i in range(len(items) - 1, 0, -1):
            j = self._rng.random_int(0, i + 1)
            items[i], items[j] = items[j], items[i]
        return items

    def _pad(self, text: str | None, width: float | None, char: str | None) -> Any:
        if width is not None and abs(int(width)) > self._guard.room():
            self._fail(
                f"Expression evaluation memory limit exceeded: $pad to {int(width)} characters"
            )
        return _lib().functions.pad(text, width, char)

    def _string(self, value: Any, prettify: bool | None) -> Any:
        if _larger_than(value, self._guard.room()):
            self._fail("Expression evaluation memory limit exceeded: $string of a large value")
        return _lib().functions.string(value, prettify)


# --------------------------------------------------------------------------------------------
# Values: JSON in, JSON out


class _NotJSON(Exception):
    pass


def _to_jsonata(value: JSON, shared: dict[int, object]) -> Any:
    """A copy of ``value`` for the library: JSON null becomes its NULL_VALUE (None is undefined
    there). Records every string and container in ``shared``."""
    if value is None:
        return _lib().null
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        shared[id(value)] = value
        return value
    converted: Any
    if isinstance(value, Mapping):
        converted = {str(key): _to_jsonata(item, shared) for key, item in value.items()}
    elif isinstance(value, list | tuple):
        converted = [_to_jsonata(item, shared) for item in value]
    else:
        raise TypeError(f"a binding holds {type(value).__name__}, which is not a JSON value")
    shared[id(converted)] = converted
    return converted


def _from_jsonata(value: Any) -> JSON:
    """A plain JSON copy of a library result. Integral numbers become ints, as JSONata (a
    JavaScript library on AWS) writes them; an undefined member of an object is left out."""
    if value is None or value is _lib().null:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(f"the number {value}, which JSON cannot represent")
        if value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
            return int(value)
        return value
    if isinstance(value, dict):
        return {str(key): _from_jsonata(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_from_jsonata(item) for item in value]
    raise _NotJSON("a function, which is not a JSON value")


def _larger_than(value: Any, limit: int) -> bool:
    """Whether ``value`` serializes to more than ``limit`` bytes, judged from a lower bound and
    walking at most about ``limit`` nodes (shared subtrees count each time they occur)."""
    total = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            total += len(node) + 2
        elif isinstance(node, dict):
            total += 1 + 2 * len(node)
            for key, item in node.items():
                total += len(str(key)) + 2
                stack.append(item)
        elif isinstance(node, list):
            total += 1 + len(node)
            stack.extend(node)
        else:
            total += 1
        if total > limit:
            return True
    return False


def _check_size(value: JSON, field: str) -> None:
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_RESULT_BYTES:
        where = f" for the field '{field}'" if field else ""
        raise StatesError(
            DATA_LIMIT_EXCEEDED,
            f"The value{where} is {size} bytes, more than the {MAX_RESULT_BYTES}-byte limit.",
        )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _entered_time(bindings: Mapping[str, JSON]) -> str | None:
    context = _get(_get(bindings, "states"), "context")
    for section, key in (("State", "EnteredTime"), ("Execution", "StartTime")):
        value = _get(_get(context, section), key)
        if isinstance(value, str):
            return value
    return None


def _get(node: object, key: str) -> object:
    return node.get(key) if isinstance(node, Mapping) else None


# --------------------------------------------------------------------------------------------
# Field names in messages


def _named(text: str, field: str = "") -> str:
    where = f" specified for the field '{field}'" if field else ""
    return f"The JSONata expression '{text}'{where}"


def _member(field: str, key: str) -> str:
    return f"{field}/{key}" if field else key


def _element(field: str, index: int) -> str:
    return f"{field}[{index}]"


def _strings(node: JSON, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, _member(path, key))
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            yield from _strings(value, _element(path, index))
