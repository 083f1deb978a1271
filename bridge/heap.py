"""Python's cyclic garbage collector in a long-running bridge process, set once it serves.

Measured on a worker flat out (bench/README.md): the collector took about a sixth of its CPU.
Most of it went to full collections, 60-110 ms each, that walked the ~130 000 objects made at
start-up (modules, pydantic's validators, SQLAlchemy's tables), which live as long as the
process: frozen, they are never walked again. What is left is the young collections, about 8 %
of a worker's CPU flat out at Python's threshold of 700; a threshold of 50 000 takes that off
too, but a worker at 50 orders/s then held 12 MiB more (102.7 against 114.5 MiB at peak), so the
threshold stays Python's unless an operator trades memory for it.
"""

from __future__ import annotations

import gc
from typing import Final

#: Python's default young threshold, the lowest ``settle`` accepts.
PYTHON_DEFAULT: Final = 700


def settle(young_threshold: int = PYTHON_DEFAULT) -> None:
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
