"""`heap.settle`: start-up's objects leave the collector's walks; young collections come later."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bridge import heap


@pytest.fixture
def collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("collector")
def test_settle_freezes_what_exists_and_raises_the_young_threshold() -> None:
    kept = [[object()] for _ in range(100)]  # lists: always tracked by the collector
    _, middle, old = gc.get_threshold()
    assert any(o is kept[0] for o in gc.get_objects())

    heap.settle(50_000)

    assert gc.get_threshold() == (50_000, middle, old)
    # Frozen objects are out of every generation the collector walks.
    assert not any(o is kept[0] for o in gc.get_objects())


@pytest.mark.usefixtures("collector")
def test_cycles_made_after_settle_are_still_collected() -> None:
    heap.settle(1_000)
    collected_before = sum(s["collected"] for s in gc.get_stats())

    for _ in range(5_000):
        cycle: list[object] = []
        cycle.append(cycle)
    del cycle

    assert sum(s["collected"] for s in gc.get_stats()) - collected_before >= 3_000


def test_settle_refuses_a_threshold_under_pythons_own() -> None:
    with pytest.raises(ValueError, match="at least 700"):
        heap.settle(699)
