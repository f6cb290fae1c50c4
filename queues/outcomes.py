"""What becomes of a message, as a value: acknowledge it, retry it later, or dead-letter it.

A handler returns normally (acknowledge) or raises; middleware may decide an outcome before
the handler runs (a duplicate is acknowledged) or change it after (an outbox that could not
be published turns success into a retry). The consumer applies the final outcome in one
place (`Consumer.settle`), so backoff, dead-lettering and deletes are written once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from core.errors import described


class NonRetryableError(Exception):
    """Raise from a handler for input that can never succeed: straight to the DLQ."""


class RetryLater(Exception):
    """Raise from a handler when a dependency is away (an MCP server restarting): the message
    comes back after at least `after_s`, so a short outage does not use up its receives."""

    def __init__(self, reason: str, after_s: float):
        super().__init__(reason)
        self.after_s = after_s


@dataclass(frozen=True)
class Ack:
    """Done (or done before): delete the message."""

    note: str = "handled"


@dataclass(frozen=True)
class Retry:
    """Back to the queue. A failure (`failed`) backs off by receive count, waits at least
    `after_s`, and on the queue's last receive leaves the message for the redrive policy to
    dead-letter; a hand-back that is no failure (`failed=False`) waits exactly `after_s`."""

    reason: str
    error_class: str
    after_s: float = 0.0
    failed: bool = True


@dataclass(frozen=True)
class DeadLetter:
    """Can never succeed: a copy goes to the DLQ now with the reason; the original is deleted."""

    reason: str
    error_class: str


Outcome = Ack | Retry | DeadLetter


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome a handler's (or the runtime's own) exception stands for."""
    text = described(exc)
    if isinstance(exc, NonRetryableError):
        return DeadLetter(str(exc), type(exc).__name__)
    if isinstance(exc, RetryLater):
        return Retry(text, type(exc).__name__, after_s=exc.after_s)
    return Retry(text, type(exc).__name__)


MAX_VISIBILITY_S = 43200  # SQS's limit on ChangeMessageVisibility


def backoff_s(receive_count: int, base_s: float, max_s: int) -> int:
    """Visibility for a retried message: exponential in its receive count, with jitter."""
    delay = min(float(max_s), base_s * (2 ** max(0, receive_count - 1)))
    return int(delay * random.uniform(0.5, 1.0)) if delay >= 1 else int(delay)
