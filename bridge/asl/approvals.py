"""Human approvals in the core: who may decide, how votes add up, and the decision record.

An approval step has seats (assigned users and groups; one anonymous seat when none is named).
Each seat votes once; the rule decides: ``Any`` (the first vote decides), ``All`` (every seat must
approve; one rejection rejects), or a number N (N approvals approve; when too few seats are left to
reach N, the approval is rejected). On expiry the step fails with States.Timeout, or approves, or
rejects, as ``OnExpiry`` says.

``Escalation`` changes the seats once, ``AfterSeconds`` after the request when the approval is
still open: ``AddAssignees`` and ``AddGroups`` add seats; with ``Reassign: true`` the seats that
have not decided yet are replaced by the new ones (their links stop counting). Votes already cast
stay. A number Rule larger than the seats left is capped at their number, so a reassignment to
fewer people cannot reject by arithmetic alone.

A seat has a status of its own (``SeatStatus``): OPEN until someone besides its own user holds
it (HELD: claimed, delegated or reassigned), then DECIDED once it votes, or REMOVED when an
escalation with ``Reassign`` takes it away first. A ``SeatChange`` (claim, unclaim, delegate,
reassign) moves it between OPEN and HELD; ``seat_change_problem`` says whether one may.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Literal, assert_never

from pydantic import BaseModel, ConfigDict

from bridge.asl import errors
from bridge.asl.errors import StatesError
from bridge.asl.notify import NotifySpec
from bridge.asl.types import JSON

#: How an approval concluded: APPROVED, REJECTED, or an outcome of the task's own (``Outcomes``:
#: REQUEST_CHANGES, ...). Not ``bridge.intake.Outcome`` (what became of an input).
Conclusion = str
OnExpiry = Literal["Fail", "Approve", "Reject"]
ANYONE = "anyone"


class ApprovalStatus(StrEnum):
    """Where an approval stands. PENDING until decided (APPROVED, REJECTED), EXPIRED, or CLOSED
    (its step ended another way: the process stopped, a Parallel branch failed, a timeout)."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CLOSED = "CLOSED"
    #: Concluded with an outcome of the task's own (``Outcomes``), which the votes name.
    DECIDED = "DECIDED"

    def can_become(self, other: ApprovalStatus) -> bool:
        return other in _APPROVAL_TRANSITIONS[self]

    @property
    def open(self) -> bool:
        """Whether a vote may still count."""
        return self is ApprovalStatus.PENDING


_APPROVAL_TRANSITIONS: dict[ApprovalStatus, frozenset[ApprovalStatus]] = {
    ApprovalStatus.PENDING: frozenset(
        {
            ApprovalStatus.APPROVED,
            ApprovalStatus.REJECTED,
            ApprovalStatus.EXPIRED,
            ApprovalStatus.CLOSED,
            ApprovalStatus.DECIDED,
        }
    ),
    # A concluded approval stays as it ended: a late vote or a second conclusion changes nothing.
    ApprovalStatus.APPROVED: frozenset(),
    ApprovalStatus.REJECTED: frozenset(),
    ApprovalStatus.EXPIRED: frozenset(),
    ApprovalStatus.CLOSED: frozenset(),
    ApprovalStatus.DECIDED: frozenset(),
}


class SeatStatus(StrEnum):
    """Where one seat stands. OPEN: on the ballot, undecided, held by nobody besides its own
    user or group; HELD: claimed, delegated or reassigned to someone; DECIDED: it has voted;
    REMOVED: an escalation with ``Reassign`` took it away before it voted."""

    OPEN = "OPEN"
    HELD = "HELD"
    DECIDED = "DECIDED"
    REMOVED = "REMOVED"

    def can_become(self, other: SeatStatus) -> bool:
        return other in _SEAT_TRANSITIONS[self]

    def allows(self, change: SeatChange) -> bool:
        """Whether a seat standing so may undergo ``change`` at all (who asks aside)."""
        return change in _SEAT_CHANGES[self]


