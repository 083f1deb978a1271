"""The one JSON writer: the same JSON values as the standard library, whatever orjson refuses."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.asl import json_text

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(values)
def test_reads_back_as_the_same_value(value: Any) -> None:
    assert json.loads(json_text.dumps(value)) == value
    assert json.loads(json_text.dumps_bytes(value)) == value


def test_what_orjson_refuses_falls_back_to_the_standard_library() -> None:
    assert json_text.dumps({"big": 2**70}) == '{"big":1180591620717411303424}'
    assert json_text.dumps({1: "a"}) == '{"1":"a"}'
    # A lone surrogate still makes text (the bounds refuse it before it is kept).
    assert json_text.dumps_bytes("\ud800") == b'"\\ud800"'


def test_compact_utf8() -> None:
    assert json_text.dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert json_text.dumps_bytes({"a": "é"}) == '{"a":"é"}'.encode()


def _same(left: Any, right: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 hides an int read as a float)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    return type(left) is type(right) and left == right


@given(values)
def test_reads_what_it_wrote_as_the_standard_library_does(value: Any) -> None:
    for text in (json_text.dumps(value), json.dumps(value)):
        assert _same(json_text.loads(text), json.loads(text))
        assert _same(json_text.loads(text.encode()), json.loads(text))


def test_reads_what_orjson_would_change_with_the_standard_library() -> None:
    assert json_text.loads('{"big":1180591620717411303424}') == {"big": 2**70}
    assert type(json_text.loads("[-9223372036854775809]")[0]) is int
    assert json_text.loads('"\\ud800"') == "\ud800"
    assert json_text.loads("1e400") == float("inf")
