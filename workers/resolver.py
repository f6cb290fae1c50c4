"""The resolver worker: a diagnosis gets a proposal; an approval gets executed and verified.

On `incident.diagnosed`: the proposal agent drafts the exact calls that restore what the
diagnosis implicates, validated by the resolver server. No call needed (nothing differs
from the baseline) and the workload healthy: resolved without action.

On `incident.approved`: the approval must name this proposal's exact calls. Snapshot what
the calls will overwrite, run them (each recorded once, so a redelivery after a crash
never runs a call twice), then verify with a real check: RECOVERED. On `incident.watch`:
one look of the watch that follows (a chain of delayed messages, so no worker waits through
the window), then RESOLVED.
A fix that does not verify, or relapses while watched, starts another round in the same
incident (`incident.next_round`, to the supervisor), undone first only if it made things
worse; with the rounds used up, a person is paged. A call that fails: rolled back to the
snapshot and escalated. From the first call to the end of the watch, the resolver holds
the function's lease (incidents/leases.py): no two remediations run on one function at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from incidents.baseline_diff import CONCERNS
from incidents.baselines import Baseline, BaselineStore, read_live
from incidents.context_items import ContextItem, executed
from incidents.escalation import escalate
from incidents.executor import CallFailed, RefusedCall, run_call, shown
from incidents.incident import Incident
from incidents.leases import HeldLease, LeaseLost, ResourceBusy, ResourceLeases, remediating
from incidents.lifecycle import IncidentStatus as S
from incidents.proposal import Concern, Proposal
from incidents.restore_plan import restore_calls
from incidents.store import in_round
from incidents.verification import (
    Verification,
    made_worse,
    next_look_s,
    verify,
    watch_look,
    watch_window_s,
)
from queues.events import EventEnvelope, incident_event
from queues.outcomes import NonRetryableError, RetryLater
from queues.topology import EventType
from workers.agents.mcp_tools import ToolsUnavailable
from workers.agents.model_quota import ModelQuotaExhausted, model_bucket
from workers.agents.propose import propose
from workers.agents.transcript import record_transcript
from workers.outages import tools_away
from workers.stage import StageContext

log = structlog.get_logger()
PRODUCER = "resolver"
ALL_CONCERNS: list[Concern] = list(CONCERNS)
# Where an approval still has work to do: from the approval to recovery (the watch after it
# is the `incident.watch` chain's).
WORKING_ON_A_FIX = (S.APPROVED, S.EXECUTING, S.VERIFYING)


def handle(event: EventEnvelope, ctx: StageContext) -> None:
    if event.incident_id is None:
        raise NonRetryableError(f"{event.event_type.value} without an incident_id")
    if event.event_type == EventType.DIAGNOSED:
        on_diagnosis(event, event.incident_id, ctx)
    elif event.event_type == EventType.APPROVED:
        on_approval(event, event.incident_id, ctx)
    elif event.event_type == EventType.WATCH:
        on_watch(event, event.incident_id, ctx)
    else:
        raise NonRetryableError(f"the resolver does not take {event.event_type.value}")


def _event(
    kind: EventType, incident_id: str, payload: dict[str, Any], correlation_id: str
) -> EventEnvelope:
    return incident_event(kind, PRODUCER, incident_id, payload, correlation_id)


def _resolve(
    ctx: StageContext,
    incident_id: str,
    current: S,
    actions: int,
    result: Verification,
    correlation_id: str,
) -> None:
    verification = result.model_dump(mode="json")
    ctx.store.transition(
        incident_id,
        current,
        S.RESOLVED,
        PRODUCER,
        {"actions": actions, "checks": verification["checks"]},
        announce=[
            _event(
                EventType.RESOLVED,
                incident_id,
                {"actions": actions, "verification": verification},
                correlation_id,
            )
        ],
    )


def _recorded_proposal(ctx: StageContext, incident_id: str, status: str) -> Proposal:
    raw = ctx.store.get_context(incident_id, ContextItem.PROPOSAL)
    if raw is None:
        raise NonRetryableError(f"{incident_id}: {status}, but no proposal is recorded")
    return Proposal.model_validate(raw)


def _baseline(ctx: StageContext, function: str, version: int | None) -> Baseline:
    store = BaselineStore(ctx.clients("dynamodb"))
    want = store.version(function, version) if version else store.latest(function)
    if want is None:
        raise NonRetryableError(f"no baseline v{version or 'latest'} recorded for {function}")
    return want


# ---------------------------------------------------------------- proposing


def on_diagnosis(event: EventEnvelope, incident_id: str, ctx: StageContext) -> None:
    incident = ctx.store.get(incident_id)
    if incident is None or incident.status != S.DIAGNOSED:
        log.info("not awaiting a proposal", status=incident and incident.status.value)
        return
    diagnosis = event.payload.get("diagnosis") or ctx.store.get_context(
        incident_id, ContextItem.DIAGNOSIS
    )
    if not diagnosis:
        raise NonRetryableError(f"{incident_id}: no diagnosis to act on")
    try:
        quota = model_bucket(ctx.clients("dynamodb"), ctx.settings)
        proposal, run = asyncio.run(propose(ctx.settings, incident_id, diagnosis, quota=quota))
    except (ToolsUnavailable, ModelQuotaExhausted) as exc:
        tools_away(
            ctx,
            exc,
            lambda reason: escalate(
                ctx.store, incident_id, S.DIAGNOSED, PRODUCER, reason, event.correlation_id
            ),
        )
        return
    record_transcript(ctx.store, incident_id, PRODUCER, "proposal", run)
    if proposal is None:
        escalate(
            ctx.store,
            incident_id,
            S.DIAGNOSED,
            PRODUCER,
            f"no proposal: {run.stopped or 'the agent gave none'}",
            event.correlation_id,
        )
        return
    ctx.store.put_context(incident_id, ContextItem.PROPOSAL, proposal.model_dump(mode="json"))
    if proposal.calls:
        ctx.store.transition(
            incident_id,
            S.DIAGNOSED,
            S.PROPOSED,
            PRODUCER,
            {
                "calls": len(proposal.calls),
                "valid": proposal.valid,
                "digest": proposal.calls_digest(),
            },
            announce=[
                _event(
                    EventType.PROPOSED,
                    incident_id,
                    {"proposal": proposal.model_dump(mode="json")},
                    event.correlation_id,
                )
            ],
        )
        return
    # Nothing differs from the baseline: resolved if the workload really runs cleanly.
    want = _baseline(ctx, proposal.function_name, None)
    result = verify(
        ctx.clients,
        want,
        ALL_CONCERNS,
        datetime.now(UTC),
        ctx.settings.verify_successful_runs,
        ctx.settings.verify_timeout_s,
    )
    ctx.store.put_context(incident_id, ContextItem.VERIFICATION, result.model_dump(mode="json"))
    if result.ok:
        _resolve(ctx, incident_id, S.DIAGNOSED, 0, result, event.correlation_id)
    else:
        failed = "; ".join(c.detail for c in result.checks if not c.ok)
        escalate(
            ctx.store,
            incident_id,
            S.DIAGNOSED,
            PRODUCER,
            f"no call restores it ({proposal.rationale}), yet the workload is unhealthy: {failed}",
            event.correlation_id,
        )


# ---------------------------------------------------------------- executing


def on_approval(event: EventEnvelope, incident_id: str, ctx: StageContext) -> None:
    incident = ctx.store.get(incident_id)
    status = incident.status if incident else None
    if status not in WORKING_ON_A_FIX:
        log.info("not awaiting execution", status=status and status.value)
        return
    proposal = _recorded_proposal(ctx, incident_id, "approved")
    leases = ResourceLeases(ctx.clients("dynamodb"), ctx.settings.remediation_lease_s)
    # Another incident's fix on this function runs to its end first (it may take the
    # whole verification); one waiting longer than that comes back later.
    wait_s = ctx.settings.verify_timeout_s + ctx.settings.remediation_lease_s
    try:
        with remediating(leases, proposal.function_name, incident_id, wait_s) as held:
            _remediate(event, incident_id, proposal, held, ctx)
    except (ResourceBusy, LeaseLost) as exc:
        raise RetryLater(str(exc), after_s=ctx.settings.remediation_lease_s) from None


def _remediate(
    event: EventEnvelope, incident_id: str, proposal: Proposal, held: HeldLease, ctx: StageContext
) -> None:
    """Execute and verify, holding the function's lease. The status is read again: while
    this waited for the lease, another delivery may have done the work."""
    incident = ctx.store.get(incident_id)
    status = incident.status if incident else None
    if incident is None or status not in WORKING_ON_A_FIX:
        log.info("not awaiting execution", status=status and status.value)
        return
    want = _baseline(ctx, proposal.function_name, proposal.baseline_version)
    clients = ctx.clients
    if status == S.APPROVED:
        approved_digest = event.payload.get("calls_digest")
        if approved_digest != proposal.calls_digest():
            escalate(
                ctx.store,
                incident_id,
                S.APPROVED,
                PRODUCER,
                "the approval does not name the proposal's calls; nothing was run",
                event.correlation_id,
            )
            return
        # What the calls will overwrite, kept before anything changes (once: a redelivery
        # must not snapshot the half-fixed state).
        snapshot = read_live(clients, proposal.function_name)
        ctx.store.put_context(
            incident_id, ContextItem.SNAPSHOT, snapshot.model_dump(mode="json"), only_new=True
        )
        if not ctx.store.transition(
            incident_id,
            S.APPROVED,
            S.EXECUTING,
            PRODUCER,
            {"approved_by": event.payload.get("approved_by"), "digest": approved_digest},
            current=incident,
        ):
            return  # another delivery took it: an approval is used once
        status = S.EXECUTING
    snapshot = Baseline.model_validate(ctx.store.get_context(incident_id, ContextItem.SNAPSHOT))
    if status == S.EXECUTING:
        failure = _execute(ctx, incident_id, incident.round, proposal, want, held)
        if failure:
            _roll_back(ctx, incident_id, S.EXECUTING, proposal, snapshot, failure, event)
            return
        ctx.store.transition(
            incident_id,
            S.EXECUTING,
            S.VERIFYING,
            PRODUCER,
            {"calls": len(proposal.calls)},
            announce=[
                _event(
                    EventType.EXECUTED,
                    incident_id,
                    {"calls": [shown(c.call) for c in proposal.calls]},
                    event.correlation_id,
                )
            ],
        )
    if status in (S.EXECUTING, S.VERIFYING) and _verify(
        ctx, incident, proposal, want, snapshot, event, held
    ):
        # Recovered: the watch's first look is on its way (announced with RECOVERED) and
        # takes the lease over; this message, and its worker, are done.
        held.hand_over()


def _execute(
    ctx: StageContext,
    incident_id: str,
    round_number: int,
    proposal: Proposal,
    want: Baseline,
    held: HeldLease,
) -> str | None:
    """Run the calls not yet run. Returns why it stopped, or None when all ran."""
    for i, proposed in enumerate(proposal.calls):
        held.keep()
        if ctx.store.get_context(incident_id, executed(i)):
            continue  # ran before a crash; never twice
        call = proposed.call.with_baseline_values(want)
        try:
            outcome = run_call(ctx.clients, call)
        except (RefusedCall, CallFailed) as exc:
            ctx.store.append_audit(
                incident_id,
                PRODUCER,
                "api_call_failed",
                {**shown(proposed.call), "error": str(exc)},
            )
            return str(exc)
        at = datetime.now(UTC).isoformat()
        ctx.store.put_context(incident_id, executed(i), {"at": at, "outcome": outcome})
        ctx.store.append_audit(
            incident_id,
            PRODUCER,
            "api_call",
            {**shown(proposed.call), "outcome": outcome, "round": round_number},
        )
    return None


def _executed_at(ctx: StageContext, incident_id: str, proposal: Proposal) -> datetime:
    times = [
        (ctx.store.get_context(incident_id, executed(i)) or {}).get("at")
        for i in range(len(proposal.calls))
    ]
    stamps = [datetime.fromisoformat(t) for t in times if t]
    return max(stamps) if stamps else datetime.now(UTC)


def _verify(
    ctx: StageContext,
    incident: Incident,
    proposal: Proposal,
    want: Baseline,
    snapshot: Baseline,
    event: EventEnvelope,
    held: HeldLease,
) -> bool:
    """VERIFYING: recovered (True), or what the failed fix calls for next (False)."""
    incident_id = incident.incident_id
    fixed_at = _executed_at(ctx, incident_id, proposal)
    result: Verification = verify(
        ctx.clients,
        want,
        _concerns(proposal),
        fixed_at,
        ctx.settings.verify_successful_runs,
        ctx.settings.verify_timeout_s,
        on_poll=held.keep,
    )
    ctx.store.put_context(incident_id, ContextItem.VERIFICATION, result.model_dump(mode="json"))
    if result.ok:
        now = datetime.now(UTC)
        return ctx.store.transition(
            incident_id,
            S.VERIFYING,
            S.RECOVERED,
            PRODUCER,
            {"round": incident.round, "checks": result.model_dump(mode="json")["checks"]},
            announce=[
                _event(
                    EventType.RECOVERED,
                    incident_id,
                    {"round": incident.round, "actions": len(proposal.calls)},
                    event.correlation_id,
                ),
                _look(ctx, incident_id, incident.round, 1, now, now, event.correlation_id),
            ],
        )
    failed = "; ".join(f"{c.name}: {c.detail}" for c in result.checks if not c.ok)
    worse = made_worse(ctx.clients, want, _concerns(proposal), proposal.function_name, fixed_at)
    if worse:
        # Only a fix that made things worse is undone (all of its calls, back to the
        # snapshot); then the next round looks for another candidate.
        undone = _undo(ctx, incident_id, proposal, snapshot)
        reason = f"the fix made things worse ({worse}) and was undone: {failed}"
        if not _next_round(ctx, incident, S.VERIFYING, reason, fixed_at, event, undone):
            _roll_back_and_escalate(ctx, incident_id, S.VERIFYING, reason, undone, event)
        return False
    reason = f"the fix restored its part, and the function still fails: {failed}"
    if not _next_round(ctx, incident, S.VERIFYING, reason, fixed_at, event):
        escalate(ctx.store, incident_id, S.VERIFYING, PRODUCER, reason, event.correlation_id)
    return False


# ---------------------------------------------------------------- watching


def _look(
    ctx: StageContext,
    incident_id: str,
    round_number: int,
    look: int,
    recovered_at: datetime,
    now: datetime,
    correlation_id: str,
) -> EventEnvelope:
    """The watch's `look`th look at the incident, due when `next_look_s` says. Its id names
    the round and the look, so a look announced twice is handled once."""
    window = watch_window_s(ctx.settings.watch_window_s, ctx.settings.alarm_period_s, recovered_at)
    due = next_look_s(recovered_at, window, ctx.settings.watch_every_s, now)
    event = _event(
        EventType.WATCH, incident_id, {"round": round_number, "look": look}, correlation_id
    ).model_copy(
        update={
            "event_id": f"{incident_id}:watch:{look}",
            "not_before": now + timedelta(seconds=due),
        }
    )
    return in_round(event, round_number)


def on_watch(event: EventEnvelope, incident_id: str, ctx: StageContext) -> None:
    """RECOVERED: one look of the watch. Still clean within the window: the next look is
    announced (a delayed message) and the lease is kept for it. Then RESOLVED, or a
    relapse starts another round (the fix verified its own part: it is not rolled back)."""
    incident = ctx.store.get(incident_id)
    round_number = event.payload.get("round")
    if incident is None or incident.status != S.RECOVERED or incident.round != round_number:
        log.info("no watch due", status=incident and incident.status.value, round=round_number)
        return
    proposal = _recorded_proposal(ctx, incident_id, "recovered")
    leases = ResourceLeases(ctx.clients("dynamodb"), ctx.settings.remediation_lease_s)
    lease = leases.resume(proposal.function_name, incident_id)
    if lease is None:
        raise RetryLater(
            f"{proposal.function_name} is held by another remediation; the watch waits",
            after_s=ctx.settings.remediation_lease_s,
        )
    held = HeldLease(leases, lease)
    want = _baseline(ctx, proposal.function_name, proposal.baseline_version)
    recovered_at = _reached(ctx, incident_id, S.RECOVERED)
    now = datetime.now(UTC)
    window = watch_window_s(ctx.settings.watch_window_s, ctx.settings.alarm_period_s, recovered_at)
    result = watch_look(
        ctx.clients,
        want,
        _concerns(proposal),
        recovered_at,
        window,
        window + ctx.settings.verify_timeout_s,
        now,
    )
    if result is None:
        look = int(event.payload.get("look", 1)) + 1
        following = _look(
            ctx, incident_id, incident.round, look, recovered_at, now, event.correlation_id
        )
        ctx.store.announce(incident_id, [following])
        held.hand_over()
        return
    try:
        _watched(ctx, incident, proposal, result, recovered_at, event)
    finally:
        held.release()


def _watched(
    ctx: StageContext,
    incident: Incident,
    proposal: Proposal,
    result: Verification,
    recovered_at: datetime,
    event: EventEnvelope,
) -> None:
    """The watch's verdict: RESOLVED, another round, or a person."""
    incident_id = incident.incident_id
    ctx.store.put_context(incident_id, ContextItem.WATCH, result.model_dump(mode="json"))
    if result.ok:
        _resolve(ctx, incident_id, S.RECOVERED, len(proposal.calls), result, event.correlation_id)
        return
    failed = "; ".join(f"{c.name}: {c.detail}" for c in result.checks if not c.ok)
    reason = (
        f"relapsed while watched: {failed}"
        if result.relapsed
        else f"the alarms did not come back to OK while watched: {failed}"
    )
    if not _next_round(ctx, incident, S.RECOVERED, reason, recovered_at, event):
        escalate(ctx.store, incident_id, S.RECOVERED, PRODUCER, reason, event.correlation_id)


