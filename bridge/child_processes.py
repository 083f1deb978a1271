"""Child processes, shell part: what a batch does with the effects of ``bridge:process:start``.

A parent's step asks for a child (``StartChild``); the batch resolves the child's definition as
an HTTP start does (``NAME``, ``NAME:VERSION``, ``NAME:ALIAS``), creates and steps the child, and
answers the parent (``ChildStarted``, or ``ChildNotStarted`` with the reason) in the same
transaction. A child whose parent waits for it (``.sync``) tells the parent when it ends
(``NotifyParent`` becomes ``ChildEnded``), and a parent that stops waiting (stopped, failed,
timed out) stops the child (``StopChild``), whose own waiting children stop in turn. All of it
goes through the pure ``step`` and lands in the batch's one transaction; a child that ends at
once answers its parent in the same batch.

Every loop is bounded: processes nest at most ``children.MAX_DEPTH`` deep (the interpreter
refuses deeper starts), and one input may start at most ``MAX_CHILD_STARTS`` children (a parent
that starts children in a loop that never waits fails with ``States.Runtime``, as a loop of
states does after ``MAX_TRANSITIONS_PER_STEP``). A stopped child's end is refused by its parent,
which no longer waits for it, so a stop never comes back.

The pure side of the same concept is ``bridge.asl.children``; what this part uses of the batch it
works for is ``ChildrenBatch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, assert_never

from bridge.aliases import Reference, parse_reference
from bridge.asl import children, errors
from bridge.asl import inputs as core
from bridge.asl.effects import NotifyParent, StartChild, StopChild
from bridge.asl.interpreter import Step, step
from bridge.asl.model import Definition
from bridge.asl.process import ParentLink, Process
from bridge.batch_parts import Stepping, Touched
from bridge.definitions import MissingDefinition, Registry
from bridge.intake import Outcome
from bridge.store import definitions as stored_definitions

#: Children one input may start, counting their children: a parent looping over starts of
#: children that end at once would otherwise never let its batch finish.
MAX_CHILD_STARTS = 1000


class ChildrenBatch(Stepping, Protocol):
    """What the child-processes part needs of the batch it works for (``bridge.batch.Batch``)."""

    @property
    def registry(self) -> Registry:
        """The loaded definitions, to tell a stale registry from a missing definition."""
        ...

    @property
    def touched(self) -> Mapping[str, Touched]:
        """The processes changed in this batch so far, by id (a parent is one of them)."""
        ...

    async def definition_to_start(
        self, reference: Reference, version: int | None, process_id: str
    ) -> Definition | Outcome:
        """The definition a start of ``reference`` runs, or why there is none."""
        ...

    def blame(self, process_id: str) -> None:
        """Process ``process_id`` is about to be stepped for the input at hand: if the input
        raises, it is one of the processes the input failed for."""
        ...

    def adopt(self, process_id: str, result: Step, parent: Touched) -> None:
        """A child started in this batch (``result`` of its start): written with the others, in
        the trace of ``parent``."""
        ...


class ChildProcesses:
    """The child-process effects of one batch, applied as they appear."""

    def __init__(self, batch: ChildrenBatch) -> None:
        self.batch = batch
        #: Children started for the input at hand (reset per input by the batch).
        self.starts = 0

    async def apply(self, process_id: str, effect: StartChild | StopChild | NotifyParent) -> None:
        """Carry out ``effect`` of process ``process_id``."""
        match effect:
            case StartChild():
                await self._start(process_id, effect)
            case StopChild():
                await self._stop(process_id, effect)
            case NotifyParent():
                await self._notify(process_id, effect)
            case _:
                assert_never(effect)

    async def _start(self, parent_id: str, effect: StartChild) -> None:
        batch = self.batch
        parent = batch.touched[parent_id]
        if not children.waits_for(parent.process, effect.wait_id):
            return  # the parent gave up on it in the same step (a failed Parallel branch)
        if self.starts >= MAX_CHILD_STARTS:
            cause = (
                f"more than {MAX_CHILD_STARTS} child processes started by one input: a loop "
                "that starts children without waiting?"
            )
            batch.step_process(
                parent_id, core.ChildNotStarted(effect.wait_id, errors.RUNTIME, cause)
            )
            return
        self.starts += 1
        existing = await batch.load(effect.child_id)
        if existing is not None:
            self._existing(parent_id, effect, existing.process)
            return
        reference = parse_reference(effect.definition)
        chosen = await batch.definition_to_start(reference, None, effect.child_id)
        if isinstance(chosen, Outcome):
            await self._maybe_stale(reference.definition)
            error = (
                errors.CHILD_DEFINITION_NOT_FOUND
                if chosen.status == "not_found"
                else errors.CHILD_INVALID_PARAMETERS
            )
            batch.step_process(
                parent_id, core.ChildNotStarted(effect.wait_id, error, chosen.reason)
            )
            return
        origin = {
            "via": "process",
            "parentId": parent_id,
            "parentState": effect.state,
            **({"name": effect.name} if effect.name else {}),
            **({"alias": reference.alias} if reference.alias else {}),
        }
        link = ParentLink(
            id=parent_id,
            state=effect.state,
            wait_id=effect.wait_id if effect.sync else None,
            depth=effect.depth,
        )
        start = core.Start(effect.child_id, effect.input, effect.correlation_key, origin, link)
        batch.blame(effect.child_id)
        result = step(chosen, None, start, batch.now, batch.entropy)
        assert result.process is not None and result.rejected is None
        batch.adopt(effect.child_id, result, parent)
        started = core.ChildStarted(
            effect.wait_id,
            effect.child_id,
            chosen.name,
            chosen.version,
            batch.now,
            effect.name,
        )
        batch.step_process(parent_id, started)

    def _existing(self, parent_id: str, effect: StartChild, child: Process) -> None:
        """The Name names a child this parent started before: nothing new starts. The plain form
        answers its id; ``.sync`` takes an ended child's end at once, and refuses to wait for a
        running one (another step started it, and only that one hears of its end)."""
        batch = self.batch
        if child.parent is None or child.parent.id != parent_id:
            cause = f"process {child.id} exists and is not a child of this process"
            batch.step_process(
                parent_id,
                core.ChildNotStarted(effect.wait_id, errors.CHILD_INVALID_PARAMETERS, cause),
            )
            return
        if effect.sync and not child.status.ended:
            cause = (
                f"the child named {effect.name!r} ({child.id}) is still running, started by "
                f"another step; give each start its own Name"
            )
            batch.step_process(
                parent_id, core.ChildNotStarted(effect.wait_id, errors.CHILD_RUNNING, cause)
            )
            return
        started = core.ChildStarted(
            effect.wait_id,
            child.id,
            child.definition,
            child.version,
            child.started_at,
            effect.name,
            existing=True,
        )
        batch.step_process(parent_id, started)
        if effect.sync:
            batch.step_process(parent_id, children.ended_input(child, effect.wait_id))

    async def _maybe_stale(self, name: str) -> None:
        """A definition this process has not loaded yet (deployed through another replica):
        the engine reloads and runs the batch again rather than refuse the start."""
        latest = await stored_definitions.latest(self.batch.conn, name)
        if latest is not None and self.batch.registry.get(name, latest.version) is None:
            raise MissingDefinition(name, latest.version)

    async def _stop(self, parent_id: str, effect: StopChild) -> None:
        batch = self.batch
        touched = await batch.load(effect.child_id)
        if touched is None or touched.process.status.ended:
            return  # never started (the parent gave up first), or ended already
        link = touched.process.parent
        if link is None or link.id != parent_id:
            return
        cause = children.stop_cause(parent_id, effect.state)
        batch.step_process(effect.child_id, core.Stop(errors.PARENT_STOPPED, cause))

    async def _notify(self, child_id: str, effect: NotifyParent) -> None:
        """Tell the parent; one that no longer waits (stopped, redriven) refuses, that is all."""
        if await self.batch.load(effect.parent_id) is None:
            return
        ended = core.ChildEnded(
            wait_id=effect.wait_id,
            process_id=child_id,
            status=effect.status,
            output=effect.output,
            error=effect.error,
            cause=effect.cause,
            started_at=effect.started_at,
            ended_at=effect.ended_at,
        )
        self.batch.step_process(effect.parent_id, ended)
