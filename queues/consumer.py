"""The worker runtime's loop: receive, heartbeat, settle, shut down. Everything else is
middleware (queues/middleware.py).

A handler takes a typed event and returns (the message is acknowledged) or raises (see
queues/outcomes.py). Around it the middleware claims the event, publishes the outbox,
records failures, counts and binds log context. The consumer applies each message's final
outcome in one place (`settle`): acknowledged messages are deleted in batches, retried ones
go back with a backoff keyed on their receive count (the queue's redrive policy moves a
message to its DLQ after maxReceiveCount), and input that can never succeed is copied to
the DLQ at once with its reason.

The runtime's own requests (setup, polls, heartbeats, deletes, bookkeeping for a whole
batch) make no trace spans: each of its threads starts untraced, and only a message's own
span (queues/tracing.py) traces the work done for it.

Shutdown (SIGTERM/SIGINT): stop receiving, let in-flight handlers finish within the grace
period, return the rest to the queue (visibility 0), exit 0. A second signal exits at once.
A middleware may stop the consumer the same way with another exit code (`stop`), and may
settle a message without waiting for a handler that will not return (`abandon`): the time
limit (queues/time_limit.py) does both.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from core.aws_retry import call, is_connection_lost
from core.errors import described
from core.settings import Settings
from core.tracing import untraced
from queues.delivery import Delivery
from queues.events import EventEnvelope
from queues.middleware import Middleware
from queues.outcomes import (
    MAX_VISIBILITY_S,
    Ack,
    DeadLetter,
    Outcome,
    Retry,
    backoff_s,
    outcome_of,
)
from queues.topology import StageQueue

log = structlog.get_logger()

# How long the poller waits for more free slots before receiving into fewer.
BATCH_GATHER_S = 0.02
# At shutdown, how long a delete request the deleter has in flight gets at least, even once
# the grace period is over (a delete lost here is a redelivery, deduplicated, not a loss).
DELETER_JOIN_S = 5.0
# Attributes the runtime puts on a message it dead-letters itself.
FAILURE_ATTRIBUTES = (
    "fleet.failure_reason",
    "fleet.error_class",
    "fleet.stage",
    "fleet.receive_count",
    "fleet.source_queue",
)

Handler = Callable[[EventEnvelope, Delivery], None]


class _Batch:
    """The messages of one receive, so `after_batch` runs once all of them are settled."""

    def __init__(self, deliveries: list[Delivery]):
        self.deliveries = deliveries
        self.unsettled = len(deliveries)


class Consumer:
    def __init__(
        self,
        queue: StageQueue,
        handler: Handler,
        settings: Settings,
        sqs: Any,
        middleware: Sequence[Middleware] = (),
    ):
        self.queue = queue
        self.stage = queue.stage.value
        self.handler = handler
        self.settings = settings
        self.sqs = sqs
        self.middleware = list(middleware)
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.inflight: dict[str, Delivery] = {}
        self.batch_of: dict[str, _Batch] = {}
        self.pending_deletes: list[Delivery] = []
        # Messages handed to the pool whose processing has not returned. A message's outcome
        # is set before its delete is queued and its hooks run, so shutdown waits on this,
        # not on `settled`: else the last delete flush can run before the delete is queued.
        self.processing = 0
        # Of those, the ones abandoned (settled without their handler, which may never
        # return), by id(): shutdown does not wait for them.
        self.written_off: dict[int, Delivery] = {}
        self.exit_code = 0
        self.slots = threading.Semaphore(settings.worker_concurrency)
        self.url = ""
        self.dlq_url = ""
        self.visibility_s = queue.visibility_timeout_s
        self.signals = 0

    # ------------------------------------------------------------------ lifecycle

    def setup(self) -> None:
        self.url = call(self.sqs.get_queue_url, QueueName=self.queue.name)["QueueUrl"]
        self.dlq_url = call(self.sqs.get_queue_url, QueueName=self.queue.dlq_name)["QueueUrl"]
        attrs = call(
            self.sqs.get_queue_attributes, QueueUrl=self.url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        self.visibility_s = int(attrs["VisibilityTimeout"])

    @property
    def heartbeat_s(self) -> float:
        return max(0.5, self.visibility_s / 3)

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            self.signals += 1
            if self.signals > 1:
                log.warning("second signal: exiting at once", stage=self.stage)
                os._exit(1)
            log.info(
                "stopping: no new messages; finishing in-flight work",
                stage=self.stage,
                grace_s=self.settings.worker_grace_s,
            )
            self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _setup_until_ready(self) -> bool:
        """Setup, retried while the endpoint is away (a worker may start before AWS answers)."""
        failures = 0
        while not self.stopping.is_set():
            try:
                self.setup()
                return True
            except Exception as exc:
                failures += 1
                pause = min(30.0, 0.5 * 2**failures)
                log.error(
                    "cannot start consuming; retrying",
                    stage=self.stage,
                    queue=self.queue.name,
                    error=str(exc)[:300],
                    retry_in_s=pause,
                )
                self.stopping.wait(pause)
        return False

    def run(self) -> int:
        """Consume until stopped; returns the exit code."""
        untraced()
        if not self._setup_until_ready():
            return 0
        for mw in self.middleware:
            mw.on_boot(self)
        log.info(
            "consuming",
            stage=self.stage,
            queue=self.queue.name,
            concurrency=self.settings.worker_concurrency,
            visibility_s=self.visibility_s,
        )
        pool = ThreadPoolExecutor(
            self.settings.worker_concurrency, thread_name_prefix=self.stage, initializer=untraced
        )
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        deleter = threading.Thread(target=self._delete_loop, name="deleter", daemon=True)
        deleter.start()
        poller = threading.Thread(target=self._poll_loop, args=(pool,), name="poller", daemon=True)
        poller.start()
        self.stopping.wait()
        deadline = time.monotonic() + self.settings.worker_grace_s
        self._drain(deadline)
        # A receive still in flight would hide what it gets until the visibility timeout:
        # let it finish (it hands anything it got straight back) if the grace period allows.
        poller.join(timeout=max(0.0, deadline - time.monotonic()))
        pool.shutdown(wait=False, cancel_futures=True)
        self.stopped.set()
        # The deleter may hold the last batch, taken before this flush could: a daemon
        # thread dies with the process, and its deletes with it.
        deleter.join(timeout=max(DELETER_JOIN_S, deadline - time.monotonic()))
        self._flush_deletes()
        for mw in reversed(self.middleware):
            self._hook(mw.on_shutdown)
        log.info("stopped", stage=self.stage, exit_code=self.exit_code)
        return self.exit_code

    def stop(self, exit_code: int, reason: str) -> None:
        """Stop as on SIGTERM, and have `run` return `exit_code` (a middleware's way to ask
        for a restart: whatever runs the worker starts it again)."""
        with self.lock:
            self.exit_code = self.exit_code or exit_code
        log.error("stopping", stage=self.stage, reason=reason, exit_code=exit_code)
        self.stopping.set()

    def _drain(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with self.lock:
                if self.processing <= len(self.written_off):
                    return  # every handler still running was abandoned: none to wait for
            time.sleep(0.05)
        with self.lock:
            unfinished = [d for d in self.inflight.values() if not d.settled]
        for d in unfinished:  # back to the queue now, not after the visibility timeout
            self.settle(d, Retry("the worker is stopping", "Shutdown", after_s=0, failed=False))
        if unfinished:
            log.warning("grace period over: returned unfinished messages", count=len(unfinished))

    # ------------------------------------------------------------------ receiving

    def _poll_loop(self, pool: ThreadPoolExecutor) -> None:
        untraced()  # an idle long poll is no span
        failures = 0
        while not self.stopping.is_set():
            if not self.slots.acquire(timeout=0.5):
                continue  # every slot busy: receive nothing we cannot start now
            free = 1
            # Under load, slots free up one after another: waiting a moment for more makes
            # a fuller batch, which costs the same requests (a receive, a claim, a delete,
            # a completion) as a small one. Idle, every slot is free at once: no wait.
            gather_until = time.monotonic() + BATCH_GATHER_S
            while free < self.settings.worker_batch_size and self.slots.acquire(
                timeout=max(0.0, gather_until - time.monotonic())
            ):
                free += 1
            try:
                answer = call(
                    self.sqs.receive_message,
                    QueueUrl=self.url,
                    MaxNumberOfMessages=free,
                    WaitTimeSeconds=self.settings.worker_wait_time_s,
                    AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                    MessageAttributeNames=["All"],
                )
                failures = 0
            except Exception as exc:
                for _ in range(free):
                    self.slots.release()
                failures += 1
                pause = min(30.0, 0.5 * 2**failures)
                lost = "cannot reach SQS" if is_connection_lost(exc) else "receive failed"
                log.error(
                    f"{lost}; retrying", stage=self.stage, error=str(exc)[:300], retry_in_s=pause
                )
                self.stopping.wait(pause)
                continue
            messages = answer.get("Messages", [])
            for _ in range(free - len(messages)):
                self.slots.release()
            if messages:
                self._start_batch(messages, pool)

    def _start_batch(self, messages: list[dict[str, Any]], pool: ThreadPoolExecutor) -> None:
        batch = [
            Delivery.received(m, self.stage, self.queue.name, self.queue.max_receive_count)
            for m in messages
        ]
        for d in batch:
            d.received_with = len(batch)
        if self.stopping.is_set():  # received while stopping: give it all straight back
            for d in batch:
                self._change_visibility(d, 0)
                self.slots.release()
            return
        group = _Batch(batch)
        with self.lock:
            for d in batch:
                self.inflight[d.message_id] = d
                self.batch_of[d.message_id] = group
            self.processing += len(batch)
        for mw in self.middleware:
            self._hook(mw.before_batch, batch)
        for d in batch:
            pool.submit(self._process, d)

    # ------------------------------------------------------------------ one message

    def _process(self, d: Delivery) -> None:
        outcome: Outcome | None = None
        try:
            for mw in self.middleware:
                outcome = mw.before_process(d)
                if outcome is not None:
                    break
            if outcome is None:
                outcome = self._run_handler(d)
        except Exception as exc:  # the runtime itself failed (e.g. AWS away): retry later
            log.error("message processing failed", error=described(exc)[:500])
            outcome = outcome_of(exc)
        try:
            for mw in reversed(self.middleware):
                outcome = mw.after_process(d, outcome)
        except Exception as exc:
            log.error("after-process failed", error=described(exc)[:500])
            outcome = outcome_of(exc)
        try:
            self.settle(d, outcome)  # an abandoned message's settlement is not changed
        finally:
            with self.lock:
                self.processing -= 1
                self.written_off.pop(id(d), None)
            self.slots.release()

    def _run_handler(self, d: Delivery) -> Outcome:
        if d.event is None:
            return DeadLetter(d.unreadable or "unreadable message", "BadMessage")
        try:
            self.handler(d.event, d)
        except Exception as exc:
            log.warning("handler failed", error=described(exc)[:500])
            return outcome_of(exc)
        return Ack()

    # ------------------------------------------------------------------ outcomes

    def abandon(self, d: Delivery, outcome: Outcome) -> bool:
        """Settle a message now, while its handler still runs; shutdown no longer waits for
        that handler. Its slot is not released: a thread blocked in a socket read cannot be
        interrupted, and the pool has no thread to spare for another message. False if the
        message was settled already (its handler finished first)."""
        with self.lock:
            if d.settled:
                return False
            # Under the lock: `_process` settles before it stops counting the message, so
            # an unsettled message is still counted and is taken off in its `finally`.
            self.written_off[id(d)] = d
        self.settle(d, outcome)
        return d.outcome is outcome

    def settle(self, d: Delivery, outcome: Outcome) -> None:
        """Apply a message's outcome to the queue, once: the first settlement wins (a handler
        that finishes after its message was returned at shutdown changes nothing)."""
        with self.lock:
            if d.settled:
                return
            d.outcome = outcome
            d.finished = time.monotonic()
        if isinstance(outcome, DeadLetter):
            try:
                d.dlq_message_id = self._send_to_dlq(d, outcome)
            except Exception as exc:  # the DLQ is away: retry, the redrive policy still holds
                log.error("could not dead-letter; retrying", error=str(exc)[:300])
                outcome = d.outcome = Retry(outcome.reason, outcome.error_class)
        if isinstance(outcome, Ack | DeadLetter):
            if isinstance(outcome, Ack):
                log.info(outcome.note, duration_ms=round(d.duration_ms, 1))
            with self.lock:
                self.pending_deletes.append(d)
        else:
            self._change_visibility(d, self._retry_visibility(d, outcome))
            with self.lock:
                self.inflight.pop(d.message_id, None)
        for mw in reversed(self.middleware):
            self._hook(mw.after_settle, d)
        self._settled_in_batch(d)

    def _retry_visibility(self, d: Delivery, outcome: Retry) -> int:
        if not outcome.failed:
            return min(int(outcome.after_s), MAX_VISIBILITY_S)
        if d.last_receive:
            return 0  # SQS moves it to the DLQ at its next receive
        delay = backoff_s(
            d.receive_count, self.settings.retry_backoff_base_s, self.settings.retry_backoff_max_s
        )
        log.warning("will retry", reason=outcome.reason[:300], after_s=max(delay, outcome.after_s))
        return max(delay, min(int(outcome.after_s), MAX_VISIBILITY_S))

    def _settled_in_batch(self, d: Delivery) -> None:
        with self.lock:
            group = self.batch_of.pop(d.message_id, None)
            if group is None:
                return
            group.unsettled -= 1
            complete = group.unsettled == 0
        if complete:
            for mw in reversed(self.middleware):
                self._hook(mw.after_batch, group.deliveries)

    def _send_to_dlq(self, d: Delivery, outcome: DeadLetter) -> str:
        """A copy to the DLQ with the reason; the original is deleted after: no receives are
        wasted on a message that can never succeed."""
        attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in zip(
                FAILURE_ATTRIBUTES,
                (
                    outcome.reason[:1000],
                    outcome.error_class,
                    self.stage,
                    str(d.receive_count),
                    self.queue.name,
                ),
                strict=True,
            )
        }
        for name, value in d.message_attributes.items():
            if len(attributes) < 10:  # SQS allows 10; the failure's own come first
                attributes[name] = {
                    k: v
                    for k, v in value.items()
                    if k in ("DataType", "StringValue", "BinaryValue")
                }
        sent = call(
            self.sqs.send_message,
            QueueUrl=self.dlq_url,
            MessageBody=d.body,
            MessageAttributes=attributes,
        )
        log.warning(
            "dead-lettered",
            dlq_message_id=sent["MessageId"],
            reason=outcome.reason[:300],
            error_class=outcome.error_class,
        )
        return str(sent["MessageId"])

    def _change_visibility(self, d: Delivery, visibility_s: int) -> None:
        try:
            call(
                self.sqs.change_message_visibility,
                QueueUrl=self.url,
                ReceiptHandle=d.receipt_handle,
                VisibilityTimeout=visibility_s,
            )
        except Exception as exc:  # it comes back after its visibility timeout anyway
            log.warning(
                "could not return a message early", message_id=d.message_id, error=str(exc)[:200]
            )

    def _hook(self, hook: Callable[..., object], *args: Any) -> None:
        try:
            hook(*args)
        except Exception as exc:
            log.error(
                "middleware hook failed",
                hook=getattr(hook, "__qualname__", str(hook)),
                error=described(exc)[:300],
            )

    # ------------------------------------------------------------------ background

    def _heartbeat_loop(self) -> None:
        untraced()  # a heartbeat is an event on each message's span (on_heartbeat)
        while not self.stopped.wait(self.heartbeat_s):
            with self.lock:
                busy = [d for d in self.inflight.values() if not d.settled]
            for chunk in (busy[i : i + 10] for i in range(0, len(busy), 10)):
                try:
                    call(
                        self.sqs.change_message_visibility_batch,
                        QueueUrl=self.url,
                        Entries=[
                            {
                                "Id": str(i),
                                "ReceiptHandle": d.receipt_handle,
                                "VisibilityTimeout": self.visibility_s,
                            }
                            for i, d in enumerate(chunk)
                        ],
                    )
                except Exception as exc:
                    log.warning("heartbeat failed", stage=self.stage, error=str(exc)[:200])
            if busy:
                for mw in self.middleware:
                    self._hook(mw.on_heartbeat, busy)

    def _delete_loop(self) -> None:
        untraced()
        while not self.stopped.wait(0.05):
            self._flush_deletes()

    def _flush_deletes(self) -> None:
        with self.lock:
            batch, self.pending_deletes = self.pending_deletes, []
        if not batch:
            return
        allowed = batch
        for mw in self.middleware:
            try:
                allowed = mw.before_delete(allowed)
            except Exception as exc:
                log.error("before-delete failed; nothing deleted", error=str(exc)[:200])
                allowed = []
        kept = {d.message_id for d in batch} - {d.message_id for d in allowed}
        with self.lock:  # not deleted: each comes back after its visibility timeout
            for message_id in kept:
                self.inflight.pop(message_id, None)
        for chunk in (allowed[i : i + 10] for i in range(0, len(allowed), 10)):
            try:
                answer = call(
                    self.sqs.delete_message_batch,
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": d.receipt_handle}
                        for i, d in enumerate(chunk)
                    ],
                )
                for failed in answer.get("Failed", []):
                    log.warning(
                        "delete failed; the message will be redelivered and deduped",
                        message_id=chunk[int(failed["Id"])].message_id,
                        code=failed.get("Code"),
                    )
            except Exception as exc:
                log.warning(
                    "delete batch failed; messages will be redelivered and deduped",
                    error=str(exc)[:200],
                )
            with self.lock:
                for d in chunk:
                    self.inflight.pop(d.message_id, None)