_SEAT_TRANSITIONS: dict[SeatStatus, frozenset[SeatStatus]] = {
    SeatStatus.OPEN: frozenset({SeatStatus.HELD, SeatStatus.DECIDED, SeatStatus.REMOVED}),
    # A held seat may change hands again (a delegate delegates on, an admin reassigns).
    SeatStatus.HELD: frozenset(
        {SeatStatus.OPEN, SeatStatus.HELD, SeatStatus.DECIDED, SeatStatus.REMOVED}
    ),
    # A seat that voted or was taken away stays so: escalation happens once, votes stay.
    SeatStatus.DECIDED: frozenset(),
    SeatStatus.REMOVED: frozenset(),
}


class SeatChange(StrEnum):
    """A change of who holds a seat. The values are the words of the API's paths, the decision
    page's form and the history (``ApprovalSeatClaimed``, ...)."""

    CLAIM = "claim"
    UNCLAIM = "unclaim"
    DELEGATE = "delegate"
    REASSIGN = "reassign"

    @classmethod
    def parse(cls, word: str) -> SeatChange | None:
        """The change a word names, or None for any other word."""
        try:
            return cls(word)
        except ValueError:
            return None

    @property
    def result(self) -> SeatStatus:
        """The status of the seat once the change is made."""
        return SeatStatus.OPEN if self is SeatChange.UNCLAIM else SeatStatus.HELD


