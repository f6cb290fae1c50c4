"""The supervisor's intake: an alert opens an incident, or counts on the one already open.

(Diagnosis, the rest of the supervisor, builds on this.) Alerts for one function within the
incident window are one incident, whatever their symptom: an alarm storm opens one and
counts the rest, and a Throttles alarm joins the incident its Errors alarm opened (one
incident per function, so one resolver acts on it). An OK notification is recorded on the
open incident; it opens nothing. Alerts of one function at one moment handled together are
counted in one write (`INTAKE`, a group commit). Each alert counts (or is noted) exactly
once by its own marker, written with the count: the intake needs no claim from the runtime
for the alerts it marks (`deduplicates` in workers/supervisor.py, `marks_itself`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.group_commit import GroupCommit
from core.tracing import tag_incident, traceparent
from incidents.store import MAX_ALERTS_PER_WRITE, AlertMark, IncidentStore, Opened, fingerprint
from queues.events import EventEnvelope, incident_event
from queues.outcomes import NonRetryableError
from queues.topology import EventType
from workers.stage import StageContext

PRODUCER = "supervisor"


def marks_itself(event: EventEnvelope) -> bool:
    """Whether the intake leaves this alert's own marker: a failure report and an alarm in
    ALARM always do (counted), and an alarm back to OK does only if an incident is open to
    note it on; so an OK alarm is left to the runtime's claim, which records it either way."""
    if event.event_type == EventType.ALERT_FAILURE_REPORT:
        return True
    # The raw field, unvalidated: a malformed alarm is dead-lettered by the handler anyway.
    return event.event_type == EventType.ALERT_ALARM and event.payload.get("NewStateValue") == (
        "ALARM"
    )


def symptom(event: EventEnvelope) -> tuple[str, str, datetime, str]:
    """(resource, fault signature, when, new alarm state) of an alert."""
    if event.event_type == EventType.ALERT_ALARM:
        alarm = event.alarm()
        if alarm.function_name is None:
            raise NonRetryableError(f"alarm {alarm.AlarmName} names no FunctionName dimension")
        when = datetime.fromisoformat(alarm.StateChangeTime.replace("+0000", "+00:00"))
        return alarm.function_name, alarm.Trigger.MetricName.lower(), when, alarm.NewStateValue
    if event.event_type == EventType.ALERT_FAILURE_REPORT:
        report = event.failure_report()
        # A failed run is what the Errors alarm counts: the same symptom, the same incident.
        return report.function_name, "errors", event.produced_at, "ALARM"
    raise NonRetryableError(f"the supervisor takes alerts, not {event.event_type.value}")


@dataclass(frozen=True)
class _Alert:
    store: IncidentStore  # the store bound to this alert's own message
    mark: AlertMark
    announce: Callable[[str], list[EventEnvelope]]
    trace_parent: str | None  # this alert's span: the incident's trace if it opens one


class KnownIncidents:
    """The incident this process last counted alerts on, per function and window: a storm's
    later alerts are counted on it without looking it up again (`take_alerts`' `known`;
    the write itself checks that it is still open). The most recent `size` windows."""

    def __init__(self, size: int = 1024):
        self.size = size
        self.lock = threading.Lock()
        self.by_window: OrderedDict[str, Opened] = OrderedDict()

    def get(self, resource: str, when: datetime, window_s: int) -> Opened | None:
        with self.lock:
            return self.by_window.get(fingerprint(resource, when, window_s))

    def put(self, resource: str, when: datetime, window_s: int, opened: Opened) -> None:
        with self.lock:
            window = fingerprint(resource, when, window_s)
            self.by_window[window] = opened
            self.by_window.move_to_end(window)
            while len(self.by_window) > self.size:
                self.by_window.popitem(last=False)


KNOWN = KnownIncidents()


def _take(key: tuple[str, datetime, int], alerts: list[_Alert]) -> list[Opened]:
    resource, when, window_s = key
    first = alerts[0]
    opened = first.store.take_alerts(
        resource,
        when,
        window_s,
        PRODUCER,
        [a.mark for a in alerts],
        first.announce,
        KNOWN.get(resource, when, window_s),
        # The first alert publishes the incident's announcement (its store is bound to
        # it): its span is the incident's trace, whichever thread makes the write.
        first.trace_parent,
    )
    KNOWN.put(resource, when, window_s, opened)
    return [opened] * len(alerts)


# Alerts of one function at one moment (a storm of one alarm's notifications) that this
# process handles at the same time are counted in one write: a marker each, one count. The
# handlers of one received batch start within a millisecond or so of each other: the first
# waits while they keep coming (until all of its batch have, if they are all this alarm's),
# so the batch is one write, not the first alone and then the rest.
INTAKE_LINGER_S = 0.002
INTAKE: GroupCommit[tuple[str, datetime, int], _Alert, Opened] = GroupCommit(
    _take, MAX_ALERTS_PER_WRITE, INTAKE_LINGER_S
)


def handle_alert(event: EventEnvelope, ctx: StageContext) -> None:
    resource, signature, when, state = symptom(event)
    detail = {
        "alert_event_id": event.event_id,
        "alert_type": event.event_type.value,
        "payload": event.payload,
    }
    window_s = ctx.settings.incident_window_s
    if state != "ALARM":
        incident_id = ctx.store.current_incident(resource, when, window_s)
        if incident_id is not None:
            tag_incident(incident_id)
            ctx.store.note_alert(incident_id, event.event_id, PRODUCER, f"alarm {state}", detail)
        return

    def announce(incident_id: str) -> list[EventEnvelope]:
        return [
            incident_event(
                EventType.OPENED,
                PRODUCER,
                incident_id,
                {"resource": resource, "signature": signature, "first_alert": event.event_id},
                event.correlation_id,
            )
        ]

    own_trace = traceparent()
    alert = _Alert(ctx.store, AlertMark(event.event_id, signature, detail), announce, own_trace)
    # A storm's batch is all one alarm's: its handlers are all this write's callers.
    opened = INTAKE.submit((resource, when, window_s), alert, ctx.delivery.received_with)
    # An alert that opened nothing is in a trace of its own, linked to the incident's.
    joined = opened.trace_parent if opened.trace_parent != own_trace else None
    tag_incident(opened.incident_id, joined)
    # Counted, perhaps by another alert's thread: this message concerns that incident too.
    ctx.store.on_touch(opened.incident_id)
