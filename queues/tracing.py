"""A span for each message a stage processes, in the trace its producer sent along.

OpenTelemetry's messaging conventions: a consumer span `process <queue>` whose parent is
the context in the message's attributes (an incident's events all carry it, so the
incident's work is one trace). A message with none (a CloudWatch alarm's notification)
starts a trace. Outermost middleware: the span covers every other middleware's work (the
claim, the outbox's publishing) and ends once the outcome is applied to the queue.
Heartbeats are events on the span; the runtime's own polls and deletes make no spans.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind

from core.tracing import INCIDENT_ID, extracted, failed, tracer
from queues.delivery import Delivery
from queues.middleware import Middleware
from queues.outcomes import DeadLetter, Outcome, Retry


class Tracing(Middleware):
    def __init__(self) -> None:
        self.tracer = tracer("fleet.queues")
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[trace.Span, Any]] = {}

    def before_process(self, delivery: Delivery) -> Outcome | None:
        event = delivery.event
        incident_id = event.incident_id if event else None
        parent = extracted(delivery.trace_context, incident_id)
        attributes: dict[str, Any] = {
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "process",
            "messaging.destination.name": delivery.queue,
            "messaging.message.id": delivery.message_id,
            "messaging.batch.message_count": delivery.received_with,
            "fleet.stage": delivery.stage,
            "fleet.receive_count": delivery.receive_count,
        }
        if event is not None:
            attributes["fleet.event_type"] = event.event_type.value
            attributes["fleet.event_id"] = event.event_id
        if incident_id:
            attributes[INCIDENT_ID] = incident_id
        span = self.tracer.start_span(
            f"process {delivery.queue}", parent, SpanKind.CONSUMER, attributes
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        with self.lock:
            self.spans[delivery.message_id] = (span, token)
        return None

    def after_process(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        with self.lock:
            held = self.spans.get(delivery.message_id)
        if held is not None:
            span, token = held
            span.set_attribute("fleet.outcome", type(outcome).__name__.lower())
            if isinstance(outcome, DeadLetter) or (isinstance(outcome, Retry) and outcome.failed):
                failed(span, outcome.error_class)
            context.detach(token)  # this thread's context as it was before the message
        return outcome

    def after_settle(self, delivery: Delivery) -> None:
        with self.lock:
            held = self.spans.pop(delivery.message_id, None)
        if held is not None:
            span = held[0]
            if delivery.dlq_message_id:
                span.set_attribute("fleet.dlq_message_id", delivery.dlq_message_id)
            span.end()

    def on_heartbeat(self, busy: list[Delivery]) -> None:
        with self.lock:
            spans = [self.spans[d.message_id][0] for d in busy if d.message_id in self.spans]
        for span in spans:
            span.add_event("heartbeat")