_SEAT_CHANGES: dict[SeatStatus, frozenset[SeatChange]] = {
    SeatStatus.OPEN: frozenset({SeatChange.CLAIM, SeatChange.DELEGATE, SeatChange.REASSIGN}),
    SeatStatus.HELD: frozenset(SeatChange),
    SeatStatus.DECIDED: frozenset(),
    SeatStatus.REMOVED: frozenset(),
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Vote(_Frozen):
    seat: str
    approved: bool
    decided_by: str | None = None
    comment: str | None = None
    at: datetime
    #: An outcome of the task's own, when the vote chose one (it decides at once).
    outcome: str | None = None
    #: The form's values, as checked.
    values: JSON = None

    @property
    def decision(self) -> str:
        """approve, reject, or the outcome's name."""
        return self.outcome or ("approve" if self.approved else "reject")


class Escalation(_Frozen):
    """Who is added (or put in place of the undecided seats) after ``after_seconds``."""

    after_seconds: int
    seats: tuple[str, ...]
    reassign: bool = False


class Ballot(_Frozen):
    """The state of one approval: its seats, rule, votes so far, pending reminders, who hears
    of it, and its escalation while that has not happened."""

    seats: tuple[str, ...]
    rule: str | int = "Any"
    on_expiry: OnExpiry = "Fail"
    votes: tuple[Vote, ...] = ()
    reminder_timers: tuple[str, ...] = ()
    expires_at: datetime | None = None
    #: The outcomes of the task's own a vote may choose (``Outcomes``).
    outcomes: tuple[str, ...] = ()
    #: Who holds a seat besides its own user: a group's seat claimed by a member, a seat
    #: delegated or reassigned. (seat, holder) pairs.
    holders: tuple[tuple[str, str], ...] = ()
    #: The seats an escalation with ``Reassign`` took away (undecided when it did).
    removed: tuple[str, ...] = ()

    def holder(self, seat: str) -> str | None:
        return next((held for owned, held in self.holders if owned == seat), None)

    def with_holder(self, seat: str, holder: str | None) -> Ballot:
        kept = tuple((owned, held) for owned, held in self.holders if owned != seat)
        return self.model_copy(
            update={"holders": kept + (((seat, holder),) if holder is not None else ())}
        )

    def seat_status(self, seat: str) -> SeatStatus | None:
        """Where ``seat`` stands, or None when it never was a seat of this approval."""
        if seat in self.removed:
            return SeatStatus.REMOVED
        if seat not in self.seats:
            return None
        if self.voted(seat):
            return SeatStatus.DECIDED
        return SeatStatus.OPEN if self.holder(seat) is None else SeatStatus.HELD

    notify: NotifySpec | None = None
    escalation: Escalation | None = None
    escalation_timer: str | None = None

    def escalated(self) -> tuple[Ballot, tuple[str, ...], tuple[str, ...]]:
        """The ballot after its escalation, the seats added, and the seats taken away."""
        assert self.escalation is not None
        added = tuple(seat for seat in self.escalation.seats if seat not in self.seats)
        removed: tuple[str, ...] = ()
        kept = self.seats
        if self.escalation.reassign:
            removed = tuple(seat for seat in self.pending() if seat not in self.escalation.seats)
            kept = tuple(seat for seat in self.seats if seat not in removed)
        ballot = self.model_copy(
            update={
                "seats": (*kept, *added),
                # A seat taken away takes its claim or delegation with it.
                "holders": tuple((seat, held) for seat, held in self.holders if seat in kept),
                "removed": (*self.removed, *removed),
                "escalation": None,
                "escalation_timer": None,
            }
        )
        return ballot, added, removed

    def voted(self, seat: str) -> bool:
        return any(vote.seat == seat for vote in self.votes)

    def pending(self) -> list[str]:
        return [seat for seat in self.seats if not self.voted(seat)]

    def tally(self) -> Conclusion | None:
        """The outcome the votes so far decide, or None while it is open. An outcome of the
        task's own decides at once, whatever the rule."""
        chosen = next((vote.outcome for vote in self.votes if vote.outcome), None)
        if chosen is not None:
            return chosen
        approvals = sum(1 for vote in self.votes if vote.approved)
        rejections = len(self.votes) - approvals
        if self.rule == "Any":
            if not self.votes:
                return None
            return "APPROVED" if self.votes[0].approved else "REJECTED"
        needed = len(self.seats) if self.rule == "All" else min(int(self.rule), len(self.seats))
        if approvals >= needed:
            return "APPROVED"
        if len(self.seats) - rejections < needed:
            return "REJECTED"
        return None


def seat_change_problem(
    ballot: Ballot,
    seat: str,
    change: SeatChange,
    holder: str | None,
    by: str | None,
    *,
    admin: bool,
) -> str | None:
    """Why the seat cannot change hands so (None: it can). A member claims an unclaimed group
    seat and gives back their own claim; an assignee (or whoever holds the seat) delegates it to
    someone else; an admin may do all of that and reassign any seat."""
    status = ballot.seat_status(seat)
    if status is None or status is SeatStatus.REMOVED:
        return f"{seat!r} is not a seat of this approval"
    if status is SeatStatus.DECIDED:
        return f"{seat} has already decided"
    kind, _, owner = seat.partition(":")
    held = ballot.holder(seat)
    acting = by if by else None
    match change:
        case SeatChange.CLAIM:
            if kind != "group":
                return "only a group's seat is claimed"
            if not holder:
                return "a claim needs a name"
            if held is not None and held != holder and not admin:
                return f"{seat} is claimed by {held}"
        case SeatChange.UNCLAIM:
            if held is None:
                return f"{seat} is not claimed"
            if not admin and acting != held:
                return f"only {held} (or an admin) gives back the claim"
        case SeatChange.DELEGATE:
            if not holder:
                return "a delegation needs the name of the delegate"
            responsible = held or (owner if kind == "user" else None)
            if not admin and (responsible is None or acting != responsible):
                return "only the seat's assignee (or an admin) delegates it"
        case SeatChange.REASSIGN:
            if not admin:
                return "only an admin reassigns a seat"
            if not holder:
                return "a reassignment needs a name"
        case _:
            assert_never(change)
    assert status.allows(change) and status.can_become(change.result)
    return None


def seats_of(request: Mapping[str, JSON], state: str) -> tuple[str, ...]:
    """``user:NAME`` and ``group:NAME`` seats from Assignees and Groups; ``anyone`` if none."""
    found: list[str] = []
    for field, kind in (("Assignees", "user"), ("Groups", "group")):
        names = request.get(field) or []
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise StatesError(
                "Approval.InvalidParameters", f"State {state}: {field} must be a list of names"
            )
        found.extend(f"{kind}:{name}" for name in names)
    return tuple(dict.fromkeys(found)) or (ANYONE,)


def ballot_of(request: Mapping[str, JSON], state: str) -> Ballot:
    seats = seats_of(request, state)
    rule = request.get("Rule", "Any")
    if isinstance(rule, bool) or not (
        rule in ("Any", "All") or (isinstance(rule, int) and 1 <= rule <= len(seats))
    ):
        raise StatesError(
            "Approval.InvalidParameters",
            f"State {state}: Rule must be Any, All or a number from 1 to {len(seats)} "
            f"(the seats), not {rule!r}",
        )
    on_expiry = request.get("OnExpiry", "Fail")
    if on_expiry not in ("Fail", "Approve", "Reject"):
        raise StatesError(
            "Approval.InvalidParameters",
            f"State {state}: OnExpiry must be Fail, Approve or Reject, not {on_expiry!r}",
        )
    return Ballot(seats=seats, rule=rule, on_expiry=on_expiry)


def escalation_of(request: Mapping[str, JSON], state: str) -> Escalation | None:
    """The step's ``Escalation``, or None."""
    given = request.get("Escalation")
    if given is None:
        return None
    problem = escalation_problem(given)
    if problem is not None:
        raise StatesError("Approval.InvalidParameters", f"State {state}: Escalation{problem}")
    assert isinstance(given, dict)
    after = given["AfterSeconds"]
    assert isinstance(after, int)
    seats = seats_of(
        {"Assignees": given.get("AddAssignees"), "Groups": given.get("AddGroups")}, state
    )
    return Escalation(after_seconds=after, seats=seats, reassign=given.get("Reassign") is True)


ESCALATION_FIELDS = ("AfterSeconds", "AddAssignees", "AddGroups", "Reassign")


def escalation_problem(given: JSON) -> str | None:
    """What is wrong with an ``Escalation`` (as the text after its name), or None."""
    if not isinstance(given, dict):
        return " must be an object"
    unknown = sorted(set(given) - set(ESCALATION_FIELDS))
    if unknown:
        return f".{unknown[0]}: not a field (known: {', '.join(ESCALATION_FIELDS)})"
    after = given.get("AfterSeconds")
    if isinstance(after, bool) or not isinstance(after, int) or after <= 0:
        return ".AfterSeconds: must be positive whole seconds"
    names = 0
    for field in ("AddAssignees", "AddGroups"):
        value = given.get(field)
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
            return f".{field}: must be a list of names"
        names += len(value)
    if not names:
        return ": needs AddAssignees or AddGroups"
    if not isinstance(given.get("Reassign", False), bool):
        return ".Reassign: must be true or false"
    return None


def reminders_of(request: Mapping[str, JSON], state: str) -> list[int]:
    """Seconds before the deadline at which to remind the pending approvers."""
    before = request.get("RemindBeforeSeconds")
    if before is None:
        return []
    if isinstance(before, int) and not isinstance(before, bool):
        before = [before]
    if not isinstance(before, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in before
    ):
        raise StatesError(
            "Approval.InvalidParameters",
            f"State {state}: RemindBeforeSeconds must be positive whole seconds",
        )
    return sorted(set(before), reverse=True)


def record(ballot: Ballot, outcome: Conclusion, now: datetime, *, expired: bool = False) -> JSON:
    """The step's result: the outcome, who decided and when, the comments and every vote."""
    if outcome in ("APPROVED", "REJECTED"):
        deciding = [
            vote
            for vote in ballot.votes
            if vote.outcome is None and vote.approved == (outcome == "APPROVED")
        ]
    else:
        deciding = [vote for vote in ballot.votes if vote.outcome == outcome]
    last = deciding[-1] if deciding else None
    return {
        "outcome": outcome,
        "expired": expired,
        "decidedBy": last.decided_by or last.seat if last else None,
        "decidedAt": _iso(now),
        "comment": last.comment if last else None,
        "values": last.values if last else None,
        "comments": [
            {"seat": vote.seat, "by": vote.decided_by, "comment": vote.comment}
            for vote in ballot.votes
            if vote.comment
        ],
        "votes": [
            {
                "seat": vote.seat,
                "decision": vote.decision,
                "by": vote.decided_by,
                "at": _iso(vote.at),
                "comment": vote.comment,
                **({"values": vote.values} if vote.values is not None else {}),
            }
            for vote in ballot.votes
        ],
        "rule": ballot.rule,
    }


def rejection(ballot: Ballot, *, expired: bool = False) -> StatesError:
    if expired:
        return StatesError(errors.APPROVAL_REJECTED, "The approval expired without a decision")
    rejecting = [vote for vote in ballot.votes if not vote.approved]
    who = ", ".join(vote.decided_by or vote.seat for vote in rejecting) or "the approvers"
    comments = "; ".join(vote.comment for vote in rejecting if vote.comment)
    return StatesError(
        errors.APPROVAL_REJECTED, f"Rejected by {who}" + (f": {comments}" if comments else "")
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
