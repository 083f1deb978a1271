"""Pure tests of a seat's status: the transition table, which changes each status admits, and a
property that any run of seat changes, votes and an escalation through ``interpreter.step``
moves every seat only as the table allows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.asl.approvals import (
    Ballot,
    Escalation,
    SeatChange,
    SeatStatus,
    Vote,
    seat_change_problem,
)
from bridge.asl.inputs import ApprovalDecided, Input, SeatChanged, TimerFired
from bridge.asl.process import ProcessStatus
from tests.unit.driver import Driver, approval

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

#: Where a seat may go next, as the approvals README tells it.
EXPECTED = {
    SeatStatus.OPEN: {SeatStatus.HELD, SeatStatus.DECIDED, SeatStatus.REMOVED},
    SeatStatus.HELD: {SeatStatus.OPEN, SeatStatus.HELD, SeatStatus.DECIDED, SeatStatus.REMOVED},
    SeatStatus.DECIDED: set(),
    SeatStatus.REMOVED: set(),
}


@pytest.mark.parametrize("target", list(SeatStatus))
@pytest.mark.parametrize("source", list(SeatStatus))
def test_seat_status_transition_table(source: SeatStatus, target: SeatStatus) -> None:
    """An open seat is taken, decides or is taken away; a held one also changes hands or is
    given back; a seat that decided or was taken away stays so."""
    assert source.can_become(target) is (target in EXPECTED[source])


def ballot_with(status: SeatStatus) -> tuple[Ballot, str]:
    """A ballot with ``group:ops`` standing as ``status``."""
    ballot = Ballot(seats=("user:ann", "group:ops"), rule="All")
    match status:
        case SeatStatus.OPEN:
            pass
        case SeatStatus.HELD:
            ballot = ballot.with_holder("group:ops", "olga")
        case SeatStatus.DECIDED:
            vote = Vote(seat="group:ops", approved=True, at=NOW)
            ballot = ballot.model_copy(update={"votes": (vote,)})
        case SeatStatus.REMOVED:
            ballot = ballot.model_copy(update={"seats": ("user:ann",), "removed": ("group:ops",)})
    assert ballot.seat_status("group:ops") is status
    return ballot, "group:ops"


@pytest.mark.parametrize("change", list(SeatChange))
@pytest.mark.parametrize("status", list(SeatStatus))
def test_which_changes_each_seat_status_admits(status: SeatStatus, change: SeatChange) -> None:
    """An admin (who may do the most) changes a seat exactly when its status admits the change,
    and the seat then stands where the table lets it go."""
    ballot, seat = ballot_with(status)
    admits = status in (SeatStatus.OPEN, SeatStatus.HELD) and not (
        status is SeatStatus.OPEN and change is SeatChange.UNCLAIM
    )
    assert status.allows(change) is admits
    problem = seat_change_problem(ballot, seat, change, "zoe", "lead", admin=True)
    assert (problem is None) is admits
    if admits:
        assert status.can_become(change.result)
        holder = None if change is SeatChange.UNCLAIM else "zoe"
        assert ballot.with_holder(seat, holder).seat_status(seat) is change.result


def test_the_wire_words_of_a_change_stay_as_they_were() -> None:
    assert [change.value for change in SeatChange] == ["claim", "unclaim", "delegate", "reassign"]
    assert SeatChange.parse("unclaim") is SeatChange.UNCLAIM
    assert SeatChange.parse("steal") is None
    assert SeatChange.parse("CLAIM") is None


def test_a_seat_that_never_was_has_no_status() -> None:
    assert Ballot(seats=("user:ann",)).seat_status("user:bob") is None


def test_an_escalation_with_reassign_marks_the_seats_it_takes_away() -> None:
    ballot = Ballot(seats=("user:ann", "user:bob"), rule="All").with_holder("user:bob", "carl")
    ballot = ballot.model_copy(
        update={"votes": (Vote(seat="user:ann", approved=True, at=NOW),)},
    )
    ballot = ballot.model_copy(
        update={"escalation": Escalation(after_seconds=1, seats=("user:zoe",), reassign=True)}
    )
    escalated, added, removed = ballot.escalated()
    assert (added, removed) == (("user:zoe",), ("user:bob",))
    assert escalated.seat_status("user:bob") is SeatStatus.REMOVED
    assert escalated.seat_status("user:ann") is SeatStatus.DECIDED
    assert escalated.seat_status("user:zoe") is SeatStatus.OPEN
    problem = seat_change_problem(escalated, "user:bob", SeatChange.REASSIGN, "x", "a", admin=True)
    assert problem is not None and "not a seat" in problem


SEATS = ("user:ann", "group:ops", "group:leads")
PEOPLE = ("ann", "olga", "pete", "lead")


def escalating_approval() -> Driver:
    """ann and the group ops must all approve; after a minute, leads take the undecided seats."""
    escalation = {"AfterSeconds": 60, "AddGroups": ["leads"], "Reassign": True}
    return approval(
        {"Assignees": ["ann"], "Groups": ["ops"], "Rule": "All", "Escalation": escalation}
    )


seat_changes = st.tuples(
    st.just("change"),
    st.sampled_from(SEATS),
    st.sampled_from(list(SeatChange)),
    st.sampled_from((None, *PEOPLE)),
    st.sampled_from((None, *PEOPLE)),
    st.booleans(),
)
votes = st.tuples(st.just("vote"), st.sampled_from(SEATS), st.booleans())
escalations = st.tuples(st.just("escalate"))


def statuses(run: Driver) -> dict[str, SeatStatus | None] | None:
    """Every seat's status while the approval waits; None once it has ended."""
    if run.running.status is not ProcessStatus.RUNNING:
        return None
    ballot = run.wait.ballot
    assert ballot is not None
    return {seat: ballot.seat_status(seat) for seat in SEATS}


@settings(deadline=None, max_examples=200)
@given(st.lists(st.one_of(seat_changes, votes, escalations), max_size=12))
def test_any_run_of_changes_and_votes_moves_seats_only_as_the_table_allows(
    steps: list[tuple[Any, ...]],
) -> None:
    run = escalating_approval()
    run.start({})
    for action in steps:
        before = statuses(run)
        if before is None:
            break
        ballot = run.wait.ballot
        assert ballot is not None
        event: Input
        match action:
            case ("change", seat, change, holder, by, admin):
                event = SeatChanged(run.wait.id, seat, change, holder, by, admin)
            case ("vote", seat, approved):
                event = ApprovalDecided(run.wait.id, approved, seat=seat)
            case _:
                if ballot.escalation_timer is None:
                    continue
                event = TimerFired(ballot.escalation_timer)
        result = run.offer(event, after=61 if isinstance(event, TimerFired) else 1)
        after = statuses(run)
        if result.rejected is not None:
            assert after == before
            continue
        if after is None:
            # The approval concluded; its seats are gone with its wait.
            continue
        for seat in SEATS:
            old, new = before[seat], after[seat]
            if old is None or new is None:
                # Only an escalation puts a seat on the ballot; none is ever dropped silently.
                assert old is None
                assert new is None or isinstance(event, TimerFired)
                continue
            assert new == old or old.can_become(new), (seat, old, new, event)
        if isinstance(event, SeatChanged):
            old_status = before[event.seat]
            assert old_status is not None and old_status.allows(event.action)
            assert after[event.seat] is event.action.result
        if isinstance(event, ApprovalDecided) and event.seat is not None:
            assert after[event.seat] is SeatStatus.DECIDED
