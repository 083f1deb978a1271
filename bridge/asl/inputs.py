"""What can happen to a process: the inputs of ``interpreter.step``.

Every entry point of the shell (a Kafka event, a reply, an HTTP callback, an approval decision, a
fired timer) is turned into exactly one of these before the engine calls the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bridge.asl.approvals import SeatChange
from bridge.asl.process import ParentLink
from bridge.asl.types import JSON


@dataclass(frozen=True)
class Start:
    process_id: str
    input: JSON
    correlation_key: str | None = None
    #: What started it (event id, topic, HTTP), recorded in the history.
    origin: dict[str, JSON] = field(default_factory=dict)
    #: The process (and state) that started this one as its child.
    parent: ParentLink | None = None
    #: Workflow variables set before the first state (TestState's ``variables``).
    variables: dict[str, JSON] = field(default_factory=dict)
    #: How often the first state's retriers count as having retried already (TestState's
    #: ``stateConfiguration.retrierRetryCount``).
    retried: int = 0


@dataclass(frozen=True)
class TaskSucceeded:
    wait_id: str
    output: JSON


@dataclass(frozen=True)
class TaskFailed:
    wait_id: str
    error: str
    cause: str = ""


@dataclass(frozen=True)
class TaskHeartbeat:
    wait_id: str


@dataclass(frozen=True)
class SeatChanged:
    """Who holds a seat of an approval changes: a member claims a group's seat (or gives it
    back), an assignee delegates their seat, an admin reassigns any seat. ``holder`` is the new
    holder (None: unclaimed); ``by`` who asks; ``admin`` whether an admin does."""

    wait_id: str
    seat: str
    action: SeatChange
    holder: str | None = None
    by: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class ApprovalDecided:
    wait_id: str
    approved: bool
    decided_by: str | None = None
    comment: str | None = None
    #: The seat that decides (``user:NAME``, ``group:NAME``); None for a single-seat approval.
    seat: str | None = None
    #: An outcome of the task's own (``Outcomes``) instead of approve or reject.
    outcome: str | None = None
    #: The form's values, checked by the shell against the approval's form.
    values: JSON = None


@dataclass(frozen=True)
class Redrive:
    """Run an ended (failed, timed-out, stopped) process again from the state it ended in."""


@dataclass(frozen=True)
class Fault:
    """Processing an input for this process kept failing: the process fails with the reason."""

    error: str
    cause: str = ""


@dataclass(frozen=True)
class Audit:
    """Something worth keeping in the history that changes nothing (a page viewed, a refused
    attempt). Accepted whatever the process's status."""

    kind: str
    state: str | None
    details: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class EventArrived:
    """An event a process waits for: ``event`` becomes the wait's result."""

    wait_id: str
    event: JSON


@dataclass(frozen=True)
class HttpAnswered:
    """The HTTP call of a ``bridge:http:invoke`` wait ended: ``response`` (``{"StatusCode",
    "StatusText", "Headers", "ResponseBody"}``, any status), or, when there was none, ``error``
    (``Http.Timeout``, ``Http.ConnectionError``, ``Http.Forbidden``, ...) and ``cause``."""

    wait_id: str
    response: JSON = None
    error: str | None = None
    cause: str = ""


@dataclass(frozen=True)
class TimerFired:
    timer_id: str


@dataclass(frozen=True)
class Stop:
    error: str = "Process.Stopped"
    cause: str = ""


@dataclass(frozen=True)
class ChildStarted:
    """The shell started the child a ``bridge:process:start`` task asked for (or found the one its
    Name names): the plain form completes with its id, ``.sync`` goes on waiting for its end."""

    wait_id: str
    process_id: str
    definition: str
    version: int | None
    started_at: datetime
    #: The task's Name for the child, if it gave one.
    name: str | None = None
    #: The Name named a child started before: nothing new was started.
    existing: bool = False


@dataclass(frozen=True)
class ChildNotStarted:
    """The child could not be started (no such definition, version or alias; ...): the task
    fails with ``error``."""

    wait_id: str
    error: str
    cause: str = ""


@dataclass(frozen=True)
class ChildEnded:
    """A child the parent waits for (``.sync``) ended: its status, output or error and cause."""

    wait_id: str
    process_id: str
    status: str
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


Input = (
    Start
    | TaskSucceeded
    | TaskFailed
    | TaskHeartbeat
    | ApprovalDecided
    | SeatChanged
    | EventArrived
    | HttpAnswered
    | TimerFired
    | Stop
    | Redrive
    | Fault
    | Audit
    | ChildStarted
    | ChildNotStarted
    | ChildEnded
)
