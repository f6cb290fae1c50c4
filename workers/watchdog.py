"""The watchdog worker: on each tick of its schedule, what nobody else would notice.

- An incident sitting in a working state past `stale_after_s` (its worker died and its
  message dead-lettered, or a call hangs): EXECUTING/VERIFYING become FAILED, the rest
  ESCALATED; either way a person is paged. A fix whose resolver still renews the
  function's lease (incidents/leases.py) is being worked on, not stuck.
- An approval request past its TTL: ESCALATED (the fix did not run).
- A DLQ deeper than when last reported: one report on incident-approvals per increase.
- An outbox left unpublished (its writer died, or a CLI decision did): published.

The schedule is a tick message on its queue every few seconds: the local scheduler in
the embedded world, EventBridge Scheduler in AWS.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from incidents.approvals import ApprovalRequest
from incidents.context_items import ContextItem
from incidents.escalation import escalate
from incidents.incident import Incident
from incidents.leases import ResourceLeases
from incidents.lifecycle import IncidentStatus as S
from incidents.state_machine import TERMINAL
from queues.events import EventEnvelope, incident_event, new_event
from queues.outbox import flush_outbox
from queues.outcomes import NonRetryableError
from queues.topology import EventType, build_topology
from workers.stage import StageContext

log = structlog.get_logger()
PRODUCER = "watchdog"
WATCHDOG_KEY = "watchdog"  # its own records in incident-context
WORKING = (
    S.RECEIVED,
    S.INVESTIGATING,
    S.DIAGNOSED,
    S.PROPOSED,
    S.APPROVED,
    S.REJECTED,
    S.EXECUTING,
    S.VERIFYING,
    S.RECOVERED,
)
# An outbox older than this was left behind (the runtime publishes within a second, or
# when its handler returns; a lease on an item lasts 30 s). Incidents quiet for longer
# than the horizon have long been flushed.
OUTBOX_GRACE_S = 45
OUTBOX_HORIZON_S = 3600


def handle(event: EventEnvelope, ctx: StageContext) -> None:
    if event.event_type == EventType.WATCHDOG_TICK:
        tick(ctx)
    elif event.event_type in (
        EventType.AWAITING_APPROVAL,
        EventType.ESCALATED,
        EventType.FAILED,
        EventType.ROLLED_BACK,
    ):
        # Already paged on incident-approvals by the outbox; the watchdog keeps a record.
        log.info("incident needs a person", paged=event.event_type.value)
    else:
        raise NonRetryableError(f"the watchdog does not take {event.event_type.value}")


def _age_s(stamp: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(stamp)).total_seconds()


def tick(ctx: StageContext) -> None:
    now = datetime.now(UTC)
    horizon = (now - timedelta(seconds=OUTBOX_HORIZON_S)).isoformat()
    for status in S:
        # Every open incident; of the closed ones, only those recently closed.
        since = horizon if status in TERMINAL else None
        for incident in ctx.store.by_status(status, since):
            _flush_left_behind(ctx, incident, now)
            if status in WORKING:
                _check_stale(ctx, incident, status, now)
            elif status == S.AWAITING_APPROVAL:
                _check_approval(ctx, incident, now)
    _check_dead_letters(ctx)


def _flush_left_behind(ctx: StageContext, incident: Incident, now: datetime) -> None:
    """Publish an outbox its writer left behind (it died, or a CLI decision did)."""
    age = _age_s(incident.updated_at, now)
    if OUTBOX_GRACE_S < age < OUTBOX_HORIZON_S:
        flush_outbox(ctx.store, ctx.publisher, incident.incident_id)


def _check_stale(ctx: StageContext, incident: Incident, status: S, now: datetime) -> None:
    incident_id = incident.incident_id
    age = _age_s(incident.updated_at, now)
    if age <= ctx.settings.stale_after_s:
        return
    if status in (S.EXECUTING, S.VERIFYING, S.RECOVERED) and _being_remediated(ctx, incident):
        return  # a live resolver renews its lease: slow, not stuck
    reason = f"stuck in {status.value} for {age:.0f}s (limit {ctx.settings.stale_after_s}s)"
    log.warning("stale incident", incident_id=incident_id, reason=reason)
    if status in (S.EXECUTING, S.VERIFYING):
        if ctx.store.transition(
            incident_id,
            status,
            S.FAILED,
            PRODUCER,
            {"reason": reason},
            announce=[_event(EventType.FAILED, incident_id, reason)],
        ):
            escalate(ctx.store, incident_id, S.FAILED, PRODUCER, reason)
        return
    escalate(ctx.store, incident_id, status, PRODUCER, reason)


def _being_remediated(ctx: StageContext, incident: Incident) -> bool:
    leases = ResourceLeases(ctx.clients("dynamodb"), ctx.settings.remediation_lease_s)
    holding = leases.current(incident.resource)
    return holding is not None and holding.holder == incident.incident_id


def _check_approval(ctx: StageContext, incident: Incident, now: datetime) -> None:
    incident_id = incident.incident_id
    raw = ctx.store.get_context(incident_id, ContextItem.APPROVAL)
    if raw is None:
        return
    request = ApprovalRequest.model_validate(raw)
    if request.status != "pending" or not request.expired(now):
        return
    reason = f"approval request expired at {request.expires_at} with no decision; nothing ran"
    if escalate(ctx.store, incident_id, S.AWAITING_APPROVAL, PRODUCER, reason):
        ctx.store.put_context(
            incident_id,
            ContextItem.APPROVAL,
            request.model_copy(update={"status": "expired"}).model_dump(mode="json"),
        )


def _event(kind: EventType, incident_id: str, reason: str) -> EventEnvelope:
    return incident_event(kind, PRODUCER, incident_id, {"reason": reason})


def _check_dead_letters(ctx: StageContext) -> None:
    sqs = ctx.clients("sqs")
    for queue in build_topology(ctx.settings).queues:
        url = sqs.get_queue_url(QueueName=queue.dlq_name)["QueueUrl"]
        depth = int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        item = f"dlq#{queue.dlq_name}"
        reported = ctx.store.counter(WATCHDOG_KEY, item)
        if depth < reported:  # redriven or purged since: report again from the new depth
            ctx.store.set_counter(WATCHDOG_KEY, item, depth)
        elif depth > reported:
            report = new_event(
                EventType.DEAD_LETTERED,
                PRODUCER,
                {
                    "queue": queue.dlq_name,
                    "source_queue": queue.name,
                    "depth": depth,
                    "new": depth - reported,
                    "see": f"fleet failures --queue {queue.name}",
                },
                event_id=f"dlq:{queue.dlq_name}:{depth}:{datetime.now(UTC).date()}",
            )
            if ctx.store.advance_counter(WATCHDOG_KEY, item, depth, [report]):
                log.warning("new dead letters", queue=queue.dlq_name, depth=depth)
