"""Loading a definition: parse a state machine document into the frozen node classes
(``model``), then validate it (``validation``).

``parse_definition(document) -> Definition`` raises ``DefinitionError`` listing every problem
with the state and field it concerns, so that a bad definition fails when it is deployed, never in
the middle of a process. Pydantic's errors are put in the user's words here (``describe_errors``).
Apart from ``model`` so that the module map goes one way: loading → validation → model.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bridge.asl.errors import DefinitionError
from bridge.asl.model import Definition
from bridge.asl.types import JSON
from bridge.asl.validation import semantic_problems


def parse_definition(document: Mapping[str, JSON], name: str, version: int = 1) -> Definition:
    """Parse and validate; raise ``DefinitionError`` naming every problem's state and field.

    Every problem is reported in one pass: states that do not parse are set aside (a stand-in
    takes their place) so that the checks of the whole machine still run on the rest.
    """
    if not isinstance(document, Mapping):
        raise DefinitionError(["the definition must be a JSON object"])
    try:
        definition = Definition.model_validate({**document, "name": name, "version": version})
    except ValidationError as exc:
        failures = exc.errors()
        problems = describe_errors(failures)
        stand_ins = _stand_ins(document, failures)
        if stand_ins is not None:
            try:
                patched = Definition.model_validate(
                    {**document, "States": stand_ins[0], "name": name, "version": version}
                )
            except ValidationError:
                pass
            else:
                # A state reached only through a set-aside state's Catch or Choices would look
                # unreachable: that check waits until every state parses.
                problems += [
                    problem
                    for problem in semantic_problems(patched)
                    if not problem.endswith("is not reachable from StartAt")
                ]
        raise DefinitionError(problems) from None
    problems = list(semantic_problems(definition))
    if problems:
        raise DefinitionError(problems)
    return definition


def _stand_ins(
    document: Mapping[str, JSON], failures: list[Any]
) -> tuple[dict[str, JSON], set[str]] | None:
    """The document's States with each top-level state that failed to parse replaced by a Pass
    that ends, and those states' names; None when something outside the states failed."""
    states = document.get("States")
    if not isinstance(states, Mapping):
        return None
    broken: set[str] = set()
    for failure in failures:
        location = failure["loc"]
        if len(location) < 2 or location[0] != "States" or location[1] not in states:
            return None
        broken.add(str(location[1]))
    patched = {key: value for key, value in states.items()}
    for state in broken:
        # The stand-in keeps where the state goes, so that its transitions are checked too.
        original = states[state] if isinstance(states[state], Mapping) else {}
        stand_in: dict[str, JSON] = {"Type": "Pass"}
        for field in ("Next", "End"):
            if field in original and isinstance(original[field], str | bool):
                stand_in[field] = original[field]
        if "Next" not in stand_in and "End" not in stand_in:
            stand_in["End"] = True
        patched[state] = stand_in
    return patched, broken


def describe_errors(failures: list[Any]) -> list[str]:
    """Pydantic's errors in the user's words: one line per field, naming the state and field,
    without pydantic's internals (union members, constraint names, regular expressions)."""
    by_place: dict[str, list[Mapping[str, Any]]] = {}
    for failure in failures:
        place = ".".join(str(part) for part in failure["loc"] if not _is_internal(part))
        by_place.setdefault(place, []).append(failure)
    return [_describe(place, found) for place, found in by_place.items()]


def _describe(place: str, failures: list[Mapping[str, Any]]) -> str:
    kinds = {failure["type"] for failure in failures}
    first = failures[0]
    if "union_tag_invalid" in kinds:
        tag = str(first.get("ctx", {}).get("tag", ""))
        close = difflib.get_close_matches(tag, STATE_TYPES, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"one of {', '.join(STATE_TYPES)}"
        return f"{place}.Type: '{tag}' is not a state type; {hint}"
    if "union_tag_not_found" in kinds:
        return f"{place}.Type: missing; one of {', '.join(STATE_TYPES)}"
    if kinds == {"extra_forbidden"}:
        types = [part for part in first["loc"] if part in STATE_TYPES]
        owner = f"a {types[-1]} state" if types else "this object"
        return f"{place}: is not a field of {owner}"
    if "missing" in kinds:
        return f"{place}: is required"
    # A field that takes a number or a {% JSONata %} expression fails once per kind: say what
    # the number had to be, which is what the user meant to give.
    messages = [_message(failure) for failure in failures if "str" not in failure["type"]]
    messages = messages or [_message(failures[0])]
    text = "; ".join(dict.fromkeys(messages))
    if any(failure["type"] == "string_pattern_mismatch" for failure in failures):
        text += " (or a {% JSONata %} expression)"
    return f"{place}: {text}" if place else text


_PLAIN = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be one of {expected}",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "too_short": "needs at least {min_length}",
    "too_long": "may have at most {max_length}",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "has the wrong form",
}


def _message(failure: Mapping[str, Any]) -> str:
    template = _PLAIN.get(failure["type"])
    if template is None:
        return str(failure["msg"])
    context = {key: str(value) for key, value in (failure.get("ctx") or {}).items()}
    try:
        return template.format(**context)
    except KeyError:
        return str(failure["msg"])


STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")


def _is_internal(part: object) -> bool:
    """A part of pydantic's error location that names its own machinery, not the user's field:
    the state type it tried, a union member, a constraint."""
    return part in STATE_TYPES or (
        isinstance(part, str)
        and (part.startswith(("constrained-", "function-")) or part in _MEMBERS)
    )


_MEMBERS = frozenset({"int", "str", "float", "bool", "list[str]", "str-enum"})
