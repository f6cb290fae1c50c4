"""Handlers the runtime tests run inside real worker processes (`fleet worker --handler`).

Each leaves a trace a test can count: a context item per run under the payload's `probe`
id, so "ran once" is a query, not a guess.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from incidents.leases import LeaseLost, ResourceBusy, ResourceLeases, remediating
from incidents.lifecycle import IncidentStatus
from queues.events import EventEnvelope, new_event
from queues.outcomes import NonRetryableError, RetryLater
from queues.topology import EventType
from workers.intake import marks_itself
from workers.stage import StageContext, deduplicates


def noop(event: EventEnvelope, ctx: StageContext) -> None:
    return None


def always_fails(event: EventEnvelope, ctx: StageContext) -> None:
    raise RuntimeError(f"always fails: {event.event_id}")


def slow(event: EventEnvelope, ctx: StageContext) -> None:
    """Marks its start, works `sleep_s`, then records one run."""
    probe = event.payload["probe"]
    ctx.store.put_context(probe, f"start#{uuid.uuid4()}", {"pid": os.getpid()})
    time.sleep(float(event.payload.get("sleep_s", 0)))
    ctx.store.put_context(
        probe,
        f"run#{uuid.uuid4()}",
        {
            "event_id": event.event_id,
            "pid": os.getpid(),
            "receive_count": ctx.receive_count,
        },
    )


def hangs(event: EventEnvelope, ctx: StageContext) -> None:
    """Marks its start, then waits on an event nobody sets: a handler hung where no
    exception reaches it (a socket read that never answers)."""
    ctx.store.put_context(event.payload["probe"], f"start#{uuid.uuid4()}", {"pid": os.getpid()})
    threading.Event().wait()


def commit_then_sleep(event: EventEnvelope, ctx: StageContext) -> None:
    """Moves the incident and announces it, then lingers: a crash here is after the commit
    and before the announcement is published or the message deleted."""
    incident_id = event.payload["incident_id"]
    moved = ctx.store.transition(
        incident_id,
        IncidentStatus.RECEIVED,
        IncidentStatus.INVESTIGATING,
        "test",
        announce=[
            new_event(
                EventType.DIAGNOSED,
                "test",
                {"probe": incident_id},
                incident_id=incident_id,
                event_id=f"{incident_id}:investigating",
            )
        ],
    )
    if moved:  # a redelivery finds the move made, and just returns
        ctx.store.put_context(incident_id, f"start#{uuid.uuid4()}", {"pid": os.getpid()})
        time.sleep(float(event.payload.get("sleep_s", 0)))


# As the supervisor's.
@deduplicates(EventType.ALERT_ALARM, EventType.ALERT_FAILURE_REPORT, when=marks_itself)
def intake(event: EventEnvelope, ctx: StageContext) -> None:
    """The supervisor's intake alone: incidents open and count, nobody investigates them
    (their `incident.opened`, which comes back to this queue, is acknowledged)."""
    from workers.intake import handle_alert

    if event.event_type != EventType.OPENED:
        handle_alert(event, ctx)


BUG_FILE = "handler-bug"


def buggy_until_fixed(event: EventEnvelope, ctx: StageContext) -> None:
    """Fails for good while the state directory holds a bug file (a bug in the handler);
    once it is removed (the fix deployed), records its run like `slow`."""
    if (ctx.settings.state_dir / BUG_FILE).exists():
        raise NonRetryableError(f"KeyError: 'records' in batch {event.payload.get('probe')}")
    ctx.store.put_context(event.payload["probe"], f"run#{uuid.uuid4()}", {"pid": os.getpid()})


def remediate_under_lease(event: EventEnvelope, ctx: StageContext) -> None:
    """Holds the payload's resource lease as the resolver does (waiting for it, renewing it
    on every step, giving the message back if it waited too long), works `hold_s`, and
    records when it held it: `start#` on acquiring, `run#` with both ends when done."""
    p = event.payload
    leases = ResourceLeases(ctx.clients("dynamodb"), ctx.settings.remediation_lease_s)
    try:
        with remediating(leases, p["resource"], p["holder"], float(p["wait_s"])) as held:
            started = time.time()
            ctx.store.put_context(
                p["probe"], f"start#{uuid.uuid4()}", {"pid": os.getpid(), "at": started}
            )
            deadline = time.monotonic() + float(p["hold_s"])
            while time.monotonic() < deadline:
                held.keep()
                time.sleep(0.2)
            ctx.store.put_context(
                p["probe"],
                f"run#{uuid.uuid4()}",
                {"pid": os.getpid(), "start": started, "end": time.time(), "holder": p["holder"]},
            )
    except (ResourceBusy, LeaseLost) as exc:
        raise RetryLater(str(exc), after_s=ctx.settings.remediation_lease_s) from None


FAILING_KINDS_FILE = "failing-kinds"


def fails_as_told(event: EventEnvelope, ctx: StageContext) -> None:
    """Fails for good (NonRetryableError: dead-lettered at once) while its payload's `kind`
    is listed in the state directory's failing-kinds file: a DLQ of mixed failures, some
    of which a test then "fixes" by taking their kind off the list. Records each run."""
    kind = str(event.payload.get("kind", ""))
    failing = (ctx.settings.state_dir / FAILING_KINDS_FILE).read_text().split()
    if kind in failing:
        raise NonRetryableError(f"{kind}: {event.payload.get('why', 'refused')}")
    ctx.store.put_context(
        str(event.payload["probe"]), f"run#{uuid.uuid4()}", {"event_id": event.event_id}
    )
