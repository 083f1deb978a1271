"""Pure tests of bridge.asl.approvals: how votes add up (Ballot.tally), the validation of an
approval step's parameters (seats_of, ballot_of, reminders_of) and the decision record.

The tally is checked against a plain statement of each rule for random seats (1 to 6) and random
vote sequences, after every vote, and it must never change its mind once it has decided.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.asl import errors
from bridge.asl.approvals import (
    ANYONE,
    ApprovalStatus,
    Ballot,
    Conclusion,
    Vote,
    ballot_of,
    record,
    rejection,
    reminders_of,
    seats_of,
)
from bridge.asl.errors import StatesError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def vote(seat: str, approved: bool, at: int = 0, **extra: Any) -> Vote:
    return Vote(seat=seat, approved=approved, at=T0 + timedelta(seconds=at), **extra)


def expected(rule: str | int, seats: int, votes: list[bool]) -> Conclusion | None:
    """What each rule says, stated the way the documentation states it."""
    approvals = votes.count(True)
    if rule == "Any":
        if not votes:
            return None
        return "APPROVED" if votes[0] else "REJECTED"
    if rule == "All":
        if False in votes:
            return "REJECTED"  # at the first rejection
        return "APPROVED" if approvals == seats else None
    assert isinstance(rule, int)
    undecided = seats - len(votes)
    if approvals >= rule:
        return "APPROVED"
    if approvals + undecided < rule:
        return "REJECTED"
    return None


@st.composite
def elections(draw: st.DrawFn) -> tuple[tuple[str, ...], str | int, list[tuple[str, bool]]]:
    """Seats (1 to 6 users and groups), a rule valid for them, and a vote sequence in which each
    seat votes at most once, in random order."""
    count = draw(st.integers(1, 6))
    kinds = draw(st.lists(st.sampled_from(["user", "group"]), min_size=count, max_size=count))
    seats = tuple(f"{kind}:p{i}" for i, kind in enumerate(kinds))
    rule = draw(st.one_of(st.sampled_from(["Any", "All"]), st.integers(1, count)))
    order = draw(st.permutations(seats))
    voting = draw(st.integers(0, count))
    decisions = draw(st.lists(st.booleans(), min_size=voting, max_size=voting))
    return seats, rule, list(zip(order[:voting], decisions, strict=True))


@given(elections())
def test_the_tally_follows_its_rule_after_every_vote(
    election: tuple[tuple[str, ...], str | int, list[tuple[str, bool]]],
) -> None:
    seats, rule, sequence = election
    ballot = Ballot(seats=seats, rule=rule)
    assert ballot.tally() is None
    assert ballot.pending() == list(seats)
    for index, (seat, approved) in enumerate(sequence, start=1):
        assert not ballot.voted(seat)
        ballot = ballot.model_copy(update={"votes": (*ballot.votes, vote(seat, approved, index))})
        assert ballot.voted(seat)
        decisions = [approved for _, approved in sequence[:index]]
        assert ballot.tally() == expected(rule, len(seats), decisions), (rule, seats, decisions)
        assert ballot.pending() == [s for s in seats if s not in dict(sequence[:index])]


@given(elections())
def test_the_tally_never_changes_its_mind_once_decided(
    election: tuple[tuple[str, ...], str | int, list[tuple[str, bool]]],
) -> None:
    seats, rule, sequence = election
    ballot = Ballot(seats=seats, rule=rule)
    decided: Conclusion | None = None
    for index, (seat, approved) in enumerate(sequence, start=1):
        ballot = ballot.model_copy(update={"votes": (*ballot.votes, vote(seat, approved, index))})
        outcome = ballot.tally()
        if decided is not None:
            assert outcome == decided, (rule, seats, sequence[:index])
        decided = outcome


@given(elections())
def test_a_complete_vote_always_decides(
    election: tuple[tuple[str, ...], str | int, list[tuple[str, bool]]],
) -> None:
    seats, rule, _ = election
    for approve_all in (True, False):
        votes = tuple(vote(seat, approve_all, i) for i, seat in enumerate(seats))
        outcome = Ballot(seats=seats, rule=rule, votes=votes).tally()
        assert outcome == ("APPROVED" if approve_all else "REJECTED")


@pytest.mark.parametrize(
    ("rule", "votes", "outcome"),
    [
        ("Any", [False], "REJECTED"),
        ("Any", [True], "APPROVED"),
        ("Any", [True, False, False], "APPROVED"),
        ("All", [True, True], None),
        ("All", [True, True, True], "APPROVED"),
        ("All", [True, False], "REJECTED"),
        (2, [True], None),
        (2, [True, True], "APPROVED"),
        (2, [False], None),
        (2, [False, False], "REJECTED"),
        (2, [True, False], None),
        (2, [True, False, True], "APPROVED"),
        (3, [False], "REJECTED"),
        (1, [False, False], None),
        (1, [False, False, False], "REJECTED"),
    ],
)
def test_examples_with_three_seats(
    rule: str | int, votes: list[bool], outcome: Conclusion | None
) -> None:
    seats = ("user:a", "user:b", "group:c")
    cast = tuple(vote(seat, approved) for seat, approved in zip(seats, votes, strict=False))
    assert Ballot(seats=seats, rule=rule, votes=cast).tally() == outcome


# ------------------------------------------------------------------------- seats and parameters


def test_seats_are_users_then_groups_without_duplicates() -> None:
    request = {"Assignees": ["ann", "bob", "ann"], "Groups": ["finance", "ann"]}
    assert seats_of(request, "Approve") == ("user:ann", "user:bob", "group:finance", "group:ann")


@pytest.mark.parametrize(
    "request_",
    [{}, {"Assignees": [], "Groups": []}, {"Assignees": None}, {"Groups": ""}],
)
def test_no_names_means_one_anonymous_seat(request_: dict[str, Any]) -> None:
    assert seats_of(request_, "Approve") == (ANYONE,)
    assert ballot_of(request_, "Approve").seats == (ANYONE,)


def test_a_single_name_may_be_a_string() -> None:
    assert seats_of({"Assignees": "ann", "Groups": "ops"}, "S") == ("user:ann", "group:ops")


@pytest.mark.parametrize(
    "request_",
    [
        {"Assignees": 5},
        {"Assignees": {"name": "ann"}},
        {"Assignees": ["ann", ""]},
        {"Assignees": ["ann", 7]},
        {"Groups": [None]},
        {"Groups": [["ops"]]},
        {"Groups": True},
    ],
)
def test_bad_assignees_or_groups_are_invalid_parameters(request_: dict[str, Any]) -> None:
    with pytest.raises(StatesError) as raised:
        seats_of(request_, "Approve")
    assert raised.value.error == "Approval.InvalidParameters"
    assert "Approve" in raised.value.cause
    with pytest.raises(StatesError):
        ballot_of(request_, "Approve")


@pytest.mark.parametrize(
    ("request_", "rule"),
    [
        ({}, "Any"),
        ({"Rule": "Any"}, "Any"),
        ({"Rule": "All", "Assignees": ["a", "b"]}, "All"),
        ({"Rule": 1, "Assignees": ["a", "b"]}, 1),
        ({"Rule": 2, "Assignees": ["a"], "Groups": ["g"]}, 2),
        ({"Rule": 1}, 1),
    ],
)
def test_valid_rules(request_: dict[str, Any], rule: str | int) -> None:
    ballot = ballot_of(request_, "Approve")
    assert ballot.rule == rule
    assert ballot.on_expiry == "Fail"
    assert ballot.votes == ()


@pytest.mark.parametrize(
    "rule",
    ["any", "ALL", "Majority", "", None, 0, -1, 4, True, False, 1.5, 2.0, "2", [2], {"N": 2}],
)
def test_bad_rules_are_invalid_parameters(rule: Any) -> None:
    request = {"Assignees": ["a", "b"], "Groups": ["g"], "Rule": rule}
    with pytest.raises(StatesError) as raised:
        ballot_of(request, "Approve")
    assert raised.value.error == "Approval.InvalidParameters"
    assert "from 1 to 3" in raised.value.cause


def test_a_number_above_the_seats_is_invalid_even_after_duplicates_merge() -> None:
    with pytest.raises(StatesError) as raised:
        ballot_of({"Assignees": ["ann", "ann"], "Rule": 2}, "Approve")
    assert raised.value.error == "Approval.InvalidParameters"
    # No names: one anonymous seat, so only 1 is a valid number.
    with pytest.raises(StatesError):
        ballot_of({"Rule": 2}, "Approve")


@pytest.mark.parametrize("on_expiry", ["Fail", "Approve", "Reject"])
def test_valid_on_expiry(on_expiry: str) -> None:
    assert ballot_of({"OnExpiry": on_expiry}, "S").on_expiry == on_expiry


@pytest.mark.parametrize("on_expiry", ["fail", "APPROVE", "Ignore", "", None, 0, True, ["Fail"]])
def test_bad_on_expiry_is_invalid_parameters(on_expiry: Any) -> None:
    with pytest.raises(StatesError) as raised:
        ballot_of({"OnExpiry": on_expiry}, "Approve")
    assert raised.value.error == "Approval.InvalidParameters"
    assert "OnExpiry" in raised.value.cause


@pytest.mark.parametrize(
    ("value", "reminders"),
    [
        (None, []),
        ([], []),
        (60, [60]),
        ([60, 3600, 60, 600], [3600, 600, 60]),
        ([1], [1]),
    ],
)
def test_reminders_are_distinct_and_latest_deadline_first(value: Any, reminders: list[int]) -> None:
    request = {} if value is None else {"RemindBeforeSeconds": value}
    assert reminders_of(request, "S") == reminders


@pytest.mark.parametrize(
    "value",
    [0, False, "", -5, [60, -1], [60, 0], 1.5, [1.5], "60", ["60"], True, [True], {"s": 1}],
)
def test_bad_remind_before_seconds_are_invalid_parameters(value: Any) -> None:
    with pytest.raises(StatesError) as raised:
        reminders_of({"RemindBeforeSeconds": value}, "Approve")
    assert raised.value.error == "Approval.InvalidParameters"
    assert "RemindBeforeSeconds" in raised.value.cause


# ------------------------------------------------------------------------- the decision record


def test_the_record_names_the_deciding_vote_and_lists_every_vote() -> None:
    ballot = Ballot(
        seats=("user:ann", "user:bob", "group:ops"),
        rule=2,
        votes=(
            vote("user:ann", True, 1, decided_by="Ann", comment="fine"),
            vote("group:ops", False, 2, comment="too dear"),
            vote("user:bob", True, 3),
        ),
    )
    assert ballot.tally() == "APPROVED"
    result = record(ballot, "APPROVED", T0 + timedelta(seconds=4))
    assert result["outcome"] == "APPROVED" and result["expired"] is False
    assert result["decidedBy"] == "user:bob"  # the last approving vote, by seat when unnamed
    assert result["decidedAt"] == "2024-05-01T12:00:04.000Z"
    assert result["comment"] is None
    assert result["rule"] == 2
    assert result["comments"] == [
        {"seat": "user:ann", "by": "Ann", "comment": "fine"},
        {"seat": "group:ops", "by": None, "comment": "too dear"},
    ]
    assert [(v["seat"], v["decision"], v["by"]) for v in result["votes"]] == [
        ("user:ann", "approve", "Ann"),
        ("group:ops", "reject", None),
        ("user:bob", "approve", None),
    ]
    assert result["votes"][0]["at"] == "2024-05-01T12:00:01.000Z"


def test_an_expired_record_without_votes() -> None:
    ballot = Ballot(seats=(ANYONE,), on_expiry="Approve")
    result = record(ballot, "APPROVED", T0, expired=True)
    assert result["expired"] is True and result["votes"] == []
    assert result["decidedBy"] is None and result["comment"] is None


def test_a_rejection_names_who_rejected_and_why() -> None:
    ballot = Ballot(
        seats=("user:ann", "user:bob"),
        rule="All",
        votes=(vote("user:ann", True), vote("user:bob", False, decided_by="Bob", comment="no")),
    )
    failure = rejection(ballot)
    assert failure.error == errors.APPROVAL_REJECTED
    assert failure.cause == "Rejected by Bob: no"
    expired = rejection(Ballot(seats=(ANYONE,)), expired=True)
    assert expired.error == errors.APPROVAL_REJECTED
    assert "expired" in expired.cause


@pytest.mark.parametrize("target", list(ApprovalStatus))
@pytest.mark.parametrize("source", list(ApprovalStatus))
def test_approval_status_transition_table(source: ApprovalStatus, target: ApprovalStatus) -> None:
    """Only a pending approval concludes, and it concludes to anything but pending; a concluded
    one stays as it ended."""
    allowed = source is ApprovalStatus.PENDING and target is not ApprovalStatus.PENDING
    assert source.can_become(target) is allowed
    assert source.open is (source is ApprovalStatus.PENDING)
