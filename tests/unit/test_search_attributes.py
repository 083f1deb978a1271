"""Search attributes in the pure core: set at the start and by states, removed by null, a bad value
skipped with a note and never a failure, and the definition checks that name the field."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bridge.asl import search
from bridge.asl.errors import DefinitionError
from bridge.asl.inputs import TaskSucceeded
from bridge.asl.loading import parse_definition
from bridge.asl.process import Process, ProcessStatus
from bridge.cli import main
from tests.unit.driver import Driver, callback_task, machine


def run_of(states: dict[str, Any], **top: Any) -> Driver:
    return Driver(machine(states, **top))


def skipped(run: Driver) -> list[dict[str, Any]]:
    return [
        {"state": entry.state, **entry.details}
        for applied in run.log
        for entry in applied.result.history
        if entry.type == search.SKIPPED
    ]


def test_the_definition_sets_them_from_the_input_at_the_start() -> None:
    run = run_of(
        {"Work": callback_task()},
        SearchAttributes={
            "customerId.$": "$.customer.id",
            "amount.$": "$.amount",
            "vip.$": "$.vip",
            "region": "eu",
        },
    )
    run.start({"customer": {"id": "c-7"}, "amount": 120.5, "vip": True})
    assert run.running.search_attributes == {
        "customerId": "c-7",
        "amount": 120.5,
        "vip": True,
        "region": "eu",
    }


def test_a_state_updates_them_in_the_scope_of_its_assign_and_null_removes() -> None:
    run = run_of(
        {
            "Work": callback_task(
                Next="Done",
                ResultSelector={"stage.$": "$.stage", "total.$": "$.total"},
                Assign={"seen.$": "$.stage"},
                SearchAttributes={"stage.$": "$.stage", "amount.$": "$.total", "region": None},
            ),
            "Done": {"Type": "Pass", "End": True},
        },
        SearchAttributes={"amount.$": "$.amount", "region": "eu"},
    )
    run.start({"amount": 10})
    run.apply(TaskSucceeded(run.wait.id, {"stage": "paid", "total": 12}))
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.search_attributes == {"amount": 12, "stage": "paid"}
    assert run.running.variables == {"seen": "paid"}


def test_a_missing_path_removes_the_attribute_and_does_not_fail() -> None:
    run = run_of(
        {
            "Tag": {
                "Type": "Pass",
                "SearchAttributes": {"customerId.$": "$.nobody"},
                "Next": "Work",
            },
            "Work": callback_task(),
        },
        SearchAttributes={"customerId.$": "$.customerId"},
    )
    run.start({"customerId": "c-1"})
    assert run.running.status is ProcessStatus.RUNNING
    assert run.running.search_attributes == {}
    assert skipped(run) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"a": 1}, "is an object"),
        ([1, 2], "is an array"),
        ("x" * (search.MAX_TEXT + 1), f"at most {search.MAX_TEXT}"),
        ("a\x00b", "NUL"),
        ("\ud800", "surrogate"),
        (10**400, "too large"),
    ],
)
def test_a_value_that_cannot_be_kept_is_skipped_with_a_note(value: Any, reason: str) -> None:
    run = run_of(
        {
            "Tag": {
                "Type": "Pass",
                # The output leaves the value out: only the attribute meets it.
                "Parameters": {},
                "SearchAttributes": {"customerId.$": "$$.Execution.Input.bad", "ok": "yes"},
                "Next": "Work",
            },
            "Work": callback_task(),
        },
        SearchAttributes={"customerId": "kept"},
    )
    run.start({"bad": value})
    assert run.running.status is ProcessStatus.RUNNING
    # The attribute keeps its last good value; the others of the state are set.
    assert run.running.search_attributes == {"customerId": "kept", "ok": "yes"}
    [note] = skipped(run)
    assert note["state"] == "Tag" and note["name"] == "customerId"
    assert reason in note["reason"]


def test_a_failing_intrinsic_is_skipped_not_a_failure() -> None:
    run = run_of(
        {"Work": callback_task()},
        SearchAttributes={"n.$": "States.StringToJson($.text)"},
    )
    run.start({"text": "{not json"})
    assert run.running.status is ProcessStatus.RUNNING
    assert run.running.search_attributes == {}
    assert skipped(run)[0]["name"] == "n"


def test_jsonata_expressions_set_them_and_undefined_removes() -> None:
    run = run_of(
        {
            "Work": {
                "Type": "Task",
                "Resource": "bridge:kafka:send.waitForTaskToken",
                "Arguments": {
                    "Topic": "work.commands",
                    "Message": {"token": "{% $states.context.Task.Token %}"},
                },
                "SearchAttributes": {
                    "stage": "{% $states.result.stage %}",
                    "customerId": "{% $states.result.nobody %}",
                    "double": "{% $states.input.amount * 2 %}",
                    "broken": "{% $error('no') %}",
                },
                "End": True,
            }
        },
        QueryLanguage="JSONata",
        SearchAttributes={
            "customerId": "{% $states.input.customerId %}",
            "upper": "{% $uppercase($states.input.customerId) %}",
        },
    )
    run.start({"customerId": "c-9", "amount": 4})
    assert run.running.search_attributes == {"customerId": "c-9", "upper": "C-9"}
    run.apply(TaskSucceeded(run.wait.id, {"stage": "done"}))
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.search_attributes == {"upper": "C-9", "stage": "done", "double": 8}
    assert [note["name"] for note in skipped(run)] == ["broken"]


def test_states_inside_branches_update_the_process() -> None:
    run = run_of(
        {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "A",
                        "States": {
                            "A": {"Type": "Pass", "SearchAttributes": {"a": 1}, "End": True}
                        },
                    },
                    {
                        "StartAt": "B",
                        "States": {
                            "B": {"Type": "Pass", "SearchAttributes": {"b": "x"}, "End": True}
                        },
                    },
                ],
                "SearchAttributes": {"both": True},
                "End": True,
            }
        }
    )
    run.start({})
    assert run.running.search_attributes == {"a": 1, "b": "x", "both": True}


def test_choice_and_wait_states_update_them() -> None:
    run = run_of(
        {
            "Route": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 5, "Next": "Pause"}],
                "Default": "Pause",
                "SearchAttributes": {"size.$": "$.n"},
            },
            "Pause": {
                "Type": "Wait",
                "Seconds": 0,
                "SearchAttributes": {"paused": True},
                "Next": "Work",
            },
            "Work": callback_task(),
        }
    )
    run.start({"n": 7})
    assert run.running.search_attributes == {"size": 7, "paused": True}


def test_a_definition_without_them_leaves_the_process_without() -> None:
    run = run_of({"Work": callback_task()})
    run.start({"customerId": "c"})
    assert run.running.search_attributes == {}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"SearchAttributes": {"1bad": "x"}},
            "SearchAttributes.1bad: an attribute name is a letter",
        ),
        (
            {"SearchAttributes": {"a.$": "$.a", "a": 1}},
            "SearchAttributes.a: attribute 'a' is given twice",
        ),
        ({"SearchAttributes": {"a.$": "not a path"}}, "SearchAttributes.a.$:"),
        (
            {"SearchAttributes": {f"n{index}": index for index in range(search.MAX_ATTRIBUTES)}},
            None,
        ),
        (
            {
                "SearchAttributes": {f"n{index}": index for index in range(search.MAX_ATTRIBUTES)},
                "States": {"Go": {"Type": "Pass", "SearchAttributes": {"extra": 1}, "End": True}},
            },
            f"at most {search.MAX_ATTRIBUTES}",
        ),
        (
            {"States": {"Go": {"Type": "Pass", "SearchAttributes": {"bad name": 1}, "End": True}}},
            "States.Go.SearchAttributes.bad name: an attribute name",
        ),
        (
            {
                "QueryLanguage": "JSONata",
                "States": {"Go": {"Type": "Pass", "SearchAttributes": {"a.$": "$.a"}, "End": True}},
            },
            "States.Go.SearchAttributes.a.$: JSONata states write 'a'",
        ),
        (
            {
                "QueryLanguage": "JSONata",
                "States": {
                    "Go": {"Type": "Pass", "SearchAttributes": {"a": "{% 1 + %}"}, "End": True}
                },
            },
            "States.Go.SearchAttributes/a: invalid JSONata expression",
        ),
        (
            {"States": {"Go": {"Type": "Succeed", "SearchAttributes": {"a": 1}}}},
            "States.Go.SearchAttributes: is not a field of a Succeed state",
        ),
    ],
)
def test_bad_search_attributes_are_named_with_state_and_field(
    document: dict[str, Any], expected: str | None
) -> None:
    full = {"StartAt": "Go", "States": {"Go": {"Type": "Pass", "End": True}}, **document}
    if expected is None:
        parse_definition(full, "ok")
        return
    with pytest.raises(DefinitionError) as raised:
        parse_definition(full, "bad")
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(scalars)
def test_a_value_is_kept_exactly_when_the_index_can_hold_it(value: Any) -> None:
    problem = search.value_problem(value)
    if problem is not None:
        return
    if value is None:
        return
    text, number = search.columns(value)
    assert (text is None) != (number is None)
    if text is not None:
        assert len(text) <= search.MAX_TEXT and "\x00" not in text
        text.encode("utf-8")  # no lone surrogates: the driver can send it
    if number is not None:
        assert math.isfinite(number)


@given(
    st.dictionaries(st.sampled_from("abcd"), st.one_of(st.integers(), st.text(max_size=4))),
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.one_of(st.none(), st.integers(), st.text())),
        max_size=6,
    ),
)
def test_apply_is_the_last_update_of_each_name_over_the_current(
    current: dict[str, Any], updates: list[tuple[str, Any]]
) -> None:
    ordered: dict[str, Any] = {}
    for name, value in updates:
        ordered.pop(name, None)
        ordered[name] = value
    result = search.apply(current, ordered)
    for name in "abcde":
        last = [value for key, value in updates if key == name]
        if last:
            assert result.get(name) == last[-1]
        else:
            assert result.get(name) == current.get(name)


def test_the_process_state_round_trips_through_json() -> None:
    run = run_of({"Work": callback_task()}, SearchAttributes={"a.$": "$.a", "b.$": "$.b"})
    run.start({"a": True, "b": 1.5})
    text = run.running.model_dump_json()
    assert Process.model_validate_json(text).search_attributes == {"a": True, "b": 1.5}


def test_bridge_validate_names_a_bad_search_attribute(tmp_path: Path) -> None:
    bad = tmp_path / "bad.asl.json"
    bad.write_text(
        json.dumps(
            {
                "SearchAttributes": {"customer id.$": "$.id"},
                "StartAt": "Charge",
                "States": {
                    "Charge": {
                        "Type": "Pass",
                        "SearchAttributes": {"amount.$": "$$$"},
                        "End": True,
                    }
                },
            }
        )
    )
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "SearchAttributes.customer id.$: an attribute name is" in result.output
    assert "States.Charge.SearchAttributes.amount.$:" in result.output


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=300),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(json_values, json_values)
def test_no_value_fails_the_process_and_every_kept_value_fits_the_index(
    first: Any, second: Any
) -> None:
    run = run_of(
        {
            "Tag": {
                "Type": "Pass",
                "Parameters": {},
                "SearchAttributes": {
                    "b.$": "$$.Execution.Input.second",
                    "c.$": "States.JsonToString($$.Execution.Input.first)",
                },
                "Next": "Work",
            },
            "Work": callback_task(),
        },
        SearchAttributes={"a.$": "$.first", "b.$": "$.nothing"},
    )
    run.start({"first": first, "second": second})
    assert run.running.status is ProcessStatus.RUNNING
    for name, value in run.running.search_attributes.items():
        assert search.value_problem(value) is None, (name, value)
    expected_a = first if search.value_problem(first) is None else None
    assert run.running.search_attributes.get("a") == expected_a
    notes = {note["name"] for note in skipped(run)}
    assert ("b" in notes) == (search.value_problem(second) is not None)
