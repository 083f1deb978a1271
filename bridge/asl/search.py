"""Search attributes: the business fields a process is indexed by (``customerId``, ``amount``).

A definition names them in a top-level ``SearchAttributes`` object, evaluated over the process's
input when it starts, and a state may update them in its own ``SearchAttributes`` (evaluated in
the scope of that state's ``Assign``). The process carries its attributes
(``Process.search_attributes``); the shell only writes them to an index table when they change.

A value is a string, a number or a boolean; null (or a path that matches nothing) removes the
attribute. Any other value is skipped, the attribute keeping its previous value, with the reason
in the history (``SearchAttributeSkipped``): a search attribute never fails the process, and
never reaches the database in a form it would refuse (which would stall the whole batch).

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Final, TypeAlias

from bridge.asl import limits
from bridge.asl.types import JSON

#: What an attribute holds. Numbers are compared as double precision floats.
SearchValue: TypeAlias = str | bool | int | float

#: An attribute's name: a letter or _, then letters, digits, ``_``, ``.`` or ``-`` (no operator
#: characters, so that a filter ``name>=value`` reads without quoting).
NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
#: The most distinct attribute names one definition may use (every SearchAttributes field of it
#: together): a process has at most this many rows in the index.
MAX_ATTRIBUTES: Final = 20
#: The longest text value, in characters: a longer string is refused, never cut (an equality
#: filter on a cut value would match what it should not).
MAX_TEXT: Final = 256
#: History type of a value that was not kept.
SKIPPED: Final = "SearchAttributeSkipped"


def attribute_name(key: str) -> str:
    """The attribute a ``SearchAttributes`` key names: ``customerId.$`` -> ``customerId``."""
    return key[:-2] if key.endswith(".$") else key


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an attribute, or None."""
    if NAME.fullmatch(name) is None:
        return (
            "an attribute name is a letter or _ then up to 63 letters, digits, _, . or - "
            f"(got {name[:80]!r})"
        )
    return None


def value_problem(value: JSON) -> str | None:
    """Why ``value`` cannot be kept as an attribute value (a phrase after "the value"), or None.

    None (removal), strings, numbers and booleans are fine within the bounds below."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            return f"is a string of {len(value)} characters; at most {MAX_TEXT} are indexed"
        return limits.problem(value)
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return "is a number too large to index"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "is a number that is not finite"
    kind = "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else ""
    kind = kind or type(value).__name__
    return f"is {kind}; a search attribute is a string, a number or a boolean"


def apply(
    current: Mapping[str, SearchValue], updates: Mapping[str, SearchValue | None]
) -> dict[str, SearchValue]:
    """``current`` with ``updates`` applied in order: a None removes the attribute."""
    result = dict(current)
    for name, value in updates.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def columns(value: SearchValue) -> tuple[str | None, float | None]:
    """The index columns of a value: (text, number). A number is indexed as a number, a string
    as text, a boolean as the text ``true`` or ``false`` (so ``flag=true`` finds it)."""
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int | float):
        return None, float(value)
    return value, None


def fields_problems(where: str, fields: JSON, *, jsonata: bool) -> Iterator[str]:
    """Problems with the shape of one ``SearchAttributes`` object (names and keys; the paths and
    expressions are checked with the rest of the state's)."""
    if not isinstance(fields, dict):
        yield f"{where}: must be an object of attribute names and values"
        return
    seen: set[str] = set()
    for key in fields:
        name = attribute_name(key)
        if jsonata and key.endswith(".$"):
            yield f"{where}.{key}: JSONata states write {name!r} with a {{% %}} expression, no .$"
            continue
        if (problem := name_problem(name)) is not None:
            yield f"{where}.{key}: {problem}"
        elif name in seen:
            yield f"{where}.{key}: attribute {name!r} is given twice"
        seen.add(name)
