"""The emulator holds exactly the topology spec, provisioning twice changes nothing, and
SNS filter policies route each event type to exactly the intended queues."""

from __future__ import annotations

import json
import uuid
from typing import Any

from core.shared_bucket import RATE_LIMITS
from incidents.tables import TABLES
from queues.topology import STAGE_EVENTS, EventType, Stage, Topic, build_topology
from tests.integration.conftest import RunningWorld


def test_provisioning_twice_changes_nothing(world: RunningWorld) -> None:
    done = world.fleet("provision", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [c for c in report["changes"] if c["action"] != "unchanged"] == []
    assert report["summary"].startswith("no changes")
    kinds = {c["kind"] for c in report["changes"]}
    assert {
        "sns-topic",
        "sqs-queue",
        "sns-subscription",
        "dynamodb-table",
        "iam-user",
        "lambda-function",
        "cloudwatch-alarm",
    } <= kinds


def test_queues_dlqs_and_redrive_match_the_spec(world: RunningWorld, admin: Any) -> None:
    sqs = admin("sqs")
    spec = build_topology(world.settings)
    for q in spec.queues:
        attrs = sqs.get_queue_attributes(
            QueueUrl=sqs.get_queue_url(QueueName=q.name)["QueueUrl"], AttributeNames=["All"]
        )["Attributes"]
        dlq = sqs.get_queue_attributes(
            QueueUrl=sqs.get_queue_url(QueueName=q.dlq_name)["QueueUrl"], AttributeNames=["All"]
        )["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
        assert int(redrive["maxReceiveCount"]) >= 2
        assert int(dlq["MessageRetentionPeriod"]) > int(attrs["MessageRetentionPeriod"])
        assert json.loads(dlq["RedriveAllowPolicy"]) == {
            "redrivePermission": "byQueue",
            "sourceQueueArns": [attrs["QueueArn"]],
        }
        policy = json.loads(attrs["Policy"])
        (statement,) = policy["Statement"]
        assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        topic_arns = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        assert topic_arns and all(arn.startswith("arn:aws:sns:") for arn in topic_arns)


def test_the_tables_exist_with_their_keys(world: RunningWorld, admin: Any) -> None:
    ddb = admin("dynamodb")
    for table in (*TABLES, RATE_LIMITS):
        described = ddb.describe_table(TableName=table.name)["Table"]
        keys = {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]}
        assert keys[table.hash_key] == "HASH"
        if table.range_key:
            assert keys[table.range_key] == "RANGE"
        indexes = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
        assert indexes == set(table.indexes)


def _drain(sqs: Any, queue: str) -> list[dict[str, Any]]:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    seen = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return seen
        for m in messages:
            seen.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_filter_policies_route_each_event_type_to_exactly_its_queues(
    world: RunningWorld, admin: Any
) -> None:
    sns, sqs = admin("sns"), admin("sqs")
    topics = {t["TopicArn"].rsplit(":", 1)[1]: t["TopicArn"] for t in sns.list_topics()["Topics"]}
    run = uuid.uuid4().hex
    for event_type in EventType:
        sns.publish(
            TopicArn=topics[Topic.EVENTS.value],
            Message=json.dumps({"run": run, "event_type": event_type.value}),
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": event_type.value}
            },
        )
    sns.publish(
        TopicArn=topics[Topic.ALERTS.value], Message=json.dumps({"run": run, "event_type": "alert"})
    )

    received: dict[str, set[str]] = {}
    for stage in Stage:
        for envelope in _drain(sqs, stage.value):
            body = json.loads(envelope.get("Message", "{}"))
            if body.get("run") == run:
                received.setdefault(body["event_type"], set()).add(stage.value)

    expected = {
        e.value: {s.value for s, events in STAGE_EVENTS.items() if e in events} for e in EventType
    }
    expected["alert"] = {Stage.SUPERVISOR.value}
    assert {k: v for k, v in received.items()} == {k: v for k, v in expected.items() if v}
