"""Every log line written while a message is handled says which message, event and incident.

structlog's context variables are per thread; a message is processed on one pool thread
from `before_process` to `after_settle`, so binding there covers the handler, the store and
every middleware in between.
"""

from __future__ import annotations

import structlog
from opentelemetry import trace

from queues.delivery import Delivery
from queues.middleware import Middleware
from queues.outcomes import Outcome


class LogContext(Middleware):
    def before_process(self, delivery: Delivery) -> Outcome | None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            stage=delivery.stage,
            message_id=delivery.message_id,
            receive_count=delivery.receive_count,
        )
        if delivery.event is not None:
            structlog.contextvars.bind_contextvars(
                event_id=delivery.event.event_id,
                event_type=delivery.event.event_type.value,
                incident_id=delivery.event.incident_id,
            )
        span = trace.get_current_span().get_span_context()
        if span.is_valid:  # a log line leads to its trace (the Tracing middleware's span)
            structlog.contextvars.bind_contextvars(trace_id=f"{span.trace_id:032x}")
        return None

    def after_settle(self, delivery: Delivery) -> None:
        structlog.contextvars.clear_contextvars()
