"""Python's cyclic garbage collector in a long-running bridge process, set once it serves.

Measured on a worker flat out (bench/README.md): the collector took about a sixth of its CPU.
Most of it went to full collections, 60-90 ms each, that walked the ~130 000 objects made at
start-up (modules, pydantic's validators, SQLAlchemy's tables), which live as long as the
process. The rest went to young collections every 700 allocations, which found next to no
garbage: a batch frees what it made by reference counting (it holds no cycles, see
``bridge.batch``), so whatever they walked was still in use.
"""

from __future__ import annotations

import gc
from typing import Final

#: Python's default young threshold, the lowest ``settle`` accepts.
PYTHON_DEFAULT: Final = 700


def settle(young_threshold: int) -> None:
    """Freeze what start-up made and collect the young generation less often.

    ``gc.freeze`` moves every object the collector tracks to a generation it never walks again
    (they are still freed by reference counting if they go). ``young_threshold`` is how many
    more container objects than were freed may be made before a young collection: above what a
    batch holds at once, a batch's own objects are gone before the collector would look at
    them, and cyclic garbage still gets collected once that many have piled up.
    """
    if young_threshold < PYTHON_DEFAULT:
        raise ValueError(f"young_threshold must be at least {PYTHON_DEFAULT}")
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
