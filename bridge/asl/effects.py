"""What the interpreter asks the shell to do, and what it records: effects and history entries.

Effects are plain values. The engine turns each into rows written in the same transaction as the
process state (outbox messages, task tokens, approvals), so none is lost or doubled; the timers
they start and cancel are kept in the process state itself (``interpreter.keep_timers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from bridge.asl.approvals import ApprovalStatus
from bridge.asl.notify import NotifyEvent, NotifySpec
from bridge.asl.types import JSON


@dataclass(frozen=True)
class SendMessage:
    """Publish ``value`` as JSON on ``topic``; ``message_id`` is stable so consumers can dedupe."""

    message_id: str
    topic: str
    key: str | None
    value: JSON
    headers: dict[str, str] = field(default_factory=dict)
    type: str = "command"
    state: str | None = None


@dataclass(frozen=True)
class ExpectCallback:
    """A task token was handed out; the shell stores only its hash, pointing at ``wait_id``."""

    wait_id: str
    token: str
    state: str


@dataclass(frozen=True)
class RequestApproval:
    """Open a human approval for ``wait_id``; the shell makes a pair of links (approve, reject)
    for every seat and publishes the request."""

    wait_id: str
    state: str
    title: str
    description: str | None
    data: JSON
    seats: tuple[str, ...] = ("anyone",)
    rule: str | int = "Any"
    expires_at: datetime | None = None
    on_expiry: str = "Fail"
    #: The form and outcomes of the task's own (``bridge.asl.forms.Form.to_json``), if any.
    form: JSON = None


@dataclass(frozen=True)
class RecordVote:
    """A seat decided; the approval keeps the vote for its pages and API."""

    wait_id: str
    seat: str
    approved: bool
    decided_by: str | None
    comment: str | None
    #: approve, reject, or the outcome's name.
    decision: str = ""
    values: JSON = None


@dataclass(frozen=True)
class RecordHolders:
    """Who holds which seat now (claims, delegations, reassignments): kept with the approval
    for its pages, the inbox and the decisions' check."""

    wait_id: str
    holders: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ConcludeApproval:
    """The approval is decided (APPROVED, REJECTED) or EXPIRED."""

    wait_id: str
    outcome: ApprovalStatus


@dataclass(frozen=True)
class RemindApproval:
    """Remind the seats that have not decided yet, before the deadline."""

    wait_id: str
    state: str
    pending: tuple[str, ...]
    expires_at: datetime | None


@dataclass(frozen=True)
class NotifyApprovers:
    """Tell the people of ``seats`` (and the webhooks) of ``event``, outside the transaction:
    the shell writes one delivery per address and webhook. For ``Requested``, ``Reminded`` and
    ``Escalated`` each delivery carries fresh links of the seats it is for; ``Decided`` tells
    ``outcome``."""

    wait_id: str
    state: str
    event: NotifyEvent
    seats: tuple[str, ...]
    notify: NotifySpec
    outcome: str | None = None


@dataclass(frozen=True)
class ChangeSeats:
    """The approval's seats changed (an escalation): the approval row shows the new ones."""

    wait_id: str
    seats: tuple[str, ...]


@dataclass(frozen=True)
class ExpectEvent:
    """A process waits for the first event matching one of ``subscriptions``: (topic, event
    type, correlation key). The shell indexes them and delivers a buffered early event at once."""

    wait_id: str
    state: str
    subscriptions: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class InvokeHttp:
    """Make an HTTP call for ``wait_id`` outside the transaction (a ``bridge:http:invoke`` task).

    The shell queues ``request`` (``HttpRequest.to_json()``), calls it at least once, each time
    bounded by ``timeout_seconds`` and by ``deadline``, and answers the wait with the response or
    the error (``HttpAnswered``). The wait's id is the call's id.
    """

    wait_id: str
    state: str
    request: dict[str, JSON]
    timeout_seconds: int
    deadline: datetime


@dataclass(frozen=True)
class CloseWait:
    """The wait ended (answered, timed out, aborted): its tokens and links stop working.
    ``kind`` says which rows it may have (an approval's, an event wait's, an HTTP call)."""

    wait_id: str
    kind: Literal["callback", "approval", "event", "http"]


@dataclass(frozen=True)
class StartTimer:
    timer_id: str
    due_at: datetime


@dataclass(frozen=True)
class CancelTimer:
    timer_id: str


@dataclass(frozen=True)
class StartChild:
    """Start a child process of ``definition`` (``NAME``, ``NAME:VERSION`` or ``NAME:ALIAS``,
    resolved as an HTTP start is) with id ``child_id``, in the same transaction, and answer the
    parent's wait ``wait_id`` with ``ChildStarted`` or ``ChildNotStarted``. With ``sync`` the
    child's end answers the same wait later (``ChildEnded``)."""

    child_id: str
    wait_id: str
    state: str
    definition: str
    input: JSON
    name: str | None
    correlation_key: str | None
    sync: bool
    depth: int


@dataclass(frozen=True)
class StopChild:
    """The parent no longer waits for this child (stopped, failed, timed out, the task's
    TimeoutSeconds): stop the child, and through it its own waiting children."""

    child_id: str
    state: str


@dataclass(frozen=True)
class NotifyParent:
    """This process ended and its parent waits for it (``.sync``): answer the parent's wait."""

    parent_id: str
    wait_id: str
    status: str
    output: JSON
    error: str | None
    cause: str | None
    started_at: datetime
    ended_at: datetime


Effect = (
    SendMessage
    | ExpectCallback
    | RequestApproval
    | RecordVote
    | RecordHolders
    | ConcludeApproval
    | RemindApproval
    | NotifyApprovers
    | ChangeSeats
    | ExpectEvent
    | InvokeHttp
    | CloseWait
    | StartTimer
    | CancelTimer
    | StartChild
    | StopChild
    | NotifyParent
)


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    type: str
    state: str | None = None
    details: dict[str, JSON] = field(default_factory=dict)
