"""The core bounds what it keeps: a state's output or assigned variables that could not be
stored (too deep, a NUL character, a lone surrogate) fail the step with a named error, instead of
being found by the database when the batch is written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.asl import limits
from bridge.local import run_local


def _pass(field: str, value: Any) -> dict[str, Any]:
    return {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", field: value, "Next": "B"},
            "B": {"Type": "Pass", "End": True},
        },
    }


@pytest.mark.parametrize(
    ("field", "value", "error", "cause"),
    [
        ("Parameters", {"v.$": "States.Base64Decode('AA==')"}, "States.Runtime", "NUL character"),
        ("Assign", {"v.$": "States.Base64Decode('AA==')"}, "States.Runtime", "assigned variables"),
        (
            "Parameters",
            {"v.$": "States.StringToJson($.deep)"},
            "States.DataLimitExceeded",
            "nested deeper than 128",
        ),
    ],
)
def test_an_unstorable_value_fails_the_step(field: str, value: Any, error: str, cause: str) -> None:
    deep = "[" * 130 + "]" * 130
    result = run_local(_pass(field, value), {"deep": deep})
    assert result.status == "FAILED"
    assert result.error == error
    assert cause in (result.cause or "")


def test_values_within_the_bounds_pass() -> None:
    result = run_local(
        _pass("Parameters", {"v.$": "States.StringToJson($.deep)"}), {"deep": "[[1]]"}
    )
    assert result.status == "SUCCEEDED"


def test_the_check_is_iterative_and_names_the_bound() -> None:
    value: Any = "x"
    for _ in range(5000):
        value = {"a": value}
    assert limits.problem(value) == "is nested deeper than 64 levels"
    assert (
        limits.problem(["ok", {"k\x00": 1}])
        == "holds a NUL character (\\u0000), which cannot be stored"
    )
    with pytest.raises(limits.Unstorable, match="the body is nested deeper than 64 levels"):
        limits.loads("[" * 100_000)
    with pytest.raises(limits.Unstorable, match="not UTF-8"):
        limits.loads(b"\xff")


def test_numbers_that_json_cannot_carry_are_refused() -> None:
    """NaN and Infinity: Python's json reads and writes them, PostgreSQL and Kafka consumers
    do not; refused at the edge and in what a step produces, the same on every database."""
    not_finite = "holds a number that is not finite (NaN or Infinity), which JSON cannot carry"
    assert limits.problem(float("nan")) == not_finite
    assert limits.problem({"a": [1.5, float("inf")]}) == not_finite
    assert limits.problem({"a": [1.5, -2, 10**30]}) is None
    for text in ("NaN", '{"a": [Infinity]}', '{"a": -Infinity}', "\ufeff{}"):
        with pytest.raises(limits.Unstorable, match="not JSON"):
            limits.loads(text)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    )
)
def test_the_shared_decoder_reads_what_json_loads_reads(value: Any) -> None:
    text = json.dumps(value)
    assert limits.parse_json(text) == json.loads(text)


# Mostly plain values, so that many examples reach the shortcut's own checks rather than being
# refused by orjson (which sends them to the walk).
_TEXT = st.lists(
    st.sampled_from(["a", "a", "a", "\\", "u", "0", "\x00", "\ud800", "é", "null"]), max_size=6
).map("".join)
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_TEXT | st.integers(), children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=1000)
@example(value=[float("nan")], max_depth=2)
@example(value={"k": [float("-inf"), None]}, max_depth=3)
@example(value={"k": "a\x00"}, max_depth=2)
@example(value=[{"a\x00": 1}], max_depth=2)
@example(value=["\\u0000"], max_depth=2)
@example(value=[[[[]]]], max_depth=3)
@example(value=[2**64, "\ud800"], max_depth=2)
@given(
    value=st.lists(_VALUES, max_size=3) | st.dictionaries(_TEXT, _VALUES, max_size=3),
    max_depth=st.integers(min_value=1, max_value=8),
)
def test_the_quick_check_agrees_with_the_walk(value: Any, max_depth: int) -> None:
    # The encoded-text shortcut may only ever say "fine" when walking the value would.
    assert limits.problem(value, max_depth=max_depth) == limits._walk(value, max_depth)
