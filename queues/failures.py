"""Why a message failed: recorded by SQS message id, readable next to the dead letter.

SQS keeps a message's id when its redrive policy moves it to the DLQ, so a record written
on each failed attempt is found again by the dead letter's id. A message the runtime
dead-letters itself (bad input) is recorded under its new id in the DLQ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from core.aws_retry import call
from core.dynamodb import from_item, to_item
from queues.tables import MESSAGE_FAILURES


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
        **context: str | None,
    ) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
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
        for key, value in context.items():
            if value is not None:
                values[f":{key}"] = value
                sets.append(f"{key} = :{key}")
        call(
            self.ddb.update_item,
            TableName=MESSAGE_FAILURES.name,
            Key=to_item({"message_id": message_id}),
            UpdateExpression="SET " + ", ".join(sets) + " ADD failures :one",
            ExpressionAttributeNames={"#q": "queue"},
            ExpressionAttributeValues=to_item(values),
        )

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
