"""The watchdog's tick: the event a schedule sends it, locally and from EventBridge Scheduler.

Here, not beside the watchdog's handler, so the scheduler stand-in and the Pulumi program can
build a tick without importing the handler.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from queues.events import EventEnvelope, EventType, new_event


def tick_event(at: datetime, every_s: float) -> EventEnvelope:
    """One tick of the schedule; ticks in the same slot share an id, so they dedupe."""
    slot = int(at.timestamp() // every_s)
    return new_event(
        EventType.WATCHDOG_TICK,
        "scheduler",
        {"at": at.isoformat(timespec="seconds"), "every_s": every_s},
        event_id=f"tick:{slot}",
    )


# EventBridge Scheduler fills these in each time it sends (its context attributes).
SCHEDULER_EXECUTION_ID = "<aws.scheduler.execution-id>"
SCHEDULER_SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


def scheduler_tick_template(every_s: float) -> str:
    """The body EventBridge Scheduler sends on AWS: a tick event like the local scheduler's,
    with the execution id (the same on the scheduler's own retries) as its event id."""
    event = tick_event(datetime.now(UTC), every_s).model_dump(mode="json")
    event.update(
        event_id=f"tick:{SCHEDULER_EXECUTION_ID}",
        correlation_id=f"tick:{SCHEDULER_EXECUTION_ID}",
        produced_at=SCHEDULER_SCHEDULED_TIME,
        payload={"at": SCHEDULER_SCHEDULED_TIME, "every_s": every_s},
    )
    return json.dumps(event)
