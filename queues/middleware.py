"""Hooks around the consumer's loop, in the manner of Dramatiq's middleware.

The consumer only receives, heartbeats, settles and shuts down; everything else that
happens around a message (log context, runtime metrics, failure records, idempotency
claims, publishing the outbox) is a middleware. `before_*` hooks run in the order the
middleware is given, `after_*` hooks in reverse, so the first middleware wraps all others.
Every hook is optional; a hook that fails is logged and does not stop the others, except
`before_process`, whose failure is the message's outcome (a retry). At boot each middleware
is handed the `Runtime`: the little it may ask of the consumer beyond its hooks.
"""

from __future__ import annotations

from typing import Protocol

from queues.delivery import Delivery
from queues.outcomes import Outcome


class Runtime(Protocol):
    """What a middleware may ask of the consumer that runs it."""

    @property
    def heartbeat_s(self) -> float:
        """How often in-flight messages (and what is held for them) are kept alive."""
        ...

    def abandon(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Settle a message now with `outcome`, without waiting for its handler, whose
        thread may never return; its slot stays taken until it does. False if the message
        was settled already (its handler finished first)."""
        ...

    def stop(self, exit_code: int, reason: str) -> None:
        """Stop as on SIGTERM (no new messages, in-flight ones finish within the grace period,
        the rest go back), and exit with this code."""
        ...


class Middleware:
    def on_boot(self, runtime: Runtime) -> None:
        """The consumer is set up and about to receive."""

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
