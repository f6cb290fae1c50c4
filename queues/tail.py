"""A live view of the queues: depth per stage and DLQ, and the incidents by status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from fleet.aws import Clients
from queues.runtime_metrics import read_totals
from queues.topology import TopologySpec
from workers.lifecycle import IncidentStatus
from workers.tables import INCIDENT_STATE


class QueueDepth(BaseModel):
    stage: str
    queue: str
    visible: int
    in_flight: int
    delayed: int
    dlq: str
    dlq_visible: int
    # SQS publishes this only as the CloudWatch metric ApproximateAgeOfOldestMessage; None
    # where that metric has no datapoint (always, on the emulator).
    oldest_age_s: float | None
    # The stage's runtime counters over the last COUNTER_WINDOW (all its workers together).
    received: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    handler_avg_ms: float | None = None


class TailSnapshot(BaseModel):
    at: str
    queues: list[QueueDepth]
    incidents: dict[str, int]
    error: str | None = None


COUNTER_WINDOW = timedelta(hours=1)


def _attributes(sqs: Any, name: str) -> dict[str, str]:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def _oldest_age(cloudwatch: Any, queue: str) -> float | None:
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def incident_counts(dynamodb: Any) -> dict[str, int]:
    counts = {}
    for status in IncidentStatus:
        answer = dynamodb.query(
            TableName=INCIDENT_STATE.name,
            IndexName="by-status",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status.value}},
            Select="COUNT",
        )
        counts[status.value] = int(answer["Count"])
    return counts


def snapshot(clients: Clients, topology: TopologySpec) -> TailSnapshot:
    sqs, cloudwatch = clients("sqs"), clients("cloudwatch")
    depths = []
    for q in topology.queues:
        attrs = _attributes(sqs, q.name)
        dlq_attrs = _attributes(sqs, q.dlq_name)
        totals = read_totals(cloudwatch, q.stage.value, COUNTER_WINDOW)
        depths.append(
            QueueDepth(
                stage=q.stage.value,
                queue=q.name,
                visible=int(attrs["ApproximateNumberOfMessages"]),
                in_flight=int(attrs["ApproximateNumberOfMessagesNotVisible"]),
                delayed=int(attrs["ApproximateNumberOfMessagesDelayed"]),
                dlq=q.dlq_name,
                dlq_visible=int(dlq_attrs["ApproximateNumberOfMessages"]),
                oldest_age_s=_oldest_age(cloudwatch, q.name),
                received=int(totals["received"] or 0),
                succeeded=int(totals["succeeded"] or 0),
                retried=int(totals["retried"] or 0),
                dead_lettered=int(totals["dead_lettered"] or 0),
                handler_avg_ms=totals["handler_avg_ms"],
            )
        )
    return TailSnapshot(
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        queues=depths,
        incidents=incident_counts(clients("dynamodb")),
    )


def safe_snapshot(
    clients: Clients, topology: TopologySpec, previous: TailSnapshot | None
) -> TailSnapshot:
    """A snapshot, or the last one marked with the error (the emulator may be away)."""
    try:
        return snapshot(clients, topology)
    except Exception as exc:
        message = f"{type(exc).__name__}: {str(exc)[:200]}"
        if previous is None:
            return TailSnapshot(
                at=datetime.now(UTC).isoformat(timespec="seconds"),
                queues=[],
                incidents={},
                error=message,
            )
        return previous.model_copy(update={"error": message})
