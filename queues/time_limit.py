"""A bound on how long one message may be in a worker's hands, in the manner of Dramatiq's
TimeLimit middleware.

Without it, a handler that hangs keeps its message forever: the heartbeat goes on
extending its visibility (and its idempotency claim). Past the stage's limit the message is
handed back as a failure (`TimeLimitExceeded`): its heartbeat stops, it counts toward the
queue's redrive policy like any failure (maxReceiveCount then moves it to the DLQ), and the
failure-records middleware records it as any other.

Dramatiq then raises an exception in the handler's thread. Not here: an exception raised
into a thread can land anywhere (inside a lock, halfway through a write), and it never
reaches a thread blocked in C, in a socket read or an `Event.wait()`, which is how a
handler hangs. So the thread is left running and its slot is written off: the worker takes
fewer messages at once until it returns, if ever. With too many slots written off the
worker stops (hands back what it holds, as on SIGTERM) and exits non-zero, to be started
again by what runs it (`fleet up`'s watch loop here, ECS on AWS) with fresh threads and
connections.

The check runs at each heartbeat (every visibility/3 seconds: 20 s at the default 60 s
visibility), so a message may overrun its limit by up to one heartbeat: little against a
limit of minutes, and the heartbeat is when its visibility would otherwise be extended.
"""

from __future__ import annotations

import threading
import time

import structlog

from queues.delivery import Delivery
from queues.middleware import Middleware, Runtime
from queues.outcomes import Outcome, Retry

log = structlog.get_logger()

ERROR_CLASS = "TimeLimitExceeded"
# EX_TEMPFAIL: a temporary failure that a restart is expected to clear.
STUCK_EXIT_CODE = 75
# A handed-back message comes back when it would had this worker died (its visibility: three
# heartbeats), by when its idempotency claim, no longer extended, has lapsed (two
# heartbeats, queues/idempotency.py): its redelivery is not turned away as busy.
HAND_BACK_HEARTBEATS = 3


class TimeLimit(Middleware):
    def __init__(
        self,
        stage: str,
        limit_s: float,
        stuck_slots_limit: int,
        expected_longest_s: float | None = None,
    ):
        self.stage = stage
        self.limit_s = limit_s
        self.stuck_slots_limit = stuck_slots_limit
        # The stage's longest legitimate run (queues/topology.py `handler_deadline_s`): a
        # limit below it cuts such runs short, which is said once at boot.
        self.expected_longest_s = expected_longest_s
        self.runtime: Runtime | None = None
        self.lock = threading.Lock()
        # Messages handed back while their handler still runs, by id(): each holds a slot.
        self.stuck: dict[int, Delivery] = {}
        self.stopping = False

    def on_boot(self, runtime: Runtime) -> None:
        self.runtime = runtime
        if self.expected_longest_s is not None and self.limit_s < self.expected_longest_s:
            log.warning(
                "the time limit is shorter than the stage's longest legitimate run: such runs "
                "will be handed back and retried",
                stage=self.stage,
                limit_s=self.limit_s,
                longest_run_s=self.expected_longest_s,
            )

    def on_heartbeat(self, busy: list[Delivery]) -> None:
        now = time.monotonic()
        for delivery in busy:
            # From its receipt: every middleware's work for it counts, not only the handler's.
            running_s = now - delivery.started
            if running_s > self.limit_s and not delivery.settled:
                self._hand_back(delivery, running_s)

    def _hand_back(self, delivery: Delivery, running_s: float) -> None:
        runtime = self._runtime()
        outcome = Retry(
            f"{self.stage}: the handler ran past its time limit of {self.limit_s:g} s "
            f"(running {running_s:.1f} s); handed back, its thread left running",
            ERROR_CLASS,
            after_s=HAND_BACK_HEARTBEATS * runtime.heartbeat_s,
        )
        # Counted before it is settled: the handler may return at any moment after, and its
        # `after_process` takes it off again.
        with self.lock:
            self.stuck[id(delivery)] = delivery
        if not runtime.abandon(delivery, outcome):
            with self.lock:  # its handler finished first: nothing is stuck
                self.stuck.pop(id(delivery), None)
            return
        with self.lock:
            stuck = len(self.stuck)
            # Still stuck once settled: the handler did not return in between.
            still = id(delivery) in self.stuck
            give_up = still and stuck >= self.stuck_slots_limit and not self.stopping
            self.stopping = self.stopping or give_up
        event = delivery.event
        log.error(
            "time limit exceeded: message handed back, its slot written off until its "
            "handler returns",
            stage=self.stage,
            message_id=delivery.message_id,
            event_id=event.event_id if event else None,
            event_type=event.event_type.value if event else None,
            incident_id=event.incident_id if event else None,
            receive_count=delivery.receive_count,
            running_s=round(running_s, 1),
            limit_s=self.limit_s,
            stuck_slots=stuck,
            stuck_slots_limit=self.stuck_slots_limit,
        )
        if give_up:
            runtime.stop(
                STUCK_EXIT_CODE,
                f"{stuck} of this worker's slots are stuck past the time limit "
                f"({self.limit_s:g} s): handing back what it holds and exiting to be restarted",
            )

    def after_process(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        with self.lock:
            returned = self.stuck.pop(id(delivery), None)
        if returned is not None:
            # Its outcome changes nothing (the message was settled when handed back).
            log.warning(
                "a handler past its time limit returned; its slot is free again",
                stage=self.stage,
                message_id=delivery.message_id,
                ran_s=round(time.monotonic() - delivery.started, 1),
                outcome=type(outcome).__name__,
            )
        return outcome

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the time-limit middleware was not booted")
        return self.runtime
