"""The worker runtime with real worker processes (`fleet worker`) against the emulator:
at-least-once in, exactly-once effects out."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.dynamodb import from_item, to_item
from emulation.world import PROJECT_ROOT, terminate, wait_for
from incidents.leases import ResourceLeases
from incidents.lifecycle import IncidentStatus
from incidents.store import IncidentStore
from queues.events import new_event
from queues.failures import FailureLog
from queues.idempotency import COMPLETED, event_key
from queues.provision import queue_policy
from queues.tables import PROCESSED_EVENTS
from queues.time_limit import ERROR_CLASS, STUCK_EXIT_CODE
from queues.topology import EventType
from tests.integration.conftest import HANDLERS, RunningWorld, Workers


def _url(sqs: Any, queue: str) -> str:
    return str(sqs.get_queue_url(QueueName=queue)["QueueUrl"])


def _depth(sqs: Any, queue: str) -> tuple[int, int, int]:
    a = sqs.get_queue_attributes(QueueUrl=_url(sqs, queue), AttributeNames=["All"])["Attributes"]
    return (
        int(a["ApproximateNumberOfMessages"]),
        int(a["ApproximateNumberOfMessagesNotVisible"]),
        int(a["ApproximateNumberOfMessagesDelayed"]),
    )


def _empty(sqs: Any, queue: str) -> bool:
    return _depth(sqs, queue) == (0, 0, 0)


def _drain(sqs: Any, queue: str) -> list[dict[str, Any]]:
    url, seen = _url(sqs, queue), []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages"):
        for m in messages:
            seen.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return seen


def _send(
    sqs: Any,
    queue: str,
    payload: dict[str, Any],
    event_type: EventType,
    incident_id: str | None = None,
) -> str:
    event = new_event(event_type, "test", payload, incident_id=incident_id)
    return str(
        sqs.send_message(QueueUrl=_url(sqs, queue), MessageBody=event.model_dump_json())[
            "MessageId"
        ]
    )


def _runs(store: IncidentStore, probe: str, kind: str = "run#") -> list[dict[str, Any]]:
    return [json.loads(i["data"]) for i in store.context(probe, kind)]


@pytest.fixture
def clean(admin: Any) -> Any:
    """Every stage queue and DLQ empty before the test: earlier tests leave alerts behind,
    and a message a killed worker held comes back once its visibility timeout ends."""
    sqs = admin("sqs")
    queues = [q for s in ("supervisor", "resolver", "critic", "watchdog") for q in (s, f"{s}-dlq")]

    def drained() -> bool:
        for queue in queues:
            _drain(sqs, queue)
        return all(_depth(sqs, queue)[:2] == (0, 0) for queue in queues)

    wait_for(drained, 30, "the stage queues empty, messages in flight included", 0.2)
    return admin


@pytest.fixture
def observer(admin: Any) -> Iterator[str]:
    """A queue subscribed to everything on incident-events: what was published, and how often."""
    sqs, sns = admin("sqs"), admin("sns")
    name = f"observer-{uuid.uuid4().hex[:8]}"
    arn = sqs.get_queue_attributes(
        QueueUrl=sqs.create_queue(QueueName=name)["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    topic = next(
        t["TopicArn"]
        for t in sns.list_topics()["Topics"]
        if t["TopicArn"].endswith(":incident-events")
    )
    # As on AWS, SNS delivers only where the queue's policy lets the topic send.
    sqs.set_queue_attributes(
        QueueUrl=_url(sqs, name), Attributes={"Policy": json.dumps(queue_policy(arn, [topic]))}
    )
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True)[
        "SubscriptionArn"
    ]
    yield name
    sns.unsubscribe(SubscriptionArn=sub)
    sqs.delete_queue(QueueUrl=_url(sqs, name))


def _published(sqs: Any, observer: str) -> list[dict[str, Any]]:
    return [json.loads(json.loads(m["Body"])["Message"]) for m in _drain(sqs, observer)]


def _alarm_body(alarm_fixture: dict[str, Any], function: str, sns_message_id: str) -> str:
    alarm = {
        **alarm_fixture,
        "StateChangeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
    }
    alarm["Trigger"] = {
        **alarm["Trigger"],
        "Dimensions": [{"value": function, "name": "FunctionName"}],
    }
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": sns_message_id,
            "TopicArn": "arn:aws:sns:ca-central-1:123456789012:incident-alerts",
            "Subject": "ALARM",
            "Message": json.dumps(alarm),
            "Timestamp": datetime.now(UTC).isoformat(),
        }
    )


def _incidents_for(store: IncidentStore, resource: str) -> list[dict[str, Any]]:
    return [i for i in store.by_status(IncidentStatus.RECEIVED) if i.resource == resource]


# ---------------------------------------------------------------------------------------


def test_duplicate_delivery_makes_one_incident_one_event_one_audit_entry(
    world: RunningWorld,
    clean: Any,
    workers: Workers,
    observer: str,
    alarm_fixture: dict[str, Any],
) -> None:
    sqs, store = clean("sqs"), IncidentStore(clean("dynamodb"))
    function = f"dup-{uuid.uuid4().hex[:6]}"
    body = _alarm_body(alarm_fixture, function, str(uuid.uuid4()))
    for _ in range(3):  # SNS delivered the same notification three times
        sqs.send_message(QueueUrl=_url(sqs, "supervisor"), MessageBody=body)
    workers.start("supervisor", "intake")
    wait_for(lambda: _empty(sqs, "supervisor"), 60, "the supervisor queue to empty")

    (incident,) = _incidents_for(store, function)
    assert incident.alert_count == 1
    assert [a["action"] for a in store.audit(incident.incident_id)] == ["incident.opened"]
    opened = [e for e in _published(sqs, observer) if e.get("incident_id") == incident.incident_id]
    assert [e["event_type"] for e in opened] == ["incident.opened"]

    sqs.send_message(QueueUrl=_url(sqs, "supervisor"), MessageBody=body)  # a late duplicate
    wait_for(lambda: _empty(sqs, "supervisor"), 60, "the late duplicate to be acknowledged")
    again = store.get(incident.incident_id)
    assert again is not None and again.alert_count == 1
    assert _published(sqs, observer) == []


def test_an_ok_alarm_with_no_incident_to_note_it_on_still_leaves_a_record_of_its_handling(
    world: RunningWorld, clean: Any, workers: Workers, alarm_fixture: dict[str, Any]
) -> None:
    """Nothing to count and nothing to note it on: the alert is acknowledged, and the
    runtime's record says it was handled (a deleted message with no record would look lost
    to anyone accounting for every delivery, as the survival judge does)."""
    sqs, dynamodb = clean("sqs"), clean("dynamodb")
    function = f"ok-{uuid.uuid4().hex[:6]}"
    sns_message_id = str(uuid.uuid4())
    notification = json.loads(_alarm_body(alarm_fixture, function, sns_message_id))
    notification["Message"] = json.dumps(
        {**json.loads(notification["Message"]), "NewStateValue": "OK"}
    )
    sqs.send_message(QueueUrl=_url(sqs, "supervisor"), MessageBody=json.dumps(notification))
    workers.start("supervisor", "intake")
    wait_for(lambda: _empty(sqs, "supervisor"), 60, "the supervisor queue to empty")

    assert _incidents_for(IncidentStore(dynamodb), function) == []
    record = dynamodb.get_item(
        TableName=PROCESSED_EVENTS.name,
        Key=to_item({"event_key": event_key("supervisor", f"sns:{sns_message_id}")}),
        ConsistentRead=True,
    ).get("Item")
    assert record is not None and from_item(record)["status"] == COMPLETED


def test_alert_storm_opens_one_incident_with_the_right_count(
    world: RunningWorld, clean: Any, workers: Workers, alarm_fixture: dict[str, Any]
) -> None:
    sqs, sns, store = clean("sqs"), clean("sns"), IncidentStore(clean("dynamodb"))
    function = f"storm-{uuid.uuid4().hex[:6]}"
    alerts = 150
    topic = next(
        t["TopicArn"]
        for t in sns.list_topics()["Topics"]
        if t["TopicArn"].endswith(":incident-alerts")
    )
    alarm = json.loads(json.loads(_alarm_body(alarm_fixture, function, "x"))["Message"])
    for _ in range(alerts):  # distinct notifications, as a flapping alarm sends them
        sns.publish(TopicArn=topic, Message=json.dumps(alarm))
    workers.start("supervisor", "intake")
    workers.start("supervisor", "intake")
    wait_for(lambda: _empty(sqs, "supervisor"), 120, "the storm to drain")

    (incident,) = _incidents_for(store, function)
    assert incident.alert_count == alerts
    assert _depth(sqs, "supervisor-dlq") == (0, 0, 0)


def test_a_handler_that_always_fails_reaches_the_dlq_with_its_reason(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs = clean("sqs")
    message_id = _send(sqs, "critic", {"n": 1}, EventType.PROPOSED)
    workers.start("critic", "always_fails")
    max_receives = world.settings.queue_max_receive_count
    wait_for(lambda: _depth(sqs, "critic-dlq")[0] == 1, 60, "the message in critic-dlq")

    (dead,) = _drain(sqs, "critic-dlq")
    assert dead["MessageId"] == message_id  # SQS's redrive keeps the id: the record finds it
    shown = world.fleet("failures", "--queue", "critic", "--json")
    assert shown.returncode == 0, shown.stderr
    record = next(r for r in json.loads(shown.stdout) if r["message_id"] == message_id)
    assert record["error_class"] == "RuntimeError"
    assert "always fails" in record["reason"]
    assert record["receive_count"] == max_receives and record["failures"] == max_receives
    assert record["dead_lettered"] is True and record["stage"] == "critic"


BAD_BODIES = {
    "not JSON": ("{this is not json", "not JSON"),
    "wrong schema": (
        json.dumps({"event_type": "incident.proposed", "event_id": "x"}),
        "not a valid event envelope",
    ),
    "unknown event_type": (
        json.dumps({"event_type": "incident.exploded", "event_id": "x"}),
        "unknown event_type 'incident.exploded'",
    ),
    "garbage SNS Message": (
        json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": "<<garbage>>"}),
        "SNS Message is not JSON",
    ),
    "too big": (json.dumps({"pad": "x" * 70_000}), "the limit is"),
}


def test_bad_input_goes_to_the_dlq_with_a_readable_reason_and_the_worker_goes_on(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs = clean("sqs")
    for body, _ in BAD_BODIES.values():
        sqs.send_message(QueueUrl=_url(sqs, "critic"), MessageBody=body)
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    worker = workers.start("critic", "slow")
    _send(sqs, "critic", {"probe": probe}, EventType.PROPOSED)
    store = IncidentStore(clean("dynamodb"))
    wait_for(lambda: len(_runs(store, probe)) == 1, 60, "the good message to be handled")
    wait_for(lambda: _depth(sqs, "critic-dlq")[0] == len(BAD_BODIES), 30, "the dead letters")

    dead = _drain(sqs, "critic-dlq")
    reasons = {m["MessageAttributes"]["fleet.failure_reason"]["StringValue"] for m in dead}
    for case, (_, expected) in BAD_BODIES.items():
        assert any(expected in r for r in reasons), (case, reasons)
    failures = FailureLog(clean("dynamodb"))
    for m in dead:  # dead-lettered the first time it was handled: no receives wasted on it
        record = failures.get(m["MessageId"])
        assert record is not None and record.error_class == "BadMessage"
        assert record.failures == 1 and record.dead_lettered
    assert worker.poll() is None


def test_kill_9_mid_handler_loses_nothing_and_does_nothing_twice(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs, store = clean("sqs"), IncidentStore(clean("dynamodb"))
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    first = workers.start("critic", "slow")
    _send(sqs, "critic", {"probe": probe, "sleep_s": 3}, EventType.PROPOSED)
    wait_for(lambda: len(_runs(store, probe, "start#")) == 1, 30, "the handler to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    workers.start("critic", "slow")
    wait_for(lambda: len(_runs(store, probe)) == 1, 60, "another worker to finish the job")
    wait_for(lambda: _empty(sqs, "critic"), 30, "the message to be deleted")
    (run,) = _runs(store, probe)
    assert run["receive_count"] >= 2  # the killed worker's receive counted
    assert _depth(sqs, "critic-dlq") == (0, 0, 0)


def test_kill_9_between_the_commit_and_its_announcement_publishes_it_once(
    world: RunningWorld, clean: Any, workers: Workers, observer: str
) -> None:
    sqs, store = clean("sqs"), IncidentStore(clean("dynamodb"))
    opened = store.open_or_dedupe(
        f"crash-{uuid.uuid4().hex[:6]}",
        "errors",
        datetime.now(UTC),
        world.settings.incident_window_s,
        "test",
        {},
        announce=lambda _i: [],
        alert_id="alert-0",
    )
    first = workers.start("critic", "commit_then_sleep")
    _send(
        sqs,
        "critic",
        {"incident_id": opened.incident_id, "sleep_s": 30},
        EventType.PROPOSED,
        incident_id=opened.incident_id,
    )
    wait_for(lambda: len(_runs(store, opened.incident_id, "start#")) == 1, 30, "the commit")
    first.send_signal(signal.SIGKILL)
    first.wait()
    moved = store.get(opened.incident_id)
    assert moved is not None and moved.status == IncidentStatus.INVESTIGATING
    assert store.pending_events(opened.incident_id)  # committed, not yet announced

    workers.start("critic", "commit_then_sleep")
    wait_for(lambda: not store.pending_events(opened.incident_id), 60, "the announcement")
    wait_for(lambda: _empty(sqs, "critic"), 30, "the message to be deleted")
    announced = [e for e in _published(sqs, observer) if e.get("incident_id") == opened.incident_id]
    assert [e["event_id"] for e in announced] == [f"{opened.incident_id}:investigating"]
    transitions = [a for a in store.audit(opened.incident_id) if a["action"].startswith("status")]
    assert len(transitions) == 1
    _drain(sqs, "resolver")  # where the announcement was routed


# One message at a time per process, so two messages are two resolvers racing; a lease
# short enough that a holder which stopped renewing loses it within the test.
LEASE_WORKER = {"FLEET_WORKER_CONCURRENCY": "1", "FLEET_WORKER_BATCH_SIZE": "1"}
LEASE_S = 5


def _remediate(sqs: Any, probe: str, resource: str, holder: str, hold_s: float) -> None:
    payload = {
        "probe": probe,
        "resource": resource,
        "holder": holder,
        "hold_s": hold_s,
        "wait_s": 60,
    }
    _send(sqs, "resolver", payload, EventType.APPROVED, incident_id=holder)


def _lease_workers(workers: Workers, count: int) -> list[subprocess.Popen[bytes]]:
    env = {**LEASE_WORKER, "FLEET_REMEDIATION_LEASE_S": str(LEASE_S)}
    return [workers.start("resolver", "remediate_under_lease", env) for _ in range(count)]


def test_two_resolvers_racing_for_one_function_take_turns(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs, store = clean("sqs"), IncidentStore(clean("dynamodb"))
    probe, resource = f"lease-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:6]}"
    _lease_workers(workers, 2)
    # Each holds the function for longer than the lease: only renewal keeps the other out.
    for holder in ("inc-a", "inc-b"):
        _remediate(sqs, probe, resource, holder, hold_s=LEASE_S * 2)
    wait_for(lambda: len(_runs(store, probe)) == 2, 120, "both fixes to run")
    first, second = sorted(_runs(store, probe), key=lambda r: r["start"])
    assert {first["holder"], second["holder"]} == {"inc-a", "inc-b"}
    assert first["pid"] != second["pid"]  # two processes, not one taking turns with itself
    assert first["end"] <= second["start"], (first, second)
    wait_for(lambda: _empty(sqs, "resolver"), 30, "both messages to be deleted")
    assert _depth(sqs, "resolver-dlq") == (0, 0, 0)


def test_a_lease_holder_killed_9_frees_the_function_when_its_lease_runs_out(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs, store = clean("sqs"), IncidentStore(clean("dynamodb"))
    leases = ResourceLeases(clean("dynamodb"), LEASE_S)
    probe, resource = f"lease-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:6]}"
    (holder,) = _lease_workers(workers, 1)
    _remediate(sqs, probe, resource, "inc-killed", hold_s=LEASE_S * 4)
    wait_for(lambda: len(_runs(store, probe, "start#")) == 1, 30, "the first fix to hold the lease")
    (started,) = _runs(store, probe, "start#")
    _lease_workers(workers, 1)  # the second resolver, which must wait
    _remediate(sqs, probe, resource, "inc-waiting", hold_s=1)

    def renewed_twice_while_the_other_waits() -> bool:
        lease = leases.current(resource)
        renewed = lease is not None and lease.expires_at > started["at"] + 2 * LEASE_S
        return renewed and _depth(sqs, "resolver")[1] == 2  # both messages being handled

    wait_for(renewed_twice_while_the_other_waits, 60, "the holder to outlive its first lease")
    assert _runs(store, probe) == [], "the function was taken while its holder was alive"
    holder.send_signal(signal.SIGKILL)
    killed_at = time.time()
    holder.wait()
    # The waiting fix gets the function once the dead holder's lease ran out; the killed
    # one's message comes back and its fix runs after, whole: nothing lost.
    wait_for(lambda: len(_runs(store, probe)) == 2, 120, "both fixes to run")
    waiting, redone = sorted(_runs(store, probe), key=lambda r: r["start"])
    assert waiting["holder"] == "inc-waiting" and waiting["start"] > killed_at
    assert redone["holder"] == "inc-killed" and redone["start"] >= waiting["end"]
    wait_for(lambda: _empty(sqs, "resolver"), 30, "both messages to be deleted")
    assert _depth(sqs, "resolver-dlq") == (0, 0, 0)


def test_sigterm_lets_a_short_handler_finish_and_exits_0(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs, store = clean("sqs"), IncidentStore(clean("dynamodb"))
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    worker = workers.start("critic", "slow")
    _send(sqs, "critic", {"probe": probe, "sleep_s": 2}, EventType.PROPOSED)
    wait_for(lambda: len(_runs(store, probe, "start#")) == 1, 30, "the handler to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=world.settings.worker_grace_s + 5) == 0
    assert len(_runs(store, probe)) == 1
    assert _empty(sqs, "critic")


def test_sigterm_returns_a_handler_that_outlasts_the_grace_period(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs = clean("sqs")
    store = IncidentStore(clean("dynamodb"))
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    worker = workers.start("critic", "slow")
    _send(sqs, "critic", {"probe": probe, "sleep_s": 60}, EventType.PROPOSED)
    wait_for(lambda: len(_runs(store, probe, "start#")) == 1, 30, "the handler to start")
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=world.settings.worker_grace_s + 5) == 0
    assert time.monotonic() - signalled < world.settings.worker_grace_s + 5
    # Returned, not lost: visible again the moment the worker has gone, not after the
    # visibility timeout (it hands the message back before it exits).
    assert _depth(sqs, "critic")[:2] == (1, 0)
    _drain(sqs, "critic")


def test_a_handler_hung_past_its_time_limit_is_handed_back_and_its_stuck_worker_exits(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs, dynamodb = clean("sqs"), clean("dynamodb")
    store = IncidentStore(dynamodb)
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    # One slot, a one-second limit: the hung handler is every slot the worker has.
    hung = workers.start(
        "critic",
        "hangs",
        env={"FLEET_WORKER_CONCURRENCY": "1", "FLEET_WORKER_STAGE_TIME_LIMITS_S": '{"critic": 1}'},
    )
    message_id = _send(sqs, "critic", {"probe": probe}, EventType.PROPOSED)
    assert hung.wait(timeout=30) == STUCK_EXIT_CODE  # for whatever runs it to restart it
    assert len(_runs(store, probe, "start#")) == 1
    record = FailureLog(dynamodb).get(message_id)
    assert record is not None and record.error_class == ERROR_CLASS
    assert "critic" in record.reason and "time limit of 1 s" in record.reason
    assert record.receive_count == 1 and not record.dead_lettered  # one toward its redrive

    # Handed back, not lost: another worker takes it on its next receive (the hung one's
    # claim lapsed with its heartbeat, so it is not turned away as busy).
    workers.start("critic", "slow")
    wait_for(lambda: len(_runs(store, probe)) == 1, 30, "another worker to handle it")
    wait_for(lambda: _empty(sqs, "critic"), 30, "the message to be deleted")
    (run,) = _runs(store, probe)
    assert run["receive_count"] == 2
    assert _depth(sqs, "critic-dlq") == (0, 0, 0)


def test_a_handler_three_times_longer_than_the_visibility_timeout_runs_once(
    world: RunningWorld, clean: Any, workers: Workers
) -> None:
    sqs, store = clean("sqs"), IncidentStore(clean("dynamodb"))
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    sleep_s = 3 * world.settings.queue_visibility_timeout_s
    workers.start("watchdog", "slow")
    workers.start("watchdog", "slow")  # a second consumer, ready to take it if it reappears
    _send(sqs, "watchdog", {"probe": probe, "sleep_s": sleep_s}, EventType.WATCHDOG_TICK)
    wait_for(lambda: len(_runs(store, probe)) >= 1, sleep_s + 30, "the long handler")
    wait_for(lambda: _empty(sqs, "watchdog"), 30, "the message to be deleted")
    assert len(_runs(store, probe, "start#")) == 1  # never delivered to anyone else
    (run,) = _runs(store, probe)
    assert run["receive_count"] == 1


def test_a_lost_endpoint_is_a_retrying_worker_not_a_crash(
    world: RunningWorld, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    log = tmp_path / "lost.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleet.cli",
                "worker",
                "critic",
                "--handler",
                f"{HANDLERS}:noop",
            ],
            cwd=PROJECT_ROOT,
            env={**world.env, "FLEET_EMULATOR_PORT": str(dead_port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: log.read_text().count("cannot start consuming; retrying") >= 2,
            30,
            "the worker to report the lost endpoint twice",
        )
        assert proc.poll() is None
        assert f"127.0.0.1:{dead_port}" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        terminate([proc], 5)
