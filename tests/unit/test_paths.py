"""Unit and property tests for bridge.asl.paths (ASL JSONPath, ResultPath, payload templates)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bridge.asl import errors, paths, templates
from bridge.asl.errors import StatesError
from bridge.asl.paths import PathNotFound


class FixedRandom:
    """A deterministic IntrinsicContext."""

    def random_int(self, low: int, high: int) -> int:
        return low

    def uuid4(self) -> str:
        return "00000000-0000-4000-8000-000000000000"


RNG = FixedRandom()

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
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=5)


def quoted(name: str) -> str:
    """Bracket notation for any field name."""
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


# --------------------------------------------------------------------------------------------
# read_path: definite paths

DOC = {
    "a": {"b": [1, 2, {"c d": 3}], "e": None},
    "abc": {"def ghi": 7},
    "ä": "umlaut",
    "detail-type": "OrderPlaced",
    "it's": 1,
    "back\\slash": 2,
    "items": [{"price": 5, "name": "x"}, {"price": 15, "name": "y"}, {"price": 25}],
}
CONTEXT = {"Execution": {"Id": "arn:exec:1", "Input": {"k": "v"}}, "State": {"Name": "S"}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DOC),
        ("$.a.b", [1, 2, {"c d": 3}]),
        ("$.a.b[0]", 1),
        ("$.a.b[-1]", {"c d": 3}),
        ("$.a.b[2]['c d']", 3),
        ('$.a.b[2]["c d"]', 3),
        ("$['abc']['def ghi']", 7),
        ("$.abc['def ghi']", 7),
        ("$.abc.['def ghi']", 7),  # Jayway's dot-before-bracket form
        ("$.ä", "umlaut"),
        ("$.detail-type", "OrderPlaced"),
        ("$['it\\'s']", 1),
        ("$['back\\\\slash']", 2),
        ("$.a.e", None),  # present with a null value is not "missing"
        ("$[ 'a' ].b[ 1 ]", 2),
    ],
)
def test_read_definite(path: str, expected: Any) -> None:
    assert paths.read_path(path, DOC, CONTEXT) == expected


@pytest.mark.parametrize(
    "path",
    [
        "$.missing",
        "$.a.missing",
        "$.a.b[3]",
        "$.a.b[-4]",
        "$.a.b.x",  # a field of an array
        "$.a[0]",  # an index of an object
        "$.a.e.x",  # a field of null
        "$.ä.x",  # a field of a string
    ],
)
def test_read_definite_missing_raises_path_not_found(path: str) -> None:
    with pytest.raises(PathNotFound) as info:
        paths.read_path(path, DOC, CONTEXT)
    assert info.value.path == path


def test_read_context_object() -> None:
    assert paths.read_path("$$", DOC, CONTEXT) == CONTEXT
    assert paths.read_path("$$.Execution.Id", DOC, CONTEXT) == "arn:exec:1"
    assert paths.read_path("$$.Execution.Input.k", DOC, CONTEXT) == "v"
    with pytest.raises(PathNotFound) as info:
        paths.read_path("$$.Execution.Nope", DOC, CONTEXT)
    assert info.value.path == "$$.Execution.Nope"


def test_read_scalar_root() -> None:
    assert paths.read_path("$", "just a string", {}) == "just a string"
    with pytest.raises(PathNotFound):
        paths.read_path("$.x", "just a string", {})


def test_read_array_root() -> None:
    assert paths.read_path("$[1]", [10, 20], {}) == 20


def test_read_invalid_syntax_raises_value_error() -> None:
    with pytest.raises(ValueError):
        paths.read_path("$.a b", DOC, CONTEXT)
    with pytest.raises(ValueError):
        paths.read_path("a.b", DOC, CONTEXT)


# --------------------------------------------------------------------------------------------
# read_path: indefinite paths always give lists


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.items[*].price", [5, 15, 25]),
        ("$.items[*].name", ["x", "y"]),
        ("$..price", [5, 15, 25]),
        ("$.items[0:2].price", [5, 15]),
        ("$.items[1:].price", [15, 25]),
        ("$.items[-1:].price", [25]),
        ("$.items[0,2].price", [5, 25]),
        ("$.items[?(@.price > 10)].price", [15, 25]),
        ("$.items[?(@.name == 'y')].price", [15]),
        ("$.items[?(@.price > 100)]", []),
        ("$.abc.*", [7]),
        ("$.abc[*]", [7]),
        ("$.nothing[*]", []),
        ("$['abc','nope']", [{"def ghi": 7}]),
        ("$..['def ghi']", [7]),
    ],
)
def test_read_indefinite(path: str, expected: list[Any]) -> None:
    assert paths.read_path(path, DOC, CONTEXT) == expected


def test_read_indefinite_on_context() -> None:
    assert paths.read_path("$$.Execution.*", DOC, CONTEXT) == ["arn:exec:1", {"k": "v"}]


@pytest.mark.parametrize(
    ("path", "definite"),
    [
        ("$", True),
        ("$$", True),
        ("$.a.b[0]", True),
        ("$.a[-1]", True),
        ("$['a b'].c", True),
        ("$$.Execution.Id", True),
        ("$.a[*]", False),
        ("$.*", False),
        ("$..a", False),
        ("$.a[1:2]", False),
        ("$.a[0,1]", False),
        ("$['a','b']", False),
        ("$.a[?(@.x == 1)]", False),
    ],
)
def test_is_definite(path: str, definite: bool) -> None:
    assert paths.is_definite(path) is definite


# --------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "path",
    [
        "$",
        "$$",
        "$.a",
        "$.a.b[12]",
        "$['a b']",
        "$.a['b c'].d",
        "$.abc.['def ghi']",
        "$..x",
        "$.a[*].b",
        "$.a[1:3]",
        "$.a[::2]",
        "$.a[?(@.price > 10)]",
        "$$.Map.Item.Value",
        "$.detail-type",
    ],
)
def test_validate_path_accepts(path: str) -> None:
    assert paths.validate_path(path) is None


@pytest.mark.parametrize(
    "path",
    [
        "",
        "a",
        "$a b",
        "$.",
        "$..",
        "$.a b",
        "$[",
        "$.a]",
        "$[]",
        "$.a[x]",
        "$.a[?x]",
        "$$$",
        "$.a(",
        "$.a.length()",
    ],
)
def test_validate_path_rejects(path: str) -> None:
    problem = paths.validate_path(path)
    assert problem is not None and problem


def test_validate_path_rejects_non_string() -> None:
    assert paths.validate_path(42) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["$", "$.a", "$.a.b[0]", "$['a b']"])
def test_validate_reference_path_accepts(path: str) -> None:
    assert paths.validate_reference_path(path) is None


@pytest.mark.parametrize(
    "path", ["$$.Execution", "$.a[*]", "$..a", "$.a[1:2]", "$.a[?(@.b)]", "$['a','b']", "$.a b"]
)
def test_validate_reference_path_rejects(path: str) -> None:
    assert paths.validate_reference_path(path) is not None


def test_validate_reference_path_context_when_allowed() -> None:
    assert paths.validate_reference_path("$$.Map.Item", allow_context=True) is None


# --------------------------------------------------------------------------------------------
# put_result (ResultPath)

TASK_INPUT = {
    "comment": "This is a test of the input and output of a Task state.",
    "details": "Default example",
    "who": "AWS Step Functions",
}
TASK_RESULT = "Hello, AWS Step Functions!"


def test_result_path_doc_example_adds_field() -> None:
    assert paths.put_result(TASK_INPUT, "$.taskresult", TASK_RESULT) == {
        **TASK_INPUT,
        "taskresult": TASK_RESULT,
    }


def test_result_path_doc_example_nested_creation() -> None:
    data = {"strings": {"string1": "foo"}}
    assert paths.put_result(data, "$.strings.lambdaresult", "bar") == {
        "strings": {"string1": "foo", "lambdaresult": "bar"}
    }
    assert paths.put_result({}, "$.a.b.c", 1) == {"a": {"b": {"c": 1}}}


def test_result_path_dollar_replaces_and_null_discards() -> None:
    assert paths.put_result(TASK_INPUT, "$", TASK_RESULT) == TASK_RESULT
    assert paths.put_result(TASK_INPUT, None, TASK_RESULT) == TASK_INPUT


def test_result_path_overwrites_existing_field() -> None:
    assert paths.put_result({"a": {"b": 1, "c": 2}}, "$.a.b", [9]) == {"a": {"b": [9], "c": 2}}


def test_result_path_into_array_element() -> None:
    assert paths.put_result({"a": [1, {"x": 0}]}, "$.a[1].y", 2) == {"a": [1, {"x": 0, "y": 2}]}
    assert paths.put_result({"a": [1, 2]}, "$.a[-1]", 3) == {"a": [1, 3]}


def test_result_path_quoted_names() -> None:
    assert paths.put_result({}, "$['a b']['c.d']", 1) == {"a b": {"c.d": 1}}


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"a": "text"}, "$.a.b"),
        ({"a": [1, 2]}, "$.a.b"),
        ({"a": None}, "$.a.b"),
        ({"a": 5}, "$.a.b.c"),
        ("a string input", "$.x"),
        ({"a": [1]}, "$.a[3]"),
        ({}, "$.a[0]"),  # arrays are never created
        ({"a": {}}, "$.a[0]"),
    ],
)
def test_result_path_match_failure(data: Any, path: str) -> None:
    before = copy.deepcopy(data)
    with pytest.raises(StatesError) as info:
        paths.put_result(data, path, 1)
    assert info.value.error == errors.RESULT_PATH_MATCH_FAILURE
    assert path in info.value.cause
    assert data == before


@pytest.mark.parametrize("path", ["$$.Execution", "$.a[*]", "$..a", "nope", "$.a[?(@.x)]"])
def test_result_path_rejects_non_reference_paths(path: str) -> None:
    with pytest.raises(ValueError):
        paths.put_result({}, path, 1)


def test_put_result_shares_nothing_it_changed() -> None:
    data = {"a": {"b": 1}, "keep": {"k": 1}}
    out = paths.put_result(data, "$.a.c", 2)
    assert data == {"a": {"b": 1}, "keep": {"k": 1}}
    assert out["a"] is not data["a"]


# --------------------------------------------------------------------------------------------
# apply_template (Parameters / ResultSelector / ItemSelector)

PRODUCT_INPUT = {
    "comment": "Example for Parameters.",
    "product": {
        "details": {"color": "blue", "size": "small", "material": "cotton"},
        "availability": "in stock",
        "sku": "2317",
        "cost": "$23",
    },
}


def test_template_doc_example() -> None:
    template = {
        "comment": "Selecting what I care about.",
        "MyDetails": {
            "size.$": "$.product.details.size",
            "exists.$": "$.product.availability",
            "StaticValue": "foo",
        },
    }
    assert templates.apply_template(template, PRODUCT_INPUT, {}, intrinsics=RNG) == {
        "comment": "Selecting what I care about.",
        "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"},
    }


def test_template_context_paths() -> None:
    template = {"execution.$": "$$.Execution.Id", "whole.$": "$$", "input.$": "$"}
    assert templates.apply_template(template, {"x": 1}, CONTEXT, intrinsics=RNG) == {
        "execution": "arn:exec:1",
        "whole": CONTEXT,
        "input": {"x": 1},
    }


def test_template_intrinsics_and_lists() -> None:
    template = {
        "greeting.$": "States.Format('Hello, {}!', $.who)",
        "ids": [{"id.$": "States.UUID()"}, "literal", 3, None],
        "list.$": "$.items[*].price",
    }
    data = {"who": "Ada", "items": [{"price": 1}, {"price": 2}]}
    assert templates.apply_template(template, data, {}, intrinsics=RNG) == {
        "greeting": "Hello, Ada!",
        "ids": [{"id": RNG.uuid4()}, "literal", 3, None],
        "list": [1, 2],
    }


def test_template_plain_strings_that_look_like_paths_are_literal() -> None:
    template = {"a": "$.x", "b": "States.UUID()"}
    assert templates.apply_template(template, {"x": 1}, {}, intrinsics=RNG) == template


def test_template_missing_path_is_parameter_path_failure() -> None:
    with pytest.raises(StatesError) as info:
        templates.apply_template({"x.$": "$.x"}, {"y": 1}, {}, intrinsics=RNG)
    assert info.value.error == errors.PARAMETER_PATH_FAILURE
    assert info.value.cause == (
        "The JSONPath '$.x' specified for the field 'x.$' could not be found in the input "
        "'{\"y\":1}'"
    )


def test_template_missing_context_path_names_the_context_object() -> None:
    with pytest.raises(StatesError) as info:
        templates.apply_template({"t.$": "$$.Task.Token"}, {}, CONTEXT, intrinsics=RNG)
    assert info.value.error == errors.PARAMETER_PATH_FAILURE
    assert "'$$.Task.Token'" in info.value.cause
    assert "context object" in info.value.cause


def test_template_missing_path_inside_intrinsic_names_the_field() -> None:
    with pytest.raises(StatesError) as info:
        templates.apply_template({"g.$": "States.Format('{}', $.nope)"}, {}, {}, intrinsics=RNG)
    assert info.value.error == errors.PARAMETER_PATH_FAILURE
    assert "'$.nope'" in info.value.cause and "'g.$'" in info.value.cause


def test_template_intrinsic_failure_passes_through() -> None:
    with pytest.raises(StatesError) as info:
        templates.apply_template(
            {"x.$": "States.ArrayLength($.s)"}, {"s": "no"}, {}, intrinsics=RNG
        )
    assert info.value.error == errors.INTRINSIC_FAILURE


def test_template_dynamic_value_must_be_string() -> None:
    with pytest.raises(ValueError):
        templates.apply_template({"x.$": 5}, {}, {}, intrinsics=RNG)


def test_template_output_does_not_alias_template() -> None:
    template = {"a": {"b": [1, 2]}}
    out = templates.apply_template(template, {}, {}, intrinsics=RNG)
    assert out == template
    assert out["a"] is not template["a"] and out["a"]["b"] is not template["a"]["b"]


def test_template_truncates_huge_inputs_in_causes() -> None:
    data = {"big": "x" * 10_000}
    with pytest.raises(StatesError) as info:
        templates.apply_template({"x.$": "$.x"}, data, {}, intrinsics=RNG)
    assert len(info.value.cause) < 2_300
    assert info.value.cause.endswith("...'")


def test_validate_template() -> None:
    template = {
        "ok.$": "$.a",
        "fn.$": "States.Format('{}', $.a)",
        "nested": [{"bad.$": "$.a b"}],
        "num.$": 3,
        "arity.$": "States.UUID(1)",
        "dup": 1,
        "dup.$": "$.x",
    }
    problems = templates.validate_template(template, "States.S.Parameters")
    assert any(p.startswith("States.S.Parameters.nested[0].bad.$:") for p in problems)
    assert any(p.startswith("States.S.Parameters.num.$:") for p in problems)
    assert any(p.startswith("States.S.Parameters.arity.$:") for p in problems)
    assert any(p.startswith("States.S.Parameters.dup.$:") for p in problems)
    assert len(problems) == 4
    assert templates.validate_template({"a.$": "$.a", "b": {"c.$": "$$"}}, "X") == []


# --------------------------------------------------------------------------------------------
# Properties

keys = st.text(min_size=0, max_size=8)


@given(data=json_values)
def test_dollar_reads_the_whole_input(data: Any) -> None:
    assert paths.read_path("$", data, {}) == data


@given(name=keys, value=json_values)
def test_any_field_name_can_be_read_with_bracket_quotes(name: str, value: Any) -> None:
    assert paths.read_path("$" + quoted(name), {name: value}, {}) == value


@given(data=json_objects, names=st.lists(keys, min_size=1, max_size=4), value=json_values)
def test_put_result_then_read_path_returns_the_value(
    data: dict[str, Any], names: list[str], value: Any
) -> None:
    path = "$" + "".join(quoted(name) for name in names)
    before = copy.deepcopy(data)
    try:
        out = paths.put_result(data, path, value)
    except StatesError as exc:
        # Only legitimate when some existing node on the way is not an object.
        assert exc.error == errors.RESULT_PATH_MATCH_FAILURE
        node: Any = data
        for name in names[:-1]:
            if not isinstance(node, dict) or name not in node:
                break
            node = node[name]
        else:
            node = node if not isinstance(node, dict) else {}
        assert not isinstance(node, dict)
    else:
        assert paths.read_path(path, out, {}) == value
    assert data == before  # never mutated


@given(data=json_values, value=json_values)
def test_put_result_root_and_null(data: Any, value: Any) -> None:
    assert paths.put_result(data, "$", value) == value
    assert paths.put_result(data, None, value) == data


@given(
    data=st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3),
    name=st.sampled_from(["a", "b", "c", "d"]),
    value=json_values,
)
def test_put_result_leaves_other_fields_alone(data: dict[str, Any], name: str, value: Any) -> None:
    out = paths.put_result(data, f"$.{name}", value)
    assert out[name] == value
    assert {k: v for k, v in out.items() if k != name} == {
        k: v for k, v in data.items() if k != name
    }


@given(template=json_values)
def test_template_without_dynamic_fields_is_copied_unchanged(template: Any) -> None:
    def has_dynamic(node: Any) -> bool:
        if isinstance(node, dict):
            return any(k.endswith(".$") or has_dynamic(v) for k, v in node.items())
        if isinstance(node, list):
            return any(has_dynamic(v) for v in node)
        return False

    assume(not has_dynamic(template))
    assert templates.apply_template(template, {"x": 1}, {}, intrinsics=RNG) == template


@given(items=st.lists(st.integers(), max_size=10))
def test_wildcard_over_array_returns_every_item(items: list[int]) -> None:
    assert paths.read_path("$.a[*]", {"a": items}, {}) == items


@given(items=st.lists(st.integers(), max_size=10), start=st.integers(0, 12), end=st.integers(0, 12))
def test_slices_match_python_slices(items: list[int], start: int, end: int) -> None:
    assert paths.read_path(f"$.a[{start}:{end}]", {"a": items}, {}) == items[start:end]


def test_workflow_variables_are_read_as_dollar_name_paths() -> None:
    context = {paths.VARIABLES: {"order": {"items": [{"sku": "a"}, {"sku": "b"}]}, "n": 3}}
    assert paths.read_path("$n", {}, context) == 3
    assert paths.read_path("$order.items[1].sku", {}, context) == "b"
    assert paths.read_path("$order.items[*].sku", {}, context) == ["a", "b"]
    assert paths.validate_path("$order['items']") is None
    with pytest.raises(paths.PathNotFound):
        paths.read_path("$missing", {}, context)
    assert templates.apply_template({"s.$": "$n"}, {}, context, intrinsics=FixedRandom()) == {
        "s": 3
    }
