"""The trail of what people did to dead letters: every redrive (when it started and how it
ended), delete and purge, who made it, under which identity, which messages, from where to
where. Append-only: each entry is a conditional put on a key of its own, and no identity
may update or delete one (access/policies.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from core.aws_retry import call
from core.dynamodb import from_item, to_item
from queues.tables import DLQ_AUDIT

Action = Literal["redrive started", "redrive finished", "delete", "purge"]


class Actor(BaseModel, frozen=True):
    """Who acts: the person's name as they gave it, and the identity the call ran under."""

    person: str
    principal: str

    def __str__(self) -> str:
        return f"{self.person} ({self.principal})"


class AuditEntry(BaseModel):
    queue: str  # the DLQ acted on
    entry: str  # its key: when, then a unique id (newest last)
    at: str
    action: Action
    person: str
    principal: str
    destination: str | None = None
    message_ids: list[str] = []
    # A redrive's two entries share its id: the plan it started with, and how it ended.
    redrive_id: str | None = None
    filters: dict[str, str] = {}
    limit: int | None = None
    rate: float | None = None
    method: str | None = None
    status: str | None = None  # how a redrive ended: COMPLETED, CANCELLED, FAILED
    moved: int | None = None
    failed: int | None = None
    not_found: list[str] = []
    error: str | None = None


def new_redrive_id() -> str:
    return uuid.uuid4().hex[:12]


class DlqAudit:
    def __init__(self, dynamodb: Any):
        self.ddb = dynamodb

    def append(self, queue: str, action: Action, actor: Actor, **detail: Any) -> AuditEntry:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        entry = AuditEntry(
            queue=queue,
            entry=f"{at}#{uuid.uuid4().hex[:8]}",
            at=at,
            action=action,
            person=actor.person,
            principal=actor.principal,
            **detail,
        )
        call(
            self.ddb.put_item,
            TableName=DLQ_AUDIT.name,
            Item=to_item(entry.model_dump(exclude_none=True)),
            ConditionExpression="attribute_not_exists(#q)",  # never over another entry
            ExpressionAttributeNames={"#q": "queue"},
        )
        return entry

    def history(self, queues: list[str], limit: int = 50) -> list[AuditEntry]:
        """The newest entries of these DLQs, newest first (one query per DLQ)."""
        found: list[AuditEntry] = []
        for queue in queues:
            answer = self.ddb.query(
                TableName=DLQ_AUDIT.name,
                KeyConditionExpression="#q = :q",
                ExpressionAttributeNames={"#q": "queue"},
                ExpressionAttributeValues=to_item({":q": queue}),
                ScanIndexForward=False,
                Limit=limit,
            )
            found += [AuditEntry.model_validate(from_item(i)) for i in answer["Items"]]
        return sorted(found, key=lambda e: e.entry, reverse=True)[:limit]

    def redrive(self, queue: str, redrive_id: str) -> list[AuditEntry]:
        """A redrive's entries (started, then finished), oldest first."""
        entries: list[AuditEntry] = []
        query: dict[str, Any] = {
            "TableName": DLQ_AUDIT.name,
            "KeyConditionExpression": "#q = :q",
            "FilterExpression": "redrive_id = :r",
            "ExpressionAttributeNames": {"#q": "queue"},
            "ExpressionAttributeValues": to_item({":q": queue, ":r": redrive_id}),
        }
        while True:
            answer = self.ddb.query(**query)
            entries += [AuditEntry.model_validate(from_item(i)) for i in answer["Items"]]
            if "LastEvaluatedKey" not in answer:
                return entries
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
