"""Dead letters: see them, and send them back, without losing one.

Peeking receives a page at a time under a short visibility and hands every message back
at once (visibility 0): a dead letter is not consumed, and its expiry, counted from its
first enqueue, is untouched (its receive count goes up, as any look at SQS makes it).

Redrive uses SQS's own message move task where the endpoint has it (all messages, at a
rate), and otherwise, or for chosen messages, a careful mover: send a copy to the
destination, then delete the dead letter. Killed half-way, a message is sent twice at
worst, never lost; the workers dedupe by event_id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from core.aws_errors import error_code
from core.errors import FleetError, UsageError
from queues.consumer import FAILURE_ATTRIBUTES
from queues.failures import FailureLog
from queues.topology import TopologySpec

# Long enough to page through a DLQ; every message is handed back right after.
PEEK_VISIBILITY_S = 30
MOVE_TASK_POLL_S = 1.0
# Error codes of an endpoint without the message move task API. The emulator answers a
# bare 500 (moto has no such operation); a 500 that persists through botocore's retries on
# AWS falls back to the mover too, which is safe, only slower.
NO_MOVE_TASKS = {
    "UnsupportedOperation",
    "InvalidAction",
    "NotImplemented",
    "InternalFailure",
    "500",
}


class DeadLetter(BaseModel):
    message_id: str
    queue: str
    source_queue: str
    sent_at: str | None
    receive_count: int
    event_type: str | None
    event_id: str | None
    incident_id: str | None
    failure_reason: str | None
    error_class: str | None
    failed_stage: str | None
    first_failure_at: str | None
    last_failure_at: str | None
    body: str  # pretty-printed when it is JSON; shown as text, never rendered


class RedriveResult(BaseModel):
    queue: str
    destination: str
    method: str  # "move-task" | "mover"
    moved: int
    failed: int
    not_found: list[str] = []
    task_handle: str | None = None
    status: str = "COMPLETED"


Progress = Callable[[int, int | None], None]  # (moved so far, total if known)


def _pretty(body: str) -> str:
    try:
        inner = json.loads(body)
        if isinstance(inner, dict) and inner.get("Type") == "Notification" and "Message" in inner:
            inner = {**inner, "Message": json.loads(inner["Message"])}
        return json.dumps(inner, indent=2, sort_keys=True)
    except (ValueError, TypeError):
        return body


def _envelope_fields(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("Type") == "Notification":
            data = json.loads(data.get("Message", "{}"))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


class DeadLetters:
    def __init__(
        self, sqs: Any, dynamodb: Any, topology: TopologySpec, move_visibility_s: int = 60
    ):
        self.sqs = sqs
        self.failures = FailureLog(dynamodb)
        self.topology = topology
        # What the mover holds a message for while it copies it: if the mover dies, the
        # message is back in the DLQ after this.
        self.move_visibility_s = move_visibility_s

    # ------------------------------------------------------------------ naming

    def dlq_names(self) -> list[str]:
        return [q.dlq_name for q in self.topology.queues]

    def resolve(self, name: str) -> tuple[str, str]:
        """(DLQ, its source queue) for a stage, a queue or a DLQ name."""
        for q in self.topology.queues:
            if name in (q.stage.value, q.name, q.dlq_name):
                return q.dlq_name, q.name
        choices = ", ".join(self.dlq_names())
        raise UsageError(f"unknown queue {name!r}; dead-letter queues: {choices}")

    def url(self, name: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def arn(self, name: str) -> str:
        return str(
            self.sqs.get_queue_attributes(QueueUrl=self.url(name), AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        )

    def depth(self, name: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url(name), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    # ------------------------------------------------------------------ peek

    def _receive(self, url: str, visibility_s: int) -> list[dict[str, Any]]:
        return list(
            self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=visibility_s,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        )

    def _hand_back(self, url: str, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            self.sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(messages[start : start + 10])
                ],
            )

    def _collect(self, url: str, limit: int, visibility_s: int) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        empty_rounds = 0
        while len(seen) < limit and empty_rounds < 2:  # SQS may answer empty while holding some
            got = [m for m in self._receive(url, visibility_s) if m["MessageId"] not in seen]
            empty_rounds = 0 if got else empty_rounds + 1
            for m in got:
                seen[m["MessageId"]] = m
        return list(seen.values())

    def peek(self, name: str, limit: int = 100) -> list[DeadLetter]:
        dlq, source = self.resolve(name)
        url = self.url(dlq)
        messages = self._collect(url, limit, PEEK_VISIBILITY_S)
        self._hand_back(url, messages)
        return [self._describe(m, dlq, source) for m in messages]

    def _describe(self, m: dict[str, Any], dlq: str, source: str) -> DeadLetter:
        attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
        record = self.failures.get(m["MessageId"])
        fields = _envelope_fields(m["Body"])
        sent = m.get("Attributes", {}).get("SentTimestamp")
        return DeadLetter(
            message_id=m["MessageId"],
            queue=dlq,
            source_queue=attrs.get("fleet.source_queue") or source,
            sent_at=(
                datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat(timespec="seconds")
                if sent
                else None
            ),
            receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
            event_type=(record and record.event_type)
            or attrs.get("event_type")
            or fields.get("event_type"),
            event_id=(record and record.event_id) or fields.get("event_id"),
            incident_id=(record and record.incident_id) or fields.get("incident_id"),
            failure_reason=(record and record.reason) or attrs.get("fleet.failure_reason"),
            error_class=(record and record.error_class) or attrs.get("fleet.error_class"),
            failed_stage=(record and record.stage) or attrs.get("fleet.stage"),
            first_failure_at=record.first_failure_at if record else None,
            last_failure_at=record.last_failure_at if record else None,
            body=_pretty(m["Body"]),
        )

    # ------------------------------------------------------------------ redrive

    def redrive(
        self,
        name: str,
        to: str | None = None,
        ids: list[str] | None = None,
        rate: float | None = None,
        progress: Progress = lambda _moved, _total: None,
    ) -> RedriveResult:
        dlq, source = self.resolve(name)
        destination = to or source
        self.url(destination)  # an unknown destination fails before anything moves
        if rate is not None and rate <= 0:
            raise UsageError(f"--rate must be above 0 messages per second, not {rate}")
        if not ids:
            started = self._start_move_task(dlq, destination, rate)
            if started is not None:
                return self._follow_move_task(dlq, destination, started, progress)
        return self._move(dlq, destination, ids, rate, progress)

    def _start_move_task(self, dlq: str, destination: str, rate: float | None) -> str | None:
        """The task handle, or None where the endpoint has no message move tasks."""
        kwargs: dict[str, Any] = {
            "SourceArn": self.arn(dlq),
            "DestinationArn": self.arn(destination),
        }
        if rate is not None:
            kwargs["MaxNumberOfMessagesPerSecond"] = max(1, int(rate))
        try:
            return str(self.sqs.start_message_move_task(**kwargs)["TaskHandle"])
        except ClientError as exc:
            if error_code(exc) in NO_MOVE_TASKS:
                return None
            raise

    def _follow_move_task(
        self, dlq: str, destination: str, handle: str, progress: Progress
    ) -> RedriveResult:
        source_arn = self.arn(dlq)
        while True:
            tasks = self.sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)["Results"]
            task = next(
                (t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else None
            )
            if task is None:
                raise FleetError(f"the move task of {dlq} is gone from ListMessageMoveTasks")
            moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            progress(moved, task.get("ApproximateNumberOfMessagesToMove"))
            if task["Status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return RedriveResult(
                    queue=dlq,
                    destination=destination,
                    method="move-task",
                    moved=moved,
                    failed=0 if task["Status"] == "COMPLETED" else 1,
                    task_handle=handle,
                    status=task["Status"],
                )
            time.sleep(MOVE_TASK_POLL_S)

    def _move(
        self,
        dlq: str,
        destination: str,
        ids: list[str] | None,
        rate: float | None,
        progress: Progress,
    ) -> RedriveResult:
        url, target = self.url(dlq), self.url(destination)
        wanted = set(ids or [])
        total = len(wanted) if wanted else self.depth(dlq)
        moved = failed = 0
        skipped: list[dict[str, Any]] = []
        seen: set[str] = set()
        interval = 1.0 / rate if rate else 0.0
        empty_rounds = 0
        while empty_rounds < 2 and (not wanted or wanted - seen):
            batch = self._receive(url, self.move_visibility_s)
            empty_rounds = 0 if batch else empty_rounds + 1
            for m in batch:
                if m["MessageId"] in seen or (wanted and m["MessageId"] not in wanted):
                    if m["MessageId"] not in seen:
                        skipped.append(m)
                    continue
                seen.add(m["MessageId"])
                started = time.monotonic()
                try:
                    self._copy(target, m)
                except ClientError:
                    failed += 1
                    skipped.append(m)
                    continue
                # Only once the copy is safely sent: a crash before this leaves the dead
                # letter where it was, to come back after move_visibility_s.
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                moved += 1
                progress(moved, total)
                if interval:
                    time.sleep(max(0.0, interval - (time.monotonic() - started)))
        self._hand_back(url, skipped)
        return RedriveResult(
            queue=dlq,
            destination=destination,
            method="mover",
            moved=moved,
            failed=failed,
            not_found=sorted(wanted - seen),
        )

    def _copy(self, target: str, m: dict[str, Any]) -> None:
        # The failure's own attributes stay with the dead letter's record, not the retry.
        attributes = {
            k: {f: v for f, v in a.items() if f in ("DataType", "StringValue", "BinaryValue")}
            for k, a in m.get("MessageAttributes", {}).items()
            if k not in FAILURE_ATTRIBUTES
        }
        self.sqs.send_message(QueueUrl=target, MessageBody=m["Body"], MessageAttributes=attributes)

    # ------------------------------------------------------------------ delete, purge

    def delete(self, name: str, ids: list[str]) -> tuple[int, list[str]]:
        """Delete the chosen dead letters for good: (deleted, ids not found)."""
        dlq, _ = self.resolve(name)
        url, wanted = self.url(dlq), set(ids)
        deleted: set[str] = set()
        others: dict[str, dict[str, Any]] = {}
        empty_rounds = 0
        while wanted - deleted and empty_rounds < 2:
            batch = self._receive(url, PEEK_VISIBILITY_S)
            empty_rounds = 0 if batch else empty_rounds + 1
            for m in batch:
                if m["MessageId"] in wanted:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                    deleted.add(m["MessageId"])
                else:
                    others[m["MessageId"]] = m
        self._hand_back(url, list(others.values()))
        return len(deleted), sorted(wanted - deleted)

    def purge(self, name: str) -> int:
        dlq, _ = self.resolve(name)
        depth = self.depth(dlq)
        self.sqs.purge_queue(QueueUrl=self.url(dlq))
        return depth