def _next_round(
    ctx: StageContext,
    incident: Incident,
    current: S,
    reason: str,
    since: datetime,
    event: EventEnvelope,
    undone: list[dict[str, Any]] | None = None,
) -> bool:
    """Another round of investigate-fix-verify in this incident; False when the rounds
    are used up (the caller hands the incident to a person)."""
    if incident.round >= ctx.settings.max_rounds:
        return False
    following = incident.round + 1
    detail = {"round": following, "reason": reason, "rolled_back": undone or []}
    return ctx.store.transition(
        incident.incident_id,
        current,
        S.INVESTIGATING,
        PRODUCER,
        detail,
        announce=[
            _event(
                EventType.NEXT_ROUND,
                incident.incident_id,
                {**detail, "since": since.isoformat()},
                event.correlation_id,
            )
        ],
        round_number=following,
    )


def _reached(ctx: StageContext, incident_id: str, status: S) -> datetime:
    """When the incident last entered `status` (now, if the audit does not say)."""
    entered = [
        e["at"] for e in ctx.store.audit(incident_id) if str(e["action"]).endswith(f"-> {status}")
    ]
    return datetime.fromisoformat(max(entered)) if entered else datetime.now(UTC)


def _concerns(proposal: Proposal) -> list[Concern]:
    return list(proposal.concerns) or ALL_CONCERNS


