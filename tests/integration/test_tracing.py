"""Trace context through the bridge: from an event's headers to the commands it leads to, callbacks
joining with their own context or continuing the process's, timers continuing the process's.

Run twice: with spans recorded (an in-memory exporter) and with no tracer at all, where the
context must still be passed on as it came.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from bridge.store.schema import processes
from bridge.tracing import Tracing
from tests.integration.harness import Bridge, running_bridge

pytestmark = [pytest.mark.integration, pytest.mark.sqlite_only]

EVENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
EVENT_SPAN = "b7ad6b7169203331"
CALLBACK_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLBACK_SPAN = "00f067aa0ba902b7"


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    found = [value for key, value in record.headers if key == name]
    assert len(found) <= 1, f"{name} appears {len(found)} times"
    return found[0].decode() if found else None


def parts(record: ConsumerRecord[bytes, bytes]) -> tuple[str, str]:
    """(trace id, parent span id) of a record's traceparent."""
    value = header(record, "traceparent")
    assert value is not None, f"no traceparent on {record.topic}"
    version, trace_id, span_id, flags = value.split("-")
    assert (version, flags) == ("00", "01")
    return trace_id, span_id


class Spans:
    """The spans a test's bridge recorded, or none when it runs without a tracer."""

    def __init__(self, recording: bool) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider: TracerProvider | None = None
        if recording:
            self.provider = TracerProvider()
            self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def tracing(self) -> Tracing:
        if self.provider is None:
            return Tracing()
        return Tracing(self.provider.get_tracer("bridge-test"))

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]

    def by_span_id(self, span_id: str) -> ReadableSpan:
        for span in self.exporter.get_finished_spans():
            if span.context is not None and f"{span.context.span_id:016x}" == span_id:
                return span
        raise AssertionError(f"no span {span_id}")


@pytest.fixture(params=["recording", "not-recording"])
def spans(request: pytest.FixtureRequest) -> Iterator[Spans]:
    found = Spans(request.param == "recording")
    yield found
    if found.provider is not None:
        found.provider.shutdown()


async def parent_chain(spans: Spans, span_id: str) -> list[str]:
    """Names of a span and its ancestors that were recorded here, innermost first."""
    # The relay ends its span when the broker has answered, which may be after the record
    # reached the test's consumer.
    for _ in range(100):
        if any(
            span.context is not None and f"{span.context.span_id:016x}" == span_id
            for span in spans.exporter.get_finished_spans()
        ):
            break
        await asyncio.sleep(0.05)
    names = []
    current: str | None = span_id
    while current is not None:
        try:
            span = spans.by_span_id(current)
        except AssertionError:
            break
        names.append(span.name)
        current = f"{span.parent.span_id:016x}" if span.parent is not None else None
    return names


