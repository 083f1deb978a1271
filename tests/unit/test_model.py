"""Unit tests for bridge.asl.model: a definition is parsed and validated at load time.

A bad definition must fail when it is deployed, with a problem that names the state and the
field, never in the middle of a process.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.asl.errors import DefinitionError
from bridge.asl.loading import parse_definition
from bridge.asl.model import APPROVAL, SEND, SEND_WAIT, ChoiceState, Definition, TaskState, Trigger

SAGA_FILE = Path(__file__).resolve().parents[2] / "examples" / "order-saga.asl.yaml"

Document = dict[str, Any]


def valid() -> Document:
    """A small valid definition: a callback task, then a Succeed state."""
    return {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": SEND_WAIT,
                "Parameters": {"Topic": "work", "Message": {"token.$": "$$.Task.Token"}},
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }


def problems_of(document: Document) -> list[str]:
    with pytest.raises(DefinitionError) as raised:
        parse_definition(document, "test")
    assert raised.value.problems, "a DefinitionError must list its problems"
    return raised.value.problems


def work(document: Document) -> dict[str, Any]:
    state: dict[str, Any] = document["States"]["Work"]
    return state


def then(document: Document, name: str, state: dict[str, Any]) -> None:
    """Insert ``name`` between Work and Done, so that it is reachable."""
    document["States"][name] = {**state, "Next": "Done"}
    work(document)["Next"] = name


def pick(document: Document, rule: dict[str, Any]) -> None:
    """Insert a Choice state with one ``rule`` (Default: Done) after Work."""
    document["States"]["Pick"] = {"Type": "Choice", "Choices": [rule], "Default": "Done"}
    work(document)["Next"] = "Pick"


# Each case: how to break the valid definition, and the start of the problem it must cause
# (the state and field), plus a word of the reason.
BROKEN: dict[str, tuple[Callable[[Document], object], str, str]] = {
    "missing StartAt target": (
        lambda d: d.update(StartAt="Nowhere"),
        "StartAt:",
        "'Nowhere' does not exist",
    ),
    "Next to a missing state": (
        lambda d: work(d).update(Next="Nowhere"),
        "States.Work.Next:",
        "'Nowhere' does not exist",
    ),
    "both Next and End": (
        lambda d: work(d).update(End=True),
        "States.Work:",
        "both Next and End",
    ),
    "neither Next nor End": (
        lambda d: work(d).pop("Next"),
        "States.Work:",
        "needs Next or End",
    ),
    "unknown state Type": (
        lambda d: d["States"]["Done"].update(Type="Sequence"),
        "States.Done.Type:",
        "'Sequence' is not a state type; one of Pass, Task,",
    ),
    "unknown field (typo)": (
        lambda d: work(d).update(Nxt="Done"),
        "States.Work.Nxt:",
        "not a field",
    ),
    "unknown Resource": (
        lambda d: work(d).update(Resource="arn:aws:states:::lambda:invoke"),
        "States.Work.Resource:",
        "unknown resource",
    ),
    "waitForTaskToken without the token": (
        lambda d: work(d)["Parameters"].update(Message={"id.$": "$.id"}),
        "States.Work.Parameters:",
        "$$.Task.Token",
    ),
    "unreachable state": (
        lambda d: d["States"].update(Orphan={"Type": "Succeed"}),
        "States.Orphan:",
        "not reachable",
    ),
    "Wait with Seconds and Timestamp": (
        lambda d: then(
            d, "Pause", {"Type": "Wait", "Seconds": 5, "Timestamp": "2030-01-01T00:00:00Z"}
        ),
        "States.Pause:",
        "exactly one of Seconds, Timestamp",
    ),
    "Wait with none of its fields": (
        lambda d: then(d, "Pause", {"Type": "Wait"}),
        "States.Pause:",
        "exactly one of Seconds, Timestamp",
    ),
    "bad JSONPath in InputPath": (
        lambda d: work(d).update(InputPath="items[0]"),
        "States.Work.InputPath:",
        "must begin with '$'",
    ),
    "unbalanced JSONPath in InputPath": (
        lambda d: work(d).update(InputPath="$.items[0"),
        "States.Work.InputPath:",
        "bracket",
    ),
    "bad ResultPath": (
        lambda d: work(d).update(ResultPath="$.items[*]"),
        "States.Work.ResultPath:",
        "single node",
    ),
    "unknown intrinsic in Parameters": (
        lambda d: work(d)["Parameters"].update({"Key.$": "States.Shout($.id)"}),
        "States.Work.Parameters.Key.$:",
        "States.Shout",
    ),
    "malformed intrinsic in Parameters": (
        lambda d: work(d)["Parameters"]["Message"].update(
            {"title.$": "States.Format('{} items', $.count"}
        ),
        "States.Work.Parameters.Message.title.$:",
        "States.Format",
    ),
    "Choice rule without Next": (
        lambda d: pick(d, {"Variable": "$.n", "IsPresent": True}),
        "States.Pick.Choices[0]",
        "needs Next",
    ),
    "States.ALL not last in Retry": (
        lambda d: work(d).update(
            Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["Work.Busy"]}]
        ),
        "States.Work.Retry[0]:",
        "States.ALL must stand alone in the last",
    ),
    "States.ALL not last in Catch": (
        lambda d: work(d).update(
            Catch=[
                {"ErrorEquals": ["States.ALL"], "Next": "Done"},
                {"ErrorEquals": ["Work.Busy"], "Next": "Done"},
            ]
        ),
        "States.Work.Catch[0]:",
        "States.ALL must stand alone in the last",
    ),
    "HeartbeatSeconds equal to TimeoutSeconds": (
        lambda d: work(d).update(TimeoutSeconds=60, HeartbeatSeconds=60),
        "States.Work.HeartbeatSeconds:",
        "smaller than TimeoutSeconds",
    ),
    "HeartbeatSeconds above TimeoutSeconds": (
        lambda d: work(d).update(TimeoutSeconds=60, HeartbeatSeconds=61),
        "States.Work.HeartbeatSeconds:",
        "smaller than TimeoutSeconds",
    ),
    "trigger with a bad CorrelationKey": (
        lambda d: d.update(
            Triggers=[{"Topic": "orders", "EventType": "OrderPlaced", "CorrelationKey": "orderId"}]
        ),
        "Triggers[0].CorrelationKey:",
        "must begin with '$'",
    ),
    "Catch to a missing state": (
        lambda d: work(d).update(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Nowhere"}]),
        "States.Work.Catch[0].Next:",
        "'Nowhere' does not exist",
    ),
    "send without Topic": (
        lambda d: work(d)["Parameters"].pop("Topic"),
        "States.Work.Parameters:",
        "needs Topic",
    ),
}


@pytest.mark.parametrize(("breaks", "where", "why"), list(BROKEN.values()), ids=list(BROKEN))
def test_a_broken_definition_names_the_state_and_field(
    breaks: Callable[[Document], object], where: str, why: str
) -> None:
    document = valid()
    breaks(document)
    problems = problems_of(document)
    assert any(problem.startswith(where) and why in problem for problem in problems), problems


def test_the_base_definitions_of_these_cases_are_valid() -> None:
    assert list(parse_definition(valid(), "test").states) == ["Work", "Done"]
    with_choice = valid()
    pick(with_choice, {"Variable": "$.n", "IsPresent": True, "Next": "Done"})
    assert set(parse_definition(with_choice, "test").states) == {"Work", "Pick", "Done"}
    with_wait = valid()
    then(with_wait, "Pause", {"Type": "Wait", "Seconds": 5})
    assert set(parse_definition(with_wait, "test").states) == {"Work", "Pause", "Done"}


def test_every_problem_is_reported_at_once() -> None:
    document = valid()
    work(document).update(Resource="nope", InputPath="nope")
    document["States"]["Done"]["Nxt"] = "Work"
    problems = problems_of(document)
    assert any(p.startswith("States.Done.Nxt:") for p in problems), problems

    document["States"]["Done"].pop("Nxt")
    problems = problems_of(document)
    assert any(p.startswith("States.Work.Resource:") for p in problems), problems
    assert any(p.startswith("States.Work.InputPath:") for p in problems), problems


def test_the_error_message_lists_the_problems() -> None:
    document = valid()
    work(document)["Next"] = "Nowhere"
    with pytest.raises(DefinitionError, match=r"States\.Work\.Next: state 'Nowhere'"):
        parse_definition(document, "test")


@pytest.mark.parametrize("document", [[], "StartAt: Work", None])
def test_a_document_that_is_not_an_object_is_refused(document: Any) -> None:
    with pytest.raises(DefinitionError):
        parse_definition(document, "test")


def test_the_order_saga_example_parses_into_frozen_typed_states() -> None:
    definition = parse_definition(yaml.safe_load(SAGA_FILE.read_text()), "order-saga", 3)

    assert (definition.name, definition.version) == ("order-saga", 3)
    assert definition.start_at == "ReserveInventory"
    assert list(definition.states) == [
        "ReserveInventory",
        "ChargePayment",
        "CheckAmount",
        "ApproveOrder",
        "CompleteOrder",
    ]
    reserve = definition.states["ReserveInventory"]
    assert isinstance(reserve, TaskState)
    assert reserve.resource == SEND_WAIT
    assert (reserve.result_path, reserve.timeout_seconds, reserve.next) == (
        "$.inventory",
        86400,
        "ChargePayment",
    )
    approve = definition.states["ApproveOrder"]
    assert isinstance(approve, TaskState) and approve.resource == APPROVAL
    complete = definition.states["CompleteOrder"]
    assert isinstance(complete, TaskState) and complete.resource == SEND and complete.end
    check = definition.states["CheckAmount"]
    assert isinstance(check, ChoiceState) and check.default == "CompleteOrder"
    with pytest.raises(ValueError, match="frozen"):
        reserve.next = "CompleteOrder"  # type: ignore[misc]


def with_trigger(**trigger: Any) -> Definition:
    document = valid()
    document["Triggers"] = [{"Topic": "orders.events", "CorrelationKey": "$.orderId", **trigger}]
    return parse_definition(document, "test")


def test_a_trigger_with_one_event_type() -> None:
    definition = with_trigger(EventType="OrderPlaced")
    assert definition.triggers == [
        Trigger(topic="orders.events", event_type="OrderPlaced", correlation_key="$.orderId")
    ]
    trigger = definition.triggers[0]
    assert (trigger.type_path, trigger.input_path, trigger.event_id) == ("$.type", "$", None)
    assert trigger.matches_type("OrderPlaced")
    assert not trigger.matches_type("OrderPlacedV2")
    assert not trigger.matches_type("Order")
    assert not trigger.matches_type(None)


def test_a_trigger_with_a_list_of_event_types() -> None:
    definition = with_trigger(
        EventType=["OrderPlaced", "OrderResubmitted"], EventId="$.eventId", TypePath="$.kind"
    )
    trigger = definition.triggers[0]
    assert trigger.event_type == ["OrderPlaced", "OrderResubmitted"]
    assert (trigger.event_id, trigger.type_path) == ("$.eventId", "$.kind")
    assert trigger.matches_type("OrderPlaced")
    assert trigger.matches_type("OrderResubmitted")
    assert not trigger.matches_type("OrderCancelled")


def test_a_definition_without_triggers_has_none() -> None:
    assert parse_definition(valid(), "test").triggers == []


@pytest.mark.parametrize(
    ("trigger", "where"),
    [
        ({"EventType": "X", "CorrelationKey": "$.id"}, "Triggers.0.Topic:"),
        ({"Topic": "t", "CorrelationKey": "$.id"}, "Triggers.0.EventType:"),
        (
            {"Topic": "t", "EventType": "X", "CorrelationKey": "$.id", "EventId": "id"},
            "Triggers[0].EventId:",
        ),
    ],
)
def test_a_bad_trigger_is_named(trigger: dict[str, Any], where: str) -> None:
    document = valid()
    document["Triggers"] = [trigger]
    problems = problems_of(document)
    assert any(p.startswith(where) for p in problems), problems


def test_the_document_is_not_changed_by_parsing() -> None:
    document = valid()
    before = copy.deepcopy(document)
    parse_definition(document, "test")
    assert document == before


def test_every_problem_is_reported_in_one_pass_in_the_users_words() -> None:
    document: Document = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Succed"},
            "B": {
                "Type": "Task",
                "Resource": "bridge:kafka:send",
                "TimeoutSeconds": -1,
                "Next": "Nope",
            },
            "C": {"Type": "Pass", "Next": "A", "Bogus": 1},
            "D": {"Type": "Wait", "Seconds": "x", "End": True},
            "E": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.a", "NumericEquals": "x", "Next": "A"}],
            },
        },
    }

    problems = problems_of(document)

    assert problems == [
        "States.A.Type: 'Succed' is not a state type; did you mean 'Succeed'?",
        "States.B.TimeoutSeconds: must be at least 1",
        "States.C.Bogus: is not a field of a Pass state",
        "States.D.Seconds: must be a whole number (or a {% JSONata %} expression)",
        "States.B.Next: state 'Nope' does not exist",
        "States.E.Choices[0].NumericEquals: must be a number",
    ]
    for problem in problems:
        for internal in ("constrained-", "Input tag", "pattern", "'type' | 'Type'"):
            assert internal not in problem


def test_a_missing_field_and_a_wrong_kind_of_value() -> None:
    problems = problems_of({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": [1]}}})
    assert problems == ["States.A.End: must be true or false"]
    problems = problems_of({"States": {"A": {"Type": "Succeed"}}})
    assert problems == ["StartAt: is required"]
