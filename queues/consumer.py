"""The worker runtime: a stage's handler takes a typed event and returns; this does the rest.

Around each message, in order: parse it into the typed envelope (bad input goes straight to
the DLQ with its reason), claim it in the idempotency records (a duplicate is acknowledged
without running the handler again), run the handler while a heartbeat keeps the message
invisible and the claim alive, publish the events the handler's state changes put in the
outbox, mark the claim complete, and delete the message (batched). A retryable failure
puts the message back with a backoff keyed on its receive count; the queue's redrive
policy moves it to the DLQ after maxReceiveCount. Every failure is recorded by message id.

Shutdown (SIGTERM/SIGINT): stop receiving, let in-flight handlers finish within the grace
period, return the rest to the queue (visibility 0), exit 0. A second signal exits at once.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from core.aws_retry import call, is_connection_lost
from core.settings import Settings
from incidents.store import IncidentStore
from queues.events import BadMessage, EventEnvelope, parse_body
from queues.failures import FailureLog
from queues.idempotency import Claim, IdempotencyRecords
from queues.outbox import flush_outbox
from queues.publisher import Publisher
from queues.runtime_metrics import RuntimeCounters
from queues.topology import StageQueue, Topic, topic_arn

log = structlog.get_logger()

# Attributes the runtime puts on a message it dead-letters itself.
FAILURE_ATTRIBUTES = (
    "fleet.failure_reason",
    "fleet.error_class",
    "fleet.stage",
    "fleet.receive_count",
    "fleet.source_queue",
)


class NonRetryableError(Exception):
    """Raise from a handler for input that can never succeed: straight to the DLQ."""


class RetryLater(Exception):
    """Raise from a handler when a dependency is away (an MCP server restarting): the message
    comes back after at least `after_s`, so a short outage does not use up its receives."""

    def __init__(self, reason: str, after_s: float):
        super().__init__(reason)
        self.after_s = after_s


@dataclass
class HandlerContext:
    """What a handler may use: the store (bound to this message) and where it came from."""

    stage: str
    message_id: str
    receive_count: int
    store: IncidentStore
    settings: Settings
    # The stage principal's AWS clients (by service name), for handlers that read or act.
    clients: Callable[[str], Any] | None = None
    # Publishing outside an incident's outbox (the watchdog's dead-letter reports).
    publisher: Publisher | None = None
    touched: set[str] = field(default_factory=set)
    # The queue's maxReceiveCount: a failure on this receive sends the message to the DLQ.
    max_receives: int = 0

    @property
    def last_attempt(self) -> bool:
        """A handler that can still conclude (escalate) instead of failing should, now."""
        return bool(self.max_receives) and self.receive_count >= self.max_receives


Handler = Callable[[EventEnvelope, HandlerContext], None]


@dataclass
class InFlight:
    message_id: str
    receipt_handle: str
    event_id: str | None = None
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    # (event_id, incident ids) to mark completed before the delete; None: nothing to mark.
    completion: tuple[str, list[str]] | None = None


MAX_VISIBILITY_S = 43200  # SQS's limit on ChangeMessageVisibility


def backoff_s(receive_count: int, base_s: float, max_s: int) -> int:
    """Visibility for a retried message: exponential in its receive count, with jitter."""
    delay = min(float(max_s), base_s * (2 ** max(0, receive_count - 1)))
    return int(delay * random.uniform(0.5, 1.0)) if delay >= 1 else int(delay)


class Consumer:
    def __init__(
        self, queue: StageQueue, handler: Handler, settings: Settings, clients: Callable[[str], Any]
    ):
        self.queue = queue
        self.stage = queue.stage.value
        self.handler = handler
        self.clients = clients
        self.settings = settings
        self.sqs = clients("sqs")
        self.cloudwatch = clients("cloudwatch")
        dynamodb = clients("dynamodb")
        self.publisher = Publisher(clients("sns"), {t: topic_arn(settings, t) for t in Topic})
        self.store = IncidentStore(dynamodb)
        self.failures = FailureLog(dynamodb)
        self.owner = f"{self.stage}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.counters = RuntimeCounters(self.stage)
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.inflight: dict[str, InFlight] = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(settings.worker_concurrency)
        self.pending_deletes: list[InFlight] = []
        self.url = ""
        self.dlq_url = ""
        self.visibility_s = queue.visibility_timeout_s
        self.idempotency: IdempotencyRecords | None = None
        self.signals = 0

    # ------------------------------------------------------------------ lifecycle

    def setup(self) -> None:
        self.url = call(self.sqs.get_queue_url, QueueName=self.queue.name)["QueueUrl"]
        self.dlq_url = call(self.sqs.get_queue_url, QueueName=self.queue.dlq_name)["QueueUrl"]
        attrs = call(
            self.sqs.get_queue_attributes, QueueUrl=self.url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        self.visibility_s = int(attrs["VisibilityTimeout"])
        # Two missed heartbeats and a crashed owner's claim is free again: sooner than its
        # message reappears (three beats), so the redelivery never finds it busy.
        self.idempotency = IdempotencyRecords(
            self.store.ddb, self.stage, self.owner, in_progress_s=self.heartbeat_s * 2
        )

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
        if not self._setup_until_ready():
            return 0
        log.info(
            "consuming",
            stage=self.stage,
            queue=self.queue.name,
            concurrency=self.settings.worker_concurrency,
            visibility_s=self.visibility_s,
        )
        pool = ThreadPoolExecutor(self.settings.worker_concurrency, thread_name_prefix=self.stage)
        background = [
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._delete_loop, name="deleter", daemon=True),
            threading.Thread(target=self._metrics_loop, name="metrics", daemon=True),
        ]
        for t in background:
            t.start()
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
        self._flush_deletes()
        self._flush_metrics()
        log.info("stopped", stage=self.stage)
        return 0

    def _drain(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with self.lock:
                busy = [m for m in self.inflight.values() if not m.done]
            if not busy:
                return
            time.sleep(0.05)
        with self.lock:
            unfinished = [m for m in self.inflight.values() if not m.done]
        for m in unfinished:  # back to the queue now, not after the visibility timeout
            self._return(m, 0)
        if unfinished:
            log.warning("grace period over: returned unfinished messages", count=len(unfinished))

    # ------------------------------------------------------------------ receiving

    def _poll_loop(self, pool: ThreadPoolExecutor) -> None:
        failures = 0
        while not self.stopping.is_set():
            if not self.slots.acquire(timeout=0.5):
                continue  # every slot busy: receive nothing we cannot start now
            free = 1
            while free < self.settings.worker_batch_size and self.slots.acquire(blocking=False):
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
            for message in messages:
                m = InFlight(message["MessageId"], message["ReceiptHandle"])
                if self.stopping.is_set():  # received while stopping: give it straight back
                    self._return(m, 0)
                    self.slots.release()
                    continue
                with self.lock:
                    self.inflight[m.message_id] = m
                self.counters.add("Received")
                pool.submit(self._process, message, m)

    # ------------------------------------------------------------------ one message

    def _process(self, message: dict[str, Any], m: InFlight) -> None:
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        started = time.monotonic()
        event: EventEnvelope | None = None
        # Context variables: every log line of this message, the store's included, says which.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            stage=self.stage, message_id=m.message_id, receive_count=receive_count
        )
        try:
            try:
                event = parse_body(message["Body"], m.message_id)
            except BadMessage as exc:
                self._dead_letter_now(message, m, receive_count, str(exc), "BadMessage", None)
                return
            m.event_id = event.event_id
            structlog.contextvars.bind_contextvars(
                event_id=event.event_id,
                event_type=event.event_type.value,
                incident_id=event.incident_id,
            )
            self._handle(event, message, m, receive_count)
        except Exception as exc:  # the runtime itself failed (e.g. AWS away): retry later
            log.error("message processing failed", error=f"{type(exc).__name__}: {exc}"[:500])
            self._retry(m, receive_count, exc, event)
        finally:
            self.counters.handled((time.monotonic() - started) * 1000)
            structlog.contextvars.clear_contextvars()
            self.slots.release()

    def _handle(
        self,
        event: EventEnvelope,
        message: dict[str, Any],
        m: InFlight,
        receive_count: int,
    ) -> None:
        assert self.idempotency is not None
        claim, record = self.idempotency.claim(event.event_id, m.message_id)
        if claim == Claim.COMPLETED:
            # Handled before; finish whatever announcing was left, then acknowledge.
            self._publish_outbox(set(record.get("incident_ids", []) if record else []))
            log.info("duplicate delivery acknowledged")
            self._ack(m)
            return
        if claim == Claim.BUSY:
            if record and record.get("message_id") == m.message_id:
                # This very message, back while its claim lives (a late heartbeat): let the
                # claim expire, then it is ours.
                log.info("message back while still claimed; retrying later")
                self._return(m, max(1, int(self.heartbeat_s)))
            else:
                # A duplicate of an event a live worker is handling from another message:
                # that message is not lost if the worker dies, so this copy can go.
                log.info("duplicate of an event in progress acknowledged")
                self._ack(m)
            return
        ctx = HandlerContext(
            self.stage,
            m.message_id,
            receive_count,
            self.store,
            self.settings,
            self.clients,
            self.publisher,
            max_receives=self.queue.max_receive_count,
        )
        ctx.store = self.store.bound(ctx.touched.add)
        if event.incident_id:
            ctx.touched.add(event.incident_id)
        try:
            self.handler(event, ctx)
        except NonRetryableError as exc:
            self.idempotency.release(event.event_id)
            self._dead_letter_now(message, m, receive_count, str(exc), type(exc).__name__, event)
            return
        except Exception as exc:
            self.idempotency.release(event.event_id)
            log.warning("handler failed; will retry", error=f"{type(exc).__name__}: {exc}"[:500])
            self._retry(m, receive_count, exc, event)
            return
        # Publish, then complete: while the claim is in progress no duplicate can publish the
        # same outbox alongside. If the process dies in between, the claim expires, the
        # handler finds its change made, and the outbox is published then.
        self._publish_outbox(ctx.touched)
        m.completion = (event.event_id, sorted(ctx.touched))
        log.info("handled", duration_ms=round((time.monotonic() - m.started) * 1000, 1))
        self._ack(m)

    def _publish_outbox(self, incident_ids: set[str]) -> None:
        for incident_id in incident_ids:
            flush_outbox(self.store, self.publisher, incident_id)

    # ------------------------------------------------------------------ outcomes

    def _ack(self, m: InFlight) -> None:
        with self.lock:
            m.done = True
            self.pending_deletes.append(m)
        self.counters.add("Succeeded")

    def _return(self, m: InFlight, visibility_s: int) -> None:
        try:
            call(
                self.sqs.change_message_visibility,
                QueueUrl=self.url,
                ReceiptHandle=m.receipt_handle,
                VisibilityTimeout=visibility_s,
            )
        except Exception as exc:  # it comes back after its visibility timeout anyway
            log.warning(
                "could not return a message early", message_id=m.message_id, error=str(exc)[:200]
            )
        with self.lock:
            m.done = True
            self.inflight.pop(m.message_id, None)

    def _retry(
        self, m: InFlight, receive_count: int, exc: Exception, event: EventEnvelope | None
    ) -> None:
        last = receive_count >= self.queue.max_receive_count
        try:
            self.failures.record(
                m.message_id,
                self.queue.name,
                self.stage,
                f"{type(exc).__name__}: {exc}",
                type(exc).__name__,
                receive_count,
                dead_lettered=last,
                event_type=event.event_type.value if event else None,
                event_id=event.event_id if event else None,
                incident_id=event.incident_id if event else None,
            )
        except Exception as record_exc:
            log.error(
                "could not record a failure", message_id=m.message_id, error=str(record_exc)[:200]
            )
        self.counters.add("DeadLettered" if last else "Retried")
        delay = backoff_s(
            receive_count, self.settings.retry_backoff_base_s, self.settings.retry_backoff_max_s
        )
        if isinstance(exc, RetryLater):
            delay = max(delay, min(int(exc.after_s), MAX_VISIBILITY_S))
        # On the last allowed receive, SQS moves it to the DLQ at its next receive.
        self._return(m, 0 if last else delay)

    def _dead_letter_now(
        self,
        message: dict[str, Any],
        m: InFlight,
        receive_count: int,
        reason: str,
        error_class: str,
        event: EventEnvelope | None,
    ) -> None:
        """Send a copy to the DLQ with the reason, then delete the original: no receives
        are wasted on a message that can never succeed."""
        attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in zip(
                FAILURE_ATTRIBUTES,
                (reason[:1000], error_class, self.stage, str(receive_count), self.queue.name),
                strict=True,
            )
        }
        for name, value in message.get("MessageAttributes", {}).items():
            if len(attributes) < 10:  # SQS allows 10; the failure's own come first
                attributes[name] = {
                    k: v
                    for k, v in value.items()
                    if k in ("DataType", "StringValue", "BinaryValue")
                }
        sent = call(
            self.sqs.send_message,
            QueueUrl=self.dlq_url,
            MessageBody=message["Body"],
            MessageAttributes=attributes,
        )
        self.failures.record(
            sent["MessageId"],
            self.queue.name,
            self.stage,
            reason,
            error_class,
            receive_count,
            dead_lettered=True,
            original_message_id=m.message_id,
            event_type=event.event_type.value if event else None,
            event_id=event.event_id if event else None,
            incident_id=event.incident_id if event else None,
        )
        log.warning(
            "dead-lettered",
            stage=self.stage,
            message_id=m.message_id,
            dlq_message_id=sent["MessageId"],
            reason=reason[:300],
            error_class=error_class,
        )
        self.counters.add("DeadLettered")
        with self.lock:
            m.done = True
            self.pending_deletes.append(m)

    # ------------------------------------------------------------------ background

    def _heartbeat_loop(self) -> None:
        while not self.stopped.wait(self.heartbeat_s):
            with self.lock:
                busy = [m for m in self.inflight.values() if not m.done]
            for chunk in (busy[i : i + 10] for i in range(0, len(busy), 10)):
                try:
                    call(
                        self.sqs.change_message_visibility_batch,
                        QueueUrl=self.url,
                        Entries=[
                            {
                                "Id": str(i),
                                "ReceiptHandle": m.receipt_handle,
                                "VisibilityTimeout": self.visibility_s,
                            }
                            for i, m in enumerate(chunk)
                        ],
                    )
                except Exception as exc:
                    log.warning("heartbeat failed", stage=self.stage, error=str(exc)[:200])
                for m in chunk:
                    try:
                        if m.event_id and self.idempotency and not m.done:
                            self.idempotency.extend(m.event_id)
                    except Exception as exc:
                        log.warning(
                            "claim heartbeat failed", event_id=m.event_id, error=str(exc)[:200]
                        )

    def _delete_loop(self) -> None:
        while not self.stopped.wait(0.05):
            self._flush_deletes()

    def _flush_deletes(self) -> None:
        with self.lock:
            batch, self.pending_deletes = self.pending_deletes, []
        completions = [m.completion for m in batch if m.completion]
        if completions and self.idempotency:
            # Claims are completed before their messages are deleted, in batches: a crash
            # in between redelivers a message that is then acknowledged as a duplicate.
            try:
                self.idempotency.complete_many(completions)
            except Exception as exc:
                log.warning(
                    "could not complete claims; their messages will be redelivered",
                    error=str(exc)[:200],
                )
                with self.lock:  # not deleted: each comes back, and its claim has expired
                    for m in batch:
                        self.inflight.pop(m.message_id, None)
                return
        for chunk in (batch[i : i + 10] for i in range(0, len(batch), 10)):
            try:
                answer = call(
                    self.sqs.delete_message_batch,
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m.receipt_handle}
                        for i, m in enumerate(chunk)
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
                for m in chunk:
                    self.inflight.pop(m.message_id, None)

    def _metrics_loop(self) -> None:
        while not self.stopped.wait(self.settings.runtime_metrics_flush_s):
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        try:
            self.counters.flush(self.cloudwatch)
        except Exception as exc:
            log.warning("could not flush runtime metrics", error=str(exc)[:200])
