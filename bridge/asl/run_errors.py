"""Errors: Retry, then Catch, then failing the frame, in the order AWS applies them."""

from __future__ import annotations

from datetime import timedelta

from bridge.asl import errors, paths
from bridge.asl.effects import StartTimer
from bridge.asl.errors import Failure, StatesError
from bridge.asl.model import MapState, ParallelState, TaskState
from bridge.asl.process import Position, Process, Wait
from bridge.asl.run_base import RunBase, _Failed, _FrameResult, _Scope, _Waiting


class RunErrors(RunBase):
    """Recovery from a failed state."""

    def _recover(
        self, process: Process, scope: _Scope, position: Position, failure: Failure
    ) -> _FrameResult | Position:
        """Retry, then Catch, then fail the frame: the order AWS applies them in."""
        state = scope.machine.states[position.state]
        if not isinstance(state, TaskState | ParallelState | MapState):
            return _Failed(failure, position)
        for index, retrier in enumerate(state.retry):
            if not errors.error_matches(retrier.error_equals, failure.error):
                continue
            attempts = list(position.attempts) + [0] * (len(state.retry) - len(position.attempts))
            if attempts[index] >= retrier.max_attempts:
                break
            delay = retrier.interval_seconds * retrier.backoff_rate ** attempts[index]
            if retrier.max_delay_seconds is not None:
                delay = min(delay, retrier.max_delay_seconds)
            if retrier.jitter_strategy == "FULL":
                delay = self.entropy.random_int(0, int(delay * 1000) + 1) / 1000
            attempts[index] += 1
            timer = self.entropy.new_id()
            self.effects.append(StartTimer(timer, self.now + timedelta(seconds=delay)))
            self._inspect(
                position.state,
                "errorDetails",
                {"retryIndex": index, "retryBackoffIntervalSeconds": delay},
            )
            self._record(
                "RetryScheduled",
                position.state,
                error=failure.error,
                cause=failure.cause,
                attempt=attempts[index],
                delaySeconds=delay,
            )
            return _Waiting(
                position.model_copy(
                    update={
                        "wait": Wait(id=timer, kind="retry", timer=timer),
                        "attempts": tuple(attempts),
                        "retry_count": position.retry_count + 1,
                        "branches": (),
                    }
                )
            )
        for catch_index, catcher in enumerate(state.catch):
            if errors.error_matches(catcher.error_equals, failure.error):
                self._inspect(position.state, "errorDetails", {"catchIndex": catch_index})
                error_output = {"Error": failure.error, "Cause": failure.cause}
                self._record(
                    "ErrorCaught", position.state, error=failure.error, cause=failure.cause
                )
                try:
                    context = self._context(process, scope, position)
                    if self._is_jsonata(state):
                        bindings = self._bindings(
                            scope, context, input=position.input, errorOutput=error_output
                        )
                        output = self._output_of(
                            catcher.model_dump(by_alias=True, exclude_unset=True),
                            bindings,
                            error_output,
                        )
                        self._assign_jsonata(scope, catcher.assign, bindings)
                    else:
                        self._assign(scope, catcher.assign, error_output, context)
                        output = paths.put_result(position.input, catcher.result_path, error_output)
                except StatesError as exc:
                    return _Failed(self._state_failed(exc, position), position)
                self._record("StateExited", position.state, output=output)
                return self._transition(catcher.next, output, position)
        return _Failed(failure, position)
