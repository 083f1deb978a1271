"""Unit and property tests for bridge.asl.intrinsics (every ASL intrinsic function)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.asl import errors, intrinsics
from bridge.asl.errors import StatesError
from bridge.asl.paths import PathNotFound


class RecordingRandom:
    """An IntrinsicContext that returns fixed values and records what it was asked."""

    def __init__(self, value: int | None = None) -> None:
        self.value = value
        self.ranges: list[tuple[int, int]] = []

    def random_int(self, low: int, high: int) -> int:
        self.ranges.append((low, high))
        return low if self.value is None else self.value

    def uuid4(self) -> str:
        return "9a2b8c1d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


RNG = RecordingRandom()


def run(expr: str, data: Any = None, context: Any = None, rng: Any = RNG) -> Any:
    return intrinsics.evaluate(expr, {} if data is None else data, context or {}, rng)


def fails(expr: str, data: Any = None) -> StatesError:
    with pytest.raises(StatesError) as info:
        run(expr, data)
    assert info.value.error == errors.INTRINSIC_FAILURE
    return info.value


def escape(text: str) -> str:
    """An intrinsic string literal for ``text`` (AWS: escape ' { } and backslash)."""
    return "'" + "".join("\\" + c if c in "'{}\\" else c for c in text) + "'"


# --------------------------------------------------------------------------------------------
# The AWS developer guide's examples, one per function

ARRAY_INPUT = {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "lookingFor": 5, "index": 5}


def test_doc_format() -> None:
    data = {"name": "Arnav", "template": "Hello, my name is {}."}
    assert run("States.Format('Hello, my name is {}.', $.name)", data) == "Hello, my name is Arnav."
    assert run("States.Format($.template, $.name)", data) == "Hello, my name is Arnav."


def test_doc_string_to_json() -> None:
    data = {"escapedJsonString": '{"foo": "bar"}'}
    assert run("States.StringToJson($.escapedJsonString)", data) == {"foo": "bar"}


def test_doc_json_to_string() -> None:
    data = {"unescapedJson": {"foo": "bar"}}
    assert run("States.JsonToString($.unescapedJson)", data) == '{"foo":"bar"}'


def test_doc_array() -> None:
    assert run("States.Array($.Id)", {"Id": 123456}) == [123456]
    assert run("States.Array()") == []
    assert run("States.Array('a', 1, 2.5, true, false, null)") == ["a", 1, 2.5, True, False, None]


def test_doc_array_partition() -> None:
    assert run("States.ArrayPartition($.inputArray, 4)", ARRAY_INPUT) == [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [9],
    ]


def test_doc_array_contains() -> None:
    assert run("States.ArrayContains($.inputArray, $.lookingFor)", ARRAY_INPUT) is True
    assert run("States.ArrayContains($.inputArray, 10)", ARRAY_INPUT) is False


def test_doc_array_range() -> None:
    assert run("States.ArrayRange(1, 9, 2)") == [1, 3, 5, 7, 9]


def test_doc_array_get_item() -> None:
    assert run("States.ArrayGetItem($.inputArray, $.index)", ARRAY_INPUT) == 6


def test_doc_array_length() -> None:
    assert run("States.ArrayLength($.inputArray)", ARRAY_INPUT) == 9


def test_doc_array_unique() -> None:
    data = {"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]}
    assert run("States.ArrayUnique($.inputArray)", data) == [1, 2, 3, 4]


def test_doc_base64() -> None:
    assert (
        run("States.Base64Encode($.input)", {"input": "Data to encode"}) == "RGF0YSB0byBlbmNvZGU="
    )
    assert run("States.Base64Decode($.base64)", {"base64": "RGF0YSB0byBlbmNvZGU="}) == (
        "Data to encode"
    )


def test_doc_hash() -> None:
    data = {"Data": "input data", "Algorithm": "SHA-1"}
    assert run("States.Hash($.Data, $.Algorithm)", data) == (
        "aaff4a450a104cd177d28d18d74485e8cae074b7"
    )


def test_doc_json_merge() -> None:
    data = {"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}}
    assert run("States.JsonMerge($.json1, $.json2, false)", data) == {
        "a": {"a3": 1, "a4": 2},
        "b": 2,
        "c": 3,
    }
    assert data["json1"] == {"a": {"a1": 1, "a2": 2}, "b": 2}  # inputs untouched


def test_doc_math_random() -> None:
    rng = RecordingRandom(value=456)
    assert run("States.MathRandom($.start, $.end)", {"start": 1, "end": 999}, rng=rng) == 456
    assert rng.ranges == [(1, 999)]


def test_doc_math_add() -> None:
    assert run("States.MathAdd($.value1, $.step)", {"value1": 111, "step": -1}) == 110


def test_doc_string_split() -> None:
    data = {"inputString": "1,2,3,4,5", "splitter": ","}
    assert run("States.StringSplit($.inputString, $.splitter)", data) == ["1", "2", "3", "4", "5"]
    data = {"inputString": "This.is+a,test=string", "splitter": ".+,="}
    assert run("States.StringSplit($.inputString, $.splitter)", data) == [
        "This",
        "is",
        "a",
        "test",
        "string",
    ]


def test_doc_uuid() -> None:
    assert run("States.UUID()") == RNG.uuid4()


def test_doc_nested_calls() -> None:
    # The guide's nine-call example, with its format string corrected to two placeholders
    # (as printed it has three placeholders for two values, which the count rule rejects).
    expr = (
        "States.Format('{}.{}', "
        "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem("
        "States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), "
        "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem("
        "States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))"
    )
    data = {"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:1:image-recipe/web/1.0.7"}}
    assert run(expr, data) == "1.0"
    assert intrinsics.validate(expr.replace("'{}.{}'", "'{}.{}.{}'")) is not None


# --------------------------------------------------------------------------------------------
# Parsing: literals, escapes, paths, nesting


def test_string_escapes() -> None:
    assert run(r"States.Format('it\'s \{\} and \\ and {}', 'x')") == r"it's {} and \ and x"
    assert run(r"States.Array('\'', '\{', '\}', '\\')") == ["'", "{", "}", "\\"]


def test_escaped_braces_are_not_placeholders() -> None:
    assert run(r"States.Format('\{}')") == "{}"
    assert run(r"States.Format('{\}')") == "{}"
    assert intrinsics.validate(r"States.Format('\{\} {}')") is not None  # one placeholder, no value


@pytest.mark.parametrize(
    "expr",
    [
        r"States.Format('a\nb')",  # only ' { } \ may be escaped
        "States.Format('a\\')",  # open escape at the end
    ],
)
def test_open_escape_is_rejected(expr: str) -> None:
    assert intrinsics.validate(expr) is not None
    fails(expr)


def test_format_from_data_has_no_escapes() -> None:
    assert run("States.Format($.t, 1, 2)", {"t": "{}+{}"}) == "1+2"
    error = fails("States.Format($.t, 1)", {"t": "{}+{}"})
    assert "placeholder" in error.cause


def test_format_renders_values() -> None:
    data = {"o": {"k": [1, True]}, "f": 1.5, "n": None, "b": False, "i": -3}
    assert run("States.Format('{}|{}|{}|{}|{}', $.o, $.f, $.n, $.b, $.i)", data) == (
        "{k=[1, true]}|1.5|null|false|-3"
    )


def test_format_first_argument_must_be_string() -> None:
    assert intrinsics.validate("States.Format(1)") is not None
    fails("States.Format($.x)", {"x": 1})


def test_numbers_and_keywords() -> None:
    assert run("States.Array(0, -1, 2.5, 1e3, -4.5E-1, true, false, null)") == [
        0,
        -1,
        2.5,
        1000.0,
        -0.45,
        True,
        False,
        None,
    ]


def test_whitespace_is_allowed_between_tokens() -> None:
    assert run("  States.Array (  1 ,'a'  ,  States.Array( ) )  ") == [1, "a", []]


def test_path_arguments_may_contain_commas_and_parens() -> None:
    data = {"a,b": 1, "items": [{"p": 1}, {"p": 5}], "x": "y"}
    assert run("States.Array($['a,b'], $.x)", data) == [1, "y"]
    assert run("States.Array($.items[?(@.p > 2)].p, $.x)", data) == [[5], "y"]


def test_context_path_arguments() -> None:
    context = {"Execution": {"Id": "arn:1"}}
    assert run("States.Format('id={}', $$.Execution.Id)", context=context) == "id=arn:1"


def test_missing_path_argument_raises_path_not_found() -> None:
    with pytest.raises(PathNotFound) as info:
        run("States.Array($.missing)", {"x": 1})
    assert info.value.path == "$.missing"


def test_nesting_limit() -> None:
    ten = "States.Array(" * 10 + ")" * 10
    eleven = "States.Array(" * 11 + ")" * 11
    assert intrinsics.validate(ten) is None
    assert run(ten) == [[[[[[[[[[]]]]]]]]]]
    assert intrinsics.validate(eleven) is not None


@pytest.mark.parametrize(
    "expr",
    [
        "States.Nope(1)",
        "States.Array(1",
        "States.Array(1,)",
        "States.Array(,1)",
        "States.Array(1) x",
        "States.Array('unterminated)",
        "States.Array(01)",
        "States.Array(yes)",
        "States.Array($.a b)",
        "States.Array($.a[)",
        "Format('x')",
        "States.Array",
        "",
    ],
)
def test_syntax_errors(expr: str) -> None:
    assert intrinsics.validate(expr) is not None
    fails(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "States.Format()",
        "States.StringToJson()",
        "States.StringToJson('a', 'b')",
        "States.JsonToString()",
        "States.ArrayPartition($.a)",
        "States.ArrayContains($.a)",
        "States.ArrayRange(1, 2)",
        "States.ArrayGetItem($.a)",
        "States.ArrayLength()",
        "States.ArrayUnique($.a, $.b)",
        "States.Base64Encode()",
        "States.Base64Decode('a', 'b')",
        "States.Hash('a')",
        "States.JsonMerge($.a, $.b)",
        "States.MathRandom(1)",
        "States.MathRandom(1, 2, 3, 4)",
        "States.MathAdd(1)",
        "States.StringSplit('a')",
        "States.UUID(1)",
    ],
)
def test_wrong_argument_count(expr: str) -> None:
    problem = intrinsics.validate(expr)
    assert problem is not None and "argument" in problem
    fails(expr)


@pytest.mark.parametrize(
    ("expr", "intrinsic"),
    [
        ("States.Format('x')", True),
        ("  States.UUID()", True),
        ("States.Array ()", True),
        ("$.a", False),
        ("$$.Execution.Id", False),
        ("States", False),
        ("States.Format", False),
        ("hello", False),
    ],
)
def test_is_intrinsic(expr: str, intrinsic: bool) -> None:
    assert intrinsics.is_intrinsic(expr) is intrinsic


# --------------------------------------------------------------------------------------------
# Per-function rules and failures


def test_string_to_json_rejects_invalid_json() -> None:
    fails("States.StringToJson('{nope')")
    fails("States.StringToJson('NaN')")
    fails("States.StringToJson($.x)", {"x": 1})
    assert run("States.StringToJson('[1, 2]')") == [1, 2]
    assert run("States.StringToJson('null')") is None


def test_json_to_string_is_compact_and_keeps_unicode() -> None:
    assert run("States.JsonToString($.x)", {"x": {"a": [1, "é"]}}) == '{"a":[1,"é"]}'
    assert run("States.JsonToString($.x)", {"x": "s"}) == '"s"'


def test_array_partition_rules() -> None:
    assert run("States.ArrayPartition($.a, 2)", {"a": []}) == []
    assert run("States.ArrayPartition($.a, 5)", {"a": [1, 2]}) == [[1, 2]]
    assert run("States.ArrayPartition($.a, 1.5)", {"a": [1, 2, 3]}) == [[1, 2], [3]]  # rounds
    for bad in ("0", "-1", "'2'", "true"):
        fails(f"States.ArrayPartition($.a, {bad})", {"a": [1]})
    fails("States.ArrayPartition($.a, 2)", {"a": "not an array"})


def test_array_contains_compares_json_values() -> None:
    data = {"a": [{"x": [1, 2]}, "s", None, 1.0]}
    assert run("States.ArrayContains($.a, $.v)", {**data, "v": {"x": [1, 2]}}) is True
    assert run("States.ArrayContains($.a, null)", data) is True
    assert run("States.ArrayContains($.a, 1)", data) is True  # 1 == 1.0 as numbers
    assert run("States.ArrayContains($.a, true)", data) is False  # true is not 1
    assert run("States.ArrayContains($.a, 'x')", data) is False
    fails("States.ArrayContains($.a, 1)", {"a": {"not": "array"}})


def test_array_range_rules() -> None:
    assert run("States.ArrayRange(0, 0, 1)") == [0]
    assert run("States.ArrayRange(5, 1, 1)") == []
    assert run("States.ArrayRange(9, 1, -3)") == [9, 6, 3]
    assert run("States.ArrayRange(1.5, 3.4, 1)") == [2, 3]  # rounded like the JVM
    assert run("States.ArrayRange(-1.5, 0, 1)") == [-1, 0]  # Math.round(-1.5) == -1
    assert len(run("States.ArrayRange(1, 1000, 1)")) == 1000
    error = fails("States.ArrayRange(1, 1001, 1)")
    assert "1000" in error.cause
    fails("States.ArrayRange(1, 5, 0)")
    fails("States.ArrayRange('1', 5, 1)")
    fails("States.ArrayRange(1, 5, true)")


def test_array_get_item_rules() -> None:
    data = {"a": ["x", "y"]}
    assert run("States.ArrayGetItem($.a, 1)", data) == "y"
    assert run("States.ArrayGetItem($.a, 1.0)", data) == "y"
    for bad in ("2", "-1", "1.5", "'0'", "true"):
        fails(f"States.ArrayGetItem($.a, {bad})", data)
    fails("States.ArrayGetItem($.s, 0)", {"s": "xy"})


def test_array_length_and_unique_reject_non_arrays() -> None:
    fails("States.ArrayLength($.x)", {"x": "abc"})
    fails("States.ArrayUnique($.x)", {"x": {"a": 1}})


def test_array_unique_keeps_first_occurrences_in_order() -> None:
    data = {"a": [{"k": 1}, 3, {"k": 1}, True, 1, "1", True, [1], [1], None, None]}
    assert run("States.ArrayUnique($.a)", data) == [{"k": 1}, 3, True, 1, "1", [1], None]


def test_base64_rules() -> None:
    assert run("States.Base64Encode('é')") == base64.b64encode("é".encode()).decode()
    fails("States.Base64Encode($.x)", {"x": 1})
    fails("States.Base64Encode($.x)", {"x": "a" * 10_001})
    assert run("States.Base64Encode($.x)", {"x": "a" * 10_000})
    fails("States.Base64Decode('not base64!')")
    fails("States.Base64Decode($.x)", {"x": base64.b64encode(b"\xff\xfe").decode()})  # not UTF-8
    fails("States.Base64Decode($.x)", {"x": "QQ==" * 2_501})


@pytest.mark.parametrize(
    ("algorithm", "hashlib_name"),
    [
        ("MD5", "md5"),
        ("SHA-1", "sha1"),
        ("SHA-256", "sha256"),
        ("SHA-384", "sha384"),
        ("SHA-512", "sha512"),
    ],
)
def test_hash_algorithms(algorithm: str, hashlib_name: str) -> None:
    expected = hashlib.new(hashlib_name, "héllo".encode()).hexdigest()
    assert run(f"States.Hash('héllo', '{algorithm}')") == expected


def test_hash_rules() -> None:
    assert intrinsics.validate("States.Hash('x', 'SHA-999')") is not None
    fails("States.Hash('x', $.alg)", {"alg": "sha256"})  # names are case-sensitive
    fails("States.Hash($.x, 'MD5')", {"x": {"not": "a string"}})
    fails("States.Hash($.x, 'MD5')", {"x": "a" * 10_001})


def test_json_merge_rules() -> None:
    assert intrinsics.validate("States.JsonMerge($.a, $.b, true)") is not None
    fails("States.JsonMerge($.a, $.b, $.deep)", {"a": {}, "b": {}, "deep": True})
    fails("States.JsonMerge($.a, $.b, false)", {"a": [], "b": {}})
    assert run("States.JsonMerge($.a, $.b, false)", {"a": {"x": 1}, "b": {}}) == {"x": 1}


def test_math_random_rules() -> None:
    rng = RecordingRandom()
    assert run("States.MathRandom(1.5, 10)", rng=rng) == 2
    assert rng.ranges == [(2, 10)]
    fails("States.MathRandom(5, 5)")
    fails("States.MathRandom(6, 5)")
    fails("States.MathRandom('1', 5)")


def test_math_random_with_seed_is_deterministic_and_ignores_the_injected_source() -> None:
    rng = RecordingRandom()
    first = run("States.MathRandom(1, 1000, 42)", rng=rng)
    second = run("States.MathRandom(1, 1000, 42)", rng=RecordingRandom(value=999))
    assert first == second
    assert 1 <= first < 1000
    assert rng.ranges == []


def test_math_add_rules() -> None:
    assert run("States.MathAdd(1.5, 1)") == 3  # 1.5 rounds half up
    assert run("States.MathAdd(-1.5, 0)") == -1
    assert run("States.MathAdd(2147483647, -2147483648)") == -1
    fails("States.MathAdd(2147483648, 0)")
    fails("States.MathAdd('1', 2)")
    fails("States.MathAdd(true, 2)")
    fails("States.MathAdd($.x, 2)", {"x": None})


def test_string_split_rules() -> None:
    assert run("States.StringSplit('a,,b,', ',')") == ["a", "b"]  # empty tokens dropped
    assert run("States.StringSplit('', ',')") == []
    assert run("States.StringSplit('abc', '')") == ["abc"]
    assert run("States.StringSplit('a*b]c', '*]')") == ["a", "b", "c"]  # regex chars are literal
    fails("States.StringSplit($.x, ',')", {"x": 5})
    fails("States.StringSplit('a', $.x)", {"x": [","]})


def test_evaluate_does_not_mutate_input() -> None:
    data = {"a": [3, 1, 3], "o": {"k": 1}}
    snapshot = json.dumps(data)
    run("States.ArrayUnique($.a)", data)
    run("States.JsonMerge($.o, $.o, false)", data)
    run("States.ArrayPartition($.a, 1)", data)
    assert json.dumps(data) == snapshot


# --------------------------------------------------------------------------------------------
# Properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(text=st.text(max_size=200))
def test_base64_round_trip(text: str) -> None:
    encoded = run("States.Base64Encode($.t)", {"t": text})
    assert run("States.Base64Decode($.e)", {"e": encoded}) == text


@given(items=st.lists(json_values, max_size=30), size=st.integers(1, 12))
def test_array_partition_concatenates_back_to_the_input(items: list[Any], size: int) -> None:
    chunks = run(f"States.ArrayPartition($.a, {size})", {"a": items})
    assert [item for chunk in chunks for item in chunk] == items
    assert all(len(chunk) == size for chunk in chunks[:-1])
    assert not chunks or 1 <= len(chunks[-1]) <= size


@given(
    start=st.integers(-50, 50),
    end=st.integers(-50, 50),
    step=st.integers(-7, 7).filter(lambda n: n != 0),
)
def test_array_range_matches_an_inclusive_python_range(start: int, end: int, step: int) -> None:
    expected = list(range(start, end + (1 if step > 0 else -1), step))
    assert run(f"States.ArrayRange({start}, {end}, {step})") == expected


@given(value=json_values)
def test_json_to_string_then_string_to_json_round_trips(value: Any) -> None:
    text = run("States.JsonToString($.v)", {"v": value})
    assert run("States.StringToJson($.t)", {"t": text}) == value


@given(items=st.lists(json_values, max_size=10))
def test_array_unique_is_idempotent_and_contains_everything(items: list[Any]) -> None:
    unique = run("States.ArrayUnique($.a)", {"a": items})
    assert run("States.ArrayUnique($.a)", {"a": unique}) == unique
    for item in items:
        assert run("States.ArrayContains($.u, $.i)", {"u": unique, "i": item}) is True
    assert run("States.ArrayLength($.u)", {"u": unique}) <= len(items)


@given(text=st.text(max_size=40))
def test_escaped_literal_round_trips_through_format(text: str) -> None:
    assert run(f"States.Format({escape(text)})") == text


@given(values=st.lists(st.text(alphabet="abc xyz", max_size=5), max_size=5))
def test_format_fills_placeholders_in_order(values: list[str]) -> None:
    template = "-".join("{}" for _ in values)
    args = "".join(f", {escape(v)}" for v in values)
    assert run(f"States.Format('{template}'{args})") == "-".join(values)


@given(a=st.integers(-(2**31), 2**31 - 1), b=st.integers(-(2**31), 2**31 - 1))
def test_math_add_adds(a: int, b: int) -> None:
    assert run(f"States.MathAdd({a}, {b})") == a + b


@given(low=st.integers(-1000, 1000), span=st.integers(1, 1000), seed=st.integers(0, 2**31))
def test_seeded_math_random_stays_in_range(low: int, span: int, seed: int) -> None:
    assert low <= run(f"States.MathRandom({low}, {low + span}, {seed})") < low + span
