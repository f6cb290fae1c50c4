"""SQS receives and deletes cost what AWS's do, not what the queue's depth makes them.

Two walks over every message of a queue, each Python-level work per message, in moto
5.2.5's hot paths: a 5,000-alert storm drained slower per message than a 500-alert one, on
costs AWS does not have.

1. ReceiveMessage checks each message it hands out against the queue's retention period
   by computing every attribute of the queue, ApproximateNumberOfMessages and the other
   counts included (three walks over all its messages), for each message received. The
   patch reads the one attribute it needs; the check is the same. And each walk over the
   queue (its visible messages for a receive, the three counts) read the clock twice per
   message; the patch reads it once per walk, for the same answer.
2. DeleteMessage checks every message of the queue for the handle, then walks the queue
   again to rebuild it without the message. The patch indexes every receipt handle when it
   is issued (a message's receive) and goes straight to the message it names. The answers
   stay moto's: a handle the queue never issued (or one of a message since moved to its
   DLQ) is ReceiptHandleIsInvalid, a handle of a message already deleted succeeds again,
   and any handle a message ever had still names it (AWS leaves the message in place for
   a handle older than its latest receive: README, emulator gaps).

The patch checks the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

from moto.core.utils import unix_time, unix_time_millis
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue, SQSBackend

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


def _within_retention(self: SQSBackend, queue_name: str, message: Message) -> bool:
    queue: Any = self.get_queue(queue_name)
    sent_s = (message.sent_timestamp or 0) / 1000
    return bool(int(queue.message_retention_period) + sent_s > unix_time())


def _visible_now(self: Queue) -> list[Message]:
    """The queue's visible, undelayed messages (moto's `messages`), the clock read once."""
    now = unix_time_millis()
    return [m for m in self._messages if m.visible_at < now and not now < m.delayed_until]


def _delayed_count(self: Queue) -> int:
    now = unix_time_millis()
    return sum(1 for m in self._messages if now < m.delayed_until)


def _not_visible_count(self: Queue) -> int:
    now = unix_time_millis()
    return sum(1 for m in self._messages if not m.visible_at < now)


def apply() -> None:
    global _applied
    if _applied:
        return
    require_patched_moto(
        __name__, "re-check ReceiveMessage's retention check and how DeleteMessage finds a message"
    )
    if Message.__eq__ is not object.__eq__:
        raise RuntimeError("moto's SQS messages compare by value now: re-check sqs_costs")
    Message.mark_received = _indexed(Message.mark_received)  # type: ignore[method-assign]
    Queue.delete_message = _delete_message  # type: ignore[method-assign]
    Queue.messages = property(_visible_now)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_delayed = property(_delayed_count)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_not_visible = property(_not_visible_count)  # type: ignore[assignment,method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention  # type: ignore[method-assign]
    _applied = True
