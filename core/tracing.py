"""Traces (OpenTelemetry): one per incident, across every process it passes through.

Each fleet process that does an incident's work (the four workers, the two MCP servers,
the console) calls `configure` once at start. Spans go to the user's OTLP endpoint when
the standard variables name one (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), else to a JSON-lines file per process under
`<state_dir>/traces/`, which `fleet trace` and the console read; OTEL_SDK_DISABLED=true
turns tracing off. Every AWS call is a span (the maintained botocore instrumentation,
which also puts the trace context into the attributes of what is published to SNS).

The incident id is on every span of an incident's work: a message's span takes it from its
event (or the intake sets it once it knows), it travels to other processes as W3C baggage
(`incident.id`, with the trace context), and a span started before it was known (the
intake's first reads) gets it when its process's outermost span ends (`IncidentSpans`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import Status, StatusCode

from core.settings import Settings

# The attribute (and baggage entry) that names the incident a span worked for.
INCIDENT_ID = "incident.id"
# The W3C keys the propagators read and write (traceparent, tracestate, baggage).
TRACE_KEYS = ("traceparent", "tracestate", "baggage")
# How often the local file is written (the SDK's default is 5 s; `fleet trace` right after
# an incident should see it). OTEL_BSP_SCHEDULE_DELAY still decides when it is set.
FILE_EXPORT_DELAY_MS = 1000

_configured = threading.Lock()
_provider: TracerProvider | None = None


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def configure(
    process: str,
    settings: Settings,
    exporter: SpanExporter | None = None,
    sampler: Sampler | None = None,
) -> None:
    """Trace this process as `fleet-<process>`: every AWS call, and every span the fleet's
    code makes. Once per process; `exporter` replaces the configured one (tests), `sampler`
    the SDK's (OTEL_TRACES_SAMPLER, by default every trace)."""
    global _provider
    with _configured:
        if _provider is not None or settings.otel_sdk_disabled:
            return
        resource = Resource.create({"service.name": f"fleet-{process}"})
        provider = TracerProvider(resource=resource, sampler=sampler)
        delay: int | None = None
        if exporter is None and settings.otlp_configured:
            # Loaded only where spans go out over OTLP: protobuf's import is no small part
            # of a process's start, and the embedded world writes files.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # reads the standard OTEL_EXPORTER_OTLP_* variables
        elif exporter is None:
            exporter = _file_exporter(settings.trace_dir / f"{process}-{os.getpid()}.jsonl")
            if settings.otel_bsp_schedule_delay is None:
                delay = FILE_EXPORT_DELAY_MS
        provider.add_span_processor(IncidentSpans(BatchSpanProcessor(exporter, delay)))
        trace.set_tracer_provider(provider)
        BotocoreInstrumentor().instrument(tracer_provider=provider)
        _provider = provider


# How long a stopping process waits for its last spans to be exported.
FLUSH_AT_EXIT_MS = 5000


def flush() -> None:
    """Export what is held, before a process leaves by os._exit (the SDK exports at a
    normal exit by itself)."""
    if _provider is not None:
        _provider.force_flush(FLUSH_AT_EXIT_MS)


