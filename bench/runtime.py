"""Runtime benchmarks: the worker runtime against a bare receive+delete loop, and a storm."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from core.aws import Clients
from core.principals import Principal
from core.settings import Settings
from emulation.world import PROJECT_ROOT, child_environment, terminate, wait_for
from incidents.incident_report import list_incidents
from incidents.store import IncidentStore
from queues.events import EventEnvelope, new_event
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


def _bare_rate(sqs: Any, url: str, n: int) -> float:
    """Messages per second of the simplest correct consumer: receive a batch, delete it."""
    _fill(sqs, url, n)
    done, started = 0, time.perf_counter()
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
    return n / (time.perf_counter() - started)


def _queue_empty(sqs: Any, url: str) -> bool:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return all(
        a[k] == "0"
        for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    )


def _runtime_rate(settings: Settings, clients: Clients, url: str, n: int) -> float:
    """The same messages through the runtime with a no-op handler (claim, handle, complete,
    batched delete), until the queue is empty."""
    _fill(clients("sqs"), url, n)
    handled = threading.Semaphore(0)

    def noop(event: EventEnvelope, ctx: StageContext) -> None:
        handled.release()

    consumer = build_consumer(
        build_topology(settings).queue(Stage.WATCHDOG), noop, settings, clients
    )
    started = time.perf_counter()
    runner = threading.Thread(target=consumer.run, daemon=True)
    runner.start()
    for _ in range(n):
        handled.acquire(timeout=120)
    wait_for(lambda: _queue_empty(clients("sqs"), url), 60, "the deletes", 0.02)
    elapsed = time.perf_counter() - started
    consumer.stopping.set()
    runner.join(timeout=30)
    return n / elapsed


def runtime_overhead(settings: Settings, messages: int, rounds: int) -> dict[str, Any]:
    clients = Clients(Principal.WATCHDOG, settings)
    sqs = clients("sqs")
    url = sqs.get_queue_url(QueueName=build_topology(settings).queue(Stage.WATCHDOG).name)[
        "QueueUrl"
    ]
    bare, runtime = [], []
    for _ in range(rounds):  # alternate, so drift on the machine touches both alike
        bare.append(_bare_rate(sqs, url, messages))
        runtime.append(_runtime_rate(settings, clients, url, messages))
    return {
        "messages": messages,
        "rounds": rounds,
        "batch": BATCH,
        "concurrency": settings.worker_concurrency,
        "bare_msgs_per_s": round(statistics.median(bare), 1),
        "runtime_msgs_per_s": round(statistics.median(runtime), 1),
        "ratio": round(statistics.median(runtime) / statistics.median(bare), 3),
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


def storm(settings: Settings, alerts: int, workers: int) -> dict[str, Any]:
    """A burst of alarm notifications for one fault, then the supervisor workers."""
    admin = Clients(Principal.ADMIN, settings)
    sqs = admin("sqs")
    topology = build_topology(settings)
    supervisor = topology.queue(Stage.SUPERVISOR)
    url = sqs.get_queue_url(QueueName=supervisor.name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=supervisor.dlq_name)["QueueUrl"]
    function = f"bench-storm-{uuid.uuid4().hex[:6]}"
    message = json.dumps(_alarm(function, settings.region, settings.account_id))
    topic = topic_arn(settings, Topic.ALERTS)
    published_at = time.perf_counter()
    for _ in range(alerts):
        admin("sns").publish(TopicArn=topic, Message=message)
    publish_s = time.perf_counter() - published_at
    env = child_environment(settings, Principal.SUPERVISOR)
    env.update(
        FLEET_WORKER_WAIT_TIME_S=str(settings.worker_wait_time_s), FLEET_RUNTIME_METRICS_FLUSH_S="1"
    )
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "fleet.cli", "worker", "supervisor"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        wait_for(lambda: _queue_empty(sqs, url), 600, "the storm to drain", 0.1)
        drain_s = time.perf_counter() - started
    finally:
        terminate(procs, 30)
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
        "dead_lettered": dead,
    }
