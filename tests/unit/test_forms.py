"""Forms of human tasks, the pure parts: declarations parsed with every problem named, values
read from a page's text and checked against the form, outcomes of the task's own deciding an
approval at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.asl.approvals import Ballot, Vote, record
from bridge.asl.forms import Form, check_values, from_text, parse_form

FORM = {
    "type": "object",
    "required": ["amount", "region"],
    "properties": {
        "amount": {"type": "number", "title": "Approved amount", "minimum": 0, "maximum": 10000},
        "count": {"type": "integer", "minimum": 1},
        "region": {"type": "string", "enum": ["eu", "us"]},
        "reason": {"type": "string", "format": "multiline", "maxLength": 50},
        "ship_on": {"type": "string", "format": "date"},
        "urgent": {"type": "boolean"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
}
OUTCOMES = [{"Name": "REQUEST_CHANGES", "Label": "Request changes"}]
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def test_a_form_is_parsed_and_round_trips() -> None:
    form, problems = parse_form(FORM, OUTCOMES)
    assert problems == []
    assert [field.widget for field in form.fields] == [
        "number",
        "number",
        "select",
        "textarea",
        "date",
        "checkbox",
        "text",
    ]
    assert [field.required for field in form.fields][:3] == [True, False, True]
    assert form.outcome("REQUEST_CHANGES") is not None and form.outcome("NOPE") is None
    assert Form.from_json(form.to_json()) == form


@pytest.mark.parametrize(
    ("declared", "outcomes", "named"),
    [
        ({"type": "array"}, None, "Form.type"),
        ({"properties": {"a": {"type": "date"}}}, None, "Form.properties.a.type"),
        ({"properties": {"bad name": {"type": "string"}}}, None, "Form.properties.bad name"),
        (
            {"properties": {"a": {"type": "string", "minimum": 1}}},
            None,
            "Form.properties.a.minimum",
        ),
        ({"properties": {"a": {"type": "number", "enum": ["x"]}}}, None, "Form.properties.a.enum"),
        (
            {"properties": {"a": {"type": "string", "pattern": "("}}},
            None,
            "Form.properties.a.pattern",
        ),
        (
            {"properties": {"a": {"type": "string", "widget": "x"}}},
            None,
            "Form.properties.a.widget",
        ),
        ({"properties": {}, "required": ["ghost"]}, None, "Form.required"),
        ({"properties": {}, "additionalProperties": False}, None, "Form.additionalProperties"),
        (None, [{"Name": "approved"}], "Outcomes[0].Name"),
        (None, [{"Name": "APPROVED"}], "built in"),
        (None, [{"Name": "X"}, {"Name": "X"}], "Outcomes[1].Name"),
        (None, [{"Name": "X", "Colour": "red"}], "Outcomes[0]"),
        (None, "REQUEST_CHANGES", "Outcomes"),
    ],
)
def test_a_bad_declaration_names_its_field(declared: object, outcomes: object, named: str) -> None:
    _, problems = parse_form(declared, outcomes)  # type: ignore[arg-type]
    assert problems and named in " ".join(problems), problems


def test_values_from_a_page_are_read_then_checked() -> None:
    form, _ = parse_form(FORM, OUTCOMES)
    fields = {field.name: field for field in form.fields}
    assert from_text(fields["amount"], " 12.5 ") == 12.5
    assert from_text(fields["amount"], "12") == 12
    assert from_text(fields["count"], "3") == 3
    assert from_text(fields["urgent"], "on") is True and from_text(fields["urgent"], None) is False
    assert from_text(fields["region"], "") is None
    for name, text in (("amount", "lots"), ("count", "2.5"), ("amount", "nan")):
        with pytest.raises(ValueError):
            from_text(fields[name], text)

    values, errors = check_values(
        form,
        {
            "amount": 20_000,
            "region": "mars",
            "reason": "x" * 51,
            "ship_on": "2026-02-30",
            "code": "ab",
            "count": 0,
        },
    )
    assert errors == {
        "amount": "at most 10000",
        "region": "one of eu, us",
        "reason": "50 characters at most",
        "ship_on": "a date (YYYY-MM-DD)",
        "code": "does not match ^[A-Z]{3}$",
        "count": "at least 1",
    }
    _, errors = check_values(form, {"ghost": 1})
    assert errors["ghost"] == "not a field of this form" and errors["amount"] == "required"
    values, errors = check_values(
        form, {"amount": 950, "region": "eu", "ship_on": "2026-12-24", "urgent": True}
    )
    assert errors == {}
    assert values == {
        "amount": 950,
        "count": None,
        "region": "eu",
        "reason": None,
        "ship_on": "2026-12-24",
        "urgent": True,
        "code": None,
    }


@given(
    amount=st.floats(min_value=0, max_value=10000, allow_nan=False),
    region=st.sampled_from(["eu", "us"]),
    reason=st.text(max_size=50).filter(lambda text: "\x00" not in text),
)
def test_values_within_the_bounds_pass(amount: float, region: str, reason: str) -> None:
    form, _ = parse_form(FORM, None)
    _, errors = check_values(form, {"amount": amount, "region": region, "reason": reason})
    assert errors == {}


def test_an_outcome_of_its_own_decides_at_once_with_its_values() -> None:
    ballot = Ballot(seats=("user:ann", "user:bob"), rule="All", outcomes=("REQUEST_CHANGES",))
    approve = Vote(seat="user:ann", approved=True, at=NOW, values={"amount": 5})
    changes = Vote(
        seat="user:bob",
        approved=False,
        at=NOW,
        outcome="REQUEST_CHANGES",
        values={"amount": 1},
        comment="smaller",
    )
    assert ballot.model_copy(update={"votes": (approve,)}).tally() is None
    decided = ballot.model_copy(update={"votes": (approve, changes)})
    assert decided.tally() == "REQUEST_CHANGES"
    result = record(decided, "REQUEST_CHANGES", NOW)
    assert result["outcome"] == "REQUEST_CHANGES"
    assert result["values"] == {"amount": 1} and result["comment"] == "smaller"
    assert [vote["decision"] for vote in result["votes"]] == ["approve", "REQUEST_CHANGES"]
    # Approved by all: the values of the last approval are the result's.
    both = Ballot(seats=("user:ann", "user:bob"), rule="All").model_copy(
        update={
            "votes": (approve, Vote(seat="user:bob", approved=True, at=NOW, values={"amount": 7}))
        }
    )
    assert both.tally() == "APPROVED" and record(both, "APPROVED", NOW)["values"] == {"amount": 7}


@pytest.mark.parametrize(
    ("action", "seat", "holder", "by", "admin", "held", "problem"),
    [
        ("claim", "group:ops", "olga", "olga", False, None, None),
        ("claim", "user:ann", "olga", "olga", False, None, "only a group's seat"),
        ("claim", "group:ops", "pete", "pete", False, "olga", "claimed by olga"),
        ("claim", "group:ops", "pete", "lead", True, "olga", None),
        ("unclaim", "group:ops", None, "pete", False, "olga", "only olga"),
        ("unclaim", "group:ops", None, "olga", False, "olga", None),
        ("unclaim", "group:ops", None, "olga", False, None, "not claimed"),
        ("delegate", "user:ann", "carl", "ann", False, None, None),
        ("delegate", "user:ann", "carl", "mallory", False, None, "assignee"),
        ("delegate", "user:ann", "dora", "carl", False, "carl", None),
        ("delegate", "group:ops", "dora", "olga", False, None, "assignee"),
        ("reassign", "user:ann", "zoe", "lead", False, None, "only an admin"),
        ("reassign", "user:ann", "zoe", "lead", True, None, None),
        ("reassign", "user:nobody", "zoe", "lead", True, None, "not a seat"),
    ],
)
def test_who_may_change_a_seat(
    action: str,
    seat: str,
    holder: str | None,
    by: str,
    admin: bool,
    held: str | None,
    problem: str | None,
) -> None:
    from bridge.asl.approvals import SeatChange, seat_change_problem

    ballot = Ballot(seats=("user:ann", "group:ops"), rule="All")
    if held is not None:
        ballot = ballot.with_holder(seat, held)
    found = seat_change_problem(ballot, seat, SeatChange(action), holder, by, admin=admin)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
    # A seat that has decided changes hands no more.
    voted = ballot.model_copy(update={"votes": (Vote(seat="user:ann", approved=True, at=NOW),)})
    assert "already decided" in (
        seat_change_problem(voted, "user:ann", SeatChange.REASSIGN, "x", "lead", admin=True) or ""
    )
