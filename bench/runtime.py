"""Runtime benchmarks: the worker runtime against a bare receive+delete loop, and a storm."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import IO, Any, NamedTuple

from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)

from bench.cost import per_million_messages
from core import tracing
from core.aws import Clients
from core.aws_requests import READ_UNITS, REQUESTS, UNITS, WRITE_UNITS, sent_between, sent_to
from core.principals import Principal
from core.settings import Settings
from emulation.world import (
    CONSUMING_LINE,
    PROJECT_ROOT,
    child_environment,
    terminate,
    wait_for,
)
from incidents.incident_report import list_incidents
from incidents.store import IncidentStore
from queues.events import EventEnvelope, new_event
from queues.idempotency import Idempotency
from queues.runtime_metrics import NAMESPACE
from queues.topology import EventType, Stage, Topic, build_topology, topic_arn
from workers.stage import StageContext, build_consumer

BATCH = 10


def _fill(sqs: Any, url: str, n: int) -> None:
    bodies = [
        new_event(EventType.WATCHDOG_TICK, "bench", {"i": i}).model_dump_json() for i in range(n)
    ]
    for i in range(0, n, BATCH):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + BATCH])],
        )


class Spent(NamedTuple):
    """What a drain sent, per message: AWS requests by service, and DynamoDB request units."""

    sqs_requests: float
    dynamodb_requests: float
    write_units: float
    read_units: float


class Drained(NamedTuple):
    seconds: float
    requests: int  # AWS requests sent while draining


def _bare_drain(sqs: Any, url: str, n: int) -> Drained:
    """The simplest correct consumer over `n` messages: receive a batch, delete it."""
    done, started, before = 0, time.perf_counter(), REQUESTS.snapshot()
    while done < n:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=1
        ).get("Messages", [])
        if messages:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            done += len(messages)
    return Drained(time.perf_counter() - started, sent_between(before, REQUESTS.snapshot()))


def _bare_rate(sqs: Any, url: str, n: int) -> tuple[float, float]:
    """Messages per second and AWS requests per message of the bare loop."""
    _fill(sqs, url, n)
    drained = _bare_drain(sqs, url, n)
    return n / drained.seconds, drained.requests / n


def _queue_empty(sqs: Any, url: str) -> bool:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return all(
        a[k] == "0"
        for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    )


def _runtime_rate(
    settings: Settings, clients: Clients, url: str, n: int, claims: bool = True
) -> tuple[float, float, Spent]:
    """The same messages through the runtime with a no-op handler (claim, handle, complete,
    batched delete), until the queue is empty: messages per second, AWS requests per
    message (the runtime's own, the metrics it reports left out), and what they were by
    service and in DynamoDB request units. Without `claims`, the
    idempotency middleware is taken out, to show what the per-message records cost."""
    _fill(clients("sqs"), url, n)
    handled = threading.Semaphore(0)

    def noop(event: EventEnvelope, ctx: StageContext) -> None:
        handled.release()

    consumer = build_consumer(
        build_topology(settings).queue(Stage.WATCHDOG), noop, settings, clients
    )
    if not claims:
        consumer.middleware = [m for m in consumer.middleware if not isinstance(m, Idempotency)]
    # The bench's own look at the queue is not the runtime's work: its client is made
    # before the clock starts, and its requests are counted apart.
    watcher = Clients(Principal.WATCHDOG, settings)("sqs")
    before, units_before = REQUESTS.snapshot(), UNITS.snapshot()
    started = time.perf_counter()
    runner = threading.Thread(target=consumer.run, daemon=True)
    runner.start()
    for _ in range(n):
        handled.acquire(timeout=120)
    looked = REQUESTS.snapshot()
    wait_for(lambda: _queue_empty(watcher, url), 60, "the deletes", 0.02)
    elapsed = time.perf_counter() - started
    own = sent_between(looked, REQUESTS.snapshot())
    consumer.stopping.set()
    runner.join(timeout=30)
    after, units_after = REQUESTS.snapshot(), UNITS.snapshot()
    runtime_requests = sent_between(before, after) - own
    by_service = {service: sent_to(service, before, after) for service in ("sqs", "dynamodb")}
    by_service["sqs"] -= own  # the bench's own looks at the queue are SQS requests
    spent = Spent(
        sqs_requests=by_service["sqs"] / n,
        dynamodb_requests=by_service["dynamodb"] / n,
        write_units=(units_after.get(WRITE_UNITS, 0) - units_before.get(WRITE_UNITS, 0)) / n,
        read_units=(units_after.get(READ_UNITS, 0) - units_before.get(READ_UNITS, 0)) / n,
    )
    return n / elapsed, runtime_requests / n, spent


class TracingSwitch(Sampler):
    """Tracing on (every trace, as the fleet runs) or off (nothing recorded), switched
    between rounds in one process: a process's tracer provider is set once. Off also
    takes the botocore instrumentation out, so an off round is the runtime untraced."""

    def __init__(self) -> None:
        self.on = False
        self.every = ParentBased(ALWAYS_ON)

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (self.every if self.on else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return f"TracingSwitch({'on' if self.on else 'off'})"

    def turn(self, on: bool) -> None:
        self.on = on
        instrumentor = BotocoreInstrumentor()
        if on and not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
        elif not on and instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def runtime_overhead(settings: Settings, messages: int, rounds: int) -> dict[str, Any]:
    """The runtime against the bare loop, round after round: with its idempotency records
    and untraced, traced as the fleet runs (spans to the local file), and without records.
    """
    switch = TracingSwitch()
    tracing.configure("bench-runtime", settings, sampler=switch)
    switch.turn(False)
    clients = Clients(Principal.WATCHDOG, settings)
    sqs = clients("sqs")
    url = sqs.get_queue_url(QueueName=build_topology(settings).queue(Stage.WATCHDOG).name)[
        "QueueUrl"
    ]
    bare: list[float] = []
    runtime: list[float] = []
    traced: list[float] = []
    unclaimed: list[float] = []
    bare_requests: list[float] = []
    runtime_requests: list[float] = []
    unclaimed_requests: list[float] = []
    spending: list[Spent] = []
    for _ in range(rounds):  # alternate, so drift on the machine touches all alike
        rate, requests = _bare_rate(sqs, url, messages)
        bare.append(rate)
        bare_requests.append(requests)
        # Traced and untraced take turns going first: the second of two runs in a row
        # finds the emulator warmer.
        for on in (False, True) if len(runtime) % 2 == 0 else (True, False):
            switch.turn(on)
            try:
                rate, requests, spent = _runtime_rate(settings, clients, url, messages)
            finally:
                switch.turn(False)
            if on:
                traced.append(rate)
            else:
                runtime.append(rate)
                runtime_requests.append(requests)
                spending.append(spent)
        rate, requests, _ = _runtime_rate(settings, clients, url, messages, claims=False)
        unclaimed.append(rate)
        unclaimed_requests.append(requests)
    per_msg = {
        field: round(statistics.median(getattr(s, field) for s in spending), 3)
        for field in Spent._fields
    }
    return {
        "messages": messages,
        "rounds": rounds,
        "batch": BATCH,
        "concurrency": settings.worker_concurrency,
        "bare_msgs_per_s": round(statistics.median(bare), 1),
        "runtime_msgs_per_s": round(statistics.median(runtime), 1),
        "ratio": round(statistics.median(runtime) / statistics.median(bare), 3),
        "bare_requests_per_msg": round(statistics.median(bare_requests), 2),
        "runtime_requests_per_msg": round(statistics.median(runtime_requests), 2),
        # The same runtime without its idempotency records: where the difference lies.
        "unclaimed_msgs_per_s": round(statistics.median(unclaimed), 1),
        "unclaimed_ratio": round(statistics.median(unclaimed) / statistics.median(bare), 3),
        "unclaimed_requests_per_msg": round(statistics.median(unclaimed_requests), 2),
        # The same runtime traced (a span per message and per AWS call, to the local file).
        "traced_msgs_per_s": round(statistics.median(traced), 1),
        "traced_ratio": round(statistics.median(traced) / statistics.median(bare), 3),
        # Traced against untraced, round by round: what tracing costs the runtime.
        "tracing_cost": round(
            statistics.median(t / r for t, r in zip(traced, runtime, strict=True)), 3
        ),
        # Per message, median of the rounds: what AWS would bill, and its price.
        "per_msg": per_msg,
        "cost_per_million_messages": per_million_messages(
            per_msg, statistics.median(bare_requests)
        ),
    }


def _alarm(function: str, region: str, account: str) -> dict[str, Any]:
    fixture = PROJECT_ROOT / "tests" / "fixtures" / "cloudwatch-alarm-message.json"
    alarm: dict[str, Any] = json.loads(fixture.read_text())
    alarm.update(
        StateChangeTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        AWSAccountId=account,
    )
    alarm["Trigger"]["Dimensions"] = [{"value": function, "name": "FunctionName"}]
    return alarm


def _publish_storm(sns: Any, topic: str, message: str, alerts: int) -> float:
    """`alerts` notifications of one alarm, as SNS delivers a storm of them; seconds taken."""
    started = time.perf_counter()
    for i in range(0, alerts, BATCH):
        sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[
                {"Id": str(j), "Message": message} for j in range(min(BATCH, alerts - i))
            ],
        )
    return time.perf_counter() - started


def _stage_requests(cloudwatch: Any, stage: Stage, since: datetime) -> int:
    """The AWS requests a stage's workers reported (runtime metrics, AwsRequests) since."""
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="AwsRequests",
        Dimensions=[{"Name": "Stage", "Value": stage.value}],
        StartTime=since - timedelta(minutes=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return int(sum(p["Sum"] for p in points))


def _consuming(log: IO[bytes]) -> bool:
    log.seek(0)
    return CONSUMING_LINE in log.read()


def storm(settings: Settings, alerts: int, workers: int) -> dict[str, Any]:
    """A burst of alarm notifications for one fault, drained twice from the supervisor's
    queue: by the bare receive+delete loop, then by the supervisor workers (which open one
    incident and count the rest). Seconds and AWS requests per alert, each."""
    admin = Clients(Principal.ADMIN, settings)
    sqs, sns = admin("sqs"), admin("sns")
    topology = build_topology(settings)
    supervisor = topology.queue(Stage.SUPERVISOR)
    url = sqs.get_queue_url(QueueName=supervisor.name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=supervisor.dlq_name)["QueueUrl"]
    function = f"bench-storm-{uuid.uuid4().hex[:6]}"
    message = json.dumps(_alarm(function, settings.region, settings.account_id))
    topic = topic_arn(settings, Topic.ALERTS)

    _publish_storm(sns, topic, message, alerts)
    bare = _bare_drain(sqs, url, alerts)

    publish_s = _publish_storm(sns, topic, message, alerts)
    env = child_environment(settings, Principal.SUPERVISOR)
    env.update(
        FLEET_WORKER_WAIT_TIME_S=str(settings.worker_wait_time_s), FLEET_RUNTIME_METRICS_FLUSH_S="1"
    )
    since = datetime.now(UTC)
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(workers)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "worker", "supervisor"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for log in logs
        ]
        try:
            # The drain is timed from the moment every worker consumes, as the bare loop's
            # is from its first receive: a worker's start-up (its imports) is not the
            # runtime's speed. Alerts it took by then count for it.
            wait_for(lambda: all(_consuming(log) for log in logs), 120, "the workers to consume")
            started = time.perf_counter()
            wait_for(lambda: _queue_empty(sqs, url), 1800, "the storm to drain", 0.05)
            drain_s = time.perf_counter() - started
        finally:
            terminate(procs, 30)  # a stopped worker flushes its counters
    requests = _stage_requests(admin("cloudwatch"), Stage.SUPERVISOR, since)
    store = IncidentStore(admin("dynamodb"))
    # Any status: the supervisor goes on to investigate the incident it opened.
    incidents = [i for i in list_incidents(store) if i["resource"] == function]
    dead = int(
        sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    return {
        "alerts": alerts,
        "workers": workers,
        "publish_s": round(publish_s, 2),
        "incidents_opened": len(incidents),
        "alerts_counted": int(incidents[0]["alerts"]) if len(incidents) == 1 else None,
        "drain_s": round(drain_s, 2),
        "bare_drain_s": round(bare.seconds, 2),
        "drain_over_bare": round(drain_s / bare.seconds, 2),
        "drain_ms_per_alert": round(drain_s / alerts * 1000, 2),
        # The worker's whole run: its start-up and its investigation of the one incident
        # included, as an operator's bill would have them.
        "requests_per_alert": round(requests / alerts, 2),
        "bare_requests_per_alert": round(bare.requests / alerts, 2),
        "dead_lettered": dead,
    }
