"""DynamoDB as this project uses it: a table's spec, the item codec, and creating tables.

Each package that owns tables declares their specs (the runtime's in `queues.tables`, the
incident domain's in `incidents.tables`); the world and the Pulumi program create them from
those specs, so both ways of running have the same keys and indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel

from core.provisioning import ProvisionReport

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


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


def _decimals(value: Any) -> Any:
    # DynamoDB numbers are decimals; boto3 refuses floats rather than round them silently.
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_decimals(v) for v in value]
    return value


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _serialize(_decimals(v)) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserialize(v) for k, v in item.items()}


def provision_tables(dynamodb: Any, tables: Iterable[TableSpec], report: ProvisionReport) -> None:
    """Create each table that does not exist yet; tables are never changed or dropped here."""
    existing: set[str] = set()
    for page in dynamodb.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])
    for table in tables:
        if table.name in existing:
            report.record("dynamodb-table", table.name, "unchanged")
            continue
        dynamodb.create_table(**table.create_arguments())
        dynamodb.get_waiter("table_exists").wait(
            TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        report.record("dynamodb-table", table.name, "created")
