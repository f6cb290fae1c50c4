"""Tracing's pieces, with the SDK's in-memory exporter (the integration suite reads a whole
incident's trace from the fleet's own processes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.tracing import (
    INCIDENT_ID,
    IncidentSpans,
    carrier,
    extracted,
    span_in,
    span_record,
    tag_incident,
    tracer,
    untraced,
)
from fleet.trace_view import render_waterfall
from incidents.incident_trace import load_incident_trace
from queues.delivery import Delivery, trace_carrier
from queues.events import EventEnvelope, new_event
from queues.outcomes import DeadLetter
from queues.topology import EventType
from queues.tracing import Tracing
from tests.unit.test_runtime_middleware import _consumer, _run

EXPORTED = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(IncidentSpans(SimpleSpanProcessor(EXPORTED)))
        trace.set_tracer_provider(provider)
    EXPORTED.clear()
    yield EXPORTED
    EXPORTED.clear()


def _named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (found,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return found


def _message(event: EventEnvelope, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "MessageId": "m1",
        "ReceiptHandle": "rh-1",
        "Body": event.model_dump_json(),
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": attributes,
    }


def test_a_message_is_a_span_in_its_producers_trace_and_its_work_names_the_incident(
    spans: InMemorySpanExporter,
) -> None:
    with span_in("producer") as producer:
        sent = {k: {"DataType": "String", "StringValue": v} for k, v in carrier().items()}

    def handler(_event: EventEnvelope, _delivery: Delivery) -> None:
        with tracer("test").start_as_current_span("work"):
            pass

    consumer, _sqs = _consumer(handler, [Tracing()])
    _run(consumer, [_message(new_event(EventType.OPENED, "t", {}, incident_id="inc-7"), sent)])

    process, work = _named(spans, "process supervisor"), _named(spans, "work")
    assert process.context.trace_id == producer.get_span_context().trace_id
    assert process.parent is not None
    assert process.parent.span_id == producer.get_span_context().span_id
    assert process.kind == trace.SpanKind.CONSUMER
    assert process.attributes is not None and work.attributes is not None
    assert process.attributes[INCIDENT_ID] == "inc-7"
    assert process.attributes["fleet.outcome"] == "ack"
    assert work.parent is not None and work.parent.span_id == process.context.span_id
    assert work.attributes[INCIDENT_ID] == "inc-7"


def test_a_failed_message_span_names_the_error_class_and_not_its_message(
    spans: InMemorySpanExporter,
) -> None:
    def handler(_event: EventEnvelope, _delivery: Delivery) -> None:
        raise RuntimeError("log line: password=hunter2")

    consumer, _sqs = _consumer(handler, [Tracing()])
    _run(consumer, [_message(new_event(EventType.OPENED, "t", {}, incident_id="inc-1"), {})])

    process = _named(spans, "process supervisor")
    assert process.status.status_code == trace.StatusCode.ERROR
    assert process.status.description == "RuntimeError"
    assert "hunter2" not in json.dumps(span_record(process))


def test_a_dead_lettered_message_span_is_failed_and_names_its_copy(
    spans: InMemorySpanExporter,
) -> None:
    consumer, _sqs = _consumer(lambda _e, _d: None, [Tracing()])
    unreadable = {**_message(new_event(EventType.OPENED, "t", {}), {}), "Body": "{not json"}
    _run(consumer, [unreadable])

    process = _named(spans, "process supervisor")
    assert process.status.description == DeadLetter("", "BadMessage").error_class
    assert process.attributes is not None
    assert process.attributes["fleet.dlq_message_id"] == "dlq-copy"


def test_heartbeats_are_events_on_the_span_of_each_busy_message(
    spans: InMemorySpanExporter,
) -> None:
    middleware = Tracing()
    event = new_event(EventType.OPENED, "t", {}, incident_id="inc-1")
    delivery = Delivery.received(_message(event, {}), "supervisor", "q", 5)
    middleware.before_process(delivery)
    middleware.on_heartbeat([delivery])
    middleware.on_heartbeat([delivery])
    middleware.after_settle(delivery)
    process = _named(spans, "process q")
    assert [e.name for e in process.events] == ["heartbeat", "heartbeat"]


def test_spans_started_before_the_incident_was_known_get_it_when_their_root_ends(
    spans: InMemorySpanExporter,
) -> None:
    with span_in("process supervisor", extracted({})):
        with span_in("DynamoDB.GetItem"):
            pass  # the intake's first read, before it knows the incident
        assert not spans.get_finished_spans()  # held until the root ends
        tag_incident("inc-3")
    assert {s.name: (s.attributes or {}).get(INCIDENT_ID) for s in spans.get_finished_spans()} == {
        "DynamoDB.GetItem": "inc-3",
        "process supervisor": "inc-3",
    }


def test_an_incident_travels_as_baggage_to_another_process_span(
    spans: InMemorySpanExporter,
) -> None:
    with span_in("client", extracted({}, "inc-9")):
        sent = carrier()  # what an MCP call puts in `_meta`
    with span_in("tools/call x", extracted(sent)):
        pass
    assert (_named(spans, "tools/call x").attributes or {})[INCIDENT_ID] == "inc-9"


def test_a_later_alert_links_to_the_incidents_trace(spans: InMemorySpanExporter) -> None:
    with span_in("first alert", extracted({})) as first:
        opened_in = carrier()["traceparent"]
    with span_in("later alert", extracted({})):
        tag_incident("inc-4", joined=opened_in)
    later = _named(spans, "later alert")
    assert later.context.trace_id != first.get_span_context().trace_id
    assert [link.context.span_id for link in later.links] == [first.get_span_context().span_id]


def test_an_untraced_thread_makes_no_spans_except_for_a_message_it_takes(
    spans: InMemorySpanExporter,
) -> None:
    seen: dict[str, bool] = {}

    def thread() -> None:
        untraced()
        seen["idle"] = is_instrumentation_enabled()
        with span_in("process q", extracted({})):
            seen["message"] = is_instrumentation_enabled()

    worker = threading.Thread(target=thread)
    worker.start()
    worker.join()
    assert seen == {"idle": False, "message": True}


def test_the_trace_context_is_read_from_sqs_attributes_or_the_sns_envelope() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    direct = {"traceparent": {"DataType": "String", "StringValue": parent}}
    assert trace_carrier(direct, "{}") == {"traceparent": parent}
    envelope = json.dumps(
        {
            "Type": "Notification",
            "MessageId": "x",
            "Message": "{}",
            "MessageAttributes": {"traceparent": {"Type": "String", "Value": parent}},
        }
    )
    assert trace_carrier({}, envelope) == {"traceparent": parent}
    assert trace_carrier({}, '{"traceparent": [1, 2') == {}  # looked like one: untraced, kept


def _line(span_id: str, parent: str | None, name: str, start: int, end: int, **more: Any) -> str:
    return json.dumps(
        {
            "trace_id": more.pop("trace_id", "t1"),
            "span_id": span_id,
            "parent_id": parent,
            "name": name,
            "kind": more.pop("kind", "INTERNAL"),
            "service": more.pop("service", "fleet-worker-supervisor"),
            "start_ns": start * 1_000_000,
            "end_ns": end * 1_000_000,
            "status": more.pop("status", "UNSET"),
            "error": more.pop("error", None),
            "attributes": {INCIDENT_ID: "inc-1", **more.pop("attributes", {})},
            "events": more.pop("events", []),
            "links": more.pop("links", []),
        }
    )


def test_the_waterfall_orders_by_start_and_starts_each_stage_at_the_left(tmp_path: Path) -> None:
    lines = [
        _line("a", None, "process supervisor", 0, 100, kind="CONSUMER"),
        _line("b", "a", "DynamoDB.GetItem", 10, 20, kind="CLIENT"),
        _line("c", "a", "incident-events send", 30, 40, kind="PRODUCER"),
        _line(
            "d",
            "c",
            "process resolver",
            50,
            400,
            kind="CONSUMER",
            service="fleet-worker-resolver",
            events=[{"name": "incident.status", "attributes": {"from": "A", "to": "B"}}],
        ),
        _line(
            "e",
            "d",
            "IAM.PutRolePolicy",
            60,
            70,
            status="ERROR",
            error="AccessDenied",
            service="fleet-worker-resolver",
        ),
        _line(
            "z",
            None,
            "process supervisor",
            200,
            210,
            kind="CONSUMER",
            trace_id="t2",
            links=[{"trace_id": "t1", "span_id": "a", "attributes": {}}],
        ),
    ]
    (tmp_path / "worker-1.jsonl").write_text("\n".join(lines) + "\n{cut short")
    (tmp_path / "other.jsonl").write_text(_line("q", None, "x", 0, 1).replace("inc-1", "inc-2"))

    found = load_incident_trace(tmp_path, "inc-1")
    assert found.trace_id == "t1"
    assert [(s.name, s.depth) for s in found.spans] == [
        ("process supervisor", 0),
        ("DynamoDB.GetItem", 1),
        ("incident-events send", 1),
        ("process resolver", 0),
        ("IAM.PutRolePolicy", 1),
    ]
    assert [s.trace_id for s in found.joined] == ["t2"]
    text = render_waterfall(found)
    assert "FAILED AccessDenied" in text and "[A -> B]" in text
    assert "1 later alert(s) joined it" in text
    assert found.as_json()["spans"][3]["status_moves"] == ["A -> B"]
