"""Publishing what an incident's outbox holds: events go to incident-events, and those a
person must see to incident-approvals as well. Each item is leased before it is published
(so two flushes of one outbox do not both publish it) and cleared once published, so a
crash in between publishes it again when the lease runs out (consumers dedupe by
event_id)."""

from __future__ import annotations

from typing import Protocol

import structlog

from queues.delivery import Delivery
from queues.events import EventEnvelope
from queues.middleware import Middleware
from queues.outcomes import Ack, Outcome, Retry
from queues.publisher import Publisher
from queues.topology import PAGED_EVENTS, Topic

log = structlog.get_logger()

# Far longer than a publish takes; how late an event is if its publisher dies holding it.
LEASE_S = 30.0


class OutboxStore(Protocol):
    """Where outboxes are kept: the incident store, written in the same transaction as the
    state change the events announce."""

    def pending_events(self, incident_id: str) -> list[tuple[str, EventEnvelope]]: ...

    def lease_event(self, incident_id: str, item: str, lease_s: float) -> bool: ...

    def clear_event(self, incident_id: str, item: str) -> None: ...


def flush_outbox(store: OutboxStore, publisher: Publisher, incident_id: str) -> int:
    published = 0
    for item, pending in store.pending_events(incident_id):
        if not store.lease_event(incident_id, item, LEASE_S):
            continue  # another process is publishing it right now
        publisher.publish(pending)
        if pending.event_type in PAGED_EVENTS:
            publisher.publish(pending, Topic.APPROVALS)
        store.clear_event(incident_id, item)
        published += 1
    return published


class Outbox(Middleware):
    """After a handler succeeds (or a duplicate is acknowledged), publish the outboxes of the
    incidents it touched — before its claim is completed, so no duplicate can publish the
    same outbox alongside. If publishing fails, the message is retried: the handler finds its
    change made, and the outbox is published then."""

    def __init__(self, store: OutboxStore, publisher: Publisher):
        self.store = store
        self.publisher = publisher

    def after_process(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        if not isinstance(outcome, Ack):
            return outcome
        # A first delivery publishes what it announced (an alert counted on an open
        # incident announces nothing: no read of its outbox); a redelivery everything it
        # touched, in case the delivery before it died between a change and its publishing.
        outboxes = delivery.touched if delivery.receive_count > 1 else delivery.announced
        try:
            for incident_id in sorted(outboxes):
                flush_outbox(self.store, self.publisher, incident_id)
        except Exception as exc:
            log.warning("could not publish the outbox", error=str(exc)[:300])
            return Retry(f"outbox not published: {type(exc).__name__}: {exc}", type(exc).__name__)
        return outcome
