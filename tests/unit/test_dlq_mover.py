"""The careful mover, with an in-memory SQS: each copy says which dead letter it was, and a
cancelled redrive stops after the message in hand and hands the rest back."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError

from core.settings import Settings
from queues.dlq import DeadLetters
from queues.dlq_audit import Actor
from queues.failures import REDRIVE_ENTRY, REDRIVE_OF
from queues.topology import build_topology
from tests.unit.test_dlq_move_task import Tables

DANA = Actor(person="dana", principal="console")


class Queues:
    """Two queues as the mover sees them: receive hands out what is there (and hides it),
    send appends, delete removes, a visibility of 0 hands a message back."""

    def __init__(self, dead: int) -> None:
        self.dlq = [
            {"MessageId": f"d{i}", "ReceiptHandle": f"r{i}", "Body": f"{i}"} for i in range(dead)
        ]
        self.hidden: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self.on_send = lambda: None

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": QueueName}

    def get_queue_attributes(self, QueueUrl: str, **_: Any) -> dict[str, Any]:
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": str(len(self.dlq)),
                "QueueArn": f"arn:aws:sqs:ca-central-1:123456789012:{QueueUrl}",
            }
        }

    def start_message_move_task(self, **_: Any) -> None:
        # As the emulator answers: it has no message move tasks.
        raise ClientError({"Error": {"Code": "InvalidAction"}}, "StartMessageMoveTask")

    def receive_message(self, **_: Any) -> dict[str, Any]:
        batch = [m for m in self.dlq if m["MessageId"] not in self.hidden][:10]
        self.hidden |= {m["MessageId"] for m in batch}
        return {"Messages": batch}

    def send_message(self, **request: Any) -> dict[str, str]:
        self.sent.append(request)
        self.on_send()
        return {"MessageId": f"copy-{len(self.sent)}"}

    def delete_message(self, ReceiptHandle: str, **_: Any) -> None:
        gone = [m["MessageId"] for m in self.dlq if m["ReceiptHandle"] == ReceiptHandle]
        self.dlq = [m for m in self.dlq if m["ReceiptHandle"] != ReceiptHandle]
        self.hidden -= set(gone)

    def change_message_visibility_batch(self, Entries: list[dict[str, Any]], **_: Any) -> None:
        handed = {e["ReceiptHandle"] for e in Entries if e["VisibilityTimeout"] == 0}
        self.hidden -= {m["MessageId"] for m in self.dlq if m["ReceiptHandle"] in handed}


class Records(Tables):
    def __init__(self) -> None:
        super().__init__()
        self.left: list[str] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.left.append(request["Key"]["message_id"]["S"])
        return {}


def test_each_copy_names_its_dead_letter_and_the_redrive() -> None:
    sqs, tables = Queues(2), Records()
    letters = DeadLetters(sqs, tables, build_topology(Settings()))
    result = letters.redrive("critic", DANA, ids=["d1"])
    (sent,) = sqs.sent
    assert sent["MessageAttributes"][REDRIVE_OF]["StringValue"] == "d1"
    assert sent["MessageAttributes"][REDRIVE_ENTRY]["StringValue"] == result.redrive_id
    assert result.moved_ids == ["d1"] and tables.left == ["d1"]
    assert [m["MessageId"] for m in sqs.dlq] == ["d0"] and not sqs.hidden  # d0 handed back


def test_a_cancelled_redrive_stops_after_the_message_in_hand_and_loses_nothing() -> None:
    sqs, tables = Queues(25), Records()
    cancel = threading.Event()
    sqs.on_send = lambda: cancel.set() if len(sqs.sent) == 3 else None
    result = DeadLetters(sqs, tables, build_topology(Settings())).redrive(
        "critic", DANA, cancel=cancel
    )
    assert (result.status, result.moved, result.not_found) == ("CANCELLED", 3, [])
    # Every message is either sent back once or still a dead letter, and visible again.
    assert len(sqs.sent) + len(sqs.dlq) == 25 and not sqs.hidden
    assert tables.entries[-1]["status"] == "CANCELLED" and tables.entries[-1]["moved"] == 3
