"""Task states: Kafka commands, event waits, approvals, HTTP invoke and child processes.

``RunTasks`` starts each kind of task and turns the answer to its wait into the task's outcome;
the resources' own rules live in ``http_task``, ``children`` and ``approvals``.
"""

from __future__ import annotations

from datetime import timedelta

from bridge.asl import approvals, children, errors, forms, http_task, notify, paths, task_tokens
from bridge.asl.approvals import ApprovalStatus, SeatChange
from bridge.asl.dataflow import (
    event_subscriptions,
    fixed,
    input_path,
    iso,
    kafka_message,
    output_path,
    seconds,
)
from bridge.asl.effects import (
    CancelTimer,
    ChangeSeats,
    ConcludeApproval,
    ExpectCallback,
    ExpectEvent,
    InvokeHttp,
    NotifyApprovers,
    RecordHolders,
    RecordVote,
    RequestApproval,
    SendMessage,
    StartChild,
    StartTimer,
)
from bridge.asl.errors import Failure, StatesError
from bridge.asl.inputs import (
    ApprovalDecided,
    ChildEnded,
    ChildNotStarted,
    ChildStarted,
    HttpAnswered,
    SeatChanged,
)
from bridge.asl.model import (
    APPROVAL,
    EVENT_WAIT,
    HTTP_INVOKE,
    PROCESS_START,
    PROCESS_START_SYNC,
    SEND,
    SEND_WAIT,
    MapState,
    ParallelState,
    TaskState,
)
from bridge.asl.process import Position, Process, Wait
from bridge.asl.run_base import RunBase, _Blocked, _flow, _Outcome, _Refused, _Scope
from bridge.asl.types import JSON

#: The history entry of each change of seat.
_SEAT_CHANGE_ENTRIES: dict[SeatChange, str] = {
    SeatChange.CLAIM: "ApprovalSeatClaimed",
    SeatChange.UNCLAIM: "ApprovalSeatUnclaimed",
    SeatChange.DELEGATE: "ApprovalSeatDelegated",
    SeatChange.REASSIGN: "ApprovalSeatReassigned",
}


