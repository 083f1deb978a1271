"""JSONPath for ASL: reading Paths and writing ResultPath (payload templates: bridge.asl.templates).

Role in the flow: every state's input/output processing (InputPath, Parameters, ResultSelector,
ResultPath, OutputPath, ItemsPath, Choice Variables) goes through this module. It is pure: no
I/O, no clock, no randomness (intrinsic functions get theirs from an injected source).

The dialect is Jayway's, as AWS Step Functions uses it:

* ``$`` is the state input, ``$$`` the context object (``$$.Execution.Id``).
* Definite paths (``$.a.b``, ``$['a b']``, ``$.a['b c']``, ``$.abc.['def ghi']``, ``$.a[0]``,
  ``$.a[-1]``) name at most one node and yield that node's value; one that matches nothing
  raises :class:`PathNotFound`.
* Indefinite paths (wildcards ``[*]``/``.*``, recursive descent ``..``, slices ``[1:3]``,
  unions ``[0,1]``/``['a','b']``, filters ``[?(@.price > 10)]``) always yield a list, possibly
  empty.

Definite paths are parsed and evaluated here (they are the hot, common case and must also be
written by ResultPath); indefinite ones are normalised to bracket notation and handed to
``jsonpath_ng.ext``. Parsed paths are cached.

JSON values are plain Python values and are treated as immutable: nothing here mutates its
arguments, and results may share unchanged sub-structures with the inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final, TypeAlias

from bridge.asl.errors import RESULT_PATH_MATCH_FAILURE, BridgeError, StatesError
from bridge.asl.types import JSON

if TYPE_CHECKING:
    from jsonpath_ng import JSONPath

__all__ = [
    "JSON",
    "PathNotFound",
    "is_definite",
    "put_result",
    "read_path",
    "validate_path",
    "validate_reference_path",
]

#: A definite path as steps: a ``str`` is an object field, an ``int`` an array index.
Segments: TypeAlias = tuple[str | int, ...]


# Characters that end or cannot appear in a dot-notation field name (Jayway reads a dot name up
# to the next '.' or '['; the others would make the path ambiguous or are operators).
_DOT_NAME_FORBIDDEN: Final = frozenset(" \t\r\n]()'\",?@*")
_INT: Final = re.compile(r"-?[0-9]+", re.ASCII)
_SLICE_PART: Final = re.compile(r"\s*(-?[0-9]+)?\s*", re.ASCII)


class PathNotFound(BridgeError):
    """A definite path matched nothing. Callers map it to the ASL error their field calls for."""

    def __init__(self, path: str, detail: str | None = None) -> None:
        #: What is missing, in the words of AWS's JSONPath (Jayway): "No results for path:
        #: $['a']" for the last step, "Missing property in path $['a']" for one before it.
        self.detail = detail or f"No results for path: {path}"
        super().__init__(self.detail)
        self.path = path


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A parsed path: ``segments`` when definite, else ``normalised`` text for jsonpath_ng."""

    segments: Segments | None
    normalised: str


# --------------------------------------------------------------------------------------------
# Parsing


def _quote(name: str) -> str:
    """Quote a field name for jsonpath_ng (its lexer takes the character after a backslash)."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted name starting at ``text[start]`` (a quote); return it and the next index.

    A backslash escapes only the quote that delimits the name, or a backslash; before any other
    character it is that character, as in AWS's paths: ``$['Test\\"Name']`` names ``Test\\"Name``.
    """
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
        elif c == quote:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise ValueError(f"unterminated quoted name in {text!r}")


def _bracket_end(path: str, start: int) -> int:
    """Index just past the ']' closing the '[' at ``start``; quotes and nesting respected."""
    depth = 0
    i = start
    while i < len(path):
        c = path[i]
        if c in "'\"":
            _, i = _read_quoted(path, i)
            continue
        if c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
            if depth == 0:
                if c != "]":
                    break
                return i + 1
        i += 1
    raise ValueError(f"unbalanced brackets in path {path!r}")


