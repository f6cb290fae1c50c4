"""moto's per-request costs patched away (emulation/request_costs.py), over HTTP: every
answer stays what it was.

A condition expression's parse is kept by its text, names and values; what a client must
see is that a condition still decides by the values each request sends, that names a
condition leaves unused are still refused, and that a text that does not parse still fails
every time.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.dynamodb import to_item
from core.principals import Principal
from incidents.tables import INCIDENT_CONTEXT
from tests.integration.conftest import RunningWorld

TABLE = INCIDENT_CONTEXT.name
NEWER = "attribute_not_exists(incident_id) OR n < :n"


@pytest.fixture
def ddb(world: RunningWorld) -> Any:
    return world.clients(Principal.ADMIN)("dynamodb")


def _put(key: str, n: int, condition: str = NEWER, **extra: Any) -> dict[str, Any]:
    return {
        "TableName": TABLE,
        "Item": to_item({"incident_id": key, "item": "counter", "n": n}),
        "ConditionExpression": condition,
        "ExpressionAttributeValues": to_item({":n": n}),
        **extra,
    }


def _n(ddb: Any, key: str) -> int:
    item = ddb.get_item(
        TableName=TABLE, Key=to_item({"incident_id": key, "item": "counter"}), ConsistentRead=True
    )["Item"]
    return int(item["n"]["N"])


def test_the_same_condition_decides_by_each_requests_values(ddb: Any) -> None:
    key = f"rc-{uuid.uuid4().hex[:8]}"
    ddb.put_item(**_put(key, 5))
    # The same text again and again, with values that pass, fail, and pass.
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(**_put(key, 3))
    ddb.put_item(**_put(key, 7))
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(**_put(key, 7))
    assert _n(ddb, key) == 7
    # In one transaction, items that share the text are each judged by their own values.
    other = f"rc-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
        ddb.transact_write_items(TransactItems=[{"Put": _put(other, 1)}, {"Put": _put(key, 6)}])
    codes = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert codes == ["None", "ConditionalCheckFailed"]
    ddb.transact_write_items(TransactItems=[{"Put": _put(other, 1)}, {"Put": _put(key, 8)}])
    assert (_n(ddb, other), _n(ddb, key)) == (1, 8)


def test_unused_names_and_bad_text_are_refused_every_time(ddb: Any) -> None:
    key = f"rc-{uuid.uuid4().hex[:8]}"
    unused: dict[str, Any] = {"ExpressionAttributeNames": {"#never": "never"}}
    for _ in range(2):  # the second time, the text's parse is a kept one
        with pytest.raises(ClientError, match="unused in expressions") as refused:
            ddb.put_item(**_put(key, 1, **unused))
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        # moto answers a text it cannot parse with a 500, where AWS says ValidationException
        # (README, emulator gaps): refused all the same, every time.
        with pytest.raises(ClientError):
            ddb.put_item(**_put(key, 1, condition="n < :n AND AND"))
    ddb.put_item(**_put(key, 1))
    assert _n(ddb, key) == 1
