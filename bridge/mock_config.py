"""AWS Step Functions Local's mock configuration file, read as the local runner's mocks.

A team that tests its state machines with Step Functions Local keeps one file for all of them::

    {"StateMachines": {"<machine>": {"TestCases": {"<case>": {"<state>": "<response>"}}}},
     "MockedResponses": {"<response>": {"0": {"Return": {...}},
                                         "1-2": {"Throw": {"Error": "...", "Cause": "..."}}}}}

A mocked response maps invocation numbers (from 0, alone or as a range ``first-last``) to what
that invocation answers. ``mocks_for`` turns one test case into the runner's own mocks: per
state, the list of answers in invocation order. Pure: no files, no runner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bridge.asl.errors import BridgeError
from bridge.asl.types import JSON

_INVOCATIONS = re.compile(r"(\d+)(?:-(\d+))?")


class MockConfigError(BridgeError):
    """A mock configuration that cannot be used; ``problems`` say where and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid mock configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


def is_mock_config(value: object) -> bool:
    """Whether ``value`` is a Step Functions Local mock configuration (not the runner's own
    mocks, which are keyed by state name)."""
    return isinstance(value, Mapping) and "StateMachines" in value


def mocks_for(
    config: Mapping[str, JSON],
    test_case: str | None,
    state_machine: str | None = None,
    *,
    default: str | None = None,
) -> dict[str, list[JSON]]:
    """The runner's mocks for ``test_case`` of ``state_machine``; when that is None, of the
    file's only state machine, or of the one named ``default`` (the definition's name)."""
    machines = config.get("StateMachines")
    responses = config.get("MockedResponses", {})
    if not isinstance(machines, Mapping) or not machines:
        raise MockConfigError(["StateMachines: must name at least one state machine"])
    if not isinstance(responses, Mapping):
        raise MockConfigError(["MockedResponses: must be an object"])
    if state_machine is None and default in machines:
        state_machine = default
    if state_machine is None:
        if len(machines) != 1:
            raise MockConfigError(
                [f"name the state machine (one of {', '.join(sorted(machines))})"]
            )
        state_machine = next(iter(machines))
    machine = machines.get(state_machine)
    if not isinstance(machine, Mapping):
        raise MockConfigError(
            [f"StateMachines: no {state_machine!r} (known: {', '.join(sorted(machines))})"]
        )
    cases = machine.get("TestCases")
    if not isinstance(cases, Mapping):
        raise MockConfigError([f"StateMachines.{state_machine}.TestCases: must be an object"])
    if test_case is None or test_case not in cases:
        raise MockConfigError(
            [
                f"StateMachines.{state_machine}.TestCases: name a test case "
                f"(one of {', '.join(sorted(cases)) or 'none'})"
            ]
        )
    case = cases[test_case]
    if not isinstance(case, Mapping):
        raise MockConfigError(
            [f"StateMachines.{state_machine}.TestCases.{test_case}: not an object"]
        )
    problems: list[str] = []
    mocks: dict[str, list[JSON]] = {}
    for state, response_name in case.items():
        where = f"StateMachines.{state_machine}.TestCases.{test_case}.{state}"
        if not isinstance(response_name, str) or response_name not in responses:
            problems.append(f"{where}: no mocked response named {response_name!r}")
            continue
        answers = _in_order(responses[response_name], f"MockedResponses.{response_name}", problems)
        if answers:
            mocks[state] = answers
    if problems:
        raise MockConfigError(problems)
    return mocks


def _in_order(response: JSON, where: str, problems: list[str]) -> list[JSON]:
    """A mocked response's answers by invocation number; the numbers must run from 0 without
    gaps or overlaps."""
    if not isinstance(response, Mapping) or not response:
        problems.append(f"{where}: must map invocation numbers to Return or Throw")
        return []
    slots: dict[int, JSON] = {}
    for key, answer in response.items():
        match = _INVOCATIONS.fullmatch(str(key))
        if match is None:
            problems.append(f"{where}.{key}: not an invocation number or range like 1-2")
            continue
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if last < first:
            problems.append(f"{where}.{key}: the range ends before it starts")
            continue
        for invocation in range(first, last + 1):
            if invocation in slots:
                problems.append(f"{where}.{key}: invocation {invocation} is mocked twice")
                break
            slots[invocation] = _answer(answer)
    missing = [n for n in range(len(slots)) if n not in slots]
    if slots and missing:
        problems.append(f"{where}: no answer for invocation {missing[0]} (they count from 0)")
    return [slots[n] for n in sorted(slots)]


def _answer(answer: JSON) -> JSON:
    """Step Functions Local's Throw may leave out the Cause; the runner's takes it as ""."""
    if isinstance(answer, Mapping) and isinstance(answer.get("Throw"), Mapping):
        thrown = dict(answer["Throw"])
        thrown.setdefault("Cause", "")
        return {**answer, "Throw": thrown}
    return answer
