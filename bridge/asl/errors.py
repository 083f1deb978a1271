"""ASL error names and the one exception root of the pure core.

Business failures travel as values (``Failure``); ``StatesError`` is raised only inside the
interpreter while evaluating a state and is turned into a ``Failure`` at the state boundary, where
Retry and Catch see it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL = "States.ALL"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
TASK_FAILED = "States.TaskFailed"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
BRANCH_FAILED = "States.BranchFailed"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
PERMISSIONS = "States.Permissions"

#: Bridge error names.
APPROVAL_REJECTED = "Approval.Rejected"
#: HTTP tasks: a response outside 2xx is ``Http.<status>`` (``Http.404``); these name the calls
#: that got no response, or were never made.
HTTP_TIMEOUT = "Http.Timeout"
HTTP_CONNECTION_ERROR = "Http.ConnectionError"
HTTP_FORBIDDEN = "Http.Forbidden"
HTTP_INVALID_REQUEST = "Http.InvalidRequest"
HTTP_RESPONSE_TOO_LARGE = "Http.ResponseTooLarge"
#: The response cannot be kept with the process (a NUL character, nesting past the bound).
HTTP_INVALID_RESPONSE = "Http.InvalidResponse"

#: ``Http.4xx`` in ErrorEquals covers ``Http.400`` to ``Http.499``, and so on for 1xx to 5xx.
_HTTP_FAMILY = re.compile(r"Http\.([1-5])xx")
_HTTP_STATUS = re.compile(r"Http\.([1-5])[0-9][0-9]")
#: Nested processes (bridge:process:start): a child that ended otherwise than SUCCEEDED, ...
CHILD_FAILED = "Process.ChildFailed"
CHILD_TIMED_OUT = "Process.ChildTimedOut"
CHILD_ABORTED = "Process.ChildAborted"
#: ... a start that could not be made, ...
CHILD_INVALID_PARAMETERS = "Process.InvalidParameters"
CHILD_DEFINITION_NOT_FOUND = "Process.DefinitionNotFound"
CHILD_RUNNING = "Process.ChildRunning"
NESTING_TOO_DEEP = "Process.NestingTooDeep"
#: ... and the error a child is stopped with when its parent stops waiting for it.
PARENT_STOPPED = "Process.ParentStopped"

#: Errors that ``States.ALL`` does not match (AWS: States.Runtime is not retriable/catchable
#: through States.ALL).
NOT_MATCHED_BY_ALL = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


@dataclass(frozen=True)
class Failure:
    """A failed state or process: an ASL error name and a human-readable cause. A Fail state
    that names neither fails with neither (None), as on AWS."""

    error: str | None
    cause: str | None = ""


class BridgeError(Exception):
    """The root of the bridge's own errors: ``except BridgeError`` catches what the bridge
    raises, and nothing a library raised."""


class StatesError(BridgeError):
    """Raised while evaluating a state; carries the ASL error name and cause."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause

    def as_failure(self) -> Failure:
        return Failure(self.error, self.cause)


#: Errors whose cause AWS prefixes with the state and the event it was entered at.
_IN_STATE = frozenset({RUNTIME, QUERY_EVALUATION_ERROR, PARAMETER_PATH_FAILURE})


def in_state(error: StatesError, state: str, entered_event: int) -> Failure:
    """A state's evaluation error as AWS reports it: runtime causes name the state and the id
    of the event that entered it."""
    if error.error not in _IN_STATE or entered_event < 1:
        return error.as_failure()
    return Failure(
        error.error,
        f"An error occurred while executing the state '{state}' (entered at the event id "
        f"#{entered_event}). {error.cause}",
    )


class DefinitionError(BridgeError):
    """A definition that cannot be loaded; ``problems`` name the state and field of each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid definition:\n  " + "\n  ".join(problems))
        self.problems = problems


def error_matches(error_equals: list[str] | tuple[str, ...], error: str | None) -> bool:
    """Whether a Retrier's or Catcher's ErrorEquals matches ``error``, as AWS matches it."""
    for name in error_equals:
        if name == error:
            return True
        if name == ALL and error not in NOT_MATCHED_BY_ALL:
            return True
        if name == TASK_FAILED and error != TIMEOUT and error not in NOT_MATCHED_BY_ALL:
            # AWS: in Retry and Catch, States.TaskFailed matches any error but States.Timeout.
            return True
        if error is not None and http_family_matches(name, error):
            return True
    return False


def http_family_matches(name: str, error: str) -> bool:
    """Whether an ErrorEquals ``name`` like ``Http.5xx`` covers ``error`` like ``Http.503``."""
    family = _HTTP_FAMILY.fullmatch(name)
    if family is None:
        return False
    status = _HTTP_STATUS.fullmatch(error)
    return status is not None and status.group(1) == family.group(1)
