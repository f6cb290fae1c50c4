"""One record per (stage, event): an event is handled once, however often it is delivered.

A claim is one conditional put (Powertools style): it succeeds when no record exists, or
when the record is an in-progress claim whose expiry has passed - a crashed worker's. The
expiry is short (a few heartbeats) and the live owner's heartbeat keeps pushing it out, so
a crash never blocks a redelivery for long. A received batch is claimed in one transaction
of those puts, and completed in one batch write: per message, one claim and one record
still, at a fraction of the requests. Event types whose handler makes its writes once by
itself (workers/stage.py `deduplicates`) are neither claimed nor recorded.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import structlog

from core.dynamodb import from_item, to_item
from queues.delivery import Delivery
from queues.events import EventEnvelope
from queues.middleware import Middleware, Runtime
from queues.outcomes import Ack, Outcome, Retry
from queues.tables import PROCESSED_EVENTS

log = structlog.get_logger()

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

    def _claim_put(self, event_id: str, message_id: str, now: float) -> dict[str, Any]:
        """The conditional put that claims an event: no record, or a crashed owner's."""
        return {
            "TableName": PROCESSED_EVENTS.name,
            "Item": to_item(
                {
                    "event_key": event_key(self.stage, event_id),
                    "status": IN_PROGRESS,
                    "owner": self.owner,
                    "message_id": message_id,
                    "expires_at": now + self.in_progress_s,
                    "claimed_at": now,
                }
            ),
            "ConditionExpression": "attribute_not_exists(event_key) OR "
            "(#s = :in_progress AND expires_at < :now)",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": to_item({":in_progress": IN_PROGRESS, ":now": now}),
        }

    def claim_many(self, claims: dict[str, str]) -> set[str]:
        """Claim several events (event id -> message id) in one transaction, up to 100: the
        ids claimed. One whose condition fails cancels the transaction and is named in its
        reasons; the transaction is written again without it (it is left to `claim`, which
        tells a completed event from one in progress)."""
        pending = dict(claims)
        while pending:
            now = time.time()
            try:
                self.ddb.transact_write_items(
                    TransactItems=[
                        {"Put": self._claim_put(event_id, message_id, now)}
                        for event_id, message_id in pending.items()
                    ]
                )
                return set(pending)
            except self.ddb.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons", [])
                taken = {
                    event_id
                    for event_id, reason in zip(pending, reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if not taken:
                    return set()  # a conflict: each is claimed on its own
                pending = {e: m for e, m in pending.items() if e not in taken}
        return set()

    def claim(self, event_id: str, message_id: str) -> tuple[Claim, dict[str, Any] | None]:
        try:
            self.ddb.put_item(**self._claim_put(event_id, message_id, time.time()))
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


class Idempotency(Middleware):
    """Claims each event before its handler runs, so it is handled once however often it is
    delivered; completes the claims of acknowledged messages, in batches, before they are
    deleted (a crash in between redelivers a message that is then a known duplicate)."""

    def __init__(
        self,
        dynamodb: Any,
        stage: str,
        deduplicated: Callable[[EventEnvelope], bool] = lambda _event: False,
    ):
        self.dynamodb = dynamodb
        self.stage = stage
        # Events the handler makes once by itself: no claim, no record.
        self.deduplicated = deduplicated
        self.owner = f"{stage}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.records: IdempotencyRecords | None = None
        self.heartbeat_s = 1.0
        self.lock = threading.Lock()
        # Deliveries whose claim this worker holds, by message id.
        self.held: dict[str, Delivery] = {}
        # Claimed with their batch, not handled yet: message ids.
        self.claimed_early: set[str] = set()

    def on_boot(self, runtime: Runtime) -> None:
        self.heartbeat_s = runtime.heartbeat_s
        # Two missed heartbeats and a crashed owner's claim is free again: sooner than its
        # message reappears (three beats), so the redelivery never finds it busy.
        self.records = IdempotencyRecords(
            self.dynamodb, self.stage, self.owner, in_progress_s=self.heartbeat_s * 2
        )

    def _records(self) -> IdempotencyRecords:
        if self.records is None:
            raise RuntimeError("the idempotency middleware was not booted")
        return self.records

    def before_batch(self, batch: list[Delivery]) -> None:
        """Claim the batch's events in one write (one event at most once: two messages of
        one event in a batch are a duplicate, claimed on its own). A claim that fails here
        is tried again, alone, when its message is processed."""
        claims: dict[str, Delivery] = {}
        for d in batch:
            if self._claims(d) and d.event is not None and d.event.event_id not in claims:
                claims[d.event.event_id] = d
        if len(claims) < 2:
            return  # nothing to save
        claimed = self._records().claim_many({e: d.message_id for e, d in claims.items()})
        with self.lock:
            for event_id in claimed:
                delivery = claims[event_id]
                self.held[delivery.message_id] = delivery
                self.claimed_early.add(delivery.message_id)

    def _claims(self, delivery: Delivery) -> bool:
        """Whether this delivery is claimed: unreadable ones are dead-lettered, and the
        handler makes the deduplicated events once by itself."""
        return delivery.event is not None and not self.deduplicated(delivery.event)

    def before_process(self, delivery: Delivery) -> Outcome | None:
        if delivery.event is None or not self._claims(delivery):
            return None  # nothing to claim: the handler runs
        with self.lock:
            if delivery.message_id in self.claimed_early:
                self.claimed_early.discard(delivery.message_id)
                return None
        claim, record = self._records().claim(delivery.event.event_id, delivery.message_id)
        if claim == Claim.CLAIMED:
            with self.lock:
                self.held[delivery.message_id] = delivery
            return None
        if claim == Claim.COMPLETED:
            # Handled before: whatever announcing was left is finished (the outbox middleware
            # publishes what these incidents still hold), then acknowledged.
            touched = record.get("incident_ids", []) if record else []
            delivery.touched.update(touched)
            delivery.announced.update(touched)
            return Ack("duplicate delivery acknowledged")
        if record and record.get("message_id") == delivery.message_id:
            # This very message, back while its claim lives (a late heartbeat): let the
            # claim expire, then it is ours.
            return Retry(
                "message back while still claimed",
                "ClaimBusy",
                after_s=max(1, int(self.heartbeat_s)),
                failed=False,
            )
        # A duplicate of an event a live worker is handling from another message: that
        # message is not lost if the worker dies, so this copy can go.
        return Ack("duplicate of an event in progress acknowledged")

    def after_process(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Ack) or delivery.event is None:
            return outcome  # a held claim is completed just before the delete
        with self.lock:
            held = self.held.pop(delivery.message_id, None)
        if held is not None:
            # Given up after a failure, so the retry need not wait for the claim's expiry.
            try:
                self._records().release(delivery.event.event_id)
            except Exception as exc:
                log.warning("could not release a claim", error=str(exc)[:200])
        return outcome

    def on_heartbeat(self, busy: list[Delivery]) -> None:
        with self.lock:
            mine = [d for d in busy if d.message_id in self.held]
        for delivery in mine:
            if delivery.event is None or delivery.settled:
                continue
            try:
                self._records().extend(delivery.event.event_id)
            except Exception as exc:
                log.warning(
                    "claim heartbeat failed", event_id=delivery.event.event_id, error=str(exc)[:200]
                )

    def after_settle(self, delivery: Delivery) -> None:
        if not isinstance(delivery.outcome, Ack):
            # Returned without failing (shutdown): the claim lapses by itself.
            with self.lock:
                self.held.pop(delivery.message_id, None)
                self.claimed_early.discard(delivery.message_id)

    def before_delete(self, acked: list[Delivery]) -> list[Delivery]:
        with self.lock:
            mine = [self.held.pop(d.message_id) for d in acked if d.message_id in self.held]
            self.claimed_early.difference_update(d.message_id for d in acked)
        completions = [(d.event.event_id, sorted(d.touched)) for d in mine if d.event is not None]
        if not completions:
            return acked
        try:
            self._records().complete_many(completions)
        except Exception as exc:
            # Not deleted: each message comes back, and its claim has expired by then.
            log.warning(
                "could not complete claims; their messages will be redelivered",
                error=str(exc)[:200],
            )
            return []
        return acked
