"""Unit and property tests for bridge.asl.choice (Choice rules, JSONPath query language)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.asl import choice, errors
from bridge.asl.errors import StatesError


def holds(rule: dict[str, Any], data: Any, context: Any = None) -> bool:
    return choice.evaluate_rule(rule, data, context or {})


# --------------------------------------------------------------------------------------------
# The AWS developer guide's Choice example

DOC_CHOICES: list[dict[str, Any]] = [
    {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
    {"Variable": "$.value", "NumericEquals": 0, "Next": "ValueIsZero"},
    {
        "And": [
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30},
        ],
        "Next": "ValueInTwenties",
    },
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "Public"}, "Public"),
        ({"type": "Private", "value": 0}, "ValueIsZero"),
        ({"type": "Private", "value": 25}, "ValueInTwenties"),
        ({"type": "Private", "value": 20}, "ValueInTwenties"),
        ({"type": "Private", "value": 30}, "DefaultState"),
        ({"type": "Private", "value": 35}, "DefaultState"),
    ],
)
def test_doc_example(data: dict[str, Any], expected: str) -> None:
    assert choice.choose(DOC_CHOICES, "DefaultState", data, {}) == expected


def test_no_match_without_default_is_no_choice_matched() -> None:
    with pytest.raises(StatesError) as info:
        choice.choose(DOC_CHOICES, None, {"type": "Private", "value": 35}, {})
    assert info.value.error == errors.NO_CHOICE_MATCHED


def test_first_matching_rule_wins() -> None:
    choices = [
        {"Variable": "$.n", "NumericGreaterThan": 0, "Next": "A"},
        {"Variable": "$.n", "NumericGreaterThan": 1, "Next": "B"},
    ]
    assert choice.choose(choices, None, {"n": 5}, {}) == "A"


def test_missing_variable_in_a_later_rule_is_not_reached() -> None:
    choices: list[dict[str, Any]] = [
        {"Variable": "$.a", "IsPresent": True, "Next": "A"},
        {"Variable": "$.nope", "StringEquals": "x", "Next": "B"},
    ]
    assert choice.choose(choices, None, {"a": 1}, {}) == "A"


# --------------------------------------------------------------------------------------------
# Comparisons


@pytest.mark.parametrize(
    ("operator", "value", "operand", "expected"),
    [
        ("StringEquals", "abc", "abc", True),
        ("StringEquals", "abc", "abd", False),
        ("StringLessThan", "abc", "abd", True),
        ("StringLessThan", "abc", "abc", False),
        ("StringGreaterThan", "b", "abc", True),
        ("StringLessThanEquals", "abc", "abc", True),
        ("StringGreaterThanEquals", "abc", "abd", False),
        ("NumericEquals", 1, 1.0, True),
        ("NumericEquals", 1, 2, False),
        ("NumericLessThan", 1, 1.5, True),
        ("NumericGreaterThan", -1, -2, True),
        ("NumericLessThanEquals", 3, 3, True),
        ("NumericGreaterThanEquals", 2.9, 3, False),
        ("BooleanEquals", True, True, True),
        ("BooleanEquals", False, True, False),
        ("TimestampEquals", "2001-01-01T12:00:00Z", "2001-01-01T12:00:00Z", True),
        ("TimestampEquals", "2001-01-01T13:00:00+01:00", "2001-01-01T12:00:00Z", True),
        ("TimestampEquals", "2001-01-01T12:00:00.000Z", "2001-01-01T12:00:00Z", True),
        ("TimestampLessThan", "2001-01-01T11:59:59.999999999Z", "2001-01-01T12:00:00Z", True),
        ("TimestampGreaterThan", "2001-01-01T12:00:00-00:30", "2001-01-01T12:00:00Z", True),
        ("TimestampLessThanEquals", "2001-01-01T12:00:00Z", "2001-01-01T12:00:00Z", True),
        ("TimestampGreaterThanEquals", "2000-12-31T23:59:59Z", "2001-01-01T00:00:00Z", False),
        ("StringMatches", "log-1.txt", "log-*.txt", True),
        ("StringMatches", "log-1.csv", "log-*.txt", False),
        ("StringMatches", "foo23.log", "foo*.*", True),
        ("StringMatches", "x.log", "*.log", True),
        ("StringMatches", "anything", "*", True),
        ("StringMatches", "", "*", True),
        ("StringMatches", "a*b", "a\\*b", True),
        ("StringMatches", "axb", "a\\*b", False),
        ("StringMatches", "a\\b", "a\\\\b", True),
        ("StringMatches", "a.b", "a.b", True),  # regex characters are literal
        ("StringMatches", "axb", "a.b", False),
        ("StringMatches", "line1\nline2", "line1*", True),
    ],
)
def test_comparison(operator: str, value: Any, operand: Any, expected: bool) -> None:
    assert holds({"Variable": "$.v", operator: operand}, {"v": value}) is expected


@pytest.mark.parametrize(
    ("operator", "value", "operand"),
    [
        ("StringEquals", 1, "1"),
        ("StringLessThan", None, "a"),
        ("NumericEquals", "1", 1),
        ("NumericEquals", True, 1),  # booleans are not numbers
        ("NumericGreaterThan", False, -1),
        ("NumericLessThan", [1], 2),
        ("BooleanEquals", 1, True),
        ("BooleanEquals", "true", True),
        ("TimestampEquals", "2001-01-01", "2001-01-01T00:00:00Z"),
        ("TimestampEquals", "2001-01-01t12:00:00z", "2001-01-01T12:00:00Z"),  # lowercase
        ("TimestampLessThan", "2001-02-30T00:00:00Z", "2002-01-01T00:00:00Z"),  # no Feb 30
        ("TimestampLessThan", 978307200, "2002-01-01T00:00:00Z"),
        ("StringMatches", 5, "*"),
        ("StringMatches", None, "*"),
    ],
)
def test_type_mismatch_is_false_not_an_error(operator: str, value: Any, operand: Any) -> None:
    assert holds({"Variable": "$.v", operator: operand}, {"v": value}) is False


def test_strings_compare_by_utf16_code_units() -> None:
    # U+FFFD (BMP, after the surrogates) sorts after U+1F600 (a surrogate pair) in UTF-16.
    assert holds({"Variable": "$.v", "StringGreaterThan": "\U0001f600"}, {"v": "\ufffd"})


@pytest.mark.parametrize(
    ("operator", "value", "other", "expected"),
    [
        ("StringEqualsPath", "a", "a", True),
        ("StringLessThanPath", "a", "b", True),
        ("StringGreaterThanPath", "a", "b", False),
        ("StringLessThanEqualsPath", "b", "b", True),
        ("StringGreaterThanEqualsPath", "c", "b", True),
        ("NumericEqualsPath", 3, 3.0, True),
        ("NumericLessThanPath", 3, 4, True),
        ("NumericGreaterThanPath", 3, 4, False),
        ("NumericLessThanEqualsPath", 4, 4, True),
        ("NumericGreaterThanEqualsPath", 5, 4, True),
        ("NumericEqualsPath", 3, "3", False),
        ("NumericEqualsPath", 1, True, False),
        ("BooleanEqualsPath", True, True, True),
        ("BooleanEqualsPath", True, 1, False),
        ("TimestampEqualsPath", "2020-01-01T00:00:00Z", "2020-01-01T01:00:00+01:00", True),
        ("TimestampLessThanPath", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z", True),
        ("TimestampGreaterThanPath", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z", False),
        ("TimestampLessThanEqualsPath", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z", True),
        ("TimestampGreaterThanEqualsPath", "2020-01-03T00:00:00Z", "2020-01-02T00:00:00Z", True),
        ("TimestampEqualsPath", "2020-01-01T00:00:00Z", "not a timestamp", False),
    ],
)
def test_path_comparisons(operator: str, value: Any, other: Any, expected: bool) -> None:
    data = {"v": value, "limits": {"other": other}}
    assert holds({"Variable": "$.v", operator: "$.limits.other"}, data) is expected


def test_path_comparison_can_read_the_context_object() -> None:
    rule = {"Variable": "$.v", "StringEqualsPath": "$$.Execution.Name"}
    assert holds(rule, {"v": "run-1"}, {"Execution": {"Name": "run-1"}})


def test_variable_can_read_the_context_object() -> None:
    rule = {"Variable": "$$.Execution.Input.kind", "StringEquals": "order"}
    assert holds(rule, {}, {"Execution": {"Input": {"kind": "order"}}})


# --------------------------------------------------------------------------------------------
# Missing values and type tests


def test_missing_variable_is_a_runtime_error() -> None:
    with pytest.raises(StatesError) as info:
        holds({"Variable": "$.missing", "StringEquals": "x"}, {"present": 1})
    assert info.value.error == errors.RUNTIME
    assert "'$.missing'" in info.value.cause


def test_missing_comparison_path_is_a_runtime_error() -> None:
    with pytest.raises(StatesError) as info:
        holds({"Variable": "$.v", "NumericEqualsPath": "$.nope"}, {"v": 1})
    assert info.value.error == errors.RUNTIME
    assert "'$.nope'" in info.value.cause


@pytest.mark.parametrize(
    "operator", ["IsNull", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"]
)
def test_type_tests_on_missing_variable_are_runtime_errors(operator: str) -> None:
    with pytest.raises(StatesError) as info:
        holds({"Variable": "$.missing", operator: True}, {})
    assert info.value.error == errors.RUNTIME


def test_is_present() -> None:
    data: dict[str, Any] = {"a": None, "list": []}
    assert holds({"Variable": "$.a", "IsPresent": True}, data)
    assert holds({"Variable": "$.missing", "IsPresent": False}, data)
    assert not holds({"Variable": "$.missing", "IsPresent": True}, data)
    assert not holds({"Variable": "$.a", "IsPresent": False}, data)
    assert holds({"Variable": "$.list", "IsPresent": True}, data)  # an empty array is a value
    assert not holds({"Variable": "$.list[*]", "IsPresent": True}, data)  # matched nothing
    assert holds({"Variable": "$$.Task.Token", "IsPresent": False}, data, {"Execution": {}})


@pytest.mark.parametrize(
    ("value", "null", "numeric", "string", "boolean", "timestamp"),
    [
        (None, True, False, False, False, False),
        (0, False, True, False, False, False),
        (1.5, False, True, False, False, False),
        (True, False, False, False, True, False),
        ("1", False, False, True, False, False),
        ("2016-03-14T01:59:00Z", False, False, True, False, True),
        ("2016-03-14T01:59:00.123+05:30", False, False, True, False, True),
        ("2016-03-14 01:59:00Z", False, False, True, False, False),
        ("2016-03-14T01:59:00", False, False, True, False, False),
        ("2016-13-14T01:59:00Z", False, False, True, False, False),
        ("2016-03-14T01:59:00+24:00", False, False, True, False, False),
        ([], False, False, False, False, False),
        ({}, False, False, False, False, False),
    ],
)
def test_type_tests(
    value: Any, null: bool, numeric: bool, string: bool, boolean: bool, timestamp: bool
) -> None:
    data = {"v": value}
    for operator, expected in (
        ("IsNull", null),
        ("IsNumeric", numeric),
        ("IsString", string),
        ("IsBoolean", boolean),
        ("IsTimestamp", timestamp),
    ):
        assert holds({"Variable": "$.v", operator: True}, data) is expected, operator
        assert holds({"Variable": "$.v", operator: False}, data) is (not expected), operator


# --------------------------------------------------------------------------------------------
# Boolean operators


def test_and_or_not_nest() -> None:
    rule = {
        "Or": [
            {
                "And": [
                    {"Variable": "$.a", "IsPresent": True},
                    {"Variable": "$.a", "NumericEquals": 1},
                ]
            },
            {"Not": {"Variable": "$.b", "BooleanEquals": True}},
        ]
    }
    assert holds(rule, {"a": 1, "b": True})
    assert holds(rule, {"b": False})
    assert not holds(rule, {"a": 2, "b": True})


def test_and_short_circuits_before_a_missing_variable() -> None:
    rule = {
        "And": [
            {"Variable": "$.a", "IsPresent": True},
            {"Variable": "$.a", "StringEquals": "x"},
        ]
    }
    assert not holds(rule, {})


# --------------------------------------------------------------------------------------------
# Validation

WHERE = "States.CheckAmount.Choices[0]"


def test_valid_rules_have_no_problems() -> None:
    for index, rule in enumerate(DOC_CHOICES):
        assert choice.validate_rule(rule, f"States.C.Choices[{index}]") == []
    rule = {
        "Variable": "$$.Execution.Input.when",
        "TimestampLessThanEqualsPath": "$.deadline",
        "Next": "X",
        "Comment": "fine",
    }
    assert choice.validate_rule(rule, WHERE) == []


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"Variable": "$.a", "StringEquals": "x"}, ".Next"),
        ({"Variable": "$.a", "StringEquals": 1, "Next": "N"}, ".StringEquals"),
        ({"Variable": "$.a", "StringMatches": 1, "Next": "N"}, ".StringMatches"),
        ({"Variable": "$.a", "NumericEquals": "1", "Next": "N"}, ".NumericEquals"),
        ({"Variable": "$.a", "NumericLessThan": True, "Next": "N"}, ".NumericLessThan"),
        ({"Variable": "$.a", "BooleanEquals": "true", "Next": "N"}, ".BooleanEquals"),
        ({"Variable": "$.a", "TimestampEquals": "2001-01-01", "Next": "N"}, ".TimestampEquals"),
        ({"Variable": "$.a", "TimestampEquals": 5, "Next": "N"}, ".TimestampEquals"),
        ({"Variable": "$.a", "IsNull": "yes", "Next": "N"}, ".IsNull"),
        ({"Variable": "$.a", "IsPresent": 1, "Next": "N"}, ".IsPresent"),
        ({"Variable": "$.a", "NumericEqualsPath": 5, "Next": "N"}, ".NumericEqualsPath"),
        ({"Variable": "$.a", "StringEqualsPath": "$.a b", "Next": "N"}, ".StringEqualsPath"),
        ({"Variable": "$.a b", "IsNull": True, "Next": "N"}, ".Variable"),
        ({"Variable": 3, "IsNull": True, "Next": "N"}, ".Variable"),
        ({"IsNull": True, "Next": "N"}, ".Variable"),
        ({"Variable": "$.a", "Next": "N"}, ": a comparison needs exactly one operator"),
        (
            {"Variable": "$.a", "IsNull": True, "IsString": True, "Next": "N"},
            ": a comparison needs exactly one operator",
        ),
        ({"Variable": "$.a", "IsNull": True, "Next": "N", "Bogus": 1}, ".Bogus"),
        ({"And": [], "Next": "N"}, ".And"),
        ({"Or": {"Variable": "$.a", "IsNull": True}, "Next": "N"}, ".Or"),
        ({"Not": [{"Variable": "$.a", "IsNull": True}], "Next": "N"}, ".Not"),
        (
            {"And": [{"Variable": "$.a", "IsNull": True, "Next": "N"}], "Next": "N"},
            ".And[0].Next",
        ),
        ({"And": [{"Variable": "$.a"}], "Next": "N"}, ".And[0]: a comparison"),
        ({"Not": {"Variable": "$.a", "NumericEquals": "x"}, "Next": "N"}, ".Not.NumericEquals"),
        (
            {"Not": {"Variable": "$.a", "IsNull": True}, "Variable": "$.a", "Next": "N"},
            ": a rule must have exactly one of",
        ),
        ({"Variable": "$.a", "StringMatchesPath": "$.p", "Next": "N"}, ".StringMatchesPath"),
    ],
)
def test_validation_problems_name_the_field(rule: dict[str, Any], field: str) -> None:
    problems = choice.validate_rule(rule, WHERE)
    assert problems, rule
    assert any(problem.startswith(WHERE + field) for problem in problems), problems


def test_validation_of_a_non_object() -> None:
    assert choice.validate_rule([1], WHERE) == [f"{WHERE}: a choice rule must be an object"]  # type: ignore[arg-type]


def test_nested_rule_validation_without_next() -> None:
    assert choice.validate_rule({"Variable": "$.a", "IsNull": True}, WHERE, top_level=False) == []


# --------------------------------------------------------------------------------------------
# Properties

plain_text = st.text(alphabet=st.characters(blacklist_characters="*\\"), max_size=12)


@given(value=st.text(max_size=12), pattern=plain_text)
def test_string_matches_without_wildcards_is_string_equals(value: str, pattern: str) -> None:
    data = {"v": value}
    assert holds({"Variable": "$.v", "StringMatches": pattern}, data) == holds(
        {"Variable": "$.v", "StringEquals": pattern}, data
    )


@given(prefix=st.text(max_size=6), middle=st.text(max_size=6), suffix=st.text(max_size=6))
def test_a_star_matches_any_middle(prefix: str, middle: str, suffix: str) -> None:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("*", "\\*")

    rule = {"Variable": "$.v", "StringMatches": escape(prefix) + "*" + escape(suffix)}
    assert holds(rule, {"v": prefix + middle + suffix})


numbers = st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6, allow_nan=False)


@given(a=numbers, b=numbers)
def test_numeric_comparisons_agree_with_python(a: float, b: float) -> None:
    data = {"v": a, "o": b}
    assert holds({"Variable": "$.v", "NumericEqualsPath": "$.o"}, data) == (a == b)
    assert holds({"Variable": "$.v", "NumericLessThanPath": "$.o"}, data) == (a < b)
    assert holds({"Variable": "$.v", "NumericGreaterThanEqualsPath": "$.o"}, data) == (a >= b)


@given(a=st.text(max_size=8), b=st.text(max_size=8))
def test_exactly_one_string_ordering_holds(a: str, b: str) -> None:
    data = {"v": a, "o": b}
    results = [
        holds({"Variable": "$.v", op: "$.o"}, data)
        for op in ("StringLessThanPath", "StringEqualsPath", "StringGreaterThanPath")
    ]
    assert results.count(True) == 1


moments = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def rfc3339(moment: datetime, zone: timezone) -> str:
    local = moment.astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    offset = local.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@given(a=moments, b=moments, za=offsets, zb=offsets)
def test_timestamps_compare_as_instants(
    a: datetime, b: datetime, za: timezone, zb: timezone
) -> None:
    data = {"v": rfc3339(a, za), "o": rfc3339(b, zb)}
    assert holds({"Variable": "$.v", "IsTimestamp": True}, data)
    assert holds({"Variable": "$.v", "TimestampEqualsPath": "$.o"}, data) == (a == b)
    assert holds({"Variable": "$.v", "TimestampLessThanPath": "$.o"}, data) == (a < b)
    assert holds({"Variable": "$.v", "TimestampGreaterThanPath": "$.o"}, data) == (a > b)


rules = st.sampled_from(
    [
        {"Variable": "$.n", "NumericGreaterThan": 0},
        {"Variable": "$.s", "StringMatches": "a*"},
        {"Variable": "$.b", "BooleanEquals": True},
        {"Variable": "$.x", "IsPresent": True},
    ]
)
inputs = st.fixed_dictionaries(
    {"n": st.integers(-5, 5), "s": st.text(alphabet="ab", max_size=3), "b": st.booleans()},
    optional={"x": st.none()},
)


@given(rule=rules, other=rules, data=inputs)
def test_boolean_operators_follow_logic(
    rule: dict[str, Any], other: dict[str, Any], data: dict[str, Any]
) -> None:
    r, o = holds(rule, data), holds(other, data)
    assert holds({"Not": {"Not": rule}}, data) == r
    assert holds({"And": [rule, other]}, data) == (r and o)
    assert holds({"Or": [rule, other]}, data) == (r or o)
    assert holds({"Not": {"And": [rule, other]}}, data) == holds(
        {"Or": [{"Not": rule}, {"Not": other}]}, data
    )


@given(data=inputs)
def test_choose_does_not_mutate_its_input(data: dict[str, Any]) -> None:
    before = dict(data)
    choice.choose([{"Variable": "$.n", "NumericGreaterThan": 0, "Next": "P"}], "D", data, {})
    assert data == before