def _split_top_level(text: str) -> list[str]:
    """Split bracket contents at commas outside quotes."""
    parts: list[str] = []
    current_start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            _, i = _read_quoted(text, i)
            continue
        if c == ",":
            parts.append(text[current_start:i])
            current_start = i + 1
        i += 1
    parts.append(text[current_start:])
    return parts


def _quoted_only(part: str) -> str | None:
    """The name if ``part`` is exactly one quoted string (surrounding blanks allowed)."""
    stripped = part.strip()
    if not stripped or stripped[0] not in "'\"":
        return None
    name, end = _read_quoted(stripped, 0)
    return name if end == len(stripped) else None


def _bracket(inner: str, path: str) -> tuple[str | int | None, str]:
    """Classify bracket contents: (definite segment or None, jsonpath_ng rendering)."""
    stripped = inner.strip()
    if not stripped:
        raise ValueError(f"empty brackets in path {path!r}")
    if stripped == "*":
        return None, "[*]"
    if stripped.startswith("?"):
        if not (stripped[1:].lstrip().startswith("(") and stripped.endswith(")")):
            raise ValueError(f"a filter must have the form [?(...)] in path {path!r}")
        return None, f"[{stripped}]"
    parts = _split_top_level(stripped)
    names = [_quoted_only(p) for p in parts]
    if all(n is not None for n in names):
        rendered = "[" + ",".join(_quote(n) for n in names if n is not None) + "]"
        if len(names) == 1 and names[0] is not None:
            return names[0], rendered
        return None, rendered
    if all(_INT.fullmatch(p.strip()) for p in parts):
        indexes = [int(p) for p in parts]
        rendered = "[" + ",".join(str(n) for n in indexes) + "]"
        return (indexes[0] if len(indexes) == 1 else None), rendered
    if ":" in stripped and len(parts) == 1:
        pieces = stripped.split(":")
        if len(pieces) > 3 or not all(_SLICE_PART.fullmatch(p) for p in pieces):
            raise ValueError(f"invalid slice [{stripped}] in path {path!r}")
        if len(pieces) == 3 and pieces[2].strip() in ("0", "-0"):
            raise ValueError(f"a slice step cannot be 0 in path {path!r}")
        return None, "[" + ":".join(p.strip() for p in pieces) + "]"
    raise ValueError(f"invalid bracket expression [{stripped}] in path {path!r}")


def _dot_name(path: str, start: int) -> tuple[str, int]:
    end = start
    while end < len(path) and path[end] not in ".[":
        end += 1
    name = path[start:end]
    if name == "*":
        return name, end
    if not name:
        raise ValueError(f"empty field name at position {start} in path {path!r}")
    bad = sorted(set(name) & _DOT_NAME_FORBIDDEN)
    if bad:
        raise ValueError(
            f"field name {name!r} in path {path!r} contains {''.join(bad)!r}; "
            "use bracket notation such as $['a b']"
        )
    return name, end


@lru_cache(maxsize=4096)
def _compile(path: str) -> _Compiled:
    """Parse a data path (starting with a single '$'). Raises ValueError on bad syntax."""
    if not path.startswith("$"):
        raise ValueError(f"a path must begin with '$': {path!r}")
    segments: list[str | int] = []
    rendered: list[str] = ["$"]
    definite = True
    i = 1
    n = len(path)
    while i < n:
        if path.startswith("..", i):
            definite = False
            i += 2
            if i < n and path[i] == "[":
                end = _bracket_end(path, i)
                _, text = _bracket(path[i + 1 : end - 1], path)
                rendered.append(".." + text)
                i = end
            else:
                name, i = _dot_name(path, i)
                rendered.append("..[*]" if name == "*" else f"..[{_quote(name)}]")
            continue
        c = path[i]
        if c == ".":
            i += 1
            if i < n and path[i] == "[":
                # Jayway accepts a dot before a bracket: $.abc.['def ghi'].
                continue
            name, i = _dot_name(path, i)
            if name == "*":
                definite = False
                rendered.append("[*]")
            else:
                segments.append(name)
                rendered.append(f"[{_quote(name)}]")
            continue
        if c == "[":
            end = _bracket_end(path, i)
            segment, text = _bracket(path[i + 1 : end - 1], path)
            if segment is None:
                definite = False
            else:
                segments.append(segment)
            rendered.append(text)
            i = end
            continue
        raise ValueError(f"unexpected {c!r} at position {i} in path {path!r}")
    normalised = "".join(rendered)
    if not definite:
        # Parse now so that a syntax error surfaces at validation, not at first use.
        _jsonpath(normalised)
    return _Compiled(tuple(segments) if definite else None, normalised)


