"""DynamoDB transactions in the emulator, over HTTP: all of one or none of it, as on AWS.

The emulator rolls a cancelled transaction back item by item (emulation/moto_patches.py,
patch 7) instead of restoring copies of whole tables; what a client sees must not change:
every item a cancelled transaction named is as it was, and nothing else is touched.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.dynamodb import from_item, to_item
from core.principals import Principal
from incidents.tables import INCIDENT_CONTEXT
from tests.integration.conftest import RunningWorld

TABLE = INCIDENT_CONTEXT.name


@pytest.fixture
def ddb(world: RunningWorld) -> Any:
    return world.clients(Principal.ADMIN)("dynamodb")


def _items(ddb: Any, key: str) -> dict[str, dict[str, Any]]:
    found = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="incident_id = :i",
        ExpressionAttributeValues=to_item({":i": key}),
        ConsistentRead=True,
    )["Items"]
    return {i["item"]: i for i in (from_item(x) for x in found)}


def _put(item: str, key: str, **attrs: Any) -> dict[str, Any]:
    return {
        "Put": {"TableName": TABLE, "Item": to_item({"incident_id": key, "item": item, **attrs})}
    }


def test_a_cancelled_transaction_leaves_every_item_it_named_as_it_was(ddb: Any) -> None:
    key = f"tx-{uuid.uuid4().hex[:8]}"
    ddb.transact_write_items(
        TransactItems=[_put("kept", key, n=1), _put("updated", key, n=1), _put("gone", key, n=1)]
    )
    before = _items(ddb, key)
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
        ddb.transact_write_items(
            TransactItems=[
                _put("new", key, n=1),  # would be created
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": to_item({"incident_id": key, "item": "updated"}),
                        "UpdateExpression": "SET n = n + :one, extra = :x",
                        "ExpressionAttributeValues": to_item({":one": 1, ":x": "x"}),
                    }
                },
                {
                    "Delete": {
                        "TableName": TABLE,
                        "Key": to_item({"incident_id": key, "item": "gone"}),
                    }
                },
                {  # the last one fails, after the others ran
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": to_item({"incident_id": key, "item": "kept"}),
                        "ConditionExpression": "n = :two",
                        "ExpressionAttributeValues": to_item({":two": 2}),
                    }
                },
            ]
        )
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert _items(ddb, key) == before


def test_a_transaction_naming_one_item_twice_is_refused_whole(ddb: Any) -> None:
    key = f"tx-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ddb.exceptions.ClientError, match="ValidationException"):
        ddb.transact_write_items(TransactItems=[_put("a", key, n=1), _put("a", key, n=2)])
    assert _items(ddb, key) == {}


def test_a_committed_transaction_writes_all_of_it(ddb: Any) -> None:
    key = f"tx-{uuid.uuid4().hex[:8]}"
    ddb.transact_write_items(TransactItems=[_put(f"i{n}", key, n=n) for n in range(25)])
    assert sorted(int(i["n"]) for i in _items(ddb, key).values()) == list(range(25))
