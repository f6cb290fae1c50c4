"""One received message as the runtime and its middleware see it, from receipt to settlement."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from core.tracing import TRACE_KEYS
from queues.events import BadMessage, EventEnvelope, parse_body
from queues.outcomes import Outcome


@dataclass
class Delivery:
    stage: str
    queue: str
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    # The queue's maxReceiveCount: a failure on this receive sends the message to the DLQ.
    max_receives: int
    message_attributes: dict[str, Any] = field(default_factory=dict)
    event: EventEnvelope | None = None
    # Why the body is not an event we take (bad input: dead-lettered without a handler).
    unreadable: str | None = None
    # Incidents this message's work concerns: its own, and any the handler's store changed
    # (their ids go into its idempotency record).
    touched: set[str] = field(default_factory=set)
    # Incidents whose outbox holds events this delivery must publish before the message is
    # deleted: those its handler announced, and those an earlier delivery of its event may
    # have left (a duplicate). A redelivered message publishes every touched one.
    announced: set[str] = field(default_factory=set)
    outcome: Outcome | None = None
    # The id of the copy sent to the DLQ, when the runtime dead-lettered it itself.
    dlq_message_id: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    # How many messages were received together with this one (itself included).
    received_with: int = 1
    # The trace context its producer sent along (W3C keys; see `trace_carrier`).
    trace_context: dict[str, str] = field(default_factory=dict)

    @classmethod
    def received(
        cls, message: dict[str, Any], stage: str, queue: str, max_receives: int
    ) -> Delivery:
        attributes = message.get("Attributes", {})
        delivery = cls(
            stage=stage,
            queue=queue,
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message["Body"],
            receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
            max_receives=max_receives,
            message_attributes=message.get("MessageAttributes", {}),
        )
        delivery.trace_context = trace_carrier(delivery.message_attributes, delivery.body)
        try:
            delivery.event = parse_body(delivery.body, delivery.message_id)
        except BadMessage as exc:
            delivery.unreadable = str(exc)
        except Exception as exc:  # a parser bug: the message waits in the DLQ, redrivable
            delivery.unreadable = f"cannot parse: {type(exc).__name__}: {exc}"
        else:
            if delivery.event.incident_id:
                delivery.touched.add(delivery.event.incident_id)
        return delivery

    @property
    def last_receive(self) -> bool:
        """A failure now sends the message to the DLQ: a handler that can still conclude
        (escalate) instead of failing should, now."""
        return bool(self.max_receives) and self.receive_count >= self.max_receives

    @property
    def settled(self) -> bool:
        return self.outcome is not None

    @property
    def duration_ms(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return (end - self.started) * 1000


def trace_carrier(attributes: dict[str, Any], body: str) -> dict[str, str]:
    """The trace context a message carries: in its own attributes (sent to SQS directly: a
    delayed event, a redriven dead letter), or in the attributes of the SNS notification
    its body is (SNS delivers them inside the body unless raw delivery is on)."""
    found = {k: attributes[k].get("StringValue", "") for k in TRACE_KEYS if k in attributes}
    if found or '"traceparent"' not in body:
        return found
    try:
        sns = json.loads(body).get("MessageAttributes") or {}
        return {k: str(sns[k].get("Value", "")) for k in TRACE_KEYS if k in sns}
    except (ValueError, AttributeError):
        return {}  # not the SNS envelope it looked like: the message is untraced, not lost
