"""Choice state rules (JSONPath query language): validation and evaluation.

Role in the flow: the definition loader calls :func:`validate_rule` for every entry of a Choice
state's ``Choices`` so that a bad rule fails at deploy time naming the state and field; the
interpreter calls :func:`choose` to pick the next state. Pure: no I/O, no clock.

Semantics follow AWS Step Functions:

* a comparison whose operands are of the wrong type (NumericEquals on a string, a boolean
  where a number is expected) is false, not an error;
* a ``Variable`` (or a ``...Path`` operand) that matches nothing raises
  ``StatesError(States.Runtime)``, except under ``IsPresent``, which is then false;
* strings compare by UTF-16 code units (as the JVM compares them), numbers by value, timestamps
  (RFC 3339 with an uppercase ``T`` and ``Z`` or a numeric offset) as instants.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import Any, Final

from bridge.asl.errors import NO_CHOICE_MATCHED, RUNTIME, StatesError
from bridge.asl.paths import JSON, PathNotFound, is_definite, read_path, validate_path

__all__ = ["COMPARISON_OPERATORS", "choose", "evaluate_rule", "validate_rule"]

_Compare = Callable[[Any, Any], bool]

_ORDERINGS: Final[dict[str, _Compare]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}

#: Comparison operator -> (operand kind, comparison). Each also has a ``...Path`` form except
#: StringMatches.
_COMPARISONS: Final[dict[str, tuple[str, _Compare]]] = {
    **{f"String{suffix}": ("string", cmp) for suffix, cmp in _ORDERINGS.items()},
    **{f"Numeric{suffix}": ("numeric", cmp) for suffix, cmp in _ORDERINGS.items()},
    **{f"Timestamp{suffix}": ("timestamp", cmp) for suffix, cmp in _ORDERINGS.items()},
    "BooleanEquals": ("boolean", operator.eq),
    "StringMatches": ("pattern", operator.eq),
}

_TYPE_TESTS: Final[dict[str, Callable[[JSON], bool]]] = {
    "IsNull": lambda value: value is None,
    "IsNumeric": lambda value: _is_number(value),
    "IsString": lambda value: isinstance(value, str),
    "IsBoolean": lambda value: isinstance(value, bool),
    "IsTimestamp": lambda value: _is_timestamp(value),
}

_PATH_OPERATORS: Final = frozenset(
    f"{name}Path" for name in _COMPARISONS if name != "StringMatches"
)

#: Every operator a Variable rule may use.
COMPARISON_OPERATORS: Final = frozenset(
    {*_COMPARISONS, *_PATH_OPERATORS, *_TYPE_TESTS, "IsPresent"}
)

_BOOLEAN_OPERATORS: Final = ("And", "Or", "Not")

_TIMESTAMP: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Operand handling


def _is_number(value: JSON) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@lru_cache(maxsize=1024)
def _instant(text: str) -> tuple[int, Fraction] | None:
    """An RFC 3339 timestamp as (whole seconds since the epoch, fraction), or None.

    Fractions are kept exact (beyond microseconds) so that comparisons are exact.
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zone = match.group(7), match.group(8)
    offset = timedelta(0)
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes) * (1 if zone[0] == "+" else -1)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds, Fraction(int(fraction), 10 ** len(fraction)) if fraction else Fraction(0)


def _is_timestamp(value: JSON) -> bool:
    return isinstance(value, str) and _instant(value) is not None


def _utf16(text: str) -> bytes:
    # Java's String.compareTo orders by UTF-16 code unit, which differs from Python's code
    # point order for characters above U+FFFF versus U+E000..U+FFFF. Big-endian UTF-16 bytes
    # order exactly as the code units do.
    return text.encode("utf-16-be", "surrogatepass")