def _file_exporter(path: Path) -> SpanExporter:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = path.open("a", encoding="utf-8", buffering=1)
    return ConsoleSpanExporter(
        out=out, formatter=lambda span: json.dumps(span_record(span), default=str) + "\n"
    )


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as a line of the local trace file (what `fleet trace` reads)."""
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name", ""),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "error": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": f"{link.context.trace_id:032x}",
                "span_id": f"{link.context.span_id:016x}",
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
    }


class IncidentSpans(SpanProcessor):
    """Puts the incident id on every span of an incident's work, then hands them on.

    A span whose parent is in another process (or that has none) is a local root: a
    message's processing, an MCP tool call. It takes the incident from the baggage it was
    started with, or the code sets it later (the intake, once it has counted an alert).
    Its descendants in this process are held until it ends, and those without the id get
    its id then: a span cannot change once ended, so each is copied with it."""

    def __init__(self, export: SpanProcessor):
        self.export = export
        self.lock = threading.Lock()
        self.root_of: dict[int, int] = {}  # open span -> its local root
        self.held: dict[int, list[ReadableSpan]] = {}  # local root -> its ended descendants

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        parent = trace.get_current_span(parent_context).get_span_context()
        own = span.get_span_context().span_id
        with self.lock:
            root = self.root_of.get(parent.span_id) if not parent.is_remote else None
            if root is None:
                root = own
                self.held[own] = []
            self.root_of[own] = root
        if span.attributes is None or INCIDENT_ID not in span.attributes:
            incident = baggage.get_baggage(INCIDENT_ID, parent_context)
            if incident:
                span.set_attribute(INCIDENT_ID, str(incident))
        self.export.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        own = span.get_span_context().span_id  # type: ignore[union-attr]
        with self.lock:
            root = self.root_of.pop(own, own)
            if root != own and root in self.held:
                self.held[root].append(span)
                return
            ready = [*self.held.pop(own, []), span] if root == own else [span]
        incident = (span.attributes or {}).get(INCIDENT_ID) if root == own else None
        for each in ready:
            self.export.on_end(_with_incident(each, incident) if incident else each)

    def shutdown(self) -> None:
        self.export.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.export.force_flush(timeout_millis)


def _with_incident(span: ReadableSpan, incident: Any) -> ReadableSpan:
    if span.attributes and INCIDENT_ID in span.attributes:
        return span
    return ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=span.resource,
        attributes={**(span.attributes or {}), INCIDENT_ID: incident},
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


# ---------------------------------------------------------------------- context


def untraced() -> None:
    """This thread's own AWS calls make no spans (a worker's polls, heartbeats, deletes and
    bookkeeping for many messages at once). A span started here on an extracted context
    (a message's) is traced as usual: that context does not carry this mark."""
    context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))


def extracted(carrier: Mapping[str, str], incident_id: str | None = None) -> Context:
    """The context a carrier (message attributes, MCP `_meta`) brought, on a clean base:
    the receiver's own context (an untraced thread's mark) is not inherited."""
    found = extract(dict(carrier), context=Context())
    if incident_id:
        found = baggage.set_baggage(INCIDENT_ID, incident_id, found)
    return found


def carrier() -> dict[str, str]:
    """The current trace context (and baggage) as W3C keys, to send along."""
    out: dict[str, str] = {}
    inject(out)
    return out


def traceparent() -> str | None:
    """The current span's W3C traceparent (what an incident keeps of its first span)."""
    return carrier().get("traceparent")


def inject_message_attributes(attributes: MutableMapping[str, Any]) -> None:
    """The current trace context into SQS/SNS message attributes (String), as the botocore
    instrumentation does for SNS publishes."""
    for key, value in carrier().items():
        attributes[key] = {"DataType": "String", "StringValue": value}


def tag_incident(incident_id: str, joined: str | None = None) -> None:
    """The current span worked for this incident; `joined`: the traceparent of the
    incident's own trace, which this span (a later alert of a storm, in a trace of its own)
    is linked to."""
    span = trace.get_current_span()
    span.set_attribute(INCIDENT_ID, incident_id)
    if joined:
        target = trace.get_current_span(extract({"traceparent": joined}, context=Context()))
        if target.get_span_context().is_valid:
            span.add_link(target.get_span_context(), {"fleet.link": "alert joined incident"})


@contextmanager
def span_in(
    name: str,
    parent: Context | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[trace.Span]:
    """A span that is current for the block, on `parent` (default: the current context).
    On an extracted context the block is traced even in an untraced thread: the span is
    set on `parent` itself, not on the thread's context. A failure marks it by the error's
    class alone (`failed`)."""
    base = context.get_current() if parent is None else parent
    span = tracer("fleet").start_span(name, base, kind, attributes)
    token = context.attach(trace.set_span_in_context(span, base))
    try:
        yield span
    except BaseException as exc:
        failed(span, type(exc).__name__)
        raise
    finally:
        context.detach(token)
        span.end()


def continuing(
    name: str, trace_parent: str | None, incident_id: str, **attributes: Any
) -> contextlib.AbstractContextManager[trace.Span]:
    """A span in an incident's own trace, from a process that is not handling one of its
    messages (a person's decision at the console or the CLI)."""
    parent = extracted({"traceparent": trace_parent} if trace_parent else {}, incident_id)
    return span_in(name, parent, attributes={INCIDENT_ID: incident_id, **attributes})


def status_event(old: str, new: str) -> None:
    """An incident's move, as an event on the span of the work that made it."""
    trace.get_current_span().add_event("incident.status", {"from": old, "to": new})


def failed(span: trace.Span, error_class: str) -> None:
    """Mark a span failed by the error's class alone: an error's message may quote log text
    or a value the fleet read, and a span is no place for either."""
    span.set_status(Status(StatusCode.ERROR, error_class))
    span.set_attribute("error.type", error_class)
