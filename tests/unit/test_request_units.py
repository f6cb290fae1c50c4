"""The DynamoDB request units each request is billed, as counted before it is sent.

AWS's rules ("Read/write capacity mode", https://docs.aws.amazon.com/amazondynamodb/latest/
developerguide/HowItWorks.ReadWriteCapacityMode.html): a write unit per item written per KB,
two per item in a transaction; a read unit per strongly consistent read of up to 4 KB, half
for an eventually consistent one, two per item in a read transaction."""

from __future__ import annotations

import boto3
from botocore.stub import ANY, Stubber

from core.aws_requests import READ_UNITS, UNITS, WRITE_UNITS, count_requests, request_units

SMALL = {"pk": {"S": "a"}}


def test_a_write_is_a_unit_per_kb_and_a_transaction_doubles_it() -> None:
    big = {"pk": {"S": "x" * 2500}}  # 3 KB as sent
    assert request_units("PutItem", {"Item": SMALL}) == {WRITE_UNITS: 1}
    assert request_units("PutItem", {"Item": big}) == {WRITE_UNITS: 3}
    assert request_units("UpdateItem", {"Key": SMALL}) == {WRITE_UNITS: 1}
    transaction = {"TransactItems": [{"Put": {"Item": SMALL}}, {"Update": {"Key": SMALL}}]}
    assert request_units("TransactWriteItems", transaction) == {WRITE_UNITS: 4}
    batch = {"RequestItems": {"t": [{"PutRequest": {"Item": SMALL}}] * 3}}
    assert request_units("BatchWriteItem", batch) == {WRITE_UNITS: 3}


def test_a_read_is_a_unit_when_consistent_and_half_otherwise() -> None:
    assert request_units("GetItem", {"ConsistentRead": True}) == {READ_UNITS: 1}
    assert request_units("GetItem", {}) == {READ_UNITS: 0.5}
    assert request_units("BatchGetItem", {"RequestItems": {"t": {"Keys": [SMALL] * 4}}}) == {
        READ_UNITS: 2
    }
    assert request_units("TransactGetItems", {"TransactItems": [{}, {}]}) == {READ_UNITS: 4}
    assert request_units("DescribeTable", {}) == {}


def test_a_counted_client_adds_each_request_units_once() -> None:
    client = count_requests(
        boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="k",
            aws_secret_access_key="s",
        )
    )
    before = UNITS.snapshot()
    with Stubber(client) as stub:
        stub.add_response("put_item", {}, {"TableName": "t", "Item": ANY})
        stub.add_response("get_item", {}, {"TableName": "t", "Key": ANY, "ConsistentRead": True})
        client.put_item(TableName="t", Item=SMALL)
        client.get_item(TableName="t", Key=SMALL, ConsistentRead=True)
    after = UNITS.snapshot()
    assert after.get(WRITE_UNITS, 0) - before.get(WRITE_UNITS, 0) == 1
    assert after.get(READ_UNITS, 0) - before.get(READ_UNITS, 0) == 1
