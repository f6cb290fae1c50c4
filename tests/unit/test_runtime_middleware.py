"""The runtime's loop and each middleware, with in-memory fakes (the integration suite runs
the same pieces against the emulator in real worker processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from core.aws_requests import REQUESTS, UNITS
from core.settings import Settings
from queues.consumer import FAILURE_ATTRIBUTES, Consumer
from queues.delivery import Delivery
from queues.events import EventEnvelope, new_event
from queues.failures import REDRIVE_OF, FailureRecords
from queues.idempotency import Claim, Idempotency
from queues.middleware import Middleware
from queues.outbox import Outbox
from queues.outcomes import (
    Ack,
    DeadLetter,
    NonRetryableError,
    Outcome,
    Retry,
    RetryLater,
    outcome_of,
)
from queues.runtime_metrics import RuntimeMetrics
from queues.topology import EventType, Stage, Topic, build_topology
from workers import intake, supervisor
from workers.stage import deduplicated_by


def _event(incident_id: str | None = "inc-1", kind: EventType = EventType.OPENED) -> EventEnvelope:
    return new_event(kind, "test", {}, incident_id=incident_id)


def _message(event: EventEnvelope | None, message_id: str = "m1", receives: int = 1) -> dict:
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": event.model_dump_json() if event else "not json {",
        "Attributes": {"ApproximateReceiveCount": str(receives)},
        "MessageAttributes": {"trace": {"DataType": "String", "StringValue": "t-1"}},
    }


def _delivery(event: EventEnvelope | None, receives: int = 1, message_id: str = "m1") -> Delivery:
    return Delivery.received(_message(event, message_id, receives), "supervisor", "q", 5)


# ---------------------------------------------------------------- idempotency


class FakeRecords:
    def __init__(self, claim: Claim = Claim.CLAIMED, record: dict[str, Any] | None = None):
        self.answer = (claim, record)
        self.released: list[str] = []
        self.extended: list[str] = []
        self.completed: list[tuple[str, list[str]]] = []
        self.fail_completion = False
        self.claims: list[str] = []  # each claim written, batch or single
        self.taken_by_others: set[str] = set()  # event ids a batch claim cannot take

    def claim(self, event_id: str, message_id: str) -> tuple[Claim, dict[str, Any] | None]:
        self.claims.append(event_id)
        return self.answer

    def claim_many(self, claims: dict[str, str]) -> set[str]:
        self.claims.extend(claims)
        return set(claims) - self.taken_by_others

    def extend(self, event_id: str) -> None:
        self.extended.append(event_id)

    def release(self, event_id: str) -> None:
        self.released.append(event_id)

    def complete_many(self, completions: list[tuple[str, list[str]]]) -> None:
        if self.fail_completion:
            raise RuntimeError("DynamoDB away")
        self.completed.extend(completions)


def _idempotency(records: FakeRecords) -> Idempotency:
    mw = Idempotency(dynamodb=None, stage="supervisor")
    mw.records = records  # type: ignore[assignment]
    return mw


def test_a_claimed_event_runs_and_its_claim_completes_with_the_incidents_it_touched() -> None:
    records = FakeRecords()
    mw = _idempotency(records)
    d = _delivery(_event("inc-1"))
    assert mw.before_process(d) is None  # the handler runs
    d.touched.add("inc-2")
    mw.on_heartbeat([d])
    assert records.extended == [d.event.event_id]  # type: ignore[union-attr]
    assert mw.after_process(d, Ack()) == Ack()
    assert mw.before_delete([d]) == [d]
    assert records.completed == [(d.event.event_id, ["inc-1", "inc-2"])]  # type: ignore[union-attr]


def test_a_batch_is_claimed_in_one_write_and_a_claim_it_could_not_take_is_tried_alone() -> None:
    records = FakeRecords(Claim.COMPLETED, {"incident_ids": []})
    mw = _idempotency(records)
    batch = [_delivery(_event(f"inc-{i}"), message_id=f"m{i}") for i in range(3)]
    records.taken_by_others = {batch[2].event.event_id}  # type: ignore[union-attr]
    mw.before_batch(batch)
    assert len(records.claims) == 3  # one claim_many of three
    assert mw.before_process(batch[0]) is None and mw.before_process(batch[1]) is None
    # The third was handled before: its own claim finds that out, and it is acknowledged.
    outcome = mw.before_process(batch[2])
    assert isinstance(outcome, Ack) and "duplicate" in outcome.note
    assert records.claims[3:] == [batch[2].event.event_id]  # type: ignore[union-attr]
    mw.on_heartbeat(batch)  # the early claims are kept alive like any other
    assert records.extended == [d.event.event_id for d in batch[:2]]  # type: ignore[union-attr]
    assert mw.before_delete(batch[:2]) == batch[:2]
    assert [c[0] for c in records.completed] == [d.event.event_id for d in batch[:2]]  # type: ignore[union-attr]


def test_a_completed_event_is_acknowledged_and_its_incidents_left_for_the_outbox() -> None:
    d = _delivery(_event("inc-1"))
    mw = _idempotency(FakeRecords(Claim.COMPLETED, {"incident_ids": ["inc-9"]}))
    outcome = mw.before_process(d)
    assert isinstance(outcome, Ack) and "duplicate" in outcome.note
    assert d.touched == {"inc-1", "inc-9"}


def test_a_busy_claim_hands_its_own_message_back_and_acknowledges_a_copy() -> None:
    own = _idempotency(FakeRecords(Claim.BUSY, {"message_id": "m1"}))
    outcome = own.before_process(_delivery(_event()))
    assert isinstance(outcome, Retry) and not outcome.failed and outcome.after_s >= 1
    other = _idempotency(FakeRecords(Claim.BUSY, {"message_id": "another"}))
    assert isinstance(other.before_process(_delivery(_event())), Ack)


def test_a_failed_handler_releases_its_claim_and_a_failed_completion_keeps_the_message() -> None:
    records = FakeRecords()
    mw = _idempotency(records)
    failed = _delivery(_event(), message_id="m1")
    mw.before_process(failed)
    mw.after_process(failed, Retry("boom", "RuntimeError"))
    assert records.released == [failed.event.event_id]  # type: ignore[union-attr]
    done = _delivery(_event(), message_id="m2")
    mw.before_process(done)
    mw.after_process(done, Ack())
    records.fail_completion = True
    assert mw.before_delete([done]) == []  # not deleted: it comes back as a duplicate


def test_an_unreadable_message_is_not_claimed() -> None:
    records = FakeRecords()
    assert _idempotency(records).before_process(_delivery(None)) is None
    assert records.completed == [] and records.released == []


def test_events_the_handler_makes_once_itself_are_neither_claimed_nor_completed() -> None:
    records = FakeRecords()
    mw = Idempotency(
        dynamodb=None,
        stage="supervisor",
        deduplicated=lambda event: event.event_type == EventType.ALERT_ALARM,
    )
    mw.records = records  # type: ignore[assignment]
    alerts = [_delivery(_event(None, EventType.ALERT_ALARM), message_id=f"a{i}") for i in range(3)]
    opened = [_delivery(_event("inc-1"), message_id=f"o{i}") for i in range(2)]
    mw.before_batch([*alerts, *opened])
    assert records.claims == [d.event.event_id for d in opened]  # type: ignore[union-attr]
    for d in [*alerts, *opened]:
        assert mw.before_process(d) is None  # every handler runs
        mw.after_process(d, Ack())
    mw.on_heartbeat([*alerts, *opened])
    assert records.extended == [d.event.event_id for d in opened]  # type: ignore[union-attr]
    assert mw.before_delete([*alerts, *opened]) == [*alerts, *opened]
    assert [c[0] for c in records.completed] == [d.event.event_id for d in opened]  # type: ignore[union-attr]


def _alarm_event(state: str) -> EventEnvelope:
    return new_event(EventType.ALERT_ALARM, "test", {"AlarmName": "a", "NewStateValue": state})


def test_the_supervisor_leaves_claims_only_for_alerts_its_intake_marks_itself() -> None:
    marked = deduplicated_by(supervisor.handle)
    assert marked(_alarm_event("ALARM"))
    assert marked(new_event(EventType.ALERT_FAILURE_REPORT, "test", {}))
    # An alarm back to OK leaves a marker only if an incident is open to note it on: it is
    # claimed, so it leaves a record either way.
    assert not marked(_alarm_event("OK"))
    assert not marked(_event("inc-1"))  # an incident's own events are claimed
    unmarked = deduplicated_by(intake.handle_alert)
    assert not unmarked(_alarm_event("ALARM"))  # unmarked: claimed


# ---------------------------------------------------------------- outbox


class FakeOutboxStore:
    def __init__(self, pending: dict[str, list[EventEnvelope]]):
        self.pending = pending
        self.cleared: list[tuple[str, str]] = []

    def pending_events(self, incident_id: str) -> list[tuple[str, EventEnvelope]]:
        return [(f"outbox#{i}", e) for i, e in enumerate(self.pending.get(incident_id, []))]

    def lease_event(self, incident_id: str, item: str, lease_s: float) -> bool:
        return True

    def clear_event(self, incident_id: str, item: str) -> None:
        self.cleared.append((incident_id, item))


class FakePublisher:
    def __init__(self, fail: bool = False):
        self.sent: list[tuple[str, Topic]] = []
        self.fail = fail

    def publish(self, event: EventEnvelope, topic: Topic = Topic.EVENTS) -> str:
        if self.fail:
            raise ConnectionError("SNS away")
        self.sent.append((event.event_type.value, topic))
        return "id"


def test_the_outbox_of_every_announcing_incident_is_published_paged_events_twice() -> None:
    store = FakeOutboxStore(
        {
            "inc-1": [_event("inc-1", EventType.DIAGNOSED)],
            "inc-2": [_event("inc-2", EventType.ESCALATED)],
        }
    )
    publisher = FakePublisher()
    mw = Outbox(store, publisher)  # type: ignore[arg-type]
    d = _delivery(_event("inc-1"))
    d.announced.update({"inc-1", "inc-2"})
    assert mw.after_process(d, Ack()) == Ack()
    assert publisher.sent == [
        ("incident.diagnosed", Topic.EVENTS),
        ("incident.escalated", Topic.EVENTS),
        ("incident.escalated", Topic.APPROVALS),
    ]
    assert len(store.cleared) == 2
    # A failed handler publishes nothing: its transaction did not commit.
    assert mw.after_process(d, Retry("x", "E")) == Retry("x", "E")
    assert len(publisher.sent) == 3


def test_a_first_delivery_that_announced_nothing_reads_no_outbox_a_redelivery_reads_all() -> None:
    left = {"inc-1": [_event("inc-1", EventType.DIAGNOSED)]}  # left by a delivery that died
    publisher = FakePublisher()
    mw = Outbox(FakeOutboxStore(left), publisher)  # type: ignore[arg-type]
    first = _delivery(_event("inc-1"))  # touched (its own incident), announced nothing
    assert mw.after_process(first, Ack()) == Ack()
    assert publisher.sent == []
    again = _delivery(_event("inc-1"), receives=2)
    assert mw.after_process(again, Ack()) == Ack()
    assert publisher.sent == [("incident.diagnosed", Topic.EVENTS)]


def test_an_outbox_that_cannot_be_published_turns_success_into_a_retry() -> None:
    store = FakeOutboxStore({"inc-1": [_event("inc-1", EventType.DIAGNOSED)]})
    mw = Outbox(store, FakePublisher(fail=True))  # type: ignore[arg-type]
    d = _delivery(_event("inc-1"))
    d.announced.add("inc-1")
    outcome = mw.after_process(d, Ack())
    assert isinstance(outcome, Retry) and outcome.failed and "SNS away" in outcome.reason
    assert store.cleared == []  # still there for the retry


# ---------------------------------------------------------------- failure records


class FakeFailureLog:
    def __init__(self, fail: bool = False):
        self.records: list[dict[str, Any]] = []
        self.fail = fail

    def record(self, message_id: str, *args: Any, **kwargs: Any) -> None:
        if self.fail:
            raise RuntimeError("DynamoDB away")
        self.records.append({"message_id": message_id, "args": args, **kwargs})

    def note_outcome(self, dead_letter_id: str, outcome: str, detail: str, as_message: str) -> None:
        self.records.append({"noted": dead_letter_id, "outcome": outcome, "as": as_message})


def test_failures_are_recorded_by_the_id_the_dlq_will_show() -> None:
    log = FakeFailureLog()
    mw = FailureRecords(log)  # type: ignore[arg-type]
    retried = _delivery(_event(), receives=2)
    retried.outcome = Retry("RuntimeError: boom", "RuntimeError")
    mw.after_settle(retried)
    last = _delivery(_event(), receives=5, message_id="m5")
    last.outcome = Retry("RuntimeError: boom", "RuntimeError")
    mw.after_settle(last)
    dead = _delivery(None, message_id="m9")
    dead.outcome, dead.dlq_message_id = DeadLetter("not JSON", "BadMessage"), "dlq-1"
    mw.after_settle(dead)
    handed_back = _delivery(_event(), message_id="m7")
    handed_back.outcome = Retry("still claimed", "ClaimBusy", after_s=1, failed=False)
    mw.after_settle(handed_back)
    assert [(r["message_id"], r["dead_lettered"]) for r in log.records] == [
        ("m1", False),
        ("m5", True),
        ("dlq-1", True),
    ]
    assert log.records[2]["original_message_id"] == "m9"
    # A log that cannot be written is logged, not raised: the message is settled anyway.
    FailureRecords(FakeFailureLog(fail=True)).after_settle(retried)  # type: ignore[arg-type]


def test_a_redriven_message_notes_what_became_of_it_on_its_dead_letter() -> None:
    log = FakeFailureLog()
    mw = FailureRecords(log, "supervisor-dlq")  # type: ignore[arg-type]

    def redriven(message_id: str, receives: int = 1) -> Delivery:
        d = _delivery(_event(), receives=receives, message_id=message_id)
        d.message_attributes[REDRIVE_OF] = {
            "DataType": "String",
            "StringValue": f"dead-{message_id}",
        }
        return d

    fixed = redriven("a")
    fixed.outcome = Ack()
    mw.after_settle(fixed)
    again = redriven("b", receives=2)
    again.outcome = Retry("KeyError: 'records'", "KeyError")
    mw.after_settle(again)
    poison = redriven("c", receives=5)
    poison.outcome = Retry("KeyError: 'records'", "KeyError")
    mw.after_settle(poison)
    noted = [(r["noted"], r["outcome"]) for r in log.records if "noted" in r]
    assert noted == [
        ("dead-a", "processed"),
        ("dead-b", "failed again"),
        ("dead-c", "dead-lettered again"),
    ]
    # The poison message's own record says where it came from, and lists it in its DLQ.
    (last,) = [r for r in log.records if r.get("message_id") == "c"]
    assert last["redrive_of"] == "dead-c" and last["dlq"] == "supervisor-dlq"
    assert last["dead_lettered"] is True


# ---------------------------------------------------------------- metrics


def test_metrics_count_a_batch_as_received_then_by_how_each_message_ended() -> None:
    mw = RuntimeMetrics("supervisor", cloudwatch=None, flush_s=60)
    batch = [
        _delivery(_event(), message_id=f"m{i}", receives=r) for i, r in enumerate([1, 1, 2, 5])
    ]
    mw.before_batch(batch)
    for d, outcome in zip(
        batch,
        [Ack(), DeadLetter("bad", "BadMessage"), Retry("x", "E"), Retry("x", "E")],
        strict=True,
    ):
        d.outcome = outcome
    mw.after_batch(batch)
    counts, durations = mw.counters.drain()
    assert counts == {
        "Received": 4,
        "Succeeded": 1,
        "Retried": 1,
        "DeadLettered": 2,
        "AwsRequests": 0,  # counted at each flush, as what AWS bills of them is
        "SqsRequests": 0,
        "SnsRequests": 0,
        "DynamoDBWriteUnits": 0,
        "DynamoDBReadUnits": 0,
    }
    assert len(durations) == 4


def test_a_flush_reports_the_aws_requests_sent_since_the_last_one_and_what_aws_bills() -> None:
    sent: list[dict[str, Any]] = []

    class Cloudwatch:
        def put_metric_data(self, **kwargs: Any) -> None:
            sent.append(kwargs)

    mw = RuntimeMetrics("supervisor", cloudwatch=Cloudwatch(), flush_s=60)
    for _ in range(3):
        REQUESTS.on_request_created("request-created.sqs.ReceiveMessage")
    REQUESTS.on_request_created("request-created.cloudwatch.PutMetricData")  # its own report
    REQUESTS.on_request_created("request-created.dynamodb.TransactWriteItems")
    transaction = {"TransactItems": [{"Update": {"Key": {}}}] * 3}
    UNITS.on_parameters(transaction, SimpleNamespace(name="TransactWriteItems"))
    mw.flush()
    mw.flush()  # nothing sent since the first: nothing to report
    (report,) = sent
    assert {m["MetricName"]: m["Value"] for m in report["MetricData"]} == {
        "AwsRequests": 4,
        "SqsRequests": 3,
        "DynamoDBWriteUnits": 6,  # two a transaction's item
    }


# ---------------------------------------------------------------- the loop


class FakeSQS:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Callable[..., dict[str, Any]]:
        def call(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((operation, kwargs))
            if operation == "send_message":
                return {"MessageId": "dlq-copy"}
            return {}

        return call

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [kwargs for op, kwargs in self.calls if op == operation]


class Recorder(Middleware):
    def __init__(self, name: str, trail: list[str], decide: Outcome | None = None):
        self.name, self.trail, self.decide = name, trail, decide

    def before_batch(self, batch: list[Delivery]) -> None:
        self.trail.append(f"{self.name}.before_batch:{len(batch)}")

    def before_process(self, delivery: Delivery) -> Outcome | None:
        self.trail.append(f"{self.name}.before_process")
        return self.decide

    def after_process(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        self.trail.append(f"{self.name}.after_process:{type(outcome).__name__}")
        return outcome

    def after_settle(self, delivery: Delivery) -> None:
        self.trail.append(f"{self.name}.after_settle")

    def after_batch(self, batch: list[Delivery]) -> None:
        self.trail.append(f"{self.name}.after_batch")


class InlinePool:
    """Runs submitted work at once, so one test sees a whole batch go through."""

    def submit(self, fn: Callable[..., None], *args: Any) -> Future[None]:
        fn(*args)
        done: Future[None] = Future()
        done.set_result(None)
        return done


def _consumer(
    handler: Callable[[EventEnvelope, Delivery], None], middleware: list[Middleware]
) -> tuple[Consumer, FakeSQS]:
    settings = Settings(worker_concurrency=4)
    sqs = FakeSQS()
    consumer = Consumer(
        build_topology(settings).queue(Stage.SUPERVISOR), handler, settings, sqs, middleware
    )
    consumer.url, consumer.dlq_url = "queue-url", "dlq-url"
    return consumer, sqs


def _run(consumer: Consumer, messages: list[dict[str, Any]]) -> None:
    for _ in messages:
        consumer.slots.acquire()
    consumer._start_batch(messages, InlinePool())  # type: ignore[arg-type]
    consumer._flush_deletes()


def test_hooks_wrap_the_handler_before_in_order_after_in_reverse() -> None:
    trail: list[str] = []
    handled: list[str] = []
    consumer, sqs = _consumer(
        lambda event, d: handled.append(event.event_id),
        [Recorder("outer", trail), Recorder("inner", trail)],
    )
    _run(consumer, [_message(_event())])
    assert trail == [
        "outer.before_batch:1",
        "inner.before_batch:1",
        "outer.before_process",
        "inner.before_process",
        "inner.after_process:Ack",
        "outer.after_process:Ack",
        "inner.after_settle",
        "outer.after_settle",
        "inner.after_batch",
        "outer.after_batch",
    ]
    assert len(handled) == 1
    assert [e["ReceiptHandle"] for e in sqs.named("delete_message_batch")[0]["Entries"]] == [
        "rh-m1"
    ]


def test_an_outcome_decided_before_the_handler_skips_it_and_later_middleware() -> None:
    trail: list[str] = []
    handled: list[str] = []
    consumer, _ = _consumer(
        lambda event, d: handled.append(event.event_id),
        [Recorder("outer", trail, decide=Ack("duplicate")), Recorder("inner", trail)],
    )
    _run(consumer, [_message(_event())])
    assert handled == []
    assert "inner.before_process" not in trail
    assert "inner.after_process:Ack" in trail  # every after hook still sees the outcome


def _raises(exc: Exception) -> Callable[[EventEnvelope, Delivery], None]:
    def handler(event: EventEnvelope, delivery: Delivery) -> None:
        raise exc

    return handler


def test_a_failure_goes_back_with_a_backoff_and_on_its_last_receive_at_once() -> None:
    consumer, sqs = _consumer(_raises(RuntimeError("boom")), [])
    _run(consumer, [_message(_event(), "m1", receives=1), _message(_event(), "m2", receives=5)])
    visibility = {
        c["ReceiptHandle"]: c["VisibilityTimeout"] for c in sqs.named("change_message_visibility")
    }
    assert visibility["rh-m2"] == 0  # the redrive policy dead-letters it at its next receive
    assert 0 <= visibility["rh-m1"] <= consumer.settings.retry_backoff_max_s
    assert sqs.named("delete_message_batch") == []


def test_a_dependency_away_waits_at_least_as_long_as_it_asked() -> None:
    consumer, sqs = _consumer(_raises(RetryLater("MCP away", after_s=15)), [])
    _run(consumer, [_message(_event())])
    assert sqs.named("change_message_visibility")[0]["VisibilityTimeout"] >= 15


@pytest.mark.parametrize(
    ("message", "handler", "reason"),
    [
        (_message(None), lambda e, d: None, "body is not JSON"),
        (_message(_event()), _raises(NonRetryableError("no such incident")), "no such incident"),
    ],
)
def test_what_can_never_succeed_is_copied_to_the_dlq_with_its_reason_and_deleted(
    message: dict[str, Any], handler: Callable[[EventEnvelope, Delivery], None], reason: str
) -> None:
    consumer, sqs = _consumer(handler, [])
    _run(consumer, [message])
    (copy,) = sqs.named("send_message")
    assert copy["QueueUrl"] == "dlq-url" and copy["MessageBody"] == message["Body"]
    attributes = copy["MessageAttributes"]
    assert set(FAILURE_ATTRIBUTES) <= set(attributes)
    assert reason in attributes["fleet.failure_reason"]["StringValue"]
    assert attributes["trace"]["StringValue"] == "t-1"  # the message's own attributes kept
    deleted = sqs.named("delete_message_batch")[0]["Entries"]
    assert [e["ReceiptHandle"] for e in deleted] == [message["ReceiptHandle"]]


def test_a_message_is_settled_once_however_late_its_handler_finishes() -> None:
    consumer, sqs = _consumer(lambda e, d: None, [])
    d = _delivery(_event())
    consumer.inflight[d.message_id] = d
    consumer.settle(d, Retry("the worker is stopping", "Shutdown", failed=False))
    consumer.settle(d, Ack())  # the handler finished after its message went back
    assert sqs.named("change_message_visibility")[0]["VisibilityTimeout"] == 0
    consumer._flush_deletes()
    assert sqs.named("delete_message_batch") == []


class SlowAfterSettle(Middleware):
    """A hook that is still at work after its message's outcome was set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.finished: list[str] = []

    def after_settle(self, delivery: Delivery) -> None:
        self.entered.set()
        time.sleep(0.3)  # slow work in the hook, e.g. a metrics or failure-record write
        self.finished.append(delivery.message_id)


