"""What the engine and the batches it runs need from the settings, as one frozen value.

Apart from ``bridge.engine`` so that the batch and its parts (``bridge.batch``,
``bridge.correlate``, ...) can name it without importing the engine that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.asl.notify import Webhook


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs from the settings."""

    base_url: str = "http://127.0.0.1:8080"
    approvals_topic: str = "bridge.approvals"
    dlq_topic: str = "bridge.dlq"
    #: Process lifecycle events go here; empty turns them off.
    lifecycle_topic: str = "bridge.lifecycle"
    lifecycle_steps: bool = False
    max_event_bytes: int = 256 * 1024
    #: The deepest nesting of objects and arrays an event may have.
    max_event_depth: int = 64
    #: How long an early event is kept when its wait does not say.
    buffer_seconds: int = 3600
    #: A log line each time a process starts, waits or ends (``bridge.progress``).
    log_processes: bool = False
    #: Days a finished process is kept when its definition does not say (bridge.retention).
    retention_days: int = 90
    #: Webhooks told of every approval (BRIDGE_NOTIFY_WEBHOOK_URLS), besides a step's own.
    notify_webhooks: tuple[Webhook, ...] = ()