async def test_events_commands_and_callbacks_share_the_trace(
    database_url: str, kafka: str, tmp_path: Path, spans: Spans
) -> None:
    async with running_bridge(database_url, kafka, tmp_path, tracing=spans.tracing) as bridge:
        order = {
            "type": "OrderPlaced",
            "eventId": "evt-traced",
            "orderId": "o-traced",
            "amount": 100,
            "customerId": "c-1",
            "items": [{"sku": "book", "qty": 1}],
        }
        await bridge.producer.send_and_wait(
            bridge.topics["orders.events"],
            json.dumps(order).encode(),
            key=b"o-traced",
            headers=[
                ("traceparent", traceparent(EVENT_TRACE, EVENT_SPAN).encode()),
                ("tracestate", b"vendor=abc"),
            ],
        )

        # The command the event led to carries the event's trace.
        reserve, record = await command(bridge, "inventory.commands")
        trace_id, parent = parts(record)
        assert trace_id == EVENT_TRACE
        assert header(record, "tracestate") == "vendor=abc"
        if spans.provider is None:
            assert parent == EVENT_SPAN, "no tracer: the context goes on as it came"
        else:
            assert await parent_chain(spans, parent) == [
                "bridge.relay publish",
                "bridge.apply event",
            ]
            (applied,) = spans.named("bridge.apply event")
            assert applied.parent is not None and f"{applied.parent.span_id:016x}" == EVENT_SPAN
            attributes = dict(applied.attributes or {})
            assert attributes["bridge.definition"] == "order-saga"
            assert attributes["bridge.correlation_key"] == "o-traced"
            assert (
                attributes["bridge.event.id"] == f"id|{bridge.topics['orders.events']}|evt-traced"
            )
            assert attributes["bridge.process.id"]

        # A callback over HTTP with a trace context of its own: its step joins that trace.
        status, body = await bridge.post(
            f"/tasks/{reserve['taskToken']}/success",
            {"reserved": True},
            headers={"traceparent": traceparent(CALLBACK_TRACE, CALLBACK_SPAN)},
        )
        assert status == 200, body
        charge, record = await command(bridge, "payments.commands")
        trace_id, parent = parts(record)
        assert trace_id == CALLBACK_TRACE
        if spans.provider is None:
            assert parent == CALLBACK_SPAN
        else:
            assert await parent_chain(spans, parent) == [
                "bridge.relay publish",
                "bridge.apply callback",
                "POST /tasks/{token}/{outcome}",
            ]
            (server,) = spans.named("POST /tasks/{token}/{outcome}")
            assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLBACK_SPAN

        # A reply on Kafka without one continues the process's trace.
        await bridge.publish(
            "bridge.replies", {"taskToken": charge["taskToken"], "output": {"charged": 100}}
        )
        _, record = await command(bridge, "orders.done")
        trace_id, parent = parts(record)
        assert trace_id == EVENT_TRACE
        if spans.provider is None:
            assert parent == EVENT_SPAN
        else:
            chain = await parent_chain(spans, parent)
            assert chain[:2] == ["bridge.relay publish", "bridge.apply callback"]
            assert chain[-1] == "bridge.apply event"

        # The process keeps the trace it started in.
        process = await bridge.process_for("o-traced", "SUCCEEDED")
        async with bridge.core.db.connect() as conn:
            stored = await conn.scalar(
                select(processes.c.traceparent).where(processes.c.id == process["id"])
            )
        assert stored is not None and stored.split("-")[1] == EVENT_TRACE

        if spans.provider is not None:
            tokens = [reserve["taskToken"], charge["taskToken"]]
            for span in spans.exporter.get_finished_spans():
                shown = span.name + json.dumps(dict(span.attributes or {}), default=str)
                assert not any(token in shown for token in tokens), span.name


async def command(
    bridge: Bridge, topic: str
) -> tuple[dict[str, Any], ConsumerRecord[bytes, bytes]]:
    return await bridge.next_message(topic, lambda value: value.get("orderId") == "o-traced")


async def test_a_timer_continues_the_process_trace(
    database_url: str, kafka: str, tmp_path: Path, spans: Spans
) -> None:
    suffix = tmp_path.name[-12:].replace("_", "-")
    ticks, out = f"ticks.{suffix}", f"ticks.out.{suffix}"
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "pause.asl.json").write_text(
        json.dumps(
            {
                "Triggers": [{"Topic": ticks, "EventType": "Tick", "CorrelationKey": "$.id"}],
                "StartAt": "Pause",
                "States": {
                    "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Tell"},
                    "Tell": {
                        "Type": "Task",
                        "Resource": "bridge:kafka:send",
                        "Parameters": {
                            "Topic": out,
                            "Key.$": "$.id",
                            "Message": {"type": "Paused", "id.$": "$.id"},
                        },
                        "End": True,
                    },
                },
            }
        )
    )
    async with running_bridge(
        database_url, kafka, tmp_path, definitions=folder, tracing=spans.tracing
    ) as bridge:
        await bridge.producer.send_and_wait(
            ticks,
            json.dumps({"type": "Tick", "id": "t-1"}).encode(),
            headers=[("traceparent", traceparent(EVENT_TRACE, EVENT_SPAN).encode())],
        )
        value, record = await bridge.next_message(out, lambda value: value.get("id") == "t-1")
        assert value["type"] == "Paused"
        trace_id, parent = parts(record)
        assert trace_id == EVENT_TRACE
        if spans.provider is None:
            assert parent == EVENT_SPAN
        else:
            assert (await parent_chain(spans, parent))[:2] == [
                "bridge.relay publish",
                "bridge.apply timer",
            ]
            (timer,) = spans.named("bridge.apply timer")
            assert dict(timer.attributes or {})["bridge.outcome"] == "applied"

        # A start over HTTP joins the request's trace, and its timer continues it.
        status, body = await bridge.post(
            "/processes",
            {"definition": "pause", "input": {"id": "t-2"}},
            headers={"traceparent": traceparent(CALLBACK_TRACE, CALLBACK_SPAN)},
        )
        assert status == 201, body
        _, record = await bridge.next_message(out, lambda value: value.get("id") == "t-2")
        trace_id, parent = parts(record)
        assert trace_id == CALLBACK_TRACE
        if spans.provider is None:
            assert parent == CALLBACK_SPAN
        else:
            assert await parent_chain(spans, parent) == [
                "bridge.relay publish",
                "bridge.apply timer",
                "bridge.apply start",
                "POST /processes",
            ]
