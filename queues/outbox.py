"""Publishing what an incident's outbox holds: events go to incident-events, and those a
person must see to incident-approvals as well. Each item is leased before it is published
(so two flushes of one outbox do not both publish it) and cleared once published, so a
crash in between publishes it again when the lease runs out (consumers dedupe by
event_id)."""

from __future__ import annotations

from typing import Any

from queues.publisher import Publisher
from queues.topology import PAGED_EVENTS, Topic

# Far longer than a publish takes; how late an event is if its publisher dies holding it.
LEASE_S = 30.0


def flush_outbox(store: Any, publisher: Publisher, incident_id: str) -> int:
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
