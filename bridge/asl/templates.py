"""ASL payload templates (Parameters, ResultSelector, ItemSelector): building and checking them.

A field whose name ends in ``.$`` holds a Path or an intrinsic function call. This module sits
above both ``paths`` and ``intrinsics`` (intrinsics read their arguments with paths), so neither
has to import the other at call time.
"""

from __future__ import annotations

import json
from typing import Final

from bridge.asl import intrinsics as intrinsics_module
from bridge.asl import paths
from bridge.asl.errors import PARAMETER_PATH_FAILURE, StatesError
from bridge.asl.intrinsics import IntrinsicContext
from bridge.asl.paths import JSON

__all__ = ["apply_template", "validate_template"]

#: Causes quote the input; cap it so that one failure cannot blow up the history row.
_MAX_QUOTED_INPUT: Final = 2_000

# --------------------------------------------------------------------------------------------
# Public API: payload templates


def _quoted_json(value: JSON) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if len(text) > _MAX_QUOTED_INPUT:
        return text[:_MAX_QUOTED_INPUT] + "..."
    return text


def _not_found(path: str, field: str, data: JSON, context: JSON) -> StatesError:
    if path.startswith("$$"):
        where, value = "context object", context
    else:
        where, value = "input", data
    return StatesError(
        PARAMETER_PATH_FAILURE,
        f"The JSONPath '{path}' specified for the field '{field}' could not be found in the "
        f"{where} '{_quoted_json(value)}'",
    )


def apply_template(
    template: JSON, data: JSON, context: JSON, *, intrinsics: IntrinsicContext
) -> JSON:
    """Build a payload from an ASL template (Parameters, ResultSelector, ItemSelector).

    The template is copied recursively; a field whose name ends in ``.$`` holds a Path
    (``$...``/``$$...``) or an intrinsic function call, and its value in the output (under the
    name without ``.$``) is what that evaluates to. A definite path that matches nothing raises
    ``StatesError(States.ParameterPathFailure)``; intrinsic failures raise
    ``StatesError(States.IntrinsicFailure)``. ``intrinsics`` supplies the randomness
    (States.UUID, States.MathRandom).
    """
    return _build(template, data, context, intrinsics)


# A module function rather than a closure that calls itself: such a closure is a reference
# cycle, which would keep the state it holds alive until the garbage collector runs.
def _build(node: JSON, data: JSON, context: JSON, intrinsics: IntrinsicContext) -> JSON:
    if isinstance(node, dict):
        out: dict[str, JSON] = {}
        for key, value in node.items():
            if key.endswith(".$"):
                out[key[:-2]] = _dynamic(key, value, data, context, intrinsics)
            else:
                out[key] = _build(value, data, context, intrinsics)
        return out
    if isinstance(node, list):
        return [_build(item, data, context, intrinsics) for item in node]
    return node


def _dynamic(
    key: str, expression: JSON, data: JSON, context: JSON, intrinsics: IntrinsicContext
) -> JSON:
    if not isinstance(expression, str):
        raise ValueError(f"the value of field '{key}' must be a string")
    try:
        if intrinsics_module.is_intrinsic(expression):
            return intrinsics_module.evaluate(expression, data, context, intrinsics)
        return paths.read_path(expression, data, context)
    except paths.PathNotFound as exc:
        raise _not_found(exc.path, key, data, context) from None


def validate_template(template: JSON, where: str) -> list[str]:
    """Problems in a payload template, each naming ``where`` and the field; empty if fine."""
    problems: list[str] = []

    def check(node: JSON, at: str) -> None:
        if isinstance(node, dict):
            seen: set[str] = set()
            for key, value in node.items():
                field = f"{at}.{key}"
                name = key[:-2] if key.endswith(".$") else key
                if name in seen:
                    problems.append(f"{field}: field '{name}' is given twice")
                seen.add(name)
                if not key.endswith(".$"):
                    check(value, field)
                elif not isinstance(value, str):
                    problems.append(f"{field}: must be a string (a path or intrinsic function)")
                elif intrinsics_module.is_intrinsic(value):
                    problem = intrinsics_module.validate(value)
                    if problem is not None:
                        problems.append(f"{field}: {problem}")
                else:
                    problem = paths.validate_path(value)
                    if problem is not None:
                        problems.append(f"{field}: {problem}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                check(item, f"{at}[{index}]")

    check(template, where)
    return problems
