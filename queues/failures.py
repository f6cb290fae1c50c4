"""Why a message failed: recorded by SQS message id, readable next to the dead letter.

SQS keeps a message's id when its redrive policy moves it to the DLQ, so a record written
on each failed attempt is found again by the dead letter's id. A message the runtime
dead-letters itself (bad input) is recorded under its new id in the DLQ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import BaseModel

from core.aws_retry import call
from core.dynamodb import from_item, to_item
from queues.delivery import Delivery
from queues.middleware import Middleware
from queues.outcomes import DeadLetter, Retry
from queues.tables import MESSAGE_FAILURES

log = structlog.get_logger()


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


class FailureRecords(Middleware):
    """Records every failed attempt and every dead letter, by the id the DLQ will show."""

    def __init__(self, log_: FailureLog):
        self.failures = log_

    def after_settle(self, delivery: Delivery) -> None:
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
                original_message_id=original,
                event_type=event.event_type.value if event else None,
                event_id=event.event_id if event else None,
                incident_id=event.incident_id if event else None,
            )
        except Exception as exc:
            log.error("could not record a failure", message_id=message_id, error=str(exc)[:200])
