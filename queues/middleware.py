"""Hooks around the consumer's loop, in the manner of Dramatiq's middleware.

The consumer only receives, heartbeats, settles and shuts down; everything else that
happens around a message (log context, runtime metrics, failure records, idempotency
claims, publishing the outbox) is a middleware. `before_*` hooks run in the order the
middleware is given, `after_*` hooks in reverse, so the first middleware wraps all others.
Every hook is optional; a hook that fails is logged and does not stop the others, except
`before_process`, whose failure is the message's outcome (a retry).
"""

from __future__ import annotations

from queues.delivery import Delivery
from queues.outcomes import Outcome


class Middleware:
    def on_boot(self, heartbeat_s: float) -> None:
        """The consumer is set up and about to receive; `heartbeat_s` is how often in-flight
        messages are kept invisible."""

    def on_shutdown(self) -> None:
        """The consumer has stopped receiving, settled or returned every message, and deleted
        what it could."""

    def before_batch(self, batch: list[Delivery]) -> None:
        """A batch was received and parsed; no message of it is processed yet."""

    def after_batch(self, batch: list[Delivery]) -> None:
        """Every message of a received batch is settled."""

    def before_process(self, delivery: Delivery) -> Outcome | None:
        """Before the handler. Return an outcome to settle the message without running the
        handler (and the `before_process` of later middleware)."""
        return None

    def after_process(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        """After the handler (or after an outcome decided before it); may change the outcome."""
        return outcome

    def after_settle(self, delivery: Delivery) -> None:
        """The outcome (`delivery.outcome`) was applied to the queue."""

    def on_heartbeat(self, busy: list[Delivery]) -> None:
        """The consumer just extended the visibility of these in-flight messages."""

    def before_delete(self, acked: list[Delivery]) -> list[Delivery]:
        """Acknowledged messages about to be deleted; return those that may be. A message
        kept back is not deleted and comes back after its visibility timeout."""
        return acked
