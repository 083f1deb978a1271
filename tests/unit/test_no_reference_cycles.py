"""Stepping a process leaves no reference cycles behind.

What a step builds (the process, its history, the payloads of its effects) is freed as soon as
the batch lets go of it, by reference counting. A cycle anywhere in it (a closure that calls
itself, a part that points back at its owner) would keep all of that until the garbage
collector runs, which under load is what a worker's peak memory is made of (bench/README.md).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bridge.asl.inputs import TaskSucceeded
from bridge.asl.loading import parse_definition
from tests.unit.driver import Driver, drive_saga
from tests.unit.test_parallel_map import machine, send_wait, tokens


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cyclic_garbage_of(action: Callable[[], Any]) -> list[str]:
    """The kinds of object ``action`` left in reference cycles (after a warm-up run, so that
    caches filled on first use do not count)."""
    action()
    with collector_off():
        action()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found = sorted({_kind(o) for o in gc.garbage if _ours(o)})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    return found


def _ours(found: object) -> bool:
    """Whether ``found`` is the bridge's (or this suite's): anything else a thread of the test
    process left behind meanwhile is not the step's doing."""
    module = getattr(found, "__module__", None) if callable(found) else type(found).__module__
    return isinstance(module, str) and module.startswith(("bridge", "tests"))


def _kind(found: object) -> str:
    name = getattr(found, "__qualname__", None) if callable(found) else None
    return name or type(found).__qualname__


def test_the_order_saga_leaves_no_cycles() -> None:
    assert cyclic_garbage_of(lambda: drive_saga(1500)) == []


def test_templates_parallel_and_map_leave_no_cycles() -> None:
    document = machine(
        {
            "P": {
                "Type": "Parallel",
                "Branches": [
                    machine({"A": send_wait("a.commands")}, "A"),
                    machine(
                        {
                            "M": {
                                "Type": "Map",
                                "ItemsPath": "$.items",
                                "ItemSelector": {"item.$": "$$.Map.Item.Value", "n": 1},
                                "ItemProcessor": machine(
                                    {
                                        "X": {
                                            "Type": "Pass",
                                            "Parameters": {"v.$": "$.item"},
                                            "End": True,
                                        }
                                    },
                                    "X",
                                ),
                                "End": True,
                            }
                        },
                        "M",
                    ),
                ],
                "End": True,
            }
        },
        "P",
    )
    definition = parse_definition(document, "test")

    def run() -> None:
        driver = Driver(definition)
        started = driver.start({"items": [1, 2, 3]})
        driver.apply(TaskSucceeded(one_wait(started), {"ok": True}))

    assert cyclic_garbage_of(run) == []


def one_wait(step: Any) -> str:
    (wait_id,) = tokens(step.effects).values()
    return wait_id
