"""The test driver of ``bridge.asl.interpreter.step``: a fixed clock, a counting ``Entropy``, a
``Driver`` that keeps the process each step returns, and the order saga and small inline
definitions the interpreter's tests (and those of the parts it runs) drive."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bridge.asl.effects import (
    Effect,
    RequestApproval,
)
from bridge.asl.inputs import (
    ApprovalDecided,
    Input,
    Start,
    TaskSucceeded,
)
from bridge.asl.interpreter import Step, step
from bridge.asl.loading import parse_definition
from bridge.asl.model import SEND_WAIT, Definition
from bridge.asl.process import Process, Wait

SAGA_FILE = Path(__file__).resolve().parents[2] / "examples" / "order-saga.asl.yaml"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ITEMS = [{"sku": "sku-1", "quantity": 2}, {"sku": "sku-2", "quantity": 1}]

E = TypeVar("E")

# --------------------------------------------------------------------------------------------
# Fakes and drivers


class CountingEntropy:
    """A deterministic Entropy: ids, tokens and UUIDs count up; random_int returns ``low``."""

    def __init__(self) -> None:
        self.count = 0

    def _next(self) -> int:
        self.count += 1
        return self.count

    def new_id(self) -> str:
        return f"id-{self._next()}"

    def new_token(self) -> str:
        return f"token-{self._next()}"

    def uuid4(self) -> str:
        return f"00000000-0000-4000-8000-{self._next():012d}"

    def random_int(self, low: int, high: int) -> int:
        return low


@dataclass(frozen=True)
class Applied:
    """One call of ``step`` as the driver made it, with the process it was given."""

    before: Process | None
    before_dump: dict[str, Any] | None
    event: Input
    now: datetime
    result: Step


@dataclass
class Driver:
    """Feeds inputs to one process as the engine would: keeps the state ``step`` returns."""

    definition: Definition
    now: datetime = T0
    entropy: CountingEntropy = field(default_factory=CountingEntropy)
    process: Process | None = None
    log: list[Applied] = field(default_factory=list)

    def start(self, data: Any, *, key: str | None = None) -> Step:
        return self.apply(Start("p-1", data, correlation_key=key))

    def apply(self, event: Input, *, after: float = 0) -> Step:
        """Apply ``event`` ``after`` seconds after the previous step; it must not be rejected."""
        result = self.offer(event, after=after)
        assert result.rejected is None, result.rejected
        return result

    def offer(self, event: Input, *, after: float = 0) -> Step:
        """Apply ``event``; a rejected input leaves the driver's process as it was."""
        self.now += timedelta(seconds=after)
        before = self.process
        dump = before.model_dump() if before is not None else None
        result = step(self.definition, before, event, self.now, self.entropy)
        self.log.append(Applied(before, dump, event, self.now, result))
        if result.rejected is None:
            self.process = result.process
        return result

    @property
    def running(self) -> Process:
        assert self.process is not None
        return self.process

    @property
    def wait(self) -> Wait:
        position = self.running.position
        assert position is not None and position.wait is not None, "the process is not waiting"
        return position.wait

    def history_types(self, kind: str) -> list[str | None]:
        """The states of every history entry of ``kind`` over all steps, in order."""
        return [
            entry.state
            for applied in self.log
            for entry in applied.result.history
            if entry.type == kind
        ]


def of_type(effects: Iterable[Effect], kind: type[E]) -> list[E]:
    return [effect for effect in effects if isinstance(effect, kind)]


def one(effects: Iterable[Effect], kind: type[E]) -> E:
    found = of_type(effects, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


def assert_rejected(result: Step, process: Process | None) -> None:
    """A rejected input changes nothing: same process, no effects, no history."""
    assert result.rejected
    assert result.process == process
    assert result.effects == ()
    assert result.history == ()


@functools.cache
def saga() -> Definition:
    return parse_definition(yaml.safe_load(SAGA_FILE.read_text()), "order-saga")


def order(amount: float = 120, order_id: str = "o-1") -> dict[str, Any]:
    return {
        "eventId": "e-1",
        "type": "OrderPlaced",
        "orderId": order_id,
        "customerId": "c-7",
        "amount": amount,
        "items": ITEMS,
    }


def start_saga(amount: float = 120) -> tuple[Driver, Step]:
    run = Driver(saga())
    return run, run.start(order(amount), key="o-1")


def drive_saga(
    amount: float,
    *,
    approved: bool = True,
    inventory: Any = None,
    payment: Any = None,
    pause: float = 1,
) -> Driver:
    """Run the saga to its end: answer both commands, and decide the approval if one is asked."""
    run, _ = start_saga(amount)
    run.apply(
        TaskSucceeded(run.wait.id, {"reserved": True} if inventory is None else inventory),
        after=pause,
    )
    charged = run.apply(
        TaskSucceeded(run.wait.id, {"charged": amount} if payment is None else payment),
        after=pause,
    )
    if of_type(charged.effects, RequestApproval):
        run.apply(
            ApprovalDecided(run.wait.id, approved, decided_by="alice", comment="checked"),
            after=pause,
        )
    return run


def machine(states: dict[str, Any], **top: Any) -> Definition:
    """A definition from inline states; StartAt is the first state."""
    return parse_definition({"StartAt": next(iter(states)), "States": states, **top}, "test")


def callback_task(**fields: Any) -> dict[str, Any]:
    """A waitForTaskToken task on work.commands; ``End: true`` unless ``Next`` is given."""
    task: dict[str, Any] = {
        "Type": "Task",
        "Resource": SEND_WAIT,
        "Parameters": {
            "Topic": "work.commands",
            "Message": {"taskToken.$": "$$.Task.Token", "attempt.$": "$$.State.RetryCount"},
        },
    }
    if "Next" not in fields:
        task["End"] = True
    return {**task, **fields}


def finished_saga() -> Driver:
    return drive_saga(120)


def round_trip(process: Process) -> Process:
    """The process as the store would give it back (through JSON)."""
    return Process.model_validate(json.loads(json.dumps(process.model_dump(mode="json"))))


def approval(parameters: dict[str, Any], timeout: int = 3600) -> Driver:
    """A driver of one ``bridge:approval`` task with ``parameters``, then the end."""
    definition = parse_definition(
        {
            "StartAt": "Approve",
            "States": {
                "Approve": {
                    "Type": "Task",
                    "Resource": "bridge:approval",
                    "Parameters": parameters,
                    "TimeoutSeconds": timeout,
                    "End": True,
                }
            },
        },
        "test",
    )
    return Driver(definition)
