"""Tracing with OpenTelemetry: the W3C trace context an input brings goes on through the process.

An event's ``traceparent``/``tracestate`` Kafka headers (or an HTTP request's headers) become the
parent of the span that applies it; the process keeps the context it started in, so that timers,
callbacks and approvals that bring none continue the process's trace; every outbox row keeps the
context of the step that wrote it, and the relay sends it on as Kafka headers.

With no tracer configured nothing is recorded, but the context is still passed on as it came
(W3C: a hop that does not trace forwards the context), at the cost of a header lookup per input.

The helpers that read and write ``traceparent`` are pure; ``Tracing`` wraps the tracer the
bootstrap chose. Span names and attributes never carry tokens (they are secrets).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Column sizes (bridge.store.schema): a version-00 traceparent is 55 characters.
TRACEPARENT_MAX = 55
TRACESTATE_MAX = 512

_PROPAGATOR = TraceContextTextMapPropagator()


# --------------------------------------------------------------------- pure helpers


def parse(traceparent: str | None, tracestate: str | None = None) -> SpanContext | None:
    """The remote span context a ``traceparent`` names; None when absent or invalid."""
    if not traceparent:
        return None
    carrier = {TRACEPARENT: traceparent}
    if tracestate:
        carrier[TRACESTATE] = tracestate
    found = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    return found if found.is_valid else None


def format_traceparent(context: SpanContext) -> str:
    """The version-00 ``traceparent`` of ``context``."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def format_tracestate(context: SpanContext) -> str | None:
    """The ``tracestate`` of ``context``, members dropped from the end to fit the column."""
    state = context.trace_state
    if not state:
        return None
    members = [f"{key}={value}" for key, value in state.items()]
    while members and len(",".join(members)) > TRACESTATE_MAX:
        members.pop()
    return ",".join(members) or None


def columns(context: SpanContext | None) -> dict[str, str | None]:
    """The ``traceparent`` and ``tracestate`` columns of a row written in ``context``."""
    if context is None or not context.is_valid:
        return {TRACEPARENT: None, TRACESTATE: None}
    return {TRACEPARENT: format_traceparent(context), TRACESTATE: format_tracestate(context)}


def from_headers(headers: Iterable[tuple[str, bytes]]) -> SpanContext | None:
    """The trace context in Kafka record headers (names compared without case)."""
    traceparent = tracestate = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == TRACEPARENT:
            traceparent = value.decode("latin-1") if value else None
        elif lowered == TRACESTATE:
            tracestate = value.decode("latin-1") if value else None
    return parse(traceparent, tracestate)


def from_mapping(headers: Mapping[str, str]) -> SpanContext | None:
    """The trace context in HTTP request headers (a case-insensitive mapping)."""
    return parse(headers.get(TRACEPARENT), headers.get(TRACESTATE))


def kafka_headers(
    headers: Mapping[str, str], traceparent: str | None, tracestate: str | None
) -> list[tuple[str, bytes]]:
    """Kafka headers: ``headers`` with the trace context put in place of any they had."""
    found = [
        (name, value.encode("utf-8"))
        for name, value in headers.items()
        if traceparent is None or name.lower() not in (TRACEPARENT, TRACESTATE)
    ]
    if traceparent is not None:
        found.append((TRACEPARENT, traceparent.encode("ascii")))
        if tracestate:
            found.append((TRACESTATE, tracestate.encode("ascii")))
    return found


def trace_id_of(context: SpanContext | None) -> str | None:
    """The 32 hex digits of the trace id, as logs and trace viewers show it."""
    return f"{context.trace_id:032x}" if context is not None and context.is_valid else None


def current() -> SpanContext | None:
    """The span context active in this task (an HTTP request's, say), None when there is none."""
    found = trace.get_current_span().get_span_context()
    return found if found.is_valid else None


# --------------------------------------------------------------------- the tracer


class _Provider(Protocol):
    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class Tracing:
    """The tracer of one bridge process, or none (context passed on, nothing recorded)."""

    tracer: Tracer | None = None
    #: The SDK tracer provider this process owns: flushed and shut down with it.
    provider: _Provider | None = None

    @property
    def recording(self) -> bool:
        return self.tracer is not None

    def start(
        self,
        name: str,
        parent: SpanContext | None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Span:
        """A span under ``parent`` (a new trace when None), never under the ambient context.

        Not recording: the parent itself, so that its context is what goes on.
        """
        if self.tracer is None:
            return INVALID_SPAN if parent is None else NonRecordingSpan(parent)
        context = (
            Context() if parent is None else trace.set_span_in_context(NonRecordingSpan(parent))
        )
        return self.tracer.start_span(name, context=context, kind=kind, attributes=attributes)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def remote(trace_id: int, span_id: int, sampled: bool = True) -> SpanContext:
    """A remote span context, for tests and callers that build one by hand."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=flags, trace_state=TraceState()
    )


def from_settings(exporter: str, otlp_endpoint: str | None, service_name: str) -> Tracing:
    """The tracing a bridge process runs with: ``exporter`` is auto (OTLP over HTTP when an
    OTLP endpoint is configured, else none), otlp, console or none."""
    if exporter == "auto":
        exporter = "otlp" if otlp_endpoint else "none"
    if exporter == "none":
        return Tracing()
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    span_exporter: SpanExporter
    if exporter == "otlp":
        # The exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself (endpoint,
        # headers, timeout, certificates).
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    else:
        span_exporter = ConsoleSpanExporter()
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default name.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    log.info("tracing: spans exported through %s", exporter)
    return Tracing(provider.get_tracer("bridge"), provider)