class RunTasks(RunBase):
    """The Task state handlers of a run."""

    # ----------------------------------------------------------------- tasks

    def _task(
        self,
        process: Process,
        scope: _Scope,
        state: TaskState,
        position: Position,
        context: dict[str, JSON],
    ) -> _Outcome:
        token: str | None = None
        wait_id: str | None = None
        if state.resource == SEND_WAIT:
            # The token names its wait: the wait's id comes first.
            wait_id = self.entropy.new_id()
            token = task_tokens.make(process.id, wait_id, self.entropy.new_token())
            context = {**context, "Task": {"Token": token}}
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            data = position.input
            parameters = (
                self._evaluate(state.arguments, bindings, "Arguments")
                if state.arguments is not None
                else data
            )
            self._inspect(position.state, "afterArguments", parameters)
            timeout = self._jsonata_seconds(state.timeout_seconds, bindings, "TimeoutSeconds")
            heartbeat = self._jsonata_seconds(state.heartbeat_seconds, bindings, "HeartbeatSeconds")
        else:
            data = input_path(state.input_path, position.input, context)
            self._inspect(position.state, "afterInputPath", data)
            parameters = (
                self._template(state.parameters, data, context)
                if state.parameters is not None
                else data
            )
            self._inspect(position.state, "afterParameters", parameters)
            timeout = seconds(
                fixed(state.timeout_seconds), state.timeout_seconds_path, data, context
            )
            heartbeat = seconds(
                fixed(state.heartbeat_seconds), state.heartbeat_seconds_path, data, context
            )
        if state.resource in (PROCESS_START, PROCESS_START_SYNC):
            return self._start_child(process, state, position, parameters, timeout)
        if state.resource in (SEND, SEND_WAIT):
            message = kafka_message(parameters, state.resource)
            message_id = self.entropy.new_id()
            self.effects.append(
                SendMessage(
                    message_id=message_id,
                    topic=message["topic"],
                    key=message["key"],
                    value=message["value"],
                    headers=message["headers"],
                    state=position.state,
                )
            )
            self._record(
                "CommandEmitted",
                position.state,
                topic=message["topic"],
                key=message["key"],
                messageId=message_id,
                waitsForCallback=token is not None,
            )
            if token is None:
                result = {"MessageId": message_id, "Topic": message["topic"]}
                return self._completed(process, scope, position, result)
            assert wait_id is not None
            self.effects.append(ExpectCallback(wait_id, token, position.state))
            wait = self._wait_with_timers(wait_id, "callback", timeout, heartbeat)
            wait = wait.model_copy(update={"token_hash": task_tokens.token_hash(token)})
            return _Blocked(position.model_copy(update={"wait": wait}))
        if state.resource == EVENT_WAIT:
            subscriptions = event_subscriptions(parameters, position.state)
            wait_id = self.entropy.new_id()
            self.effects.append(ExpectEvent(wait_id, position.state, subscriptions))
            self._record(
                "EventWaitStarted",
                position.state,
                events=[{"topic": t, "type": e, "key": k} for t, e, k in subscriptions],
            )
            wait = self._wait_with_timers(wait_id, "event", timeout, None)
            return _Blocked(position.model_copy(update={"wait": wait}))
        if state.resource == APPROVAL:
            return self._request_approval(state, position, parameters, data, timeout)
        if state.resource == HTTP_INVOKE:
            return self._invoke_http(position, parameters, timeout)
        raise AssertionError(f"unvalidated resource {state.resource}")

    def _invoke_http(self, position: Position, parameters: JSON, timeout: int | None) -> _Outcome:
        """Ask the shell for the call (``InvokeHttp``) and wait for its answer.

        TimeoutSeconds (60 s when unset) bounds the call; the wait's own deadline comes
        ``DEADLINE_GRACE_SECONDS`` later, so that the call's answer, even ``Http.Timeout``,
        arrives before it. The deadline ends the state only when no worker answered.
        """
        request = http_task.build_request(parameters)
        # TestState's TRACE level shows the request as sent, secrets masked as in the history.
        self._inspect(
            position.state,
            "request",
            {**request.redacted(), "body": request.body},
        )
        seconds = timeout if timeout is not None else http_task.DEFAULT_TIMEOUT_SECONDS
        deadline = self.now + timedelta(seconds=seconds)
        wait_id = self.entropy.new_id()
        self.effects.append(
            InvokeHttp(wait_id, position.state, request.to_json(), seconds, deadline)
        )
        self._record(
            "HttpInvoked",
            position.state,
            callId=wait_id,
            timeoutSeconds=seconds,
            **request.redacted(),
        )
        timer = self.entropy.new_id()
        ends = deadline + timedelta(seconds=http_task.DEADLINE_GRACE_SECONDS)
        self.effects.append(StartTimer(timer, ends))
        wait = Wait(id=wait_id, kind="http", timeout_timer=timer, timeout_at=ends)
        return _Blocked(position.model_copy(update={"wait": wait}))

    def _http_answered(
        self, process: Process, scope: _Scope, position: Position, event: HttpAnswered
    ) -> _Outcome:
        """A 2xx response is the task's result; any other status, or no response, fails it."""
        name = position.state
        self._abandon(position)
        if event.error is not None:
            self._record("TaskFailed", name, error=event.error, cause=event.cause)
            return Failure(event.error, event.cause)
        response = event.response if isinstance(event.response, dict) else {}
        self._inspect(name, "response", http_task.redact_result(response))
        failure = http_task.failure_of(response)
        if failure is not None:
            self._record("TaskFailed", name, error=failure.error, cause=failure.cause)
            return failure
        self._record("TaskSucceeded", name, output=http_task.redact_result(response))
        return self._completed(process, scope, position, response)

    def _start_child(
        self,
        process: Process,
        state: TaskState,
        position: Position,
        parameters: JSON,
        timeout: int | None,
    ) -> _Outcome:
        """Ask the shell for a child process and wait for its start (and, ``.sync``, its end)."""
        asked = children.request(parameters, state.resource)
        depth = (process.parent.depth if process.parent else 0) + 1
        if depth > children.MAX_DEPTH:
            return Failure(
                errors.NESTING_TOO_DEEP,
                f"State {position.state}: processes nest at most {children.MAX_DEPTH} deep",
            )
        sync = state.resource == PROCESS_START_SYNC
        child = (
            children.child_id(process.id, asked.name)
            if asked.name is not None
            else self.entropy.new_id()
        )
        wait_id = self.entropy.new_id()
        self.effects.append(
            StartChild(
                child_id=child,
                wait_id=wait_id,
                state=position.state,
                definition=asked.definition,
                input=asked.input,
                name=asked.name,
                correlation_key=asked.correlation_key,
                sync=sync,
                depth=depth,
            )
        )
        wait = self._wait_with_timers(wait_id, "child", timeout if sync else None, None)
        wait = wait.model_copy(update={"kind": "child", "child": child, "sync": sync})
        return _Blocked(position.model_copy(update={"wait": wait}))

    def _child_answer(
        self,
        process: Process,
        scope: _Scope,
        position: Position,
        wait: Wait,
        event: ChildStarted | ChildNotStarted | ChildEnded,
    ) -> _Outcome:
        name = position.state
        if isinstance(event, ChildNotStarted):
            self._record("ChildNotStarted", name, error=event.error, cause=event.cause)
            self._close_child_wait(wait)
            return Failure(event.error, event.cause)
        if isinstance(event, ChildStarted):
            self._record(
                "ChildStarted",
                name,
                processId=event.process_id,
                definition=event.definition,
                version=event.version,
                name=event.name,
                sync=wait.sync,
                existing=event.existing,
            )
            if wait.sync:
                return _Blocked(position)
            self._close_child_wait(wait)
            result = children.started(event.process_id, iso(event.started_at))
            return self._completed(process, scope, position, result)
        outcome = children.result(event)
        self._close_child_wait(wait)
        if isinstance(outcome, Failure):
            self._record(
                "ChildEnded",
                name,
                processId=event.process_id,
                status=event.status,
                error=outcome.error,
                cause=outcome.cause,
            )
            return outcome
        self._record(
            "ChildEnded", name, processId=event.process_id, status=event.status, output=event.output
        )
        return self._completed(process, scope, position, outcome)

    def _close_child_wait(self, wait: Wait) -> None:
        """The child wait ended with an answer: only its timeout timer goes."""
        if wait.timeout_timer is not None:
            self.effects.append(CancelTimer(wait.timeout_timer))

    def _request_approval(
        self,
        state: TaskState,
        position: Position,
        parameters: JSON,
        data: JSON,
        timeout: int | None,
    ) -> _Outcome:
        request = parameters if isinstance(parameters, dict) else {}
        ballot = approvals.ballot_of(request, position.state)
        reminders = approvals.reminders_of(request, position.state)
        form, problems = forms.parse_form(request.get("Form"), request.get("Outcomes"))
        if problems:
            raise StatesError(
                "Approval.InvalidParameters", f"State {position.state}: {'; '.join(problems)}"
            )
        ballot = ballot.model_copy(update={"outcomes": tuple(o.name for o in form.outcomes)})
        if "Notify" not in request and self.definition.notify is not None:
            request = {**request, "Notify": self.definition.notify}
        spec = notify.notify_of(request, position.state, ballot.seats)
        escalation = approvals.escalation_of(request, position.state)
        wait_id = self.entropy.new_id()
        title = request.get("Title") or f"{self.definition.name}: {position.state}"
        description = request.get("Description")
        expires_at = self.now + timedelta(seconds=timeout) if timeout is not None else None
        self.effects.append(
            RequestApproval(
                wait_id=wait_id,
                state=position.state,
                title=str(title),
                description=None if description is None else str(description),
                data=request.get("Data", data),
                seats=ballot.seats,
                rule=ballot.rule,
                expires_at=expires_at,
                on_expiry=ballot.on_expiry,
                form=form.to_json() if form.fields or form.outcomes else None,
            )
        )
        timers = []
        if expires_at is not None:
            for seconds in reminders:
                due = expires_at - timedelta(seconds=seconds)
                if due > self.now:
                    timer = self.entropy.new_id()
                    self.effects.append(StartTimer(timer, due))
                    timers.append(timer)
        escalation_timer = None
        if escalation is not None:
            due = self.now + timedelta(seconds=escalation.after_seconds)
            if expires_at is None or due < expires_at:
                escalation_timer = self.entropy.new_id()
                self.effects.append(StartTimer(escalation_timer, due))
        told = spec or notify.NO_NOTIFY
        if told.wants("Requested"):
            self.effects.append(
                NotifyApprovers(wait_id, position.state, "Requested", ballot.seats, told)
            )
        self._record(
            "ApprovalRequested",
            position.state,
            title=str(title),
            seats=list(ballot.seats),
            rule=ballot.rule,
            expiresAt=iso(expires_at) if expires_at else None,
        )
        wait = self._wait_with_timers(wait_id, "approval", timeout, None)
        ballot = ballot.model_copy(
            update={
                "reminder_timers": tuple(timers),
                "expires_at": expires_at,
                "notify": spec,
                "escalation": escalation if escalation_timer else None,
                "escalation_timer": escalation_timer,
            }
        )
        return _Blocked(
            position.model_copy(update={"wait": wait.model_copy(update={"ballot": ballot})})
        )

    def _wait_with_timers(
        self, wait_id: str, kind: str, timeout: int | None, heartbeat: int | None
    ) -> Wait:
        timeout_timer = heartbeat_timer = None
        if timeout is not None:
            timeout_timer = self.entropy.new_id()
            self.effects.append(StartTimer(timeout_timer, self.now + timedelta(seconds=timeout)))
        if heartbeat is not None:
            heartbeat_timer = self.entropy.new_id()
            self.effects.append(
                StartTimer(heartbeat_timer, self.now + timedelta(seconds=heartbeat))
            )
        return Wait(
            id=wait_id,
            kind="callback" if kind == "callback" else "event" if kind == "event" else "approval",
            timeout_at=self.now + timedelta(seconds=timeout) if timeout is not None else None,
            heartbeat_at=self.now + timedelta(seconds=heartbeat) if heartbeat is not None else None,
            timeout_timer=timeout_timer,
            heartbeat_timer=heartbeat_timer,
            heartbeat_seconds=heartbeat,
        )

    def _completed(
        self, process: Process, scope: _Scope, position: Position, result: JSON
    ) -> _Outcome:
        """A Task, Parallel or Map state has its result: ResultSelector, ResultPath, OutputPath."""
        state = scope.machine.states[position.state]
        assert isinstance(state, TaskState | ParallelState | MapState)
        name = position.state
        self._inspect(name, "result", result)
        try:
            context = self._context(process, scope, position)
            if self._is_jsonata(state):
                bindings = self._bindings(scope, context, input=position.input, result=result)
                output = self._output(state, bindings, result)
                self._assign_jsonata(scope, state.assign, bindings)
                self._search_jsonata(name, state.search_attributes, bindings)
                if state.assign:
                    self._inspect(name, "variables", scope.variables())
                return _flow(state.next, bool(state.end), output)
            if state.result_selector is not None:
                result = self._template(state.result_selector, result, context)
            self._inspect(name, "afterResultSelector", result)
            self._assign(scope, state.assign, result, context)
            self._search(name, state.search_attributes, result, context)
            if state.assign:
                self._inspect(name, "variables", scope.variables())
            merged = paths.put_result(position.input, state.result_path, result)
            self._inspect(name, "afterResultPath", merged)
            return _flow(
                state.next, bool(state.end), output_path(state.output_path, merged, context)
            )
        except StatesError as exc:
            return self._state_failed(exc, position)

    # ----------------------------------------------------------------- approvals answered

    def _decided(
        self, process: Process, scope: _Scope, position: Position, event: ApprovalDecided
    ) -> _Outcome:
        wait = position.wait
        assert wait is not None
        ballot = wait.ballot or approvals.Ballot(seats=(approvals.ANYONE,))
        seat = event.seat or (ballot.seats[0] if len(ballot.seats) == 1 else None)
        if seat is None or seat not in ballot.seats:
            raise _Refused(f"{event.seat!r} is not a seat of this approval")
        if ballot.voted(seat):
            raise _Refused(f"{seat} has already decided")
        if event.outcome is not None and event.outcome not in ballot.outcomes:
            raise _Refused(f"{event.outcome!r} is not an outcome of this approval")
        vote = approvals.Vote(
            seat=seat,
            approved=event.approved,
            decided_by=event.decided_by,
            comment=event.comment,
            at=self.now,
            outcome=event.outcome,
            values=event.values,
        )
        ballot = ballot.model_copy(update={"votes": (*ballot.votes, vote)})
        self.effects.append(
            RecordVote(
                wait.id,
                seat,
                event.approved,
                event.decided_by,
                event.comment,
                vote.decision,
                event.values,
            )
        )
        self._record(
            "ApprovalVoted",
            position.state,
            seat=seat,
            decision=vote.decision,
            decidedBy=event.decided_by,
            comment=event.comment,
            **({"values": event.values} if event.values is not None else {}),
        )
        outcome = ballot.tally()
        if outcome is None:
            updated = wait.model_copy(update={"ballot": ballot})
            return _Blocked(position.model_copy(update={"wait": updated}))
        return self._conclude_approval(process, scope, position, ballot, outcome)

    def _seat_changed(self, position: Position, event: SeatChanged) -> _Outcome:
        """A seat changes hands; the approval stays open. Audited in the history."""
        wait = position.wait
        assert wait is not None
        ballot = wait.ballot or approvals.Ballot(seats=(approvals.ANYONE,))
        problem = approvals.seat_change_problem(
            ballot, event.seat, event.action, event.holder, event.by, admin=event.admin
        )
        if problem is not None:
            raise _Refused(problem)
        holder = None if event.action is SeatChange.UNCLAIM else event.holder
        previous = ballot.holder(event.seat)
        ballot = ballot.with_holder(event.seat, holder)
        self._record(
            _SEAT_CHANGE_ENTRIES[event.action],
            position.state,
            seat=event.seat,
            holder=holder,
            previous=previous,
            by=event.by,
            admin=event.admin,
        )
        self.effects.append(RecordHolders(wait.id, ballot.holders))
        told = ballot.notify or notify.NO_NOTIFY
        handed = event.action in (SeatChange.DELEGATE, SeatChange.REASSIGN) and holder is not None
        if handed and told.wants("Assigned") and notify.address_problem(holder or "") is None:
            # The new holder is told at their own address, with the seat's links.
            to_holder = told.model_copy(update={"email": ((event.seat, (holder,)),)})
            self.effects.append(
                NotifyApprovers(wait.id, position.state, "Assigned", (event.seat,), to_holder)
            )
        updated = wait.model_copy(update={"ballot": ballot})
        return _Blocked(position.model_copy(update={"wait": updated}))

    def _conclude_approval(
        self,
        process: Process,
        scope: _Scope,
        position: Position,
        ballot: approvals.Ballot,
        outcome: approvals.Conclusion,
        *,
        expired: bool = False,
    ) -> _Outcome:
        assert position.wait is not None
        decision = approvals.record(ballot, outcome, self.now, expired=expired)
        self._record(
            "ApprovalDecided",
            position.state,
            outcome=outcome,
            expired=expired,
            decidedBy=decision["decidedBy"],
            comment=decision["comment"],
            votes=decision["votes"],
        )
        if expired:
            concluded = ApprovalStatus.EXPIRED
        elif outcome in ("APPROVED", "REJECTED"):
            concluded = ApprovalStatus(outcome)
        else:
            concluded = ApprovalStatus.DECIDED
        self.effects.append(ConcludeApproval(position.wait.id, concluded))
        told = outcome if concluded is ApprovalStatus.DECIDED else concluded.value
        self._tell_decided(position, ballot, told)
        self._abandon(position)
        if outcome != "REJECTED":
            # Approved, or an outcome of the task's own: the result says which.
            return self._completed(process, scope, position, decision)
        return approvals.rejection(ballot, expired=expired).as_failure()

    def _approval_expired(
        self, process: Process, scope: _Scope, position: Position, ballot: approvals.Ballot
    ) -> _Outcome:
        self._record("ApprovalExpired", position.state, onExpiry=ballot.on_expiry)
        if ballot.on_expiry == "Approve":
            return self._conclude_approval(
                process, scope, position, ballot, "APPROVED", expired=True
            )
        if ballot.on_expiry == "Reject":
            return self._conclude_approval(
                process, scope, position, ballot, "REJECTED", expired=True
            )
        assert position.wait is not None
        self.effects.append(ConcludeApproval(position.wait.id, ApprovalStatus.EXPIRED))
        self._tell_decided(position, ballot, ApprovalStatus.EXPIRED.value)
        self._abandon(position)
        return Failure(errors.TIMEOUT, f"The approval in {position.state} expired")

    def _tell_decided(self, position: Position, ballot: approvals.Ballot, outcome: str) -> None:
        """Everyone asked hears how the approval ended, when its Notify says so."""
        assert position.wait is not None
        spec = ballot.notify or notify.NO_NOTIFY
        if spec.wants("Decided"):
            self.effects.append(
                NotifyApprovers(
                    position.wait.id, position.state, "Decided", ballot.seats, spec, outcome
                )
            )

    def _escalate(
        self, process: Process, scope: _Scope, position: Position, ballot: approvals.Ballot
    ) -> _Outcome:
        """The escalation's time came with the approval still open: the seats change, the new
        ones are told, and the history says who was added and who was taken off."""
        wait = position.wait
        assert wait is not None
        escalated, added, removed = ballot.escalated()
        self.effects.append(ChangeSeats(wait.id, escalated.seats))
        self._record("ApprovalEscalated", position.state, added=list(added), removed=list(removed))
        spec = escalated.notify or notify.NO_NOTIFY
        if added and spec.wants("Escalated"):
            self.effects.append(NotifyApprovers(wait.id, position.state, "Escalated", added, spec))
        # Taking seats away may decide the approval (the votes cast may now be enough).
        outcome = escalated.tally()
        if outcome is not None:
            return self._conclude_approval(process, scope, position, escalated, outcome)
        updated = wait.model_copy(update={"ballot": escalated})
        return _Blocked(position.model_copy(update={"wait": updated}))