def _undo(
    ctx: StageContext, incident_id: str, proposal: Proposal, snapshot: Baseline
) -> list[dict[str, Any]]:
    """Put back what the snapshot recorded, for what the fix touched."""
    clients = ctx.clients
    now = read_live(clients, proposal.function_name)
    undone = []
    for concern in _concerns(proposal):
        for proposed in restore_calls(concern, snapshot, now):
            try:
                run_call(clients, proposed.call)
            except (RefusedCall, CallFailed) as exc:
                ctx.store.append_audit(
                    incident_id,
                    PRODUCER,
                    "rollback_call_failed",
                    {**shown(proposed.call), "error": str(exc)},
                )
                continue
            undone.append(shown(proposed.call))
            ctx.store.append_audit(incident_id, PRODUCER, "rollback_call", shown(proposed.call))
    return undone


def _roll_back(
    ctx: StageContext,
    incident_id: str,
    current: S,
    proposal: Proposal,
    snapshot: Baseline,
    reason: str,
    event: EventEnvelope,
) -> None:
    """A fix that could not be carried out: put back what the snapshot recorded, then hand
    the incident to a person."""
    undone = _undo(ctx, incident_id, proposal, snapshot)
    _roll_back_and_escalate(ctx, incident_id, current, reason, undone, event)


def _roll_back_and_escalate(
    ctx: StageContext,
    incident_id: str,
    current: S,
    reason: str,
    undone: list[dict[str, Any]],
    event: EventEnvelope,
) -> None:
    detail = {"reason": reason, "rolled_back": undone}
    if ctx.store.transition(
        incident_id,
        current,
        S.ROLLED_BACK,
        PRODUCER,
        detail,
        announce=[_event(EventType.ROLLED_BACK, incident_id, detail, event.correlation_id)],
    ):
        escalate(
            ctx.store,
            incident_id,
            S.ROLLED_BACK,
            PRODUCER,
            f"rolled back: {reason}",
            event.correlation_id,
        )
