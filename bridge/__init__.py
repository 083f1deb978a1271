"""bridge: Kafka domain events into Amazon States Language process instances."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.local import LocalResult, run_local

__version__ = "0.1.0"
__all__ = ["LocalResult", "__version__", "run_local"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the pure core (bridge.asl) does not load the local runner.
    if name in ("LocalResult", "run_local"):
        from bridge import local

        return getattr(local, name)
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