@lru_cache(maxsize=1024)
def _jsonpath(normalised: str) -> JSONPath:
    # Imported on first use: only paths with wildcards, slices or filters need jsonpath-ng,
    # and a process that never meets one is spared its memory (bench/README.md).
    from jsonpath_ng.ext.parser import parse as jsonpath_ng_parse

    try:
        return jsonpath_ng_parse(normalised)
    except Exception as exc:  # jsonpath_ng raises several unrelated exception types
        raise ValueError(f"invalid path {normalised!r}: {exc}") from exc


def _split_root(path: str) -> tuple[str, bool]:
    """``$$x`` -> (``$x``, True); ``$x`` -> (``$x``, False); ``$var.x`` -> (``$.x``, False)."""
    if path.startswith("$$"):
        return path[1:], True
    variable = _variable(path)
    if variable is not None:
        return "$" + variable[1], False
    return path, False


#: Where the interpreter puts workflow variables in the context it passes to the readers, so that
#: ``$name.field`` works wherever a path does (Parameters, intrinsics, Choice) without another
#: argument. Not a valid JSON key a user could address by accident with ``$$``.
VARIABLES = "\x00variables"

_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)(?=$|[.\[])")


def _variable(path: str) -> tuple[str, str] | None:
    """``$name.rest`` -> (name, ``.rest``); None for ``$``, ``$.x``, ``$[...]`` and ``$$``."""
    found = _VARIABLE.match(path)
    if found is None:
        return None
    return found.group(1), path[found.end() :]


# --------------------------------------------------------------------------------------------
# Public API: validation


def validate_path(path: str) -> str | None:
    """Check a Path's syntax (``$...`` or ``$$...``): None if fine, else what is wrong."""
    if not isinstance(path, str):
        return f"a path must be a string, not {type(path).__name__}"
    try:
        _compile(_split_root(path)[0])
    except ValueError as exc:
        return str(exc)
    return None


def validate_reference_path(path: str, *, allow_context: bool = False) -> str | None:
    """Check a Reference Path (ResultPath, ItemsPath, ...): one node, no operators.

    A Reference Path may not refer to the context object unless ``allow_context`` is set
    (ResultPath writes, and the context object is read-only).
    """
    problem = validate_path(path)
    if problem is not None:
        return problem
    if path.startswith("$$") and not allow_context:
        return f"a reference path cannot refer to the context object: {path!r}"
    if not is_definite(path):
        return (
            f"a reference path must name a single node (no wildcard, filter, slice, union or "
            f"recursive descent): {path!r}"
        )
    return None


def is_definite(path: str) -> bool:
    """Whether ``path`` names at most one node. Raises ValueError if its syntax is invalid."""
    return _compile(_split_root(path)[0]).segments is not None


# --------------------------------------------------------------------------------------------
# Public API: reading and writing


def _walk(root: JSON, segments: Segments, path: str) -> JSON:
    node = root
    for depth, segment in enumerate(segments):
        if isinstance(segment, str):
            if not isinstance(node, dict) or segment not in node:
                raise PathNotFound(path, _missing(segments, depth))
            node = node[segment]
        else:
            if not isinstance(node, list) or not -len(node) <= segment < len(node):
                raise PathNotFound(path, _missing(segments, depth))
            node = node[segment]
    return node


def _missing(segments: Segments, depth: int) -> str:
    walked = "$" + "".join(
        f"[{step}]" if isinstance(step, int) else "['" + step + "']"
        for step in segments[: depth + 1]
    )
    if depth == len(segments) - 1:
        return f"No results for path: {walked}"
    return f"Missing property in path {walked}"


def read_path(path: str, data: JSON, context: JSON) -> JSON:
    """Evaluate an ASL Path against ``data`` (``$...``) or ``context`` (``$$...``).

    A definite path yields the value it names and raises :class:`PathNotFound` if there is
    none; an indefinite path yields the list of matched values (empty if none).
    Raises ValueError for invalid syntax (definitions are validated when loaded).
    """
    own, is_context = _split_root(path)
    compiled = _compile(own)
    root = context if is_context else data
    variable = _variable(path)
    if variable is not None:
        variables = context.get(VARIABLES, {}) if isinstance(context, dict) else {}
        if variable[0] not in variables:
            raise PathNotFound(path)
        root = variables[variable[0]]
    if compiled.segments is not None:
        return _walk(root, compiled.segments, path)
    return [match.value for match in _jsonpath(compiled.normalised).find(root)]


def kind_of(value: JSON) -> str:
    """What kind of JSON value ``value`` is, for messages: "a string", "an array", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


_ABSENT: Final = object()


def _put(node: JSON, segments: Segments, depth: int, result: JSON, path: str) -> JSON:
    if depth == len(segments):
        return result
    segment = segments[depth]
    where = _render_prefix(segments[:depth])
    if isinstance(segment, str):
        if node is _ABSENT:
            node = {}
        elif not isinstance(node, dict):
            raise StatesError(
                RESULT_PATH_MATCH_FAILURE,
                f"Unable to apply ResultPath '{path}': the value at '{where}' is "
                f"{kind_of(node)}, not an object, so field '{segment}' cannot be set",
            )
        updated = dict(node)
        updated[segment] = _put(node.get(segment, _ABSENT), segments, depth + 1, result, path)
        return updated
    if node is _ABSENT or not isinstance(node, list):
        found = "missing" if node is _ABSENT else kind_of(node)
        raise StatesError(
            RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ResultPath '{path}': the value at '{where}' is {found}, "
            f"not an array, so index {segment} cannot be set",
        )
    if not -len(node) <= segment < len(node):
        raise StatesError(
            RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ResultPath '{path}': index {segment} is out of bounds for the "
            f"array of length {len(node)} at '{where}'",
        )
    items = list(node)
    items[segment] = _put(node[segment], segments, depth + 1, result, path)
    return items


def _render_prefix(segments: Segments) -> str:
    parts = ["$"]
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", segment):
            parts.append(f".{segment}")
        else:
            parts.append(f"[{_quote(segment)}]")
    return "".join(parts)


def put_result(data: JSON, result_path: str | None, result: JSON) -> JSON:
    """Apply ResultPath: place ``result`` into (a copy of) ``data``.

    ``None`` (JSON null) discards the result and returns ``data``; ``"$"`` returns ``result``;
    ``"$.a.b"`` returns a copy of ``data`` with missing objects created along the way. An
    existing node of the wrong kind on the way (a string where an object is needed, an array
    index out of bounds) raises ``StatesError(States.ResultPathMatchFailure)``.
    Raises ValueError for a path that is not a valid Reference Path (validated at load time).
    """
    if result_path is None:
        return data
    problem = validate_reference_path(result_path)
    if problem is not None:
        raise ValueError(f"invalid ResultPath: {problem}")
    segments = _compile(result_path).segments
    assert segments is not None  # validate_reference_path checked definiteness
    return _put(data, segments, 0, result, result_path)
