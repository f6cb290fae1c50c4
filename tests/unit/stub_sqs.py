"""An in-memory SQS for running the consumer in-process (as Dramatiq's StubBroker runs its
worker): queues with visibility timeouts, receive counts, long polls and a redrive policy
to a DLQ, behind the client calls the consumer makes.

What it keeps beyond SQS: every receive's size and every heartbeat per message, so a test
can see how many messages the worker asked for and which it kept alive.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


class ReceiptHandleIsInvalid(Exception):
    """A receipt handle from an earlier receive: that receive no longer holds the message."""


@dataclass
class StubMessage:
    message_id: str
    body: str
    attributes: dict[str, Any]
    receive_count: int = 0
    visible_at: float = 0.0
    # The handle of its latest receive; earlier ones are stale.
    receipt_handle: str | None = None

    def visible(self, now: float) -> bool:
        return self.visible_at <= now


@dataclass
class StubQueue:
    name: str
    visibility_timeout_s: int
    # The redrive policy: received this many times, the next receive moves it to the DLQ.
    max_receive_count: int | None = None
    dlq: str | None = None
    messages: dict[str, StubMessage] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"stub://{self.name}"


@dataclass(frozen=True)
class Receive:
    queue: str
    max_messages: int
    at: float  # time.monotonic() when it was asked


class StubSQS:
    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.queues: dict[str, StubQueue] = {}
        self.receives: list[Receive] = []
        self.heartbeats: dict[str, int] = {}  # message id -> visibility extensions
        self.deleted: list[str] = []  # receipt handles

    # ------------------------------------------------------------ set up and look

    def create_queue(
        self,
        name: str,
        visibility_timeout_s: int,
        max_receive_count: int | None = None,
        dlq: str | None = None,
    ) -> None:
        with self.changed:
            self.queues[name] = StubQueue(name, visibility_timeout_s, max_receive_count, dlq)

    def send(self, queue: str, body: str) -> str:
        return str(self.send_message(QueueUrl=f"stub://{queue}", MessageBody=body)["MessageId"])

    def messages(self, queue: str) -> list[StubMessage]:
        with self.changed:
            return list(self.queues[queue].messages.values())

    def visible(self, queue: str) -> list[StubMessage]:
        now = time.monotonic()
        return [m for m in self.messages(queue) if m.visible(now)]

    def receives_since(self, queue: str, since: float) -> list[Receive]:
        with self.changed:
            return [r for r in self.receives if r.queue == queue and r.at > since]

    # ------------------------------------------------------------ the client's calls

    def _queue(self, url: str) -> StubQueue:
        return self.queues[url.removeprefix("stub://")]

    def get_queue_url(self, QueueName: str) -> dict[str, Any]:
        return {"QueueUrl": self.queues[QueueName].url}

    def get_queue_attributes(self, QueueUrl: str, **_: Any) -> dict[str, Any]:
        queue = self._queue(QueueUrl)
        return {"Attributes": {"VisibilityTimeout": str(queue.visibility_timeout_s)}}

    def send_message(
        self, QueueUrl: str, MessageBody: str, MessageAttributes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        message = StubMessage(str(uuid.uuid4()), MessageBody, dict(MessageAttributes or {}))
        with self.changed:
            self._queue(QueueUrl).messages[message.message_id] = message
            self.changed.notify_all()
        return {"MessageId": message.message_id}

    def receive_message(
        self, QueueUrl: str, MaxNumberOfMessages: int = 1, WaitTimeSeconds: int = 0, **_: Any
    ) -> dict[str, Any]:
        queue = self._queue(QueueUrl)
        deadline = time.monotonic() + WaitTimeSeconds
        with self.changed:
            self.receives.append(Receive(queue.name, MaxNumberOfMessages, time.monotonic()))
            while True:
                now = time.monotonic()
                taken = self._take(queue, MaxNumberOfMessages, now)
                if taken or now >= deadline:
                    return {"Messages": taken}
                hidden = [m.visible_at for m in queue.messages.values() if not m.visible(now)]
                self.changed.wait(min([deadline, *hidden]) - now)

    def _take(self, queue: StubQueue, most: int, now: float) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        for message in list(queue.messages.values()):
            if len(taken) == most:
                break
            if not message.visible(now):
                continue
            if queue.max_receive_count and message.receive_count >= queue.max_receive_count:
                # The redrive policy: the message moves, keeping its id and attributes.
                del queue.messages[message.message_id]
                if queue.dlq:
                    moved = StubMessage(message.message_id, message.body, message.attributes)
                    self.queues[queue.dlq].messages[moved.message_id] = moved
                continue
            message.receive_count += 1
            message.visible_at = now + queue.visibility_timeout_s
            message.receipt_handle = f"{message.message_id}#{message.receive_count}"
            taken.append(
                {
                    "MessageId": message.message_id,
                    "ReceiptHandle": message.receipt_handle,
                    "Body": message.body,
                    "Attributes": {"ApproximateReceiveCount": str(message.receive_count)},
                    "MessageAttributes": message.attributes,
                }
            )
        return taken

    def _held(self, queue: StubQueue, receipt_handle: str) -> StubMessage:
        message = queue.messages.get(receipt_handle.split("#")[0])
        if message is None or message.receipt_handle != receipt_handle:
            raise ReceiptHandleIsInvalid(receipt_handle)
        return message

    def change_message_visibility(
        self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int
    ) -> dict[str, Any]:
        with self.changed:
            message = self._held(self._queue(QueueUrl), ReceiptHandle)
            message.visible_at = time.monotonic() + VisibilityTimeout
            self.changed.notify_all()
        return {}

    def change_message_visibility_batch(
        self, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        failed = []
        for entry in Entries:
            try:
                self.change_message_visibility(
                    QueueUrl, entry["ReceiptHandle"], entry["VisibilityTimeout"]
                )
            except ReceiptHandleIsInvalid:
                failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid"})
                continue
            with self.changed:
                message_id = entry["ReceiptHandle"].split("#")[0]
                self.heartbeats[message_id] = self.heartbeats.get(message_id, 0) + 1
        return {"Failed": failed}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        queue, failed = self._queue(QueueUrl), []
        with self.changed:
            for entry in Entries:
                try:
                    message = self._held(queue, entry["ReceiptHandle"])
                except ReceiptHandleIsInvalid:
                    failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid"})
                    continue
                del queue.messages[message.message_id]
                self.deleted.append(entry["ReceiptHandle"])
        return {"Failed": failed}
