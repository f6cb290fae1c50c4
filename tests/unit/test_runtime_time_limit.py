"""The time limit (queues/time_limit.py) with the real consumer on an in-memory SQS
(tests/unit/stub_sqs.py): handlers hung in `Event.wait()`, which nothing but the event
returns from, as a thread blocked in a socket read."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from core.settings import WORKER_STAGES, InvalidSettings, Settings, get_settings
from queues import time_limit
from queues.consumer import Consumer
from queues.delivery import Delivery
from queues.events import EventEnvelope, new_event
from queues.failures import FailureRecords
from queues.idempotency import Claim, Idempotency
from queues.middleware import Middleware, Runtime
from queues.time_limit import ERROR_CLASS, STUCK_EXIT_CODE, TimeLimit
from queues.topology import EventType, Stage, build_topology
from tests.unit.stub_sqs import StubSQS

STAGE = Stage.CRITIC
QUEUE, DLQ = STAGE.value, f"{STAGE.value}-dlq"
# A one-second visibility: a heartbeat every 0.5 s (the consumer's shortest), so each check
# of the limit comes half a second after the last.
VISIBILITY_S = 1


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Gates:
    """The handler: each message waits on the event its payload names (`gate`); a test sets
    it when that handler may return. Every start and return is noted."""

    events: dict[str, threading.Event] = field(default_factory=dict)
    started: list[tuple[str, int]] = field(default_factory=list)  # (gate, receive count)
    returned: list[str] = field(default_factory=list)
    running: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def handler(self, event: EventEnvelope, delivery: Delivery) -> None:
        name = str(event.payload["gate"])
        with self.lock:
            self.started.append((name, delivery.receive_count))
            self.running += 1
        try:
            if event.payload.get("first_receive_only") and delivery.receive_count > 1:
                return
            self.gate(name).wait()
            with self.lock:
                self.returned.append(name)
        finally:
            with self.lock:
                self.running -= 1

    def starts(self, name: str) -> list[int]:
        with self.lock:
            return [count for gate, count in self.started if gate == name]

    def idle(self) -> bool:
        with self.lock:
            return self.running == 0

    def release_all(self) -> None:
        with self.lock:
            events = list(self.events.values())
        for event in events:
            event.set()


class FailureLogInMemory:
    """FailureRecords' log, kept in a list."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(
        self,
        message_id: str,
        queue: str,
        stage: str,
        reason: str,
        error_class: str,
        receive_count: int,
        dead_lettered: bool,
        **_: Any,
    ) -> None:
        self.records.append(
            {
                "message_id": message_id,
                "reason": reason,
                "error_class": error_class,
                "receive_count": receive_count,
                "dead_lettered": dead_lettered,
            }
        )

    def of(self, message_id: str) -> list[dict[str, Any]]:
        return [r for r in list(self.records) if r["message_id"] == message_id]


@dataclass
class Worker:
    consumer: Consumer
    sqs: StubSQS
    gates: Gates
    failures: FailureLogInMemory
    logs: LogCapture
    exit_codes: list[int] = field(default_factory=list)

    def send(self, gate: str, **payload: Any) -> str:
        event = new_event(EventType.PROPOSED, "test", {"gate": gate, **payload})
        return self.sqs.send(QUEUE, event.model_dump_json())

    def hand_backs(self, message_id: str) -> list[dict[str, Any]]:
        return [
            dict(e)
            for e in self.logs.entries
            if e["event"].startswith("time limit exceeded") and e["message_id"] == message_id
        ]

    def returned(self, timeout_s: float = 10.0) -> int:
        wait_until(lambda: self.exit_codes, "the worker to stop", timeout_s)
        return self.exit_codes[0]


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Worker]]:
    """A consumer running on a stub queue with the time limit and failure records (and any
    middleware given), in a thread; at the end its hung handlers are let go and it stops."""
    started: list[tuple[Worker, threading.Thread]] = []
    # The time limit's log lines, captured whatever structlog was configured with before.
    logs = LogCapture()

    def start(middleware: tuple[Middleware, ...] = (), **overrides: Any) -> Worker:
        settings = Settings(
            **{
                "queue_visibility_timeout_s": VISIBILITY_S,
                "queue_max_receive_count": 2,
                "worker_wait_time_s": 1,
                "retry_backoff_base_s": 0,
                "worker_grace_s": 0.2,
                **overrides,
            }
        )
        queue = build_topology(settings).queue(STAGE)
        sqs = StubSQS()
        sqs.create_queue(DLQ, VISIBILITY_S)
        sqs.create_queue(QUEUE, VISIBILITY_S, queue.max_receive_count, dlq=DLQ)
        gates, failures = Gates(), FailureLogInMemory()
        limit = TimeLimit(
            STAGE.value, settings.worker_time_limit_for(STAGE.value), settings.stuck_slots_limit
        )
        records = FailureRecords(failures)  # type: ignore[arg-type]
        consumer = Consumer(queue, gates.handler, settings, sqs, [limit, records, *middleware])
        worker = Worker(consumer, sqs, gates, failures, logs)
        thread = threading.Thread(target=lambda: worker.exit_codes.append(consumer.run()))
        started.append((worker, thread))
        thread.start()
        return worker

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time_limit, "log", structlog.wrap_logger(None, processors=[logs]))
        try:
            yield start
        finally:
            for worker, thread in started:
                worker.gates.release_all()
                worker.consumer.stopping.set()
                thread.join(10)
                assert not thread.is_alive(), "the consumer did not stop"
                # No handler thread outlives its test (the pool does not wait for them).
                wait_until(worker.gates.idle, "every handler to return")