def test_shutdown_waits_for_a_finished_message_to_be_queued_for_delete_and_its_hooks() -> None:
    slow = SlowAfterSettle()
    consumer, sqs = _consumer(lambda e, d: None, [slow])
    consumer.slots.acquire()
    with ThreadPoolExecutor(1) as pool:
        consumer._start_batch([_message(_event())], pool)
        assert slow.entered.wait(5)  # the outcome is set; the message is not done with yet
        consumer._drain(time.monotonic() + 10)
        # What run() does next: the last delete flush, then the shutdown hooks.
        assert slow.finished == ["m1"]
        consumer._flush_deletes()
    assert [e["ReceiptHandle"] for e in sqs.named("delete_message_batch")[0]["Entries"]] == [
        "rh-m1"
    ]


def test_a_task_group_failure_is_retried_with_what_failed_inside_it() -> None:
    inner = ExceptionGroup("tasks", [ConnectionResetError("peer gone")])
    failure = ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("bad"), inner])
    retry = outcome_of(failure)
    assert isinstance(retry, Retry)
    assert "ValueError: bad" in retry.reason
    assert "ConnectionResetError: peer gone" in retry.reason


class SlowDeleteSQS(FakeSQS):
    """A queue holding one batch, whose deletes take a while to answer."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        super().__init__()
        self.waiting = messages
        self.deleting = threading.Event()
        self.deleted: list[str] = []

    def get_queue_url(self, QueueName: str) -> dict[str, Any]:
        return {"QueueUrl": f"url-{QueueName}"}

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {"VisibilityTimeout": "30"}}

    def receive_message(self, **_: Any) -> dict[str, Any]:
        if self.waiting:
            batch, self.waiting = self.waiting, []
            return {"Messages": batch}
        time.sleep(0.05)  # a short long poll
        return {}

    def delete_message_batch(self, Entries: list[dict[str, str]], **_: Any) -> dict[str, Any]:
        self.deleting.set()
        time.sleep(0.3)
        self.deleted.extend(e["ReceiptHandle"] for e in Entries)
        return {}


def test_a_stopping_worker_waits_for_the_delete_its_deleter_has_in_flight() -> None:
    settings = Settings(worker_concurrency=4)
    sqs = SlowDeleteSQS([_message(_event())])
    consumer = Consumer(
        build_topology(settings).queue(Stage.SUPERVISOR), lambda e, d: None, settings, sqs, []
    )
    runner = threading.Thread(target=consumer.run)
    runner.start()
    assert sqs.deleting.wait(10)  # the deleter took the batch and is sending it
    consumer.stopping.set()
    runner.join(30)
    assert not runner.is_alive()
    assert sqs.deleted == ["rh-m1"]  # done before run() returned, not cut off at exit
