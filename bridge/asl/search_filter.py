"""Filters on search attributes: ``customerId=abc``, ``amount>=100``, ``customerId^=ab``.

One expression is ``NAME OPERATOR VALUE``. Operators: ``=``, ``!=``, ``<``, ``<=``, ``>``,
``>=`` and ``^=`` (starts with). A bare value that reads as a JSON number compares numerically;
any other bare value, or a value in double quotes (``"100"``, ``"a \\"b\\""``), compares as text
(byte order of its UTF-8, the same on SQLite and PostgreSQL). A boolean attribute is indexed as
the text ``true`` or ``false``. ``!=`` matches processes that have the attribute with another
value. The API, the CLI, the list page and bulk operations all read filters through ``parse``.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from bridge.asl import limits, search
from bridge.asl.errors import BridgeError

Operator = Literal["=", "!=", "<", "<=", ">", ">=", "^="]
#: Longest first, so that ``<=`` is not read as ``<`` followed by ``=value``.
OPERATORS: Final[tuple[Operator, ...]] = ("<=", ">=", "!=", "^=", "=", "<", ">")
#: The most filters one query may AND together.
MAX_FILTERS: Final = 10
#: The longest expression read (a name, an operator, a quoted value with escapes).
MAX_EXPRESSION: Final = 600

_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NAME_START: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class FilterError(BridgeError, ValueError):
    """An expression that is not a filter; the message says what is wrong and shows the form."""


@dataclass(frozen=True)
class AttributeFilter:
    """One parsed filter. ``value`` is a float for a numeric comparison, a str for text."""

    name: str
    operator: Operator
    value: str | float

    @property
    def numeric(self) -> bool:
        return isinstance(self.value, float)

    def text(self) -> str:
        """The filter written back in the form ``parse`` reads (a round trip)."""
        if isinstance(self.value, float):
            whole = self.value.is_integer() and abs(self.value) < 1e15
            return f"{self.name}{self.operator}{int(self.value) if whole else self.value!r}"
        return f"{self.name}{self.operator}{_quote(self.value)}"

    def matches(self, value: search.SearchValue | None) -> bool:
        """Whether an attribute's value passes: the meaning the store's SQL implements."""
        if value is None:
            return False
        text, number = search.columns(value)
        if isinstance(self.value, float):
            return number is not None and _compare(number, self.operator, self.value)
        if text is None:
            return False
        if self.operator == "^=":
            return text.startswith(self.value)
        # Byte order of UTF-8 is code point order, which Python's str comparison follows.
        return _compare(text, self.operator, self.value)


def _compare(left: str | float, operator: Operator, right: str | float) -> bool:
    match operator:
        case "=":
            return left == right
        case "!=":
            return left != right
        case "<":
            return left < right  # type: ignore[operator]
        case "<=":
            return left <= right  # type: ignore[operator]
        case ">":
            return left > right  # type: ignore[operator]
        case ">=":
            return left >= right  # type: ignore[operator]
        case "^=":
            return isinstance(left, str) and isinstance(right, str) and left.startswith(right)


FORM: Final = 'NAME=VALUE (operators = != < <= > >= ^=; quote text in "..." to keep it text)'


def equal_to(name: str, value: search.SearchValue) -> AttributeFilter:
    """The filter that finds the processes whose ``name`` is ``value`` (its ``text()`` is what
    the pages show for an attribute, and link to)."""
    text, number = search.columns(value)
    return AttributeFilter(name, "=", number if number is not None else str(text))


def parse(expression: str) -> AttributeFilter:
    """One filter from its text; ``FilterError`` says what is wrong."""
    if len(expression) > MAX_EXPRESSION:
        raise FilterError(f"a filter is at most {MAX_EXPRESSION} characters")
    if (problem := limits.problem(expression)) is not None:
        raise FilterError(f"the filter {problem}")
    text = expression.strip()
    found = _NAME_START.match(text)
    if found is None:
        raise FilterError(f"{_shown(text)} does not start with an attribute name; use {FORM}")
    name = found.group()
    rest = text[found.end() :].lstrip()
    operator = next((op for op in OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise FilterError(
            f"{_shown(text)}: no operator after {name[:80]!r}; use one of "
            f"{' '.join(OPERATORS)}, as in {FORM}"
        )
    if (problem := search.name_problem(name)) is not None:
        raise FilterError(problem)
    value = _value(rest[len(operator) :].strip(), text)
    if operator == "^=" and isinstance(value, float):
        # A prefix is text: ``zip^=12`` means zip codes that start with "12".
        value = rest[len(operator) :].strip()
    return AttributeFilter(name, operator, value)


def parse_all(expressions: Iterable[str]) -> tuple[AttributeFilter, ...]:
    """Every filter of a query (ANDed together); at most ``MAX_FILTERS``."""
    given = [expression for expression in expressions if expression.strip()]
    if len(given) > MAX_FILTERS:
        raise FilterError(f"at most {MAX_FILTERS} attribute filters, got {len(given)}")
    return tuple(parse(expression) for expression in given)


def _value(raw: str, text: str) -> str | float:
    if raw == "":
        raise FilterError(f'{_shown(text)}: no value; write "" for the empty text')
    if raw.startswith('"'):
        return _unquote(raw, text)
    if _NUMBER.fullmatch(raw):
        number = float(raw)
        if not math.isfinite(number):
            raise FilterError(f"{_shown(text)}: the number is out of range")
        return number
    if len(raw) > search.MAX_TEXT:
        raise FilterError(f"a value is at most {search.MAX_TEXT} characters")
    return raw


def _unquote(raw: str, text: str) -> str:
    out: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            if index + 1 >= len(raw) or raw[index + 1] not in '"\\':
                raise FilterError(f'{_shown(text)}: in quotes, only \\" and \\\\ are escapes')
            out.append(raw[index + 1])
            index += 2
            continue
        if char == '"':
            if index != len(raw) - 1:
                raise FilterError(f"{_shown(text)}: text follows the closing quote")
            value = "".join(out)
            if len(value) > search.MAX_TEXT:
                raise FilterError(f"a value is at most {search.MAX_TEXT} characters")
            return value
        out.append(char)
        index += 1
    raise FilterError(f"{_shown(text)}: the quote is not closed")


def _quote(value: str) -> str:
    """``value`` as parse reads it back: bare when that keeps it text, else in quotes."""
    # A value that starts with an operator character would join the operator (``<`` and ``=0``
    # read back as ``<=`` and ``0``): quoted, like one with a quote or spaces at either end.
    bare = value.strip() == value and value != "" and value[0] not in '"=<>!^'
    if bare and _NUMBER.fullmatch(value) is None:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "…")


def prefix_end(prefix: str) -> str | None:
    """The least text above every text that starts with ``prefix``, or None when there is none
    (the empty prefix, or one of only U+10FFFF): a prefix filter is the range
    ``>= prefix AND < prefix_end(prefix)`` in code point order (UTF-8's byte order)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates are not text: the next character is past them
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None
