"""TestState: one state run on its own, as AWS Step Functions' TestState API runs it.

Give a state (or a whole definition and the state's name), an input, workflow variables and,
for a Task, the mocked result or error; the answer says what the state did:

- ``SUCCEEDED``: its output and the state it goes to next (none after an End);
- ``FAILED``: its error and cause;
- ``RETRIABLE``: it failed and a Retrier would try again (after ``retryBackoffIntervalSeconds``);
- ``CAUGHT_ERROR``: it failed and a Catcher took the error: the output and the Catcher's Next.

At ``DEBUG`` (and ``TRACE``) the answer also holds the inspection data: what the state's data
flow made of its input at each stage (``afterInputPath``, ``afterParameters``, ``result``,
``afterResultSelector``, ``afterResultPath``; ``afterArguments`` in JSONata), the variables
after ``Assign``, and for an error the Retrier or Catcher that matched.

The state runs through the same interpreter as every process (the local runner, no Kafka and no
database): the states it can go to are stood in for by Succeed states, and nothing waits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bridge.asl.errors import BridgeError, DefinitionError, Failure
from bridge.asl.loading import parse_definition
from bridge.asl.run_base import Probe
from bridge.asl.types import JSON
from bridge.local import LocalResult, MocksError, document_of, run_probed

InspectionLevel = Literal["INFO", "DEBUG", "TRACE"]
INSPECTION_LEVELS: tuple[InspectionLevel, ...] = ("INFO", "DEBUG", "TRACE")

#: A state that goes back to itself runs again; this bounds how often.
MAX_STEPS = 1_000
#: The inspection data's stages, in the order a state goes through them.
STAGES = (
    "afterArguments",
    "afterInputPath",
    "afterParameters",
    "result",
    "afterResultSelector",
    "afterResultPath",
    "variables",
    "maxConcurrency",
    "toleratedFailureCount",
    "toleratedFailurePercentage",
    "errorDetails",
)
#: Stages only TRACE shows: an HTTP task's request and response.
_TRACE = ("request", "response")
#: Stages AWS answers as values, not as JSON text.
_VALUES = frozenset(
    {
        "maxConcurrency",
        "toleratedFailureCount",
        "toleratedFailurePercentage",
        "errorDetails",
        "request",
        "response",
    }
)


class StateTestError(BridgeError, ValueError):
    """A request TestState cannot run; ``problems`` say why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Mock:
    """A Task's mocked answer: its ``result``, or the ``error`` (and ``cause``) it fails with."""

    result: JSON = None
    error: str | None = None
    cause: str | None = None

    def as_result(self) -> JSON:
        """The mock as a Map's or Parallel's whole result (a ``Failure`` for an error)."""
        if self.error is not None:
            return Failure(self.error, self.cause or "")
        return self.result

    def as_response(self) -> dict[str, JSON]:
        if self.error is not None:
            return {"Throw": {"Error": self.error, "Cause": self.cause or ""}}
        return {"Return": self.result}


@dataclass(frozen=True)
class StateTestResult:
    status: Literal["SUCCEEDED", "FAILED", "RETRIABLE", "CAUGHT_ERROR"]
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    next_state: str | None = None
    inspection_data: dict[str, JSON] | None = None

    def to_dict(self) -> dict[str, JSON]:
        """AWS's answer: ``output`` and the inspection data's values as JSON text."""
        answer: dict[str, JSON] = {"status": self.status}
        if self.status in ("SUCCEEDED", "CAUGHT_ERROR"):
            answer["output"] = _text(self.output)
        if self.error is not None:
            answer["error"] = self.error
        if self.cause is not None:
            answer["cause"] = self.cause
        if self.next_state is not None:
            answer["nextState"] = self.next_state
        if self.inspection_data is not None:
            answer["inspectionData"] = {
                key: value if key in _VALUES else _text(value)
                for key, value in self.inspection_data.items()
            }
        return answer