@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """StringMatches: ``*`` matches any run of characters; ``\\*`` and ``\\\\`` are literal."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _compare(kind: str, compare: _Compare, value: JSON, expected: JSON) -> bool:
    if kind == "string":
        return (
            isinstance(value, str)
            and isinstance(expected, str)
            and compare(_utf16(value), _utf16(expected))
        )
    if kind == "numeric":
        return _is_number(value) and _is_number(expected) and compare(value, expected)
    if kind == "boolean":
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    if kind == "timestamp":
        if not isinstance(value, str) or not isinstance(expected, str):
            return False
        left, right = _instant(value), _instant(expected)
        return left is not None and right is not None and compare(left, right)
    # "pattern"
    return (
        isinstance(value, str)
        and isinstance(expected, str)
        and _wildcard(expected).fullmatch(value) is not None
    )


def _invalid_path(path: str) -> StatesError:
    return StatesError(
        RUNTIME,
        f"Invalid path '{path}': The choice state's condition path references an invalid value.",
    )


def _read(path: str, data: JSON, context: JSON) -> JSON:
    try:
        return read_path(path, data, context)
    except PathNotFound:
        raise _invalid_path(path) from None


def _operator(rule: Mapping[str, JSON]) -> str:
    for key in rule:
        if key in COMPARISON_OPERATORS:
            return key
    raise ValueError(f"choice rule has no comparison operator: {sorted(rule)}")


# --------------------------------------------------------------------------------------------
# Public API


def evaluate_rule(rule: Mapping[str, JSON], data: JSON, context: JSON) -> bool:
    """Whether a Choice rule (a comparison, or And/Or/Not of rules) holds for ``data``.

    Raises ``StatesError(States.Runtime)`` when a Variable or ``...Path`` operand matches
    nothing (except under IsPresent). A malformed rule raises ValueError; rules are checked
    with :func:`validate_rule` when the definition is loaded.
    """
    if "And" in rule:
        return all(evaluate_rule(sub, data, context) for sub in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(sub, data, context) for sub in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], data, context)

    variable = rule["Variable"]
    name = _operator(rule)
    operand = rule[name]
    if name == "IsPresent":
        try:
            value = read_path(variable, data, context)
        except PathNotFound:
            return operand is False
        # An indefinite path that matches nothing yields [] and counts as absent.
        present = not (value == [] and not is_definite(variable))
        return present is operand
    value = _read(variable, data, context)
    test = _TYPE_TESTS.get(name)
    if test is not None:
        return test(value) is operand
    if name in _PATH_OPERATORS:
        name = name[: -len("Path")]
        operand = _read(operand, data, context)
    kind, compare = _COMPARISONS[name]
    return _compare(kind, compare, value, operand)


def choose(
    choices: Sequence[Mapping[str, JSON]], default: str | None, data: JSON, context: JSON
) -> str:
    """The ``Next`` of the first top-level rule that holds, else ``default``.

    Raises ``StatesError(States.NoChoiceMatched)`` when no rule holds and there is no Default.
    """
    for rule in choices:
        if evaluate_rule(rule, data, context):
            next_state = rule["Next"]
            assert isinstance(next_state, str)
            return next_state
    if default is not None:
        return default
    raise StatesError(
        NO_CHOICE_MATCHED, "No Choice Rule matched the input and no Default is specified."
    )


def _check_operand(name: str, operand: JSON, field: str) -> str | None:
    if name in _PATH_OPERATORS:
        if not isinstance(operand, str):
            return f"{field}: must be a path string"
        problem = validate_path(operand)
        return None if problem is None else f"{field}: {problem}"
    if name in _TYPE_TESTS or name == "IsPresent":
        return None if isinstance(operand, bool) else f"{field}: must be true or false"
    kind, _ = _COMPARISONS[name]
    if kind in ("string", "pattern"):
        return None if isinstance(operand, str) else f"{field}: must be a string"
    if kind == "numeric":
        return None if _is_number(operand) else f"{field}: must be a number"
    if kind == "boolean":
        return None if isinstance(operand, bool) else f"{field}: must be true or false"
    if not isinstance(operand, str) or _instant(operand) is None:
        return (
            f"{field}: must be an RFC 3339 timestamp such as '2016-03-14T01:59:00Z' "
            "(uppercase T and Z)"
        )
    return None


def validate_rule(rule: Mapping[str, JSON], where: str, *, top_level: bool = True) -> list[str]:
    """Problems in a Choice rule, each naming ``where`` and the field; empty if fine.

    ``where`` locates the rule, e.g. ``'States.CheckAmount.Choices[0]'``. A top-level rule
    needs ``Next``; a rule nested in And/Or/Not must not have one.
    """
    if not isinstance(rule, Mapping):
        return [f"{where}: a choice rule must be an object"]
    problems: list[str] = []
    allowed = {"Comment"}
    if top_level:
        allowed |= {"Next", "Assign"}
        next_state = rule.get("Next")
        if not isinstance(next_state, str) or not next_state:
            problems.append(f"{where}.Next: a top-level choice rule needs a Next state name")
    elif "Next" in rule:
        problems.append(f"{where}.Next: only top-level choice rules may have Next")

    booleans = [name for name in _BOOLEAN_OPERATORS if name in rule]
    comparisons = [name for name in rule if name in COMPARISON_OPERATORS]
    if booleans:
        if len(booleans) > 1 or comparisons or "Variable" in rule:
            problems.append(
                f"{where}: a rule must have exactly one of And, Or, Not or a Variable comparison"
            )
            allowed |= {"Variable", *comparisons}  # reported just above, not again below
        for name in booleans:
            allowed.add(name)
            operand = rule[name]
            if name == "Not":
                problems += validate_rule(operand, f"{where}.Not", top_level=False)
            elif not isinstance(operand, list) or not operand:
                problems.append(f"{where}.{name}: must be a non-empty array of rules")
            else:
                for index, sub in enumerate(operand):
                    problems += validate_rule(sub, f"{where}.{name}[{index}]", top_level=False)
    else:
        allowed.add("Variable")
        variable = rule.get("Variable")
        if variable is None:
            problems.append(f"{where}.Variable: a comparison needs a Variable")
        elif not isinstance(variable, str):
            problems.append(f"{where}.Variable: must be a path string")
        else:
            problem = validate_path(variable)
            if problem is not None:
                problems.append(f"{where}.Variable: {problem}")
        if len(comparisons) != 1:
            problems.append(
                f"{where}: a comparison needs exactly one operator, found "
                + (", ".join(comparisons) if comparisons else "none")
            )
        for name in comparisons:
            allowed.add(name)
            problem = _check_operand(name, rule[name], f"{where}.{name}")
            if problem is not None:
                problems.append(problem)
    for key in rule:
        if key not in allowed:
            problems.append(f"{where}.{key}: unknown field in a choice rule")
    return problems
