"""Python's cyclic garbage collector in a long-running bridge process, set once it serves.

Measured on a worker flat out (bench/README.md): the collector took about a sixth of its CPU.
Most of it went to full collections, 60-110 ms each, that walked the ~130 000 objects made at
start-up (modules, pydantic's validators, SQLAlchemy's tables), which live as long as the
process: frozen, they are never walked again. The young collections, every 700 allocations by
Python's default, took another 8 % of it: a batch's own objects are alive while it runs, so
each collection walked them and moved them on, to be freed by reference counting soon after.
After 10 000 allocations most of a batch is gone before the collector looks. Cyclic garbage
waits that much longer to be collected; a worker makes little (about 20 objects a second at 50
orders/s, once the schedules' look stopped making an alias per call), and its memory at 50
orders/s stayed where it was (101.4 against 101.5 MiB at peak).
"""

from __future__ import annotations

import gc
from typing import Final

#: Python's default young threshold, the lowest ``settle`` accepts.
PYTHON_DEFAULT: Final = 700


def settle(young_threshold: int) -> None:
    """Freeze what start-up made, and set the young generation's threshold.

    ``gc.freeze`` moves every object the collector tracks to a generation it never walks again
    (they are still freed by reference counting if they go). ``young_threshold`` is how many
    more container objects than were freed may be made before a young collection.
    """
    if young_threshold < PYTHON_DEFAULT:
        raise ValueError(f"young_threshold must be at least {PYTHON_DEFAULT}")
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
