"""SQS in the emulator, over HTTP, where emulation/sqs_costs.py made it cheaper: a delete
takes the message its handle names and only it, a receive hands out what is visible, and
the counts say what is visible, in flight and delayed, as moto and AWS answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.principals import Principal
from tests.integration.conftest import RunningWorld


@pytest.fixture
def queue(world: RunningWorld) -> Iterator[tuple[Any, str]]:
    sqs = world.clients(Principal.ADMIN)("sqs")
    url = sqs.create_queue(QueueName=f"deletes-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def _receive_all(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    for _ in range(20):  # a few receives: SQS may answer with fewer than asked
        got += sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=1
        ).get("Messages", [])
        if len(got) >= expected:
            break
    return got


def test_a_delete_takes_the_message_its_handle_names_and_only_that_one(
    queue: tuple[Any, str],
) -> None:
    sqs, url = queue
    for i in range(30):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    received = _receive_all(sqs, url, 30)
    assert len(received) == 30
    doomed, kept = received[:20], received[20:]
    for m in doomed:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=doomed[0]["ReceiptHandle"])  # again: fine
    for m in kept:  # back to the queue at once: they must still be there
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    again = _receive_all(sqs, url, len(kept))
    assert sorted(m["Body"] for m in again) == sorted(m["Body"] for m in kept)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    sqs.send_message(QueueUrl=url, MessageBody="now")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    counts = {
        name: int(attributes[f"ApproximateNumberOfMessages{name}"])
        for name in ("", "NotVisible", "Delayed")
    }
    assert counts == {"": 1, "NotVisible": len(kept), "Delayed": 1}


def test_a_handle_the_queue_never_issued_is_refused(queue: tuple[Any, str]) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody="m")
    with pytest.raises(ClientError) as refused:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle-" + uuid.uuid4().hex)
    assert refused.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    assert len(_receive_all(sqs, url, 1)) == 1  # nothing was deleted
