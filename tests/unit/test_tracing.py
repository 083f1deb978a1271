"""Reading and writing W3C trace context, without I/O."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from bridge import tracing
from bridge.lag import lag_of
from bridge.logs import configure

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_parse_reads_a_traceparent() -> None:
    found = tracing.parse(TRACEPARENT, "vendor=abc,other=1")
    assert found is not None and found.is_remote
    assert (found.trace_id, found.span_id) == (TRACE_ID, SPAN_ID)
    assert found.trace_flags.sampled
    assert dict(found.trace_state) == {"vendor": "abc", "other": "1"}


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # extra on version 00
    ],
)
def test_parse_refuses_what_is_not_a_traceparent(value: str | None) -> None:
    assert tracing.parse(value) is None


def test_a_later_version_is_read_for_what_version_00_defines() -> None:
    found = tracing.parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-more")
    assert found is not None and found.trace_id == TRACE_ID and not found.trace_flags.sampled


def test_format_writes_what_parse_reads() -> None:
    found = tracing.parse(TRACEPARENT, "vendor=abc")
    assert found is not None
    assert tracing.format_traceparent(found) == TRACEPARENT
    assert tracing.columns(found) == {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    assert tracing.columns(None) == {"traceparent": None, "tracestate": None}
    unsampled = SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(0))
    assert tracing.format_traceparent(unsampled).endswith("-00")
    assert tracing.columns(unsampled)["tracestate"] is None


def test_a_long_tracestate_loses_members_from_the_end_to_fit_its_column() -> None:
    members = [(f"k{index}", "v" * 40) for index in range(30)]
    context = SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1), TraceState(members))
    written = tracing.format_tracestate(context)
    assert written is not None and len(written) <= tracing.TRACESTATE_MAX
    assert written.startswith("k0=") and "k29=" not in written


def test_kafka_headers_read_and_written() -> None:
    headers = (("ce_id", b"1"), ("TraceParent", TRACEPARENT.encode()), ("tracestate", b"a=b"))
    found = tracing.from_headers(headers)
    assert found is not None and found.trace_id == TRACE_ID
    assert dict(found.trace_state) == {"a": "b"}
    assert tracing.from_headers((("ce_id", b"1"),)) is None
    assert tracing.from_headers((("traceparent", b""),)) is None

    written = tracing.kafka_headers(
        {"ce_id": "1", "traceparent": "stale", "tracestate": "stale"}, TRACEPARENT, "a=b"
    )
    assert written == [
        ("ce_id", b"1"),
        ("traceparent", TRACEPARENT.encode()),
        ("tracestate", b"a=b"),
    ]
    # No context of its own: a message's headers go as they are.
    assert tracing.kafka_headers({"traceparent": "theirs"}, None, None) == [
        ("traceparent", b"theirs")
    ]


def test_http_headers_are_read_through_any_mapping() -> None:
    found = tracing.from_mapping({"traceparent": TRACEPARENT})
    assert found is not None and tracing.trace_id_of(found) == f"{TRACE_ID:032x}"
    assert tracing.from_mapping({}) is None
    assert tracing.trace_id_of(None) is None


def test_without_a_tracer_the_parent_goes_on_as_it_came() -> None:
    off = tracing.Tracing()
    assert not off.recording
    parent = tracing.parse(TRACEPARENT)
    assert parent is not None
    assert off.start("bridge.apply event", parent).get_span_context() == parent
    assert not off.start("bridge.apply event", None).get_span_context().is_valid
    off.shutdown()


def test_a_recording_tracer_starts_children_and_roots_never_under_the_ambient_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    on = tracing.Tracing(provider.get_tracer("test"), provider)
    parent = tracing.parse(TRACEPARENT)
    assert parent is not None

    child = on.start("bridge.apply callback", parent, attributes={"bridge.process.id": "p-1"})
    child.end()
    assert child.get_span_context().trace_id == TRACE_ID
    assert child.get_span_context().span_id != SPAN_ID

    ambient = trace.set_span_in_context(NonRecordingSpan(parent))
    token = context.attach(ambient)
    try:
        root = on.start("bridge.apply timer", None)
    finally:
        context.detach(token)
    root.end()
    assert root.get_span_context().trace_id != TRACE_ID

    (first, second) = exporter.get_finished_spans()
    assert first.parent is not None and first.parent.span_id == SPAN_ID
    assert second.parent is None
    on.shutdown()


def test_settings_choose_the_exporter() -> None:
    assert not tracing.from_settings("auto", None, "bridge").recording
    assert not tracing.from_settings("none", "http://collector:4318", "bridge").recording
    console = tracing.from_settings("console", None, "bridge")
    assert console.recording
    console.shutdown()
    otlp = tracing.from_settings("auto", "http://127.0.0.1:9", "bridge")
    assert otlp.recording
    otlp.shutdown()


def test_log_lines_carry_the_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    parent = tracing.parse(TRACEPARENT)
    assert parent is not None
    configure("INFO", "json")
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        with structlog.contextvars.bound_contextvars(
            process_id="p-1", correlation_key="o-1", event_id="e-1"
        ):
            logging.getLogger("bridge.test").warning("stepped")
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        context.detach(token)
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
    assert line["trace_id"] == f"{TRACE_ID:032x}" and line["span_id"] == f"{SPAN_ID:016x}"
    assert (line["process_id"], line["correlation_key"], line["event_id"]) == ("p-1", "o-1", "e-1")


def test_consumer_lag_is_the_end_offset_minus_the_committed_one() -> None:
    from aiokafka.structs import TopicPartition

    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    assert lag_of({a0: 5, a1: -1, b0: 9}, {a0: 12, a1: 3, b0: 7}) == {("a", 0): 7, ("b", 0): 0}
