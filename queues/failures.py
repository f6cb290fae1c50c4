"""Why a message failed: recorded by SQS message id, readable next to the dead letter.

SQS keeps a message's id when its redrive policy moves it to the DLQ, so a record written
on each failed attempt is found again by the dead letter's id. A message the runtime
dead-letters itself (bad input) is recorded under its new id in the DLQ.

A dead letter's record also holds its body and its DLQ's name while it waits there: SQS
cannot filter or page a queue, so the console and `fleet dlq letters` list dead letters
from these records (`dead_letters`). A redriven message carries the id of the dead letter
it came from (`REDRIVE_OF`); what became of it (processed, failed again, dead-lettered
again) is written on that dead letter's record.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel

from core.aws_retry import call
from core.dynamodb import from_item, to_item
from queues.delivery import Delivery
from queues.middleware import Middleware
from queues.outcomes import Ack, DeadLetter, Retry
from queues.tables import MESSAGE_FAILURES

log = structlog.get_logger()

DLQ_INDEX = "by-dlq"
# What a record keeps of a dead letter's body: SQS allows 256 KiB, a DynamoDB item 400 KB.
MAX_KEPT_BODY = 200_000
# The message attributes a redrive puts on what it sends back: the dead letter it came
# from, and the redrive (its audit entry) that sent it.
REDRIVE_OF = "fleet.redrive_of"
REDRIVE_ENTRY = "fleet.redrive_entry"
# Where a dead letter's record stands.
Status = Literal["dead-lettered", "redriven", "deleted", "purged"]
# What became of a redriven message, written on its dead letter's record.
Outcome = Literal["processed", "failed again", "dead-lettered again"]
# At most this many reads of the index for one page of a filtered list: a filter that
# matches few letters gives a short page with a cursor, not an unbounded walk.
MAX_QUERIES_PER_PAGE = 10


class FailureRecord(BaseModel):
    message_id: str
    queue: str
    stage: str
    reason: str
    error_class: str
    receive_count: int
    failures: int
    first_failure_at: str
    last_failure_at: str
    dead_lettered: bool
    event_type: str | None = None
    event_id: str | None = None
    incident_id: str | None = None
    original_message_id: str | None = None
    # Set when the message went to a DLQ; `dlq` only while it is still there.
    dlq: str | None = None
    dead_lettered_at: str | None = None
    body: str | None = None
    status: Status | None = None
    # A message sent back by a redrive: the dead letter it came from.
    redrive_of: str | None = None
    # A dead letter sent back: as which message, by which redrive, and what became of it.
    redriven_as: str | None = None
    redriven_at: str | None = None
    redrive_entry: str | None = None
    outcome: Outcome | None = None
    outcome_at: str | None = None
    outcome_detail: str | None = None


class LetterFilter(BaseModel, frozen=True):
    """Which dead letters to list or redrive; every field given must match."""

    reason: str | None = None  # a part of the failure reason
    error_class: str | None = None
    event_type: str | None = None
    incident_id: str | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class LetterPage(BaseModel):
    letters: list[FailureRecord]
    # Where the next page starts (opaque); None on the last page.
    cursor: str | None


def _encode(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise ValueError(f"not a page cursor: {cursor[:40]!r}") from None
    if not isinstance(key, dict):
        raise ValueError(f"not a page cursor: {cursor[:40]!r}")
    return key


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class FailureLog:
    def __init__(self, dynamodb: Any):
        self.ddb = dynamodb

    def record(
        self,
        message_id: str,
        queue: str,
        stage: str,
        reason: str,
        error_class: str,
        receive_count: int,
        dead_lettered: bool,
        dlq: str | None = None,
        body: str | None = None,
        **context: str | None,
    ) -> None:
        """One failed attempt. A message going to its DLQ (`dead_lettered`, `dlq`) is listed
        among that DLQ's dead letters, with its body."""
        now = _now()
        values: dict[str, Any] = {
            ":queue": queue,
            ":stage": stage,
            ":reason": reason[:2000],
            ":cls": error_class,
            ":rc": receive_count,
            ":now": now,
            ":one": 1,
            ":dl": dead_lettered,
        }
        sets = [
            "#q = :queue",
            "stage = :stage",
            "reason = :reason",
            "error_class = :cls",
            "receive_count = :rc",
            "last_failure_at = :now",
            "dead_lettered = :dl",
            "first_failure_at = if_not_exists(first_failure_at, :now)",
        ]
        if dead_lettered and dlq:
            context = {
                **context,
                "dlq": dlq,
                "dead_lettered_at": now,
                "body": body[:MAX_KEPT_BODY] if body is not None else None,
                "status": "dead-lettered",
            }
        names = {"#q": "queue"}
        for key, value in context.items():
            if value is not None:  # by a name placeholder: `status` is a reserved word
                names[f"#{key}"] = key
                values[f":{key}"] = value
                sets.append(f"#{key} = :{key}")
        call(
            self.ddb.update_item,
            TableName=MESSAGE_FAILURES.name,
            Key=to_item({"message_id": message_id}),
            UpdateExpression="SET " + ", ".join(sets) + " ADD failures :one",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )

    def left_dlq(self, message_id: str, status: Status, **more: str) -> None:
        """The dead letter is no longer in its DLQ (redriven, deleted, purged): it leaves the
        list, and its record says why."""
        values: dict[str, Any] = {":status": status, **{f":{k}": v for k, v in more.items()}}
        sets = ["#status = :status", *(f"{k} = :{k}" for k in more)]
        call(
            self.ddb.update_item,
            TableName=MESSAGE_FAILURES.name,
            Key=to_item({"message_id": message_id}),
            UpdateExpression="SET " + ", ".join(sets) + " REMOVE dlq",
            # A letter with no record (its worker died on every try) gets none here.
            ConditionExpression="attribute_exists(message_id)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(values),
        )

    def note_outcome(
        self, dead_letter_id: str, outcome: Outcome, detail: str, as_message: str
    ) -> None:
        """What became of a redriven message, on the record of the dead letter it was."""
        call(
            self.ddb.update_item,
            TableName=MESSAGE_FAILURES.name,
            Key=to_item({"message_id": dead_letter_id}),
            UpdateExpression=(
                "SET outcome = :o, outcome_at = :at, outcome_detail = :d, "
                "redriven_as = if_not_exists(redriven_as, :m)"
            ),
            ExpressionAttributeValues=to_item(
                {":o": outcome, ":at": _now(), ":d": detail[:1000], ":m": as_message}
            ),
        )

    def many(self, message_ids: list[str]) -> dict[str, FailureRecord]:
        """The records of these messages (those that have one), by id."""
        found: dict[str, FailureRecord] = {}
        for start in range(0, len(message_ids), 100):  # BatchGetItem's limit
            pending: dict[str, Any] = {
                MESSAGE_FAILURES.name: {
                    "Keys": [to_item({"message_id": i}) for i in message_ids[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while pending:
                answer = self.ddb.batch_get_item(RequestItems=pending)
                for item in answer["Responses"].get(MESSAGE_FAILURES.name, []):
                    record = FailureRecord.model_validate(from_item(item))
                    found[record.message_id] = record
                pending = answer.get("UnprocessedKeys") or {}
        return found

    def dead_letters(
        self,
        dlq: str,
        where: LetterFilter | None = None,
        page_size: int = 50,
        cursor: str | None = None,
    ) -> LetterPage:
        """A page of the DLQ's dead letters, newest first, read from the index: only what
        the page shows comes back (a filter is applied by DynamoDB, not here)."""
        given = (where or LetterFilter()).given()
        names: dict[str, str] = {}
        values: dict[str, Any] = {":dlq": dlq}
        clauses = []
        for i, (field, value) in enumerate(sorted(given.items())):
            names[f"#f{i}"] = field
            values[f":f{i}"] = value
            clauses.append(f"contains(#f{i}, :f{i})" if field == "reason" else f"#f{i} = :f{i}")
        query: dict[str, Any] = {
            "TableName": MESSAGE_FAILURES.name,
            "IndexName": DLQ_INDEX,
            "KeyConditionExpression": "dlq = :dlq",
            "ExpressionAttributeValues": to_item(values),
            "ScanIndexForward": False,
        }
        if clauses:
            query["FilterExpression"] = " AND ".join(clauses)
            query["ExpressionAttributeNames"] = names
        start = _decode(cursor) if cursor else None
        letters: list[FailureRecord] = []
        for _ in range(MAX_QUERIES_PER_PAGE):
            answer = self.ddb.query(
                **query,
                Limit=page_size - len(letters),
                **({"ExclusiveStartKey": start} if start else {}),
            )
            letters += [FailureRecord.model_validate(from_item(i)) for i in answer["Items"]]
            start = answer.get("LastEvaluatedKey")
            if start is None or len(letters) >= page_size:
                break
        return LetterPage(letters=letters, cursor=_encode(start) if start else None)

    def get(self, message_id: str) -> FailureRecord | None:
        item = self.ddb.get_item(
            TableName=MESSAGE_FAILURES.name,
            Key=to_item({"message_id": message_id}),
            ConsistentRead=True,
        ).get("Item")
        return FailureRecord.model_validate(from_item(item)) if item else None

    def all(self, queue: str | None = None) -> list[FailureRecord]:
        records = []
        for page in self.ddb.get_paginator("scan").paginate(TableName=MESSAGE_FAILURES.name):
            for item in page["Items"]:
                record = FailureRecord.model_validate(from_item(item))
                if queue is None or record.queue == queue:
                    records.append(record)
        return sorted(records, key=lambda r: r.last_failure_at, reverse=True)


class FailureRecords(Middleware):
    """Records every failed attempt and every dead letter, by the id the DLQ will show; and,
    for a message a redrive sent back, what became of it, on its dead letter's record."""

    def __init__(self, log_: FailureLog, dlq: str | None = None):
        self.failures = log_
        self.dlq = dlq

    def after_settle(self, delivery: Delivery) -> None:
        self._record_failure(delivery)
        redrive_of = delivery.message_attributes.get(REDRIVE_OF, {}).get("StringValue")
        if redrive_of:
            self._note_outcome(delivery, redrive_of)

    def _note_outcome(self, delivery: Delivery, dead_letter_id: str) -> None:
        outcome = delivery.outcome
        if isinstance(outcome, Ack):
            noted: tuple[Outcome, str] = ("processed", outcome.note)
        elif isinstance(outcome, DeadLetter) or (
            isinstance(outcome, Retry) and outcome.failed and delivery.last_receive
        ):
            noted = ("dead-lettered again", f"{outcome.error_class}: {outcome.reason}")
        elif isinstance(outcome, Retry) and outcome.failed:
            noted = (
                "failed again",
                f"{outcome.error_class}: {outcome.reason} (receive {delivery.receive_count}, "
                "will be retried)",
            )
        else:
            return  # handed back, not failed: its outcome is still to come
        try:
            self.failures.note_outcome(
                dead_letter_id, noted[0], noted[1], delivery.dlq_message_id or delivery.message_id
            )
        except Exception as exc:
            log.error(
                "could not note a redriven message's outcome",
                dead_letter=dead_letter_id,
                error=str(exc)[:200],
            )

    def _record_failure(self, delivery: Delivery) -> None:
        outcome = delivery.outcome
        event = delivery.event
        if isinstance(outcome, Retry) and outcome.failed:
            message_id, original = delivery.message_id, None
            dead_lettered = delivery.last_receive  # SQS moves it at its next receive
        elif isinstance(outcome, DeadLetter) and delivery.dlq_message_id:
            message_id, original = delivery.dlq_message_id, delivery.message_id
            dead_lettered = True
        else:
            return
        try:
            self.failures.record(
                message_id,
                delivery.queue,
                delivery.stage,
                outcome.reason,
                outcome.error_class,
                delivery.receive_count,
                dead_lettered=dead_lettered,
                dlq=self.dlq,
                body=delivery.body,
                original_message_id=original,
                redrive_of=delivery.message_attributes.get(REDRIVE_OF, {}).get("StringValue"),
                event_type=event.event_type.value if event else None,
                event_id=event.event_id if event else None,
                incident_id=event.incident_id if event else None,
            )
        except Exception as exc:
            log.error("could not record a failure", message_id=message_id, error=str(exc)[:200])
