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
