"""SQS finds a message by its receipt handle without walking the queue.

moto 5.2.5's DeleteMessage checks every message of the queue for the handle, then walks the
queue again to rebuild it without the message: Python-level work per message in the queue,
for each message deleted, so draining n messages costs about n² steps: a 5,000-alert storm
drained slower per message than a 500-alert one, on a cost AWS does not have (its
DeleteMessage does not depend on the queue's depth).

The patch indexes every receipt handle when it is issued (a message's receive) and goes
straight to the message it names. The answers stay moto's, and AWS's: a handle the queue
never issued (or one of a message since moved to its DLQ) is ReceiptHandleIsInvalid, a
handle of a message already deleted succeeds again, and any handle a message ever had
still names it.

The patch checks the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue

from emulation.moto_version import require_patched_moto

_applied = False
# Every receipt handle issued, to its message (weak: a deleted message is not kept alive).
_by_handle: weakref.WeakValueDictionary[str, Message] = weakref.WeakValueDictionary()


def _indexed(method: Any) -> Any:
    @functools.wraps(method)
    def mark_received(self: Message, visibility_timeout: int | None = None) -> None:
        method(self, visibility_timeout)
        _by_handle[self.receipt_handle] = self  # type: ignore[index]

    return mark_received


def _delete_message(self: Queue, receipt_handle: str) -> None:
    if receipt_handle in self.deleted_messages:
        return  # already deleted: deleting again succeeds, as before
    message = _by_handle.get(receipt_handle)
    if message is None:
        raise ReceiptHandleIsInvalid()  # never issued
    try:  # messages compare by identity: the list's own (C) scan finds it, no Python loop
        at = self._messages.index(message)
    except ValueError:  # issued by another queue, or the message has moved to its DLQ
        raise ReceiptHandleIsInvalid() from None
    # A new list, as moto builds one: a receive walking the old one is not disturbed.
    self._messages = self._messages[:at] + self._messages[at + 1 :]
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)  # type: ignore[arg-type]


def apply() -> None:
    global _applied
    if _applied:
        return
    require_patched_moto(__name__, "re-check how Queue.delete_message finds a message")
    if Message.__eq__ is not object.__eq__:
        raise RuntimeError("moto's SQS messages compare by value now: re-check sqs_receipts")
    Message.mark_received = _indexed(Message.mark_received)  # type: ignore[method-assign]
    Queue.delete_message = _delete_message  # type: ignore[method-assign]
    _applied = True
