"""Parallel and Map states: branches run as frames inside the state's position.

``RunBranches`` starts the branches, settles them when they wait or end, and combines their
outputs (or their failure) into the state's outcome.
"""

from __future__ import annotations

import json

from bridge.asl import errors
from bridge.asl.dataflow import (
    count,
    fixed,
    input_path,
    optional_count,
    optional_percentage,
    read_or_runtime,
)
from bridge.asl.errors import Failure, StatesError
from bridge.asl.model import MapState, ParallelState
from bridge.asl.process import Branch, Position, Process
from bridge.asl.run_base import (
    _Blocked,
    _Ended,
    _Failed,
    _FrameResult,
    _Outcome,
    _Scope,
    _Waiting,
)
from bridge.asl.run_tasks import RunTasks
from bridge.asl.types import JSON


class RunBranches(RunTasks):
    """The Parallel and Map state handlers of a run (Map's ResultWriter path reuses tasks)."""

    def _parallel(
        self,
        process: Process,
        scope: _Scope,
        state: ParallelState,
        position: Position,
        context: JSON,
    ) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            data = position.input
            if state.arguments is not None:
                data = self._evaluate(state.arguments, bindings, "Arguments")
        else:
            data = input_path(state.input_path, position.input, context)
            if state.parameters is not None:
                data = self._template(state.parameters, data, context)
        mocked = self._mocked_result(process, scope, position)
        if mocked is not None:
            return mocked
        branches = tuple(Branch(index=index, input=data) for index in range(len(state.branches)))
        self.events += 1  # AWS: ParallelStateStarted
        started = position.model_copy(update={"branches": branches})
        return self._settle(process, scope, started)

    def _map(
        self,
        process: Process,
        scope: _Scope,
        state: MapState,
        position: Position,
        context: dict[str, JSON],
    ) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            data = position.input
            items = (
                self._evaluate(state.items, bindings, "Items") if state.items is not None else data
            )
            limits = {
                "max_concurrency": self._jsonata_count(state.max_concurrency, bindings),
                "tolerated_failure_count": self._jsonata_count(
                    state.tolerated_failure_count, bindings
                ),
                "tolerated_failure_percentage": self._jsonata_count(
                    state.tolerated_failure_percentage, bindings
                ),
            }
        else:
            data = input_path(state.input_path, position.input, context)
            if state.items is not None:
                items = self._template(state.items, data, context)
            else:
                items = read_or_runtime(state.items_path or "$", data, context)
            limits = {
                "max_concurrency": count(
                    fixed(state.max_concurrency),
                    state.max_concurrency_path,
                    data,
                    context,
                    "MaxConcurrency",
                ),
                "tolerated_failure_count": optional_count(
                    fixed(state.tolerated_failure_count),
                    state.tolerated_failure_count_path,
                    data,
                    context,
                ),
                "tolerated_failure_percentage": optional_percentage(
                    fixed(state.tolerated_failure_percentage),
                    state.tolerated_failure_percentage_path,
                    data,
                    context,
                ),
            }
        if not isinstance(items, list):
            raise _not_an_array(state, items, jsonata=self._is_jsonata(state))
        self._inspect(position.state, "maxConcurrency", limits["max_concurrency"])
        for stage, limit in (
            ("toleratedFailureCount", limits["tolerated_failure_count"]),
            ("toleratedFailurePercentage", limits["tolerated_failure_percentage"]),
        ):
            if limit is not None:
                self._inspect(position.state, stage, limit)
        mocked = self._mocked_result(process, scope, position)
        if mocked is not None:
            return mocked
        selector = state.item_selector if state.item_selector is not None else state.parameters
        branches = []
        for index, item in enumerate(items):
            branch_input = item
            if selector is not None:
                item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
                if self._is_jsonata(state):
                    item_bindings = self._bindings(scope, item_context, input=position.input)
                    branch_input = self._evaluate(selector, item_bindings, "ItemSelector")
                else:
                    branch_input = self._template(selector, data, item_context)
            branches.append(Branch(index=index, input=branch_input, item=item))
        started = position.model_copy(update={"branches": tuple(branches), **limits})
        self._record("MapStarted", position.state, length=len(items))
        return self._settle(process, scope, started)

    def _mocked_result(
        self, process: Process, scope: _Scope, position: Position
    ) -> _Outcome | None:
        """A TestState request's mocked result for this Map or Parallel state, taken as what
        its branches gave (as AWS's TestState does); None to run the branches."""
        if self.probe is None or position.state not in self.probe.results:
            return None
        mocked = self.probe.results[position.state]
        if isinstance(mocked, Failure):
            return mocked
        return self._completed(process, scope, position, mocked)

    def _settle(self, process: Process, scope: _Scope, position: Position) -> _Outcome:
        """Start what may start, and decide whether a Parallel or Map state is done or failed."""
        state = scope.machine.states[position.state]
        assert isinstance(state, ParallelState | MapState)
        while True:
            branches = list(position.branches)
            failure = self._branch_failure(state, position)
            if failure is not None:
                for branch in branches:
                    if branch.status == "running":
                        self._abandon(branch.position)
                aborted = tuple(
                    b.model_copy(update={"status": "aborted"}) if not b.done else b
                    for b in branches
                )
                position = position.model_copy(update={"branches": aborted})
                self.events += 1  # AWS: MapStateFailed or ParallelStateFailed
                return failure
            running = sum(1 for branch in branches if branch.status == "running")
            limit = position.max_concurrency or len(branches)
            waiting = [branch for branch in branches if branch.status == "pending"]
            if not waiting or running >= limit:
                break
            branch = waiting[0]
            branches[branch.index] = self._start_branch(process, scope, position, branch)
            position = position.model_copy(update={"branches": tuple(branches)})
        if all(branch.done for branch in position.branches):
            self.events += 1  # AWS: MapStateSucceeded or ParallelStateSucceeded
            results = [
                branch.output
                if branch.status == "succeeded"
                else {"Error": branch.error, "Cause": branch.cause}
                for branch in position.branches
            ]
            return self._completed(
                process, scope, position.model_copy(update={"branches": ()}), results
            )
        return _Blocked(position)

    def _branch_failure(
        self, state: ParallelState | MapState, position: Position
    ) -> Failure | None:
        failed = [branch for branch in position.branches if branch.status == "failed"]
        if not failed:
            return None
        first = failed[0]
        if isinstance(state, ParallelState):
            return Failure(first.error, first.cause)
        count, percentage = position.tolerated_failure_count, position.tolerated_failure_percentage
        if count is None and percentage is None:
            return Failure(first.error, first.cause)
        total = len(position.branches)
        over_count = count is not None and len(failed) > count
        over_percentage = percentage is not None and len(failed) * 100 > percentage * total
        if over_count or over_percentage or (count is None and percentage is None):
            return Failure(
                errors.EXCEED_TOLERATED_FAILURE_THRESHOLD,
                f"Map state {position.state}: {len(failed)} of {total} items failed, more than "
                "the tolerated failures",
            )
        return None

    def _branch_scope(self, scope: _Scope, position: Position, branch: Branch) -> _Scope:
        state = scope.machine.states[position.state]
        outer, own = scope.variables(), dict(branch.variables)
        if isinstance(state, ParallelState):
            return _Scope(state.branches[branch.index], scope.map_item, outer, own)
        assert isinstance(state, MapState)
        return _Scope(state.processor, (branch.index, branch.item), outer, own)

    def _start_branch(
        self, process: Process, scope: _Scope, position: Position, branch: Branch
    ) -> Branch:
        inner = self._branch_scope(scope, position, branch)
        self._record("BranchStarted", position.state, index=branch.index)
        first = self._enter(inner.machine.start_at, branch.input)
        running = branch.model_copy(update={"status": "running"})
        result = self._drive(process, inner, first)
        return self._branch_after(position.state, running, result, inner)

    def _branch_after(
        self, parent: str, branch: Branch, result: _FrameResult, inner: _Scope
    ) -> Branch:
        if inner.own != branch.variables:
            branch = branch.model_copy(update={"variables": inner.own})
        match result:
            case _Waiting(position=position):
                return branch.model_copy(update={"position": position})
            case _Ended(output=output):
                self._record("BranchSucceeded", parent, index=branch.index)
                return branch.model_copy(
                    update={"status": "succeeded", "output": output, "position": None}
                )
            case _Failed(failure=failure):
                self._record(
                    "BranchFailed",
                    parent,
                    index=branch.index,
                    error=failure.error,
                    cause=failure.cause,
                )
                return branch.model_copy(
                    update={
                        "status": "failed",
                        "error": failure.error,
                        "cause": failure.cause,
                        "position": None,
                    }
                )


def _json_type(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _not_an_array(state: MapState, items: JSON, *, jsonata: bool) -> StatesError:
    """What AWS says when a Map state's items are not an array."""
    shown = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    if not jsonata:
        return StatesError(errors.RUNTIME, f"Map state input must be an array but was: {shown}")
    if state.items is None:
        return StatesError(
            errors.QUERY_EVALUATION_ERROR, f"Map state input must be an array but was: {shown}"
        )
    expression = state.items.strip()[2:-2].strip() if isinstance(state.items, str) else shown
    return StatesError(
        errors.QUERY_EVALUATION_ERROR,
        f"The JSONata expression '{expression}' specified for the field 'Items' returned an "
        f"unexpected result type. Expected 'array', but was '{_json_type(items)}' for value: "
        f"{shown}",
    )
