"""How deep each stage queue and its DLQ are, with the stage's runtime counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from core.aws import Clients
from queues.runtime_metrics import read_totals
from queues.topology import TopologySpec


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
    # Every AWS request the stage's workers sent (idle long polls included).
    aws_requests: int = 0
    handler_avg_ms: float | None = None


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


def queue_depths(clients: Clients, topology: TopologySpec) -> list[QueueDepth]:
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
                aws_requests=int(totals["aws_requests"] or 0),
                handler_avg_ms=totals["handler_avg_ms"],
            )
        )
    return depths
