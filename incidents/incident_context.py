"""What the incident-context table holds beside an incident's state: named records (the
diagnosis, the proposal, ...), counters, and the outbox of events still to publish.

The base of the incident store: the store's transitions put their outbox items through
`_outbox_puts` in the same transaction as the state change they announce.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from core.dynamodb import from_item, to_item
from incidents.context_items import ContextItem, ContextKey, archived, of_a_round
from incidents.tables import INCIDENT_CONTEXT
from queues.events import EventEnvelope

OUTBOX_PREFIX = "outbox#"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def context_data(item: dict[str, Any]) -> dict[str, Any]:
    """The data of a context item written by :meth:`IncidentStore.put_context`."""
    return dict(json.loads(item.get("data") or "{}"))


class IncidentContext:
    def __init__(
        self,
        dynamodb: Any,
        on_touch: Callable[[str], None] | None = None,
        on_announce: Callable[[str], None] | None = None,
    ):
        self.ddb = dynamodb
        # Told of every incident this store changes, and of every one whose outbox it puts
        # events in, so the runtime records the first and publishes the second.
        self.on_touch = on_touch or (lambda _incident_id: None)
        self.on_announce = on_announce or (lambda _incident_id: None)

    def context(self, incident_id: str, prefix: str = "") -> list[dict[str, Any]]:
        """The incident's context items (those whose name starts with `prefix`, if given:
        DynamoDB refuses an empty string in a key condition, as AWS does)."""
        query: dict[str, Any] = {
            "KeyConditionExpression": "incident_id = :i",
            "ExpressionAttributeValues": to_item({":i": incident_id}),
        }
        if prefix:
            query = {
                "KeyConditionExpression": "incident_id = :i AND begins_with(#item, :p)",
                "ExpressionAttributeNames": {"#item": "item"},
                "ExpressionAttributeValues": to_item({":i": incident_id, ":p": prefix}),
            }
        items: list[dict[str, Any]] = []
        for page in self.ddb.get_paginator("query").paginate(
            TableName=INCIDENT_CONTEXT.name, ConsistentRead=True, **query
        ):
            items.extend(from_item(i) for i in page["Items"])
        return items

    def get_context(
        self, incident_id: str, item: ContextItem | ContextKey
    ) -> dict[str, Any] | None:
        found = self.ddb.get_item(
            TableName=INCIDENT_CONTEXT.name,
            Key=to_item({"incident_id": incident_id, "item": item}),
            ConsistentRead=True,
        ).get("Item")
        return context_data(from_item(found)) if found else None

    @staticmethod
    def context_item(
        incident_id: str, item: ContextItem | ContextKey, data: dict[str, Any]
    ) -> dict[str, Any]:
        """A context item as the table holds it."""
        if item.startswith(OUTBOX_PREFIX):
            raise ValueError(f"{OUTBOX_PREFIX!r} is reserved for the outbox")
        return to_item(
            {
                "incident_id": incident_id,
                "item": item,
                "at": now_iso(),
                "data": json.dumps(data, default=str),
            }
        )

    def put_context(
        self,
        incident_id: str,
        item: ContextItem | ContextKey,
        data: dict[str, Any],
        only_new: bool = False,
    ) -> bool:
        """Write a context item; with `only_new`, only if there is none yet (False then)."""
        condition = (
            {
                "ConditionExpression": "attribute_not_exists(#item)",
                "ExpressionAttributeNames": {"#item": "item"},
            }
            if only_new
            else {}
        )
        try:
            self.ddb.put_item(
                TableName=INCIDENT_CONTEXT.name,
                Item=self.context_item(incident_id, item, data),
                **condition,
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def archive_round(self, incident_id: str, round_number: int) -> int:
        """Move a finished round's records under `archived(round_number, ...)`, so the next
        round starts with none (its calls numbered afresh). Copy, then delete: a crash in
        between leaves both, and running it again finishes the move. Returns how many."""
        moved = 0
        for item in self.context(incident_id):
            name = str(item["item"])
            if not of_a_round(name):
                continue
            with suppress(self.ddb.exceptions.ConditionalCheckFailedException):
                self.ddb.put_item(
                    TableName=INCIDENT_CONTEXT.name,
                    Item=to_item({**item, "item": archived(round_number, ContextKey(name))}),
                    ConditionExpression="attribute_not_exists(#item)",
                    ExpressionAttributeNames={"#item": "item"},
                )
            self.ddb.delete_item(
                TableName=INCIDENT_CONTEXT.name,
                Key=to_item({"incident_id": incident_id, "item": name}),
            )
            moved += 1
        return moved

    def advance_counter(
        self, key: str, item: str, value: int, announce: list[EventEnvelope]
    ) -> bool:
        """Raise a counter kept in the context (e.g. a DLQ depth already reported) to
        `value`, with the events that announce it, at once; False if it was not lower.
        Concurrent callers announce each increase once."""
        self.on_touch(key)
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": INCIDENT_CONTEXT.name,
                            "Key": to_item({"incident_id": key, "item": item}),
                            "UpdateExpression": "SET #v = :v, #at = :now",
                            "ConditionExpression": "attribute_not_exists(#v) OR #v < :v",
                            "ExpressionAttributeNames": {"#v": "value", "#at": "at"},
                            "ExpressionAttributeValues": to_item({":v": value, ":now": now_iso()}),
                        }
                    },
                    *self._outbox_puts(key, announce),
                ]
            )
        except self.ddb.exceptions.TransactionCanceledException:
            return False
        return True

    def set_counter(self, key: str, item: str, value: int) -> None:
        self.ddb.put_item(
            TableName=INCIDENT_CONTEXT.name,
            Item=to_item({"incident_id": key, "item": item, "value": value, "at": now_iso()}),
        )

    def counter(self, key: str, item: str) -> int:
        found = self.ddb.get_item(
            TableName=INCIDENT_CONTEXT.name,
            Key=to_item({"incident_id": key, "item": item}),
            ConsistentRead=True,
        ).get("Item")
        return int(from_item(found).get("value", 0)) if found else 0

    # ------------------------------------------------------------------ outbox

    def pending_events(self, incident_id: str) -> list[tuple[str, EventEnvelope]]:
        return [
            (i["item"], EventEnvelope.model_validate_json(i["event"]))
            for i in self.context(incident_id, OUTBOX_PREFIX)
        ]

    def announce(self, incident_id: str, events: list[EventEnvelope]) -> None:
        """Put events in the incident's outbox without a change of state (the resolver's
        next look at a watched incident); the runtime publishes them after the handler.
        An event put twice (a redelivered handler) is one item: its id is its key."""
        for put in self._outbox_puts(incident_id, events):
            self.ddb.put_item(**put["Put"])
        self.on_touch(incident_id)

    def lease_event(self, incident_id: str, item: str, lease_s: float) -> bool:
        """Take an outbox item for publishing, unless someone else is publishing it now.

        Two processes may flush one outbox at once (a handler's runtime and the next event
        of the same incident, or the watchdog): the lease makes one of them publish. If the
        holder dies before clearing the item, the lease runs out and the item is published
        later: at least once, and in the common case exactly once."""
        now = time.time()
        try:
            self.ddb.update_item(
                TableName=INCIDENT_CONTEXT.name,
                Key=to_item({"incident_id": incident_id, "item": item}),
                UpdateExpression="SET leased_until = :until",
                ConditionExpression=(
                    "attribute_exists(#item) AND "
                    "(attribute_not_exists(leased_until) OR leased_until < :now)"
                ),
                ExpressionAttributeNames={"#item": "item"},
                ExpressionAttributeValues=to_item({":until": now + lease_s, ":now": now}),
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def clear_event(self, incident_id: str, item: str) -> None:
        self.ddb.delete_item(
            TableName=INCIDENT_CONTEXT.name, Key=to_item({"incident_id": incident_id, "item": item})
        )

    def _outbox_puts(self, incident_id: str, events: list[EventEnvelope]) -> list[dict[str, Any]]:
        if events:
            self.on_announce(incident_id)
        return [
            {
                "Put": {
                    "TableName": INCIDENT_CONTEXT.name,
                    "Item": to_item(
                        {
                            "incident_id": incident_id,
                            "item": OUTBOX_PREFIX + e.event_id,
                            "event": e.model_dump_json(),
                            "created_at": now_iso(),
                        }
                    ),
                }
            }
            for e in events
        ]
