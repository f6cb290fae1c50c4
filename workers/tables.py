"""The incident store's DynamoDB tables: names, keys and indexes, and their provisioning."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from fleet.provisioning import ProvisionReport


class TableSpec(BaseModel, frozen=True):
    name: str
    hash_key: str
    range_key: str | None = None
    range_key_type: str = "S"
    # index name -> (hash key, range key or None); every key attribute is a string.
    indexes: dict[str, tuple[str, str | None]] = {}

    def create_arguments(self) -> dict[str, Any]:
        attributes = {self.hash_key: "S"}
        key_schema = [{"AttributeName": self.hash_key, "KeyType": "HASH"}]
        if self.range_key:
            attributes[self.range_key] = self.range_key_type
            key_schema.append({"AttributeName": self.range_key, "KeyType": "RANGE"})
        gsis = []
        for index_name, (h, r) in self.indexes.items():
            attributes.setdefault(h, "S")
            schema = [{"AttributeName": h, "KeyType": "HASH"}]
            if r:
                attributes.setdefault(r, "S")
                schema.append({"AttributeName": r, "KeyType": "RANGE"})
            gsis.append(
                {
                    "IndexName": index_name,
                    "KeySchema": schema,
                    "Projection": {"ProjectionType": "ALL"},
                }
            )
        args: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": key_schema,
            "AttributeDefinitions": [
                {"AttributeName": k, "AttributeType": t} for k, t in sorted(attributes.items())
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if gsis:
            args["GlobalSecondaryIndexes"] = gsis
        return args


INCIDENT_STATE = TableSpec(
    name="incident-state",
    hash_key="incident_id",
    indexes={
        # "incidents by status, newest first" for tail, the console and the watchdog.
        "by-status": ("status", "updated_at"),
        # open-or-dedupe: an alert finds the incident already open for its fingerprint.
        "by-fingerprint": ("fingerprint", None),
    },
)
INCIDENT_CONTEXT = TableSpec(name="incident-context", hash_key="incident_id", range_key="item")
# Append-only: a conditional put on (incident_id, seq); never updated, never deleted.
INCIDENT_AUDIT = TableSpec(
    name="incident-audit", hash_key="incident_id", range_key="seq", range_key_type="N"
)
# One record per (stage, event) handled: a redelivered or duplicated event does nothing twice.
PROCESSED_EVENTS = TableSpec(name="processed-events", hash_key="event_key")
# Why a message failed, by SQS message id (kept when SQS moves it to the DLQ), for the
# console and `fleet failures` to show next to the dead letter.
MESSAGE_FAILURES = TableSpec(name="message-failures", hash_key="message_id")
# Known-good baselines of the protected functions, versioned (workers/baselines.py).
BASELINES = TableSpec(
    name="baselines", hash_key="function", range_key="version", range_key_type="N"
)
TABLES = (
    INCIDENT_STATE,
    INCIDENT_CONTEXT,
    INCIDENT_AUDIT,
    PROCESSED_EVENTS,
    MESSAGE_FAILURES,
    BASELINES,
)


def provision_tables(dynamodb: Any, report: ProvisionReport) -> None:
    existing: set[str] = set()
    for page in dynamodb.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])
    for table in TABLES:
        if table.name in existing:
            report.record("dynamodb-table", table.name, "unchanged")
            continue
        dynamodb.create_table(**table.create_arguments())
        dynamodb.get_waiter("table_exists").wait(
            TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        report.record("dynamodb-table", table.name, "created")
