"""A process instance as pure data: status, data and where it stands.

``Process`` is what the store saves as JSON and what ``interpreter.step`` takes and returns.
Status changes go through ``ProcessStatus.can_become`` so that an ended process never runs again.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bridge.asl.approvals import Ballot
from bridge.asl.search import SearchValue
from bridge.asl.types import JSON


class ProcessStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"

    def can_become(self, other: ProcessStatus) -> bool:
        return other in _TRANSITIONS[self]

    @property
    def ended(self) -> bool:
        return self is not ProcessStatus.RUNNING


_TRANSITIONS: dict[ProcessStatus, frozenset[ProcessStatus]] = {
    ProcessStatus.RUNNING: frozenset(
        {
            ProcessStatus.SUCCEEDED,
            ProcessStatus.FAILED,
            ProcessStatus.TIMED_OUT,
            ProcessStatus.ABORTED,
        }
    ),
    ProcessStatus.SUCCEEDED: frozenset(),
    # A redrive runs a failed, timed-out or stopped process again from the state it ended in.
    ProcessStatus.FAILED: frozenset({ProcessStatus.RUNNING}),
    ProcessStatus.TIMED_OUT: frozenset({ProcessStatus.RUNNING}),
    ProcessStatus.ABORTED: frozenset({ProcessStatus.RUNNING}),
}

WaitKind = Literal["callback", "approval", "event", "http", "retry", "wait", "child"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Wait(_Frozen):
    """What the current state waits for. ``id`` is what a callback, decision or timer names."""

    id: str
    kind: WaitKind
    timeout_timer: str | None = None
    heartbeat_timer: str | None = None
    heartbeat_seconds: int | None = None
    timer: str | None = None
    #: When the timeout and heartbeat timers are due: an answer after either is refused even
    #: before the timer has fired, so that a late answer never beats its own timeout.
    timeout_at: datetime | None = None
    heartbeat_at: datetime | None = None
    #: Approval waits: seats, rule and votes so far.
    ballot: Ballot | None = None
    #: Child waits (``bridge:process:start``): the child's process id, and whether the task
    #: waits for the child's end (``.sync``) or only for its start.
    child: str | None = None
    sync: bool = False
    #: Callback waits: the SHA-256 of the task token that answers it (``bridge.asl.task_tokens``);
    #: None for a wait whose token has a row of its own (handed out before tokens named waits).
    token_hash: str | None = None


BranchStatus = Literal["pending", "running", "succeeded", "failed", "aborted"]


class Position(_Frozen):
    """The state a running process (or branch) is in, with the raw input that state received.

    A Parallel or Map state in progress holds its branches, each with a position of its own.
    """

    state: str
    input: JSON
    entered_at: datetime
    wait: Wait | None = None
    attempts: tuple[int, ...] = ()
    retry_count: int = 0
    branches: tuple[Branch, ...] = ()
    #: Map only, resolved when the state is entered: 0 means no limit.
    max_concurrency: int = 0
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None
    #: The id AWS would give this state's ...StateEntered event (see ``Process.events``).
    entered_event: int = 0


class Branch(_Frozen):
    """One branch of a Parallel state or one item of a Map state."""

    index: int
    input: JSON
    status: BranchStatus = "pending"
    #: The Map item as it was before ItemSelector ($$.Map.Item.Value).
    item: JSON = None
    position: Position | None = None
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    #: Variables assigned inside the branch; the outer ones stay readable, never written.
    variables: dict[str, JSON] = {}

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "aborted")


Position.model_rebuild()


class ParentLink(_Frozen):
    """A child process's parent: the process and the state that started it. ``wait_id`` is the
    parent's wait that the child's end answers (``.sync``); None when the parent did not wait."""

    id: str
    state: str
    wait_id: str | None = None
    #: 1 for a child of a top-level process, 2 for its child, and so on.
    depth: int = 1


class Process(_Frozen):
    id: str
    definition: str
    version: int
    status: ProcessStatus = ProcessStatus.RUNNING
    correlation_key: str | None = None
    input: JSON = None
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    position: Position | None = None
    #: Workflow variables of the top-level frame (``Assign``).
    variables: dict[str, JSON] = {}
    timeout_timer: str | None = None
    transitions: int = 0
    redrive_count: int = 0
    #: How many events AWS Step Functions would have in this execution's history so far
    #: (ExecutionStarted is #1): runtime error causes name the failing state's entry by its id.
    events: int = 0
    #: Set for a process started by another one's ``bridge:process:start`` task.
    parent: ParentLink | None = None
    #: The business fields it is listed and filtered by (``SearchAttributes``).
    search_attributes: dict[str, SearchValue] = {}
    #: Its pending timers by id, with when each is due: the timers its waits and its own
    #: TimeoutSeconds started and nothing has cancelled or fired yet (see ``keep_timers``).
    timers: dict[str, datetime] = {}

    @property
    def current_state(self) -> str | None:
        return self.position.state if self.position else None

    @property
    def wake_at(self) -> datetime | None:
        """When its earliest pending timer is due; None when it has none."""
        return min(self.timers.values(), default=None)

    def open_wait(self, wait_id: str) -> Wait | None:
        """The wait ``wait_id`` if the process waits for it now (in any branch)."""
        return None if self.status.ended else _wait_at(self.position, wait_id)

    def spend_timer(self, timer_id: str) -> Process:
        """The process without timer ``timer_id``: a timer fires once, also when the step it
        fired was refused."""
        if timer_id not in self.timers:
            return self
        rest = {name: due for name, due in self.timers.items() if name != timer_id}
        return self.model_copy(update={"timers": rest})


# A module function, not a closure that calls itself: such a closure is a reference cycle, and
# everything it holds would wait for the garbage collector.
def _wait_at(position: Position | None, wait_id: str) -> Wait | None:
    if position is None:
        return None
    if position.wait is not None and position.wait.id == wait_id:
        return position.wait
    for branch in position.branches:
        if (found := _wait_at(branch.position, wait_id)) is not None:
            return found
    return None
