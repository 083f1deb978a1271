"""The types every part of the bridge shares: a JSON value, the sources of randomness, a clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeAlias

#: A JSON value as ``json.loads`` gives it: dict, list, str, int, float, bool or None. ``Any``
#: rather than a recursive union: JSONPath and JSONata results are read by shape at run time.
JSON: TypeAlias = Any

#: The time now, aware UTC (injected, so tests can fix it).
Clock: TypeAlias = Callable[[], datetime]


class Entropy(Protocol):
    """Every source of randomness the interpreter may use (injected, so tests can fix it)."""

    def new_id(self) -> str: ...

    def new_token(self) -> str: ...

    def random_int(self, low: int, high: int) -> int: ...

    def uuid4(self) -> str: ...
