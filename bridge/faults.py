"""Named fault-injection points, off unless ``BRIDGE_FAULT`` names one, for crash tests.

``BRIDGE_FAULT=after-commit-before-offset`` kills the process (as SIGKILL would: no cleanup, no
flush) the first time it passes that point; ``BRIDGE_FAULT=after-commit-before-offset:3`` the
third time. The points sit in the crash windows that matter:

- ``after-step-before-commit``: the batch is stepped and written, the transaction not committed;
- ``after-commit-before-offset``: the transaction committed, the Kafka offsets not yet;
- ``after-publish-before-mark``: the relay published a batch, the rows not yet marked sent;
- ``after-http-call-before-result``: the invoker made an HTTP call and has its answer, which the
  engine has not applied yet (the call is made again after the claim's lease);
- ``after-delivery-before-mark``: the deliverer sent a notice (a mail, a webhook post), not yet
  recorded as sent (it is sent again, with the same delivery id, after the claim's lease).
"""

from __future__ import annotations

import os
import sys

POINTS = (
    "after-step-before-commit",
    "after-commit-before-offset",
    "after-publish-before-mark",
    "after-http-call-before-result",
    "after-delivery-before-mark",
)

_passes: dict[str, int] = {}


def _wanted() -> tuple[str, int] | None:
    spec = os.environ.get("BRIDGE_FAULT", "").strip()
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"BRIDGE_FAULT names no fault point: {name!r}; known: {', '.join(POINTS)}")
    return name, int(count or "1")


def point(name: str) -> None:
    """Crash here when ``BRIDGE_FAULT`` says so; otherwise nothing."""
    wanted = _wanted()
    if wanted is None or wanted[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= wanted[1]:
        sys.stderr.write(f"bridge: fault injected at {name}\n")
        sys.stderr.flush()
        os._exit(137)
