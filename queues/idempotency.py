"""One record per (stage, event): an event is handled once, however often it is delivered.

A claim is one conditional put (Powertools style): it succeeds when no record exists, or
when the record is an in-progress claim whose expiry has passed - a crashed worker's. The
expiry is short (a few heartbeats) and the live owner's heartbeat keeps pushing it out, so
a crash never blocks a redelivery for long.
"""

from __future__ import annotations

import contextlib
import time
from enum import StrEnum
from typing import Any

from core.dynamodb import from_item, to_item
from queues.tables import PROCESSED_EVENTS

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"


class Claim(StrEnum):
    CLAIMED = "claimed"  # ours to handle
    COMPLETED = "completed"  # handled before: acknowledge without handling again
    BUSY = "busy"  # another live worker is handling it now


def event_key(stage: str, event_id: str) -> str:
    return f"{stage}#{event_id}"


class IdempotencyRecords:
    def __init__(self, dynamodb: Any, stage: str, owner: str, in_progress_s: float):
        self.ddb = dynamodb
        self.stage = stage
        self.owner = owner
        self.in_progress_s = in_progress_s

    def _key(self, event_id: str) -> dict[str, Any]:
        return to_item({"event_key": event_key(self.stage, event_id)})

    def claim(self, event_id: str, message_id: str) -> tuple[Claim, dict[str, Any] | None]:
        now = time.time()
        try:
            self.ddb.put_item(
                TableName=PROCESSED_EVENTS.name,
                Item=to_item(
                    {
                        "event_key": event_key(self.stage, event_id),
                        "status": IN_PROGRESS,
                        "owner": self.owner,
                        "message_id": message_id,
                        "expires_at": now + self.in_progress_s,
                        "claimed_at": now,
                    }
                ),
                ConditionExpression="attribute_not_exists(event_key) OR "
                "(#s = :in_progress AND expires_at < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=to_item({":in_progress": IN_PROGRESS, ":now": now}),
            )
            return Claim.CLAIMED, None
        except self.ddb.exceptions.ConditionalCheckFailedException:
            pass
        item = self.ddb.get_item(
            TableName=PROCESSED_EVENTS.name, Key=self._key(event_id), ConsistentRead=True
        ).get("Item")
        record = from_item(item) if item else None
        if record and record["status"] == COMPLETED:
            return Claim.COMPLETED, record
        return Claim.BUSY, record

    def extend(self, event_id: str) -> None:
        """The owner's heartbeat: push the in-progress expiry out again."""
        self.ddb.update_item(
            TableName=PROCESSED_EVENTS.name,
            Key=self._key(event_id),
            UpdateExpression="SET expires_at = :exp",
            ConditionExpression="#o = :me AND #s = :in_progress",
            ExpressionAttributeNames={"#o": "owner", "#s": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":exp": time.time() + self.in_progress_s,
                    ":me": self.owner,
                    ":in_progress": IN_PROGRESS,
                }
            ),
        )

    def complete_many(self, completions: list[tuple[str, list[str]]]) -> None:
        """Mark claims of ours completed, 25 to a request (BatchWriteItem's limit).

        Unconditional puts: a claim being completed is held by this owner, whose message is
        still invisible to everyone else.
        """
        now = time.time()
        requests = [
            {
                "PutRequest": {
                    "Item": to_item(
                        {
                            "event_key": event_key(self.stage, event_id),
                            "status": COMPLETED,
                            "owner": self.owner,
                            "completed_at": now,
                            "incident_ids": incident_ids,
                        }
                    )
                }
            }
            for event_id, incident_ids in completions
        ]
        for i in range(0, len(requests), 25):
            pending = {PROCESSED_EVENTS.name: requests[i : i + 25]}
            for attempt in range(5):
                answer = self.ddb.batch_write_item(RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            if pending:
                raise RuntimeError(f"{len(pending[PROCESSED_EVENTS.name])} completions unprocessed")

    def release(self, event_id: str) -> None:
        """Give up a claim after a failure, so the retry need not wait for its expiry."""
        # Suppressed: a claim that is not ours any more is someone else's to release.
        with contextlib.suppress(self.ddb.exceptions.ConditionalCheckFailedException):
            self.ddb.delete_item(
                TableName=PROCESSED_EVENTS.name,
                Key=self._key(event_id),
                ConditionExpression="#o = :me AND #s = :in_progress",
                ExpressionAttributeNames={"#o": "owner", "#s": "status"},
                ExpressionAttributeValues=to_item({":me": self.owner, ":in_progress": IN_PROGRESS}),
            )
