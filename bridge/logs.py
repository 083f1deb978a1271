"""Logging: human-readable lines by default, JSON lines for log collectors (``BRIDGE_LOG_FORMAT``).

Every record goes through structlog's processors, so that records from libraries (aiokafka,
faust, aiohttp) and our own carry the same fields, including the context bound with
``structlog.contextvars`` (process id, correlation key, event id and position) and the trace id
and span id of the OpenTelemetry span at hand. Secrets are scrubbed: task tokens and approval
link tokens never reach a log line in full.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

#: Paths and fields that carry a token: only its first characters are kept.
_TOKEN_IN_PATH = re.compile(r"(/(?:tasks|approve|reject)/)([A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+")
#: JSON (``"taskToken": "..."``), a Python repr (``'taskToken': '...'``, in a logged dict or
#: exception) and ``task_token=...``.
_TOKEN_FIELD = re.compile(
    r"""(["']?task_?[Tt]oken["']?\s*[:=]\s*["']?)([A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+"""
)

NOISY = ("aiokafka", "faust", "mode", "abc", "processors.transport", "alembic", "aiohttp.access")

#: The context fields that belong to one input (an event's position and id, the process it
#: is for): a line about one input must carry its own, never those of another.
INPUT_FIELDS = ("topic", "partition", "offset", "event_id", "process_id", "correlation_key")


@contextlib.contextmanager
def about(**fields: Any) -> Iterator[None]:
    """Log lines inside are about one input: its ``fields`` replace every input field bound so
    far (those not given are left out), and what was bound comes back after."""
    before = structlog.contextvars.get_contextvars()
    structlog.contextvars.unbind_contextvars(*INPUT_FIELDS)
    given = {key: value for key, value in fields.items() if value is not None}
    structlog.contextvars.bind_contextvars(**given)
    try:
        yield
    finally:
        structlog.contextvars.unbind_contextvars(*INPUT_FIELDS)
        kept = {key: value for key, value in before.items() if key in INPUT_FIELDS}
        structlog.contextvars.bind_contextvars(**kept)


def scrub(text: str) -> str:
    text = _TOKEN_IN_PATH.sub(r"\1\2…", text)
    return _TOKEN_FIELD.sub(r"\1\2…", text)


def _scrub_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if isinstance(value, str):
            event[key] = scrub(value)
    return event


def add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The trace and span id of the span at hand (an input's, a request's), when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", f"{context.trace_id:032x}")
        event.setdefault("span_id", f"{context.span_id:016x}")
    return event


def configure(level: str = "INFO", fmt: str = "text") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
