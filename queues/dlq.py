"""Dead letters: see them, and send them back, without losing one.

Peeking receives a page at a time under a short visibility and hands every message back
at once (visibility 0): a dead letter is not consumed, and its expiry, counted from its
first enqueue, is untouched (its receive count goes up, as any look at SQS makes it).

Dead letters are listed, filtered and paged from their failure records (queues/failures.py):
SQS can do neither. A redrive of a filtered set moves exactly the ids its plan (a dry run)
shows, at most `limit` of them.

Redrive uses SQS's own message move task where the endpoint has it (all messages, at a
rate), and otherwise, or for chosen messages, a careful mover: send a copy to the
destination, then delete the dead letter. Killed half-way, a message is sent twice at
worst, never lost; the workers dedupe by event_id. Cancelled, the mover stops after the
message in hand and hands the rest back. Each copy carries the dead letter's id
(`REDRIVE_OF`), so what becomes of it is written on the dead letter's record; every
redrive, delete and purge is in the audit trail (queues/dlq_audit.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from botocore.exceptions import ClientError
from pydantic import BaseModel

from core.aws_errors import error_code
from core.errors import FleetError, UsageError
from queues.consumer import FAILURE_ATTRIBUTES
from queues.dlq_audit import Actor, AuditEntry, DlqAudit, new_redrive_id
from queues.failures import (
    REDRIVE_ENTRY,
    REDRIVE_OF,
    FailureLog,
    FailureRecord,
    LetterFilter,
    Status,
)
from queues.topology import TopologySpec

log = structlog.get_logger()

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
    status: str = "COMPLETED"  # or CANCELLED, FAILED
    redrive_id: str | None = None
    # The dead letters the mover sent back (a move task's are not known one by one).
    moved_ids: list[str] = []


class MessageOutcome(BaseModel):
    """What became of one dead letter a redrive sent back."""

    message_id: str
    status: str | None  # its record's: redriven (or, if it was not moved, still there)
    redriven_as: str | None
    outcome: str | None  # None: not handled yet (or no record to say)
    outcome_detail: str | None
    outcome_at: str | None
    event_type: str | None
    error_class: str | None  # why it was a dead letter


class RedriveReport(BaseModel):
    """A redrive as the audit trail has it, and each message's outcome since."""

    queue: str
    redrive_id: str
    entries: list[AuditEntry]
    messages: list[MessageOutcome]


