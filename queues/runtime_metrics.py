"""Per-stage runtime counters: kept in memory, flushed to CloudWatch, read back by `fleet tail`.

CloudWatch is where an operator already looks on AWS, and the emulator stores the same
metrics, so the embedded world and AWS show the same numbers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from core.aws_requests import READ_UNITS, REQUESTS, UNITS, WRITE_UNITS, sent_between, sent_to
from core.tracing import untraced
from queues.delivery import Delivery
from queues.middleware import Middleware, Runtime
from queues.outcomes import Ack, DeadLetter, Retry

log = structlog.get_logger()

NAMESPACE = "IncidentFleet/Runtime"
# AwsRequests: every AWS request the process sent (core/aws_requests.py), idle polls
# included: the stage's cost in requests, which no machine's speed changes.
COUNTERS = ("Received", "Succeeded", "Retried", "DeadLettered", "AwsRequests")
# What AWS bills of those requests (the requests by service, DynamoDB's request units): read
# by `make bench` for the cost of an incident, not by `fleet tail`.
BILLED = ("SqsRequests", "SnsRequests", WRITE_UNITS, READ_UNITS)


@dataclass
class RuntimeCounters:
    stage: str
    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTERS + BILLED, 0.0))
    durations_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: float = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def handled(self, duration_ms: float) -> None:
        with self.lock:
            self.durations_ms.append(duration_ms)

    def drain(self) -> tuple[dict[str, float], list[float]]:
        with self.lock:
            counts, durations = self.counts, self.durations_ms
            self.counts, self.durations_ms = dict.fromkeys(COUNTERS + BILLED, 0.0), []
        return counts, durations

    def flush(self, cloudwatch: Any) -> None:
        counts, durations = self.drain()
        dims = [{"Name": "Stage", "Value": self.stage}]
        now = datetime.now(UTC)
        data: list[dict[str, Any]] = [
            {
                "MetricName": name,
                "Dimensions": dims,
                "Timestamp": now,
                "Value": float(n),
                "Unit": "Count",
            }
            for name, n in counts.items()
            if n
        ]
        if durations:
            data.append(
                {
                    "MetricName": "HandlerDuration",
                    "Dimensions": dims,
                    "Timestamp": now,
                    "Unit": "Milliseconds",
                    "StatisticValues": {
                        "SampleCount": float(len(durations)),
                        "Sum": sum(durations),
                        "Minimum": min(durations),
                        "Maximum": max(durations),
                    },
                }
            )
        if data:
            cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)


class RuntimeMetrics(Middleware):
    """Counts what the stage received and how each message ended, per received batch, and
    flushes the counts to CloudWatch every `flush_s` and at shutdown."""

    def __init__(self, stage: str, cloudwatch: Any, flush_s: float):
        self.counters = RuntimeCounters(stage)
        self.cloudwatch = cloudwatch
        self.flush_s = flush_s
        self.stopped = threading.Event()
        self.flusher: threading.Thread | None = None
        self.requests_mark = REQUESTS.snapshot()
        self.units_mark = UNITS.snapshot()

    def on_boot(self, runtime: Runtime) -> None:
        self.flusher = threading.Thread(target=self._flush_loop, name="metrics", daemon=True)
        self.flusher.start()

    def on_shutdown(self) -> None:
        self.stopped.set()
        self.flush()

    def before_batch(self, batch: list[Delivery]) -> None:
        self.counters.add("Received", len(batch))

    def after_batch(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            outcome = delivery.outcome
            if isinstance(outcome, Ack):
                self.counters.add("Succeeded")
            elif isinstance(outcome, DeadLetter) or (
                isinstance(outcome, Retry) and outcome.failed and delivery.last_receive
            ):
                self.counters.add("DeadLettered")
            elif isinstance(outcome, Retry) and outcome.failed:
                self.counters.add("Retried")
            self.counters.handled(delivery.duration_ms)

    def _flush_loop(self) -> None:
        untraced()  # the runtime's own metrics are no incident's work
        while not self.stopped.wait(self.flush_s):
            self.flush()

    def flush(self) -> None:
        mark, units = REQUESTS.snapshot(), UNITS.snapshot()
        self.counters.add("AwsRequests", sent_between(self.requests_mark, mark))
        for name, service in (("SqsRequests", "sqs"), ("SnsRequests", "sns")):
            self.counters.add(name, sent_to(service, self.requests_mark, mark))
        for name in (WRITE_UNITS, READ_UNITS):
            self.counters.add(name, units.get(name, 0) - self.units_mark.get(name, 0))
        self.requests_mark, self.units_mark = mark, units
        try:
            self.counters.flush(self.cloudwatch)
        except Exception as exc:
            log.warning("could not flush runtime metrics", error=str(exc)[:200])


def billed_since(cloudwatch: Any, stages: list[str], since: datetime) -> dict[str, float]:
    """What the stages' workers sent since `since` that AWS bills (BILLED), summed."""
    totals = dict.fromkeys(BILLED, 0.0)
    now = datetime.now(UTC)
    for stage in stages:
        for name in BILLED:
            points = cloudwatch.get_metric_statistics(
                Namespace=NAMESPACE,
                MetricName=name,
                Dimensions=[{"Name": "Stage", "Value": stage}],
                StartTime=since - timedelta(minutes=1),
                EndTime=now + timedelta(minutes=1),
                Period=60,
                Statistics=["Sum"],
            )["Datapoints"]
            totals[name] += sum(p["Sum"] for p in points)
    return totals


def read_totals(cloudwatch: Any, stage: str, window: timedelta) -> dict[str, float | None]:
    now = datetime.now(UTC)
    dims = [{"Name": "Stage", "Value": stage}]
    totals: dict[str, float | None] = {}
    for name in COUNTERS:
        points = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=name,
            Dimensions=dims,
            StartTime=now - window,
            EndTime=now,
            Period=int(window.total_seconds()),
            Statistics=["Sum"],
        )["Datapoints"]
        key = {"DeadLettered": "dead_lettered", "AwsRequests": "aws_requests"}.get(
            name, name.lower()
        )
        totals[key] = float(sum(p["Sum"] for p in points))
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="HandlerDuration",
        Dimensions=dims,
        StartTime=now - window,
        EndTime=now,
        Period=int(window.total_seconds()),
        Statistics=["Sum", "SampleCount", "Maximum"],
    )["Datapoints"]
    samples = sum(p["SampleCount"] for p in points)
    totals["handler_avg_ms"] = sum(p["Sum"] for p in points) / samples if samples else None
    totals["handler_max_ms"] = max((p["Maximum"] for p in points), default=None)
    return totals
