"""How a stage's handler runs in the worker runtime: what it is given (StageContext) and the
consumer, with its middleware, that runs it (`build_consumer`).

The runtime (queues/) knows messages, not incidents; here each message's handler gets the
incident store bound to that message, so every incident the handler changes has its outbox
published by the Outbox middleware before the message is deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.aws import Clients
from core.settings import Settings
from incidents.store import IncidentStore
from queues.consumer import Consumer
from queues.delivery import Delivery
from queues.events import EventEnvelope
from queues.failures import FailureLog, FailureRecords
from queues.idempotency import Idempotency
from queues.log_context import LogContext
from queues.outbox import Outbox
from queues.publisher import Publisher
from queues.runtime_metrics import RuntimeMetrics
from queues.time_limit import TimeLimit
from queues.topology import EventType, StageQueue
from queues.tracing import Tracing


@dataclass
class StageContext:
    """What a handler may use: the store (bound to this message), the stage principal's AWS
    clients, a publisher for events outside an incident's outbox, and the delivery itself."""

    delivery: Delivery
    store: IncidentStore
    settings: Settings
    clients: Clients
    publisher: Publisher

    @property
    def stage(self) -> str:
        return self.delivery.stage

    @property
    def receive_count(self) -> int:
        return self.delivery.receive_count

    @property
    def last_attempt(self) -> bool:
        """A handler that can still conclude (escalate) instead of failing should, now."""
        return self.delivery.last_receive


StageHandler = Callable[[EventEnvelope, StageContext], None]
H = TypeVar("H", bound=StageHandler)

# A handler's option, read when its consumer is built (as Dramatiq's actor options are).
_DEDUPLICATES = "deduplicates"


def deduplicates(
    *event_types: EventType, when: Callable[[EventEnvelope], bool] | None = None
) -> Callable[[H], H]:
    """Mark a handler that makes each of its writes for these event types once by itself
    (the intake writes a marker per alert with each count): the runtime claims no record
    for them, a request less on the way in and a write less on the way out of each batch.
    `when` narrows that to the events the handler does leave its own record of; the rest
    are claimed and recorded as usual, so every handled event leaves a trace."""

    def mark(handler: H) -> H:
        setattr(handler, _DEDUPLICATES, (frozenset(event_types), when))
        return handler

    return mark


def deduplicated_by(handler: StageHandler) -> Callable[[EventEnvelope], bool]:
    """Whether `handler` makes an event's writes once by itself (none unless marked)."""
    types, when = getattr(handler, _DEDUPLICATES, (frozenset(), None))

    def deduplicated(event: EventEnvelope) -> bool:
        return event.event_type in types and (when is None or when(event))

    return deduplicated


def build_consumer(
    queue: StageQueue, handler: StageHandler, settings: Settings, clients: Clients
) -> Consumer:
    """The stage's consumer with the standard middleware, in order: the message's trace
    span outermost, then log context, the time limit, metrics, failure records, the
    idempotency claim, and the outbox innermost (published before the claim is completed).
    The time limit comes before the claim: at a heartbeat, a message it hands back has its
    claim no longer extended."""
    dynamodb = clients("dynamodb")
    store = IncidentStore(dynamodb)
    publisher = Publisher.for_principal(clients, settings)

    def run(event: EventEnvelope, delivery: Delivery) -> None:
        bound = store.bound(delivery.touched.add, delivery.announced.add)
        handler(event, StageContext(delivery, bound, settings, clients, publisher))

    middleware = [
        Tracing(),
        LogContext(),
        TimeLimit(
            queue.stage.value,
            settings.worker_time_limit_for(queue.stage.value),
            settings.stuck_slots_limit,
            expected_longest_s=queue.handler_deadline_s,
        ),
        RuntimeMetrics(queue.stage.value, clients("cloudwatch"), settings.runtime_metrics_flush_s),
        FailureRecords(FailureLog(dynamodb), queue.dlq_name),
        Idempotency(dynamodb, queue.stage.value, deduplicated_by(handler)),
        Outbox(store, publisher),
    ]
    return Consumer(queue, run, settings, clients("sqs"), middleware)
