"""Unit and property tests for bridge.asl.jsonata (JSONata as ASL's second query language).

Examples marked "AWS guide" are from the AWS Step Functions developer guide pages "Transforming
data with JSONata in Step Functions" and "Passing data between states with variables".
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.asl import errors
from bridge.asl import jsonata as jn
from bridge.asl.errors import StatesError
from bridge.asl.jsonata import UNDEFINED


class RecordingRandom:
    """An IntrinsicContext that returns fixed values and records what it was asked."""

    def __init__(self, value: int | None = None) -> None:
        self.value = value
        self.ranges: list[tuple[int, int]] = []
        self.uuids = 0

    def random_int(self, low: int, high: int) -> int:
        self.ranges.append((low, high))
        return low if self.value is None else min(self.value, high - 1)

    def uuid4(self) -> str:
        self.uuids += 1
        return "9a2b8c1d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


ENTERED = "2024-11-22T10:00:01.5Z"
ENTERED_MILLIS = 1732269601500


def states(state_input: Any = None, context: Any = None, **variables: Any) -> dict[str, Any]:
    context = {"State": {"EnteredTime": ENTERED, "Name": "S"}} if context is None else context
    return {"states": {"input": state_input, "context": context}, **variables}


def run(expression: str, bindings: dict[str, Any] | None = None, rng: Any = None) -> Any:
    return jn.evaluate(
        expression, states() if bindings is None else bindings, rng or RecordingRandom()
    )


def failure(expression: str, bindings: dict[str, Any] | None = None) -> StatesError:
    with pytest.raises(StatesError) as caught:
        run(expression, bindings)
    return caught.value


# --------------------------------------------------------------------------------------------
# Expression strings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{% $x %}", True),
        ("{%$x%}", True),
        ("{%%}", True),
        (" {% $x %}", False),  # AWS: no leading space
        ("{% $x %} ", False),  # AWS: no trailing space
        ("{% $x", False),
        ("$x %}", False),
        ("{%}", False),
        ("$.x", False),
        (42, False),
        (None, False),
        (["{% $x %}"], False),
    ],
)
def test_is_expression_needs_both_delimiters_at_the_ends(value: object, expected: bool) -> None:
    assert jn.is_expression(value) is expected


def test_evaluate_accepts_the_delimited_string_or_the_inner_text() -> None:
    assert run("{% 1 + 2 %}") == 3
    assert run("1 + 2") == 3
    assert run("{%1+2%}") == 3


# --------------------------------------------------------------------------------------------
# AWS guide examples


def test_guide_arguments_conversion_example() -> None:
    template = {
        "static": "Hello",
        "title": "{% $states.input.title %}",
        "name": "{% $customerName %}",
        "not-evaluated": "$customerName",
    }
    bindings = states({"title": "Doctor"}, customerName="María")

    assert jn.evaluate_template(template, bindings, RecordingRandom()) == {
        "static": "Hello",
        "title": "Doctor",
        "name": "María",
        "not-evaluated": "$customerName",
    }


def test_guide_input_and_output_example() -> None:
    output = {
        "lastName": "{% 'Last=>' & $states.input.customer.lastName %}",
        "orderValue": "{% $states.input.order.total %}",
    }
    state_input = {
        "customer": {"firstName": "Martha", "lastName": "Rivera"},
        "order": {"items": 7, "total": 27.91},
    }

    assert jn.evaluate_template(output, states(state_input), RecordingRandom()) == {
        "lastName": "Last=>Rivera",
        "orderValue": 27.91,
    }


def test_guide_filter_example() -> None:
    output = {"dietProducts": "{% $states.input.products[calories=0] %}"}
    state_input = {
        "products": [
            {"name": "water", "calories": 0},
            {"name": "cola", "calories": 140},
            {"name": "diet cola", "calories": 0},
        ]
    }

    assert jn.evaluate_template(output, states(state_input), RecordingRandom()) == {
        "dietProducts": [{"name": "water", "calories": 0}, {"name": "diet cola", "calories": 0}]
    }


def test_guide_assign_uses_the_values_on_state_entry() -> None:
    # "Starting values: $x=3, $a=6 ... Ending values: $x=6, $nextX=3"
    assign = {"x": "{% $a %}", "nextX": "{% $x %}"}

    result = jn.evaluate_template(assign, states(x=3, a=6), RecordingRandom())

    assert result == {"x": 6, "nextX": 3}


def test_guide_map_item_selector_reads_the_context_object() -> None:
    item_selector = {
        "ContextIndex": "{% $states.context.Map.Item.Index %}",
        "ContextValue": "{% $states.context.Map.Item.Value %}",
    }
    context = {"Map": {"Item": {"Index": 2, "Value": {"id": "c"}}}}

    result = jn.evaluate_template(item_selector, states({}, context), RecordingRandom())

    assert result == {"ContextIndex": 2, "ContextValue": {"id": "c"}}


def test_a_whole_field_can_be_one_expression_or_a_plain_value() -> None:
    bindings = states({"a": [1, 2]}, result={"ok": True})
    rng = RecordingRandom()

    assert jn.evaluate_template("{% $states.input.a %}", bindings, rng) == [1, 2]
    assert jn.evaluate_template(42, bindings, rng) == 42
    assert jn.evaluate_template(True, bindings, rng) is True
    assert jn.evaluate_template(None, bindings, rng) is None


def test_expressions_are_evaluated_inside_arrays_at_any_depth() -> None:
    # AWS guide: "Items": [1, "{% $two %}", 3]
    template = {"Items": [1, "{% $two %}", 3], "deep": {"a": [{"b": "{% $two * 2 %}"}]}}

    result = jn.evaluate_template(template, states(two=2), RecordingRandom())

    assert result == {"Items": [1, 2, 3], "deep": {"a": [{"b": 4}]}}


def test_results_and_error_output_are_read_from_states() -> None:
    bindings = {
        "states": {
            "input": {"id": 1},
            "result": {"Payload": {"price": 9}},
            "errorOutput": {"Error": "E", "Cause": "c"},
        }
    }
    template = {
        "price": "{% $states.result.Payload.price %}",
        "error": "{% $states.errorOutput.Error %}",
        "both": "{% $merge([$states.input, {'price': $states.result.Payload.price}]) %}",
    }

    assert jn.evaluate_template(template, bindings, RecordingRandom()) == {
        "price": 9,
        "error": "E",
        "both": {"id": 1, "price": 9},
    }


def test_there_is_no_context_item() -> None:
    # AWS has no context item: `$` and bare names read nothing.
    assert run("$", states({"a": 1})) is UNDEFINED
    assert run("a", states({"a": 1})) is UNDEFINED


# --------------------------------------------------------------------------------------------
# JSON null and undefined


def test_json_null_is_a_value() -> None:
    bindings = states({"bar": None, "list": [None, 1]})

    assert run("$states.input.bar", bindings) is None
    assert run("$exists($states.input.bar)", bindings) is True
    assert run("$type($states.input.bar)", bindings) == "null"
    assert run("$states.input.list", bindings) == [None, 1]
    assert jn.evaluate_template({"v": "{% $states.input.bar %}"}, bindings, RecordingRandom()) == {
        "v": None
    }


def test_evaluate_returns_undefined_for_nothing() -> None:
    assert run("$states.input.absent", states({})) is UNDEFINED
    assert run("$nope") is UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"


def test_an_undefined_field_fails_naming_the_field_as_aws_does() -> None:
    template = {"Input": {"x": [1, "{% $states.input.missing %}"]}}

    with pytest.raises(StatesError) as caught:
        jn.evaluate_template(template, states({}), RecordingRandom(), field="Arguments")

    assert caught.value.error == errors.QUERY_EVALUATION_ERROR
    assert caught.value.cause == (
        "The JSONata expression '$states.input.missing' specified for the field "
        "'Arguments/Input/x[1]' returned nothing (undefined)."
    )


def test_an_undefined_top_level_field_fails_too() -> None:
    with pytest.raises(StatesError) as caught:
        jn.evaluate_template(
            "{% $states.input.absent %}", states({}), RecordingRandom(), field="Output"
        )

    assert caught.value.error == errors.QUERY_EVALUATION_ERROR
    assert "for the field 'Output' returned nothing (undefined)" in caught.value.cause


def test_an_undefined_member_of_a_jsonata_object_is_left_out() -> None:
    # Inside one expression JSONata's own rules apply: undefined members are omitted.
    assert run("{'a': $nope, 'b': null, 'c': [1, $nope]}") == {"b": None, "c": [1]}


# --------------------------------------------------------------------------------------------
# Functions Step Functions adds


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$partition([1,2,3,4], 2)", [[1, 2], [3, 4]]),
        ("$partition([1,2,3,4,5,6,7,8,9], 3)", [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
        ("$partition([1,2,3,4,5], 2)", [[1, 2], [3, 4], [5]]),
        ("$partition([1,2,3], 5)", [[1, 2, 3]]),
        ("$partition([1,2,3,4,5], 2.9)", [[1, 2], [3, 4], [5]]),
        ("$partition('a', 1)", [["a"]]),
        ("$partition($states.input.items, $states.input.size)", [[{"a": 1}], [None]]),
    ],
)
def test_partition(expression: str, expected: Any) -> None:
    assert run(expression, states({"items": [{"a": 1}, None], "size": 1})) == expected


@pytest.mark.parametrize(
    "expression", ["$partition([1,2], 0)", "$partition([1,2], -1)", "$partition([], 2)"]
)
def test_partition_without_chunks_is_undefined(expression: str) -> None:
    assert run(expression) is UNDEFINED


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$range(0, 10, 2)", [0, 2, 4, 6, 8, 10]),
        ("$range(1, 9, 2)", [1, 3, 5, 7, 9]),
        ("$range(1, 10, 4)", [1, 5, 9]),
        ("$range(10, 0, -5)", [10, 5, 0]),
        ("$range(-1.7, 2, 1)", [-1, 0, 1, 2]),
        ("$range(0, 3, 1.9)", [0, 1, 2, 3]),
        ("$range(4, 4, 1)", 4),
    ],
)
def test_range(expression: str, expected: Any) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(
    "expression", ["$range(0, 10)", "$range(0, 10, 0)", "$range(0, 10, -1)", "$range(5, 1, 1)"]
)
def test_range_without_a_usable_step_is_undefined(expression: str) -> None:
    assert run(expression) is UNDEFINED


@pytest.mark.parametrize(
    ("algorithm", "python_name"),
    [
        ("MD5", "md5"),
        ("SHA-1", "sha1"),
        ("SHA-256", "sha256"),
        ("SHA-384", "sha384"),
        ("SHA-512", "sha512"),
    ],
)
def test_hash(algorithm: str, python_name: str) -> None:
    bindings = states({"content": "input data ü"}, algorithm=algorithm)

    result = run("$hash($states.input.content, $algorithm)", bindings)

    assert result == hashlib.new(python_name, "input data ü".encode()).hexdigest()


def test_hash_algorithm_names_are_case_sensitive() -> None:
    error = failure("$hash('x', 'sha-256')")

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert "'sha-256'" in error.cause and "SHA-256" in error.cause


def test_hash_without_an_algorithm_is_undefined() -> None:
    assert run("$hash('x')") is UNDEFINED


def test_hash_of_a_number_is_a_type_error() -> None:
    assert failure("$hash(1, 'MD5')").error == errors.QUERY_EVALUATION_ERROR


def test_random_without_a_seed_uses_the_injected_source() -> None:
    rng = RecordingRandom(value=2**52)

    assert run("$random()", rng=rng) == 0.5
    assert rng.ranges == [(0, 2**53)]


def test_random_with_a_seed_depends_on_the_seed_alone() -> None:
    first, second = RecordingRandom(value=1), RecordingRandom(value=7)

    a = run("$random(42)", rng=first)
    b = run("$random($states.input.seed)", states({"seed": 42.9}), rng=second)

    assert a == b
    assert 0 <= a < 1
    assert first.ranges == second.ranges == []
    assert run("$random(43)") != a


def test_uuid_comes_from_the_injected_source() -> None:
    rng = RecordingRandom()

    assert run("$uuid()", rng=rng) == "9a2b8c1d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    assert rng.uuids == 1


def test_parse() -> None:
    bindings = states({"json_string": '{"a": null, "b": [1, 2.5, "x"], "c": {"d": true}}'})

    assert run("$parse($states.input.json_string)", bindings) == {
        "a": None,
        "b": [1, 2.5, "x"],
        "c": {"d": True},
    }
    assert run("$parse($states.input.json_string).c.d", bindings) is True
    assert run("$parse('null')") is None
    assert run("$parse('[1]')") == [1]


@pytest.mark.parametrize("text", ["{", "NaN", "[1,]", "'a'"])
def test_parse_of_bad_json_fails(text: str) -> None:
    error = failure("$parse($s)", states(s=text))

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert "$parse" in error.cause


def test_eval_is_not_supported() -> None:
    error = failure("$eval('1 + 1')")

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert "$parse" in error.cause


def test_now_and_millis_are_the_state_entry_time() -> None:
    assert run("$millis()") == ENTERED_MILLIS
    assert run("$now()") == "2024-11-22T10:00:01.500Z"
    assert run("$now('[Y0001]-[M01]-[D01]')") == "2024-11-22"
    assert run("$toMillis($now()) = $millis()") is True


def test_now_falls_back_to_the_execution_start_time() -> None:
    context = {"Execution": {"StartTime": "2024-01-02T03:04:05Z"}}

    assert run("$now()", states({}, context)) == "2024-01-02T03:04:05.000Z"


def test_now_without_a_time_in_the_context_fails() -> None:
    error = failure("$now()", {"states": {"input": {}}})

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert "EnteredTime" in error.cause


def test_shuffle_uses_the_injected_source() -> None:
    rng = RecordingRandom()  # always 0: a fixed permutation

    first = run("$shuffle([1, 2, 3, 4])", rng=rng)

    assert sorted(first) == [1, 2, 3, 4]
    assert rng.ranges == [(0, 4), (0, 3), (0, 2)]
    assert run("$shuffle([1, 2, 3, 4])") == first


def test_a_workflow_variable_is_bound_by_name() -> None:
    bindings = states({}, price=3, items=[{"n": 2}, {"n": 5}])

    assert run("$price * $sum($items.n)", bindings) == 21


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("expression", ["1 +", "a[1,2)", "$x.", "'unterminated", "{%  %}"])
def test_validate_reports_bad_syntax(expression: str) -> None:
    problem = jn.validate(expression)

    assert problem is not None
    assert problem


@pytest.mark.parametrize(
    "expression", ["$states.input.a", "{% $x + 1 %}", "$partition([1], 1)", "($a := 1; $a)"]
)
def test_validate_accepts_good_expressions(expression: str) -> None:
    assert jn.validate(expression) is None


def test_validate_names_the_library_error() -> None:
    assert jn.validate("a[1,2)") == "Expected ], got , (JSONata error S0202 at character 4)"


def test_validate_template_names_each_bad_field() -> None:
    template = {
        "a": ["{% 1 + %}", "{% ok", " {% 1 + %}", "fine"],
        "b": {"c": "{% $x %}", "d": "{%%}"},
        "e": 3,
    }

    problems = jn.validate_template(template, "States.Pass.Output")

    assert len(problems) == 3
    assert problems[0].startswith("States.Pass.Output/a[0]: invalid JSONata expression")
    assert problems[1].startswith("States.Pass.Output/a[1]: ")
    assert "does not end with '%}'" in problems[1]
    assert problems[2].startswith("States.Pass.Output/b/d: ")
    assert jn.validate_template("{% $x %}", "Output") == []
    assert jn.validate_template("{% ( %}", "Output")[0].startswith("Output: ")


def test_a_syntax_error_at_run_time_is_a_query_evaluation_error() -> None:
    error = failure("{% 1 + %}")

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert error.cause.startswith("The JSONata expression '1 +' is invalid: ")


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("'a' + 1", "must evaluate to a number"),  # AWS guide: type error
        ("$states.input.s + 1", "must evaluate to a number"),
        ("$unknown()", "non-function"),
        ("$partition('a', 'b')", "does not match function signature"),
        ("1 / 0", "division by zero"),
        ("$error('boom')", "boom"),
        ("function($x) { $x }", "returned an unsupported result type."),
    ],
)
def test_runtime_errors_are_query_evaluation_errors(expression: str, fragment: str) -> None:
    error = failure(expression, states({"s": "text"}))

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert fragment in error.cause
    assert error.cause.startswith(f"The JSONata expression '{expression}'")


def test_a_runtime_error_names_its_field() -> None:
    with pytest.raises(StatesError) as caught:
        jn.evaluate_template({"a": "{% 'a' + 1 %}"}, states(), RecordingRandom(), field="Output")

    assert (
        "specified for the field 'Output/a' threw an error during evaluation. T2001: "
        in caught.value.cause
    )


# --------------------------------------------------------------------------------------------
# Bounds


def test_deep_nesting_is_a_stack_overflow() -> None:
    assert run("+".join(["1"] * 100)) == 100  # AWS accepts 100 terms ...

    error = failure("+".join(["1"] * 101))  # ... and refuses 101

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert "Stack overflow" in error.cause


def test_unbounded_recursion_is_a_stack_overflow() -> None:
    error = failure("($f := function($n) { 1 + $f($n + 1) }; $f(1))")

    assert "Stack overflow" in error.cause


def test_an_endless_loop_runs_out_of_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jn, "MAX_STEPS", 2_000)

    # A tail call: it loops without nesting, so only the step budget ends it.
    error = failure("($f := function($n) { $f($n + 1) }; $f(1))")

    assert error.error == errors.QUERY_EVALUATION_ERROR
    assert "timeout" in error.cause
    assert run("$sum($map([1..100], function($v) { $v }))") == 5050


def test_building_too_much_is_a_memory_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jn, "MAX_BUILT", 10_000)

    for expression in [
        "[1..20000]",
        "($s := 'xxxxxxxxxx'; $s := $s & $s; $s := $s & $s; $s := $s & $s; $s := $s & $s;"
        " $s := $s & $s; $s := $s & $s; $s := $s & $s; $s := $s & $s; $s := $s & $s; $s)",
        "$pad('x', 50000)",
        "$range(1, 20000, 1)",
        "$string([[[1..4000], [1..4000]], [[1..4000]]])",
        "true and $pad('x', 50000)",
    ]:
        error = failure(expression)
        assert error.error == errors.QUERY_EVALUATION_ERROR, expression
        assert "memory limit exceeded" in error.cause, expression


def test_values_read_from_the_bindings_cost_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jn, "MAX_BUILT", 1_000)
    text = "y" * 5_000

    assert run("$map([1, 2, 3], function($v) { $contains($text, 'y') })", states(text=text)) == [
        True,
        True,
        True,
    ]


def test_a_result_over_256_kib_exceeds_the_data_limit() -> None:
    error = failure("$pad('', 300000, 'x')")

    assert error.error == errors.DATA_LIMIT_EXCEEDED
    assert run("$length($pad('', 300000, 'x'))") == 300000


def test_a_template_over_256_kib_exceeds_the_data_limit() -> None:
    big = "x" * (100 * 1024)
    template = {"a": "{% $big %}", "b": "{% $big %}", "c": big}

    with pytest.raises(StatesError) as caught:
        jn.evaluate_template(template, states(big=big), RecordingRandom(), field="Output")

    assert caught.value.error == errors.DATA_LIMIT_EXCEEDED
    assert "'Output'" in caught.value.cause


def test_the_size_limit_counts_utf8_bytes() -> None:
    text = "é" * (130 * 1024)  # 130 Ki characters, 260 KiB in UTF-8

    assert failure("$t", states(t=text)).error == errors.DATA_LIMIT_EXCEEDED


# --------------------------------------------------------------------------------------------
# Purity


@pytest.mark.parametrize(
    "expression",
    [
        "$states.input ~> |items|{'touched': true}|",
        "$sort($states.input.items, function($a, $b) { $a.n < $b.n })",
        "$shuffle($states.input.items)",
        "$merge([$states.input, {'extra': 1}])",
        "$append($states.input.items, $states.input.items)",
        "$reverse($states.input.items)",
        "$states.input.items{ $string(n): $ }",
        "$sift($states.input, function($v) { true })",
        "$spread($states.input)",
    ],
)
def test_bindings_are_never_modified(expression: str) -> None:
    bindings = states({"items": [{"n": 2}, {"n": 1, "z": None}], "flag": None}, v=[1, {"a": None}])
    before = copy.deepcopy(bindings)

    run(expression, bindings)

    assert bindings == before


def test_a_result_does_not_share_structure_with_the_bindings() -> None:
    bindings = states({"items": [{"n": 1}]})

    result = run("$states.input", bindings)
    result["items"][0]["n"] = 99

    assert bindings["states"]["input"] == {"items": [{"n": 1}]}


def test_parsed_expressions_are_cached() -> None:
    expression = "$states.input.cache_probe_7 + 1"
    before = jn._compile.cache_info().hits

    run(expression, states({"cache_probe_7": 1}))
    run(expression, states({"cache_probe_7": 2}))

    assert jn._compile.cache_info().hits > before


# --------------------------------------------------------------------------------------------
# Properties

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith("{%")
    if isinstance(value, list):
        return any(_has_expression(item) for item in value)
    if isinstance(value, dict):
        return any(_has_expression(item) for item in value.values())
    return False


@given(JSON_VALUES.filter(lambda value: not _has_expression(value)))
def test_a_template_without_expressions_is_copied_unchanged(template: Any) -> None:
    rng = RecordingRandom()

    result = jn.evaluate_template(template, states(), rng)

    assert result == template
    assert json.dumps(result, sort_keys=True) == json.dumps(template, sort_keys=True)
    if isinstance(template, dict | list) and template:
        assert result is not template
    assert rng.ranges == []
    assert jn.validate_template(template, "Output") == []


@settings(max_examples=60)
@given(JSON_VALUES)
def test_a_variable_evaluates_to_its_own_value(value: Any) -> None:
    bindings = {"v": value}
    before = copy.deepcopy(bindings)

    result = jn.evaluate("{% $v %}", bindings, RecordingRandom())

    # Equal as JSON: whole floats come back as integers, as JavaScript writes them.
    assert result == value
    assert bindings == before


@given(st.lists(st.integers(min_value=-50, max_value=50), max_size=30), st.integers(1, 8))
def test_partition_concatenates_back_to_the_array(items: list[int], size: int) -> None:
    result = run("$partition($items, $size)", states(items=items, size=size))

    if not items:
        assert result is UNDEFINED
        return
    assert [item for chunk in result for item in chunk] == items
    assert all(len(chunk) == size for chunk in result[:-1])
    assert 1 <= len(result[-1]) <= size