class RedrivePlan(BaseModel):
    """What a redrive of a filtered set would move: exactly these dead letters."""

    queue: str
    destination: str
    filters: dict[str, str]
    limit: int | None
    message_ids: list[str]


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
        self.audit = DlqAudit(dynamodb)
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
        """The DLQ's messages as SQS holds them (those without a failure record too)."""
        dlq, source = self.resolve(name)
        url = self.url(dlq)
        messages = self._collect(url, limit, PEEK_VISIBILITY_S)
        self._hand_back(url, messages)
        records = self.failures.many([m["MessageId"] for m in messages])
        return [self._describe(m, dlq, source, records.get(m["MessageId"])) for m in messages]

    def _describe(
        self, m: dict[str, Any], dlq: str, source: str, record: FailureRecord | None
    ) -> DeadLetter:
        attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
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

    def plan(
        self,
        name: str,
        where: LetterFilter | None = None,
        limit: int | None = None,
        to: str | None = None,
    ) -> RedrivePlan:
        """The dead letters a redrive of this filter would move, newest first, at most
        `limit`: a dry run, read from the failure records (nothing is moved or received)."""
        dlq, source = self.resolve(name)
        if limit is not None and limit < 1:
            raise UsageError(f"--limit must be at least 1, not {limit}")
        ids: list[str] = []
        cursor: str | None = None
        while limit is None or len(ids) < limit:
            size = 100 if limit is None else min(100, limit - len(ids))
            page = self.failures.dead_letters(dlq, where, size, cursor)
            ids += [r.message_id for r in page.letters]
            cursor = page.cursor
            if cursor is None:
                break
        return RedrivePlan(
            queue=dlq,
            destination=to or source,
            filters=(where or LetterFilter()).given(),
            limit=limit,
            message_ids=ids,
        )

    def redrive(
        self,
        name: str,
        actor: Actor,
        to: str | None = None,
        ids: list[str] | None = None,
        rate: float | None = None,
        progress: Progress = lambda _moved, _total: None,
        cancel: threading.Event | None = None,
        plan: RedrivePlan | None = None,
        redrive_id: str | None = None,
    ) -> RedriveResult:
        """Send dead letters back: the chosen `ids`, exactly a plan's, or all of them. The
        start and the end are audit entries under `actor`; `cancel` stops it between two
        messages."""
        dlq, source = self.resolve(name)
        destination = to or (plan.destination if plan else source)
        self.url(destination)  # an unknown destination fails before anything moves
        if rate is not None and rate <= 0:
            raise UsageError(f"--rate must be above 0 messages per second, not {rate}")
        chosen = list(plan.message_ids if plan is not None else ids or [])
        if plan is not None and not chosen:
            raise UsageError("the plan moves nothing: no dead letter matches its filter")
        redrive_id = redrive_id or new_redrive_id()
        self.audit.append(
            dlq,
            "redrive started",
            actor,
            destination=destination,
            message_ids=chosen,
            redrive_id=redrive_id,
            filters=plan.filters if plan else {},
            limit=plan.limit if plan else None,
            rate=rate,
        )
        stop = cancel or threading.Event()
        result: RedriveResult | None = None
        try:
            if not chosen:
                # The letters listed now are what a completed move task has moved (any that
                # arrive while it runs may be left behind: they stay listed).
                listed = self.plan(dlq).message_ids
                started = self._start_move_task(dlq, destination, rate)
                if started is not None:
                    result = self._follow_move_task(
                        dlq, destination, started, progress, stop, listed
                    )
            if result is None:
                result = self._move(dlq, destination, chosen, rate, progress, stop, redrive_id)
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            self._finished(dlq, actor, destination, redrive_id, status="FAILED", error=error)
            raise
        result.redrive_id = redrive_id
        self._finished(
            dlq,
            actor,
            destination,
            redrive_id,
            message_ids=result.moved_ids,
            method=result.method,
            status=result.status,
            moved=result.moved,
            failed=result.failed,
            not_found=result.not_found,
        )
        return result

    def _finished(
        self, dlq: str, actor: Actor, destination: str, redrive_id: str, **how: Any
    ) -> None:
        """A redrive's second entry: how it ended (moved, failed, cancelled, or why not)."""
        self.audit.append(
            dlq, "redrive finished", actor, destination=destination, redrive_id=redrive_id, **how
        )

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
        self,
        dlq: str,
        destination: str,
        handle: str,
        progress: Progress,
        cancel: threading.Event,
        listed: list[str],
    ) -> RedriveResult:
        source_arn = self.arn(dlq)
        cancelling = False
        while True:
            if cancel.is_set() and not cancelling:
                self.sqs.cancel_message_move_task(TaskHandle=handle)
                cancelling = True
            tasks = self.sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)["Results"]
            task = next(
                (t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else None
            )
            if task is None:
                raise FleetError(f"the move task of {dlq} is gone from ListMessageMoveTasks")
            moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            progress(moved, task.get("ApproximateNumberOfMessagesToMove"))
            if task["Status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                if task["Status"] == "COMPLETED":  # those listed at the start all went
                    for message_id in listed:
                        self._left(message_id, "redriven")
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
        ids: list[str],
        rate: float | None,
        progress: Progress,
        cancel: threading.Event,
        redrive_id: str,
    ) -> RedriveResult:
        url, target = self.url(dlq), self.url(destination)
        wanted = set(ids)
        total = len(wanted) if wanted else self.depth(dlq)
        failed = 0
        moved: list[str] = []
        skipped: list[dict[str, Any]] = []
        seen: set[str] = set()
        interval = 1.0 / rate if rate else 0.0
        empty_rounds = 0
        while empty_rounds < 2 and (not wanted or wanted - seen) and not cancel.is_set():
            batch = self._receive(url, self.move_visibility_s)
            empty_rounds = 0 if batch else empty_rounds + 1
            for m in batch:
                if cancel.is_set():  # what this batch holds goes straight back
                    skipped.append(m)
                    continue
                if m["MessageId"] in seen or (wanted and m["MessageId"] not in wanted):
                    if m["MessageId"] not in seen:
                        skipped.append(m)
                    continue
                seen.add(m["MessageId"])
                started = time.monotonic()
                try:
                    copy_id = self._copy(target, m, redrive_id)
                except ClientError:
                    failed += 1
                    skipped.append(m)
                    continue
                # Only once the copy is safely sent: a crash before this leaves the dead
                # letter where it was, to come back after move_visibility_s.
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                moved.append(m["MessageId"])
                self._left(
                    m["MessageId"],
                    "redriven",
                    redriven_as=copy_id,
                    redriven_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    redrive_entry=redrive_id,
                )
                progress(len(moved), total)
                if interval:
                    time.sleep(max(0.0, interval - (time.monotonic() - started)))
        self._hand_back(url, skipped)
        return RedriveResult(
            queue=dlq,
            destination=destination,
            method="mover",
            moved=len(moved),
            failed=failed,
            # Cancelled, the ones not reached are not "not found": they are still there.
            not_found=[] if cancel.is_set() else sorted(wanted - seen),
            status="CANCELLED" if cancel.is_set() else "COMPLETED",
            moved_ids=moved,
        )

    def _copy(self, target: str, m: dict[str, Any], redrive_id: str) -> str:
        """Send the dead letter back; the id of the copy. The failure's own attributes stay
        with the dead letter's record; the copy says which dead letter it was."""
        attributes = {
            k: {f: v for f, v in a.items() if f in ("DataType", "StringValue", "BinaryValue")}
            for k, a in m.get("MessageAttributes", {}).items()
            if k not in FAILURE_ATTRIBUTES
        }
        for key, value in ((REDRIVE_OF, m["MessageId"]), (REDRIVE_ENTRY, redrive_id)):
            attributes[key] = {"DataType": "String", "StringValue": value}
        sent = self.sqs.send_message(
            QueueUrl=target, MessageBody=m["Body"], MessageAttributes=attributes
        )
        return str(sent["MessageId"])

    def _left(self, message_id: str, status: Status, **more: str) -> None:
        """The dead letter's record, if it has one, leaves the list. The message has moved
        already: a record that cannot be written leaves a letter listed that is gone (shown,
        never lost), and the move goes on."""
        try:
            self.failures.left_dlq(message_id, status, **more)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                log.warning(
                    "a moved dead letter is still listed", message_id=message_id, error=str(exc)
                )

    # ------------------------------------------------------------------ delete, purge

    def delete(self, name: str, ids: list[str], actor: Actor) -> tuple[int, list[str]]:
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
        for message_id in sorted(deleted):
            self._left(message_id, "deleted")
        missing = sorted(wanted - deleted)
        self.audit.append(dlq, "delete", actor, message_ids=sorted(deleted), not_found=missing)
        return len(deleted), missing

    def purge(self, name: str, actor: Actor) -> int:
        dlq, _ = self.resolve(name)
        depth = self.depth(dlq)
        listed = self.plan(dlq).message_ids  # the letters with a record: by id in the trail
        self.sqs.purge_queue(QueueUrl=self.url(dlq))
        for message_id in listed:
            self._left(message_id, "purged")
        self.audit.append(dlq, "purge", actor, message_ids=listed, moved=depth)
        return depth

    # ------------------------------------------------------------------ what happened

    def report(self, name: str, redrive_id: str) -> RedriveReport | None:
        """A redrive's audit entries and what became of each message it sent back."""
        dlq, _ = self.resolve(name)
        entries = self.audit.redrive(dlq, redrive_id)
        if not entries:
            return None
        finished = [e for e in entries if e.action == "redrive finished"]
        ids = finished[-1].message_ids if finished else entries[0].message_ids
        records = self.failures.many(ids)
        messages = []
        for message_id in ids:
            r = records.get(message_id)
            messages.append(
                MessageOutcome(
                    message_id=message_id,
                    status=r.status if r else None,
                    redriven_as=r.redriven_as if r else None,
                    outcome=r.outcome if r else None,
                    outcome_detail=r.outcome_detail if r else None,
                    outcome_at=r.outcome_at if r else None,
                    event_type=r.event_type if r else None,
                    error_class=r.error_class if r else None,
                )
            )
        return RedriveReport(queue=dlq, redrive_id=redrive_id, entries=entries, messages=messages)

    def history(self, name: str | None = None, limit: int = 50) -> list[AuditEntry]:
        """The audit trail, newest first: one DLQ's, or every DLQ's."""
        queues = [self.resolve(name)[0]] if name else self.dlq_names()
        return self.audit.history(queues, limit)

    # ------------------------------------------------------------------ export

    def export(self, name: str, limit: int = 100_000) -> list[dict[str, Any]]:
        """Every message of the DLQ as it is in SQS (its body as sent, its attributes), with
        what its failure record says; nothing is consumed."""
        dlq, source = self.resolve(name)
        url = self.url(dlq)
        messages = self._collect(url, limit, PEEK_VISIBILITY_S)
        self._hand_back(url, messages)
        records = self.failures.many([m["MessageId"] for m in messages])
        exported = []
        for m in messages:
            described = self._describe(m, dlq, source, records.get(m["MessageId"]))
            exported.append(
                {
                    **described.model_dump(exclude={"body"}),
                    "body": m["Body"],
                    "message_attributes": {
                        k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()
                    },
                }
            )
        return exported