def run_test_state(
    definition: Mapping[str, JSON] | str,
    *,
    state_name: str | None = None,
    input: JSON = None,
    variables: Mapping[str, JSON] | None = None,
    mock: Mock | None = None,
    inspection_level: InspectionLevel = "INFO",
    context: Mapping[str, JSON] | None = None,
    retrier_retry_count: int = 0,
    seed: int | None = None,
) -> StateTestResult:
    """Run one state of ``definition`` (a state, or a state machine with ``state_name``).

    ``mock`` answers a Task, or stands for a Map's or Parallel's whole result; ``context``
    gives context object fields (``{"Execution": {"Name": ...}}``); ``retrier_retry_count``
    says how often the state's retriers have retried already (AWS's
    ``stateConfiguration.retrierRetryCount``).

    Raises ``StateTestError`` when the request cannot run: an invalid definition, an unknown
    state, a Task that waits for an answer without a ``mock``, an unknown inspection level.
    """
    if inspection_level not in INSPECTION_LEVELS:
        raise StateTestError([f"inspectionLevel must be one of {', '.join(INSPECTION_LEVELS)}"])
    try:
        document = document_of(definition)
    except DefinitionError as exc:
        raise StateTestError(exc.problems) from None
    name, state, language = _the_state(document, state_name)
    machine = _alone(name, state, language)
    try:
        parsed = parse_definition(machine, "test-state")
    except DefinitionError as exc:
        raise StateTestError(exc.problems) from None
    if retrier_retry_count < 0:
        raise StateTestError(["retrierRetryCount: must be 0 or more"])
    kind = state.get("Type")
    mocks = {name: mock.as_response()} if mock is not None and kind == "Task" else {}
    probe = Probe(context=context)
    if mock is not None and kind in ("Map", "Parallel"):
        probe.results = {name: mock.as_result()}
    try:
        run = run_probed(
            machine,
            parsed,
            {} if input is None else input,
            mocks,
            probe=probe,
            variables=dict(variables or {}),
            retried=retrier_retry_count,
            max_steps=MAX_STEPS,
            seed=seed,
        )
    except MocksError as exc:
        raise StateTestError(exc.problems) from None
    result = _outcome(name, run)
    if result.error == "Local.NoMock":
        raise StateTestError([f"{name}: a Task that waits for an answer needs a mock"])
    if inspection_level == "INFO":
        return result
    stages = probe.stages.get(name, {})
    data: dict[str, JSON] = {"input": {} if input is None else input}
    data.update((stage, stages[stage]) for stage in STAGES if stage in stages)
    if inspection_level == "TRACE":
        data.update((stage, stages[stage]) for stage in _TRACE if stage in stages)
    return StateTestResult(
        result.status, result.output, result.error, result.cause, result.next_state, data
    )


def _the_state(
    document: Mapping[str, JSON], state_name: str | None
) -> tuple[str, Mapping[str, JSON], JSON]:
    """The state to run, its name, and the query language it inherits."""
    states = document.get("States")
    if isinstance(states, Mapping):
        if state_name is None:
            raise StateTestError(["stateName: name the state of the state machine to run"])
        state = states.get(state_name)
        if not isinstance(state, Mapping):
            raise StateTestError([f"stateName: the state machine has no state {state_name!r}"])
        return state_name, state, document.get("QueryLanguage")
    if "Type" not in document:
        raise StateTestError(["definition: give a state (with Type) or a state machine (States)"])
    return state_name or "TestState", document, None


def _alone(name: str, state: Mapping[str, JSON], language: JSON) -> dict[str, JSON]:
    """A state machine of ``state`` alone, every state it can go to stood in for by a Succeed."""
    targets = [state.get("Next"), state.get("Default")]
    for field in ("Choices", "Catch"):
        listed = state.get(field)
        if isinstance(listed, list):
            targets += [item.get("Next") for item in listed if isinstance(item, dict)]
    states: dict[str, JSON] = {
        target: {"Type": "Succeed"} for target in targets if isinstance(target, str)
    }
    states[name] = dict(state)
    machine: dict[str, JSON] = {"StartAt": name, "States": states}
    if language is not None:
        machine["QueryLanguage"] = language
    return machine


def _outcome(name: str, run: LocalResult) -> StateTestResult:
    """What the state did, read from the run's history (its first run counts)."""
    history = run.history
    for index, entry in enumerate(history):
        if entry["state"] != name:
            continue
        details = entry["details"]
        kind = entry["type"]
        if kind == "RetryScheduled":
            return StateTestResult("RETRIABLE", error=details["error"], cause=details["cause"])
        if kind == "ErrorCaught":
            exited = _next(history, index, "StateExited", name)
            entered = _next(history, index, "StateEntered", None)
            return StateTestResult(
                "CAUGHT_ERROR",
                output=exited["details"]["output"] if exited else None,
                error=details["error"],
                cause=details["cause"],
                next_state=entered["state"] if entered else None,
            )
        if kind == "StateExited":
            entered = _next(history, index, "StateEntered", None)
            return StateTestResult(
                "SUCCEEDED",
                output=details["output"],
                next_state=entered["state"] if entered else None,
            )
    return StateTestResult("FAILED", error=run.error, cause=run.cause)


def _next(
    history: list[dict[str, JSON]], after: int, kind: str, state: str | None
) -> dict[str, JSON] | None:
    for entry in history[after + 1 :]:
        if entry["type"] == kind and (state is None or entry["state"] == state):
            return entry
    return None


def _text(value: JSON) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
