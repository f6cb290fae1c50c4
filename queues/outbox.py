"""Publishing what an incident's outbox holds: events go to incident-events, and those a
person must see to incident-approvals as well. Cleared only once published, so a crash
in between publishes again (consumers dedupe by event_id)."""

from __future__ import annotations

from typing import Any

from queues.publisher import Publisher
from queues.topology import PAGED_EVENTS, Topic


def flush_outbox(store: Any, publisher: Publisher, incident_id: str) -> int:
    published = 0
    for item, pending in store.pending_events(incident_id):
        publisher.publish(pending)
        if pending.event_type in PAGED_EVENTS:
            publisher.publish(pending, Topic.APPROVALS)
        store.clear_event(incident_id, item)
        published += 1
    return published
