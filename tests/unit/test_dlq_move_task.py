"""Redrive through SQS's own message move task (StartMessageMoveTask), where the endpoint
has it: the emulator does not, so this path runs against botocore's Stubber, which checks
each request against the SQS API model."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from core.dynamodb import from_item
from core.settings import Settings
from queues import dlq
from queues.dlq import DeadLetters
from queues.dlq_audit import Actor
from queues.topology import build_topology

DANA = Actor(person="dana", principal="operator")


class Tables:
    """DynamoDB as the redrive uses it here: the audit trail's puts, an empty index."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.entries.append(from_item(request["Item"]))
        return {}

    def query(self, **_request: Any) -> dict[str, Any]:
        return {"Items": []}


ACCOUNT = "123456789012"
REGION = "ca-central-1"


def _url(name: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"


def _arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def _expect_arn(stub: Stubber, name: str) -> None:
    stub.add_response("get_queue_url", {"QueueUrl": _url(name)}, {"QueueName": name})
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": _arn(name)}},
        {"QueueUrl": _url(name), "AttributeNames": ["QueueArn"]},
    )


def _task(status: str, moved: int) -> dict[str, Any]:
    task: dict[str, Any] = {
        "Status": status,
        "SourceArn": _arn("critic-dlq"),
        "DestinationArn": _arn("critic"),
        "MaxNumberOfMessagesPerSecond": 5,
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": 3,
        "StartedTimestamp": 1,
    }
    if status == "RUNNING":
        task["TaskHandle"] = "handle-1"
    return task


def test_redrive_all_uses_a_move_task_and_reports_its_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dlq, "MOVE_TASK_POLL_S", 0.01)
    sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(sqs)
    stub.add_response("get_queue_url", {"QueueUrl": _url("critic")}, {"QueueName": "critic"})
    _expect_arn(stub, "critic-dlq")
    _expect_arn(stub, "critic")
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "handle-1"},
        {
            "SourceArn": _arn("critic-dlq"),
            "DestinationArn": _arn("critic"),
            "MaxNumberOfMessagesPerSecond": 5,
        },
    )
    _expect_arn(stub, "critic-dlq")
    listed = {"SourceArn": _arn("critic-dlq"), "MaxResults": 10}
    stub.add_response("list_message_move_tasks", {"Results": [_task("RUNNING", 1)]}, listed)
    stub.add_response("list_message_move_tasks", {"Results": [_task("COMPLETED", 3)]}, listed)
    seen: list[tuple[int, int | None]] = []
    tables = Tables()
    with stub:
        letters = DeadLetters(sqs, dynamodb=tables, topology=build_topology(Settings()))
        result = letters.redrive("critic", DANA, rate=5, progress=lambda m, t: seen.append((m, t)))
        stub.assert_no_pending_responses()
    assert (result.method, result.moved, result.status) == ("move-task", 3, "COMPLETED")
    assert result.task_handle == "handle-1" and result.failed == 0
    assert seen == [(1, 3), (3, 3)]
    # Its start and its end are in the audit trail, under the person who asked.
    started, finished = tables.entries
    assert (started["action"], started["person"], started["destination"]) == (
        "redrive started",
        "dana",
        "critic",
    )
    assert (finished["action"], finished["status"], finished["moved"]) == (
        "redrive finished",
        "COMPLETED",
        3,
    )
    assert started["redrive_id"] == finished["redrive_id"] == result.redrive_id


def test_a_cancelled_move_task_is_cancelled_at_sqs() -> None:
    sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(sqs)
    stub.add_response("get_queue_url", {"QueueUrl": _url("critic")}, {"QueueName": "critic"})
    _expect_arn(stub, "critic-dlq")
    _expect_arn(stub, "critic")
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "handle-1"},
        {"SourceArn": _arn("critic-dlq"), "DestinationArn": _arn("critic")},
    )
    _expect_arn(stub, "critic-dlq")
    stub.add_response(
        "cancel_message_move_task",
        {"ApproximateNumberOfMessagesMoved": 1},
        {"TaskHandle": "handle-1"},
    )
    listed = {"SourceArn": _arn("critic-dlq"), "MaxResults": 10}
    stub.add_response("list_message_move_tasks", {"Results": [_task("CANCELLED", 1)]}, listed)
    cancel = threading.Event()
    cancel.set()
    tables = Tables()
    with stub:
        letters = DeadLetters(sqs, dynamodb=tables, topology=build_topology(Settings()))
        result = letters.redrive("critic", DANA, cancel=cancel)
        stub.assert_no_pending_responses()
    assert (result.status, result.moved) == ("CANCELLED", 1)
    assert tables.entries[-1]["status"] == "CANCELLED"


def test_chosen_messages_never_go_through_a_move_task() -> None:
    """A move task moves everything; picking messages needs the careful mover."""
    sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(sqs)
    stub.add_response("get_queue_url", {"QueueUrl": _url("critic")}, {"QueueName": "critic"})
    stub.add_response(
        "get_queue_url", {"QueueUrl": _url("critic-dlq")}, {"QueueName": "critic-dlq"}
    )
    stub.add_response("get_queue_url", {"QueueUrl": _url("critic")}, {"QueueName": "critic"})
    for _ in range(2):
        stub.add_response("receive_message", {"Messages": []})
    with stub:
        letters = DeadLetters(sqs, dynamodb=Tables(), topology=build_topology(Settings()))
        result = letters.redrive("critic", DANA, ids=["m-1"])
        stub.assert_no_pending_responses()
    assert (result.method, result.moved, result.not_found) == ("mover", 0, ["m-1"])