# ---------------------------------------------------------------------------------------


def test_a_hung_handler_is_handed_back_with_its_reason_and_its_receives_end_in_the_dlq(
    start_worker: Callable[..., Worker],
) -> None:
    # Three slots, and the worker gives up only with all three stuck: two hung receives
    # leave it running.
    worker = start_worker(worker_concurrency=3, worker_time_limit_s=0.5, worker_stuck_slots_limit=3)
    message_id = worker.send("hang")

    wait_until(
        lambda: [m.message_id for m in worker.sqs.messages(DLQ)] == [message_id],
        "the hung message to reach the DLQ",
    )
    assert worker.sqs.messages(QUEUE) == []
    assert worker.gates.starts("hang") == [1, 2]  # maxReceiveCount (2) tries, then the DLQ
    records = worker.failures.of(message_id)
    assert [(r["receive_count"], r["dead_lettered"]) for r in records] == [(1, False), (2, True)]
    for record in records:
        assert record["error_class"] == ERROR_CLASS
        assert "critic" in record["reason"] and "time limit of 0.5 s" in record["reason"]
    # Said once per receive however many heartbeats its thread stays stuck, with what an
    # operator needs to find it.
    logged = worker.hand_backs(message_id)
    assert [e["receive_count"] for e in logged] == [1, 2]
    for entry in logged:
        assert entry["stage"] == "critic" and entry["event_id"] and entry["running_s"] >= 0.5
    assert not worker.consumer.stopping.is_set()  # two of three slots stuck: still consuming


def test_a_stuck_slot_takes_no_more_messages_while_the_other_slots_keep_working(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(worker_concurrency=3, worker_time_limit_s=0.5, worker_stuck_slots_limit=3)
    hung = worker.send("hang")
    wait_until(lambda: worker.failures.of(hung), "the hung message to be handed back")
    written_off = time.monotonic()

    worker.gates.gate("quick").set()
    quick = [worker.send("quick") for _ in range(6)]
    wait_until(
        lambda: not {m.message_id for m in worker.sqs.messages(QUEUE)} & set(quick),
        "the other messages to be handled and deleted",
    )
    assert len(worker.gates.starts("quick")) == 6
    asked = [r.max_messages for r in worker.sqs.receives_since(QUEUE, written_off)]
    assert asked and max(asked) <= 2  # three slots, one written off


def test_too_many_stuck_slots_hand_back_what_the_worker_holds_and_it_exits_non_zero(
    start_worker: Callable[..., Worker],
) -> None:
    # Two slots: one stuck is half of them, the default limit.
    worker = start_worker(worker_concurrency=2, worker_time_limit_s=2.0)
    hung = worker.send("hang")
    wait_until(lambda: worker.gates.starts("hang"), "the hung handler to start")
    # A second message well after the first (three heartbeats: a check of the limit falls
    # between their expiries), still running when the first is handed back.
    wait_until(lambda: worker.sqs.heartbeats.get(hung, 0) >= 3, "three heartbeats")
    busy = worker.send("busy")
    wait_until(lambda: worker.gates.starts("busy"), "the second handler to start")

    assert worker.returned() == STUCK_EXIT_CODE
    assert [r["error_class"] for r in worker.failures.of(hung)] == [ERROR_CLASS]
    # The message still in progress went back at once, as at shutdown: no failure.
    wait_until(
        lambda: busy in {m.message_id for m in worker.sqs.visible(QUEUE)},
        "the unfinished message to be visible again",
    )
    assert worker.failures.of(busy) == []
    assert worker.sqs.deleted == []


def test_a_handler_that_finishes_within_its_limit_is_not_affected(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(worker_concurrency=2, worker_time_limit_s=3.0)
    message_id = worker.send("work")
    # It works through a heartbeat (its message kept alive), then returns.
    wait_until(lambda: worker.sqs.heartbeats.get(message_id, 0) >= 1, "a heartbeat")
    worker.gates.gate("work").set()
    wait_until(lambda: not worker.sqs.messages(QUEUE), "the message to be deleted")

    assert worker.gates.starts("work") == [1] and worker.gates.returned == ["work"]
    assert worker.failures.records == [] and worker.hand_backs(message_id) == []
    worker.consumer.stopping.set()
    assert worker.returned() == 0


def test_a_handler_that_returns_after_its_message_was_handed_back_changes_nothing(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(worker_concurrency=3, worker_time_limit_s=0.5)
    message_id = worker.send("late", first_receive_only=True)
    wait_until(lambda: worker.failures.of(message_id), "the message to be handed back")

    worker.gates.gate("late").set()  # the first run returns, well past its limit
    wait_until(lambda: worker.gates.returned == ["late"], "the late handler to return")
    # Its success deleted nothing: the message came back and was handled on its second
    # receive, the one whose handle the delete names.
    wait_until(lambda: not worker.sqs.messages(QUEUE), "the message to be handled again")
    assert worker.gates.starts("late") == [1, 2]
    assert worker.sqs.deleted == [f"{message_id}#2"]
    assert [r["error_class"] for r in worker.failures.of(message_id)] == [ERROR_CLASS]
    # And its slot is free again: the worker asks for all three at once.
    since = time.monotonic()
    wait_until(
        lambda: any(r.max_messages == 3 for r in worker.sqs.receives_since(QUEUE, since)),
        "a receive for every slot",
    )


class ExpiringClaims:
    """The idempotency records' claims as DynamoDB keeps them: an in-progress claim is free
    again once its expiry passes."""

    def __init__(self, in_progress_s: float) -> None:
        self.in_progress_s = in_progress_s
        self.expiry: dict[str, float] = {}
        self.completed: set[str] = set()
        self.busy_answers = 0

    def claim(self, event_id: str, message_id: str) -> tuple[Claim, dict[str, Any] | None]:
        if event_id in self.completed:
            return Claim.COMPLETED, {"incident_ids": []}
        if self.expiry.get(event_id, 0) > time.monotonic():
            self.busy_answers += 1
            return Claim.BUSY, {"message_id": message_id}
        self.expiry[event_id] = time.monotonic() + self.in_progress_s
        return Claim.CLAIMED, None

    def claim_many(self, claims: dict[str, str]) -> set[str]:
        return {e for e, m in claims.items() if self.claim(e, m)[0] == Claim.CLAIMED}

    def extend(self, event_id: str) -> None:
        self.expiry[event_id] = time.monotonic() + self.in_progress_s

    def release(self, event_id: str) -> None:
        self.expiry.pop(event_id, None)

    def complete_many(self, completions: list[tuple[str, list[str]]]) -> None:
        self.completed.update(event_id for event_id, _ in completions)


class IdempotencyWithExpiringClaims(Idempotency):
    def on_boot(self, runtime: Runtime) -> None:
        super().on_boot(runtime)
        self.records = ExpiringClaims(2 * runtime.heartbeat_s)  # type: ignore[assignment]


def test_a_handed_back_message_is_not_turned_away_by_its_own_claim(
    start_worker: Callable[..., Worker],
) -> None:
    claims = IdempotencyWithExpiringClaims(dynamodb=None, stage=STAGE.value)
    worker = start_worker(
        (claims,), worker_concurrency=3, worker_time_limit_s=0.5, queue_max_receive_count=3
    )
    message_id = worker.send("hang", first_receive_only=True)
    wait_until(lambda: not worker.sqs.messages(QUEUE), "the message to be handled")

    # Handled on its very next receive: the claim its hung first run held had lapsed (its
    # heartbeat stopped with the message's), so no receive was spent on "still claimed".
    assert worker.gates.starts("hang") == [1, 2]
    assert worker.sqs.deleted == [f"{message_id}#2"]
    records: ExpiringClaims = claims.records  # type: ignore[assignment]
    assert records.busy_answers == 0 and len(records.completed) == 1


# ---------------------------------------------------------------- settings


def test_the_limit_is_the_default_unless_the_stage_has_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEET_WORKER_TIME_LIMIT_S", "240")
    monkeypatch.setenv("FLEET_WORKER_STAGE_TIME_LIMITS_S", '{"watchdog": 60}')
    settings = Settings()
    assert settings.worker_time_limit_for("watchdog") == 60
    assert settings.worker_time_limit_for("resolver") == 240
    # `fleet up` hands it to the workers it starts as it was given.
    assert settings.explicit_environment()["FLEET_WORKER_STAGE_TIME_LIMITS_S"] == (
        '{"watchdog": 60.0}'
    )
    assert set(WORKER_STAGES) == {s.value for s in Stage}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"watchdgo": 60}', "no such stage: watchdgo"),
        ('{"watchdog": 0}', "[watchdog]=0 is not valid: expected a value greater than 0"),
        ("60", "expected a JSON object"),
    ],
)
def test_a_stage_limit_that_cannot_be_right_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("FLEET_WORKER_STAGE_TIME_LIMITS_S", value)
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettings) as refused:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "FLEET_WORKER_STAGE_TIME_LIMITS_S" in str(refused.value)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("concurrency", "configured", "limit"),
    [(1, None, 1), (2, None, 1), (4, None, 2), (5, None, 3), (4, 3, 3), (4, 10, 4)],
)
def test_a_worker_gives_up_at_half_its_slots_stuck_unless_told_otherwise(
    concurrency: int, configured: int | None, limit: int
) -> None:
    settings = Settings(worker_concurrency=concurrency, worker_stuck_slots_limit=configured)
    assert settings.stuck_slots_limit == limit
