"""The critic worker: every proposal is reviewed before anything runs.

Code first: every call on the allowlist, restoring (part of) the baseline and nothing
beyond it, on the function's own resources, with an inverse, and no more calls than a
person would want to see run unattended. A call that widens anything is rejected outright.
Then the model review. A proposal that restores the baseline exactly, with no concern from
either, is approved automatically (unless every proposal must see a person); anything
else waits for a person on incident-approvals.

A deploy rolled back (the alias `live` moved) is checked against the versions as they are
now, read by the critic itself: the target must exist and run the baseline's package. It
restores the baseline exactly, and may run unattended, only when the target is also the
baseline's own; pointing `live` at another version with the same package (when the
baseline's target runs other code now) is left to a person.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from botocore.exceptions import ClientError

from core.aws_errors import ACCESS_DENIED, error_code
from core.lambda_versions import FunctionVersions, read_versions
from incidents.approvals import approved_event, new_request
from incidents.baselines import Baseline, BaselineStore
from incidents.context_items import ContextItem
from incidents.diagnosis import MIN_CONFIDENCE
from incidents.escalation import escalate
from incidents.lifecycle import IncidentStatus as S
from incidents.proposal import Proposal, Review, Verdict
from incidents.remediation import validate
from queues.events import EventEnvelope, incident_event
from queues.outcomes import NonRetryableError, RetryLater
from queues.topology import EventType
from workers.agents.model_quota import ModelQuotaExhausted, model_bucket
from workers.agents.review import review
from workers.agents.transcript import record_transcript
from workers.stage import StageContext

log = structlog.get_logger()
PRODUCER = "critic"


def handle(event: EventEnvelope, ctx: StageContext) -> None:
    if event.event_type != EventType.PROPOSED or event.incident_id is None:
        raise NonRetryableError(f"the critic takes incident.proposed, not {event.event_type.value}")
    on_proposal(event, event.incident_id, ctx)


def code_checks(
    proposal: Proposal,
    want: Baseline | None,
    max_auto_calls: int,
    live: FunctionVersions | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """(checks as shown to an approver, reasons to reject, reasons to ask a person).

    `live`: the function's versions as read now, for a call that moves the alias."""
    if want is None:
        reason = f"baseline v{proposal.baseline_version} of {proposal.function_name} not found"
        return [reason], [reason], []
    verdict = validate(proposal.function_name, want, proposal.calls, live)
    checks, reject, ask = [], [], []
    for i, v in enumerate(verdict.calls, 1):
        name = f"call {i} {v.call.service}:{v.call.operation}"
        checks.append(
            f"{name}: allowlisted={v.allowlisted} restores_baseline={v.restores_baseline} "
            f"inverse={v.inverse_known} exact={not v.caveats}"
        )
        if not v.allowlisted or not v.restores_baseline:
            reject += [f"{name}: {p}" for p in v.problems]
        elif not v.inverse_known:
            ask += [f"{name}: {p}" for p in v.problems]
        ask += [f"{name}: {c}" for c in v.caveats]
    if not proposal.calls:
        reject.append("the proposal makes no call")
    if len(proposal.calls) > max_auto_calls:
        ask.append(
            f"{len(proposal.calls)} calls: more than {max_auto_calls} run only with a person"
        )
    checks.append(f"blast radius: {len(proposal.calls)} call(s) on {proposal.function_name} only")
    return checks, reject, ask


def _versions_if_moved(ctx: StageContext, proposal: Proposal) -> FunctionVersions | None:
    """The function's versions, read now, when a call moves its alias (else not read)."""
    if not any(c.call.operation == "UpdateAlias" for c in proposal.calls):
        return None
    try:
        return read_versions(ctx.clients("lambda"), proposal.function_name)
    except ClientError as exc:
        if error_code(exc) not in ACCESS_DENIED | {"ResourceNotFoundException"}:
            raise  # passing: the delivery is retried
        # Unreadable for good: the call cannot be checked, and validation says so.
        log.warning("versions unreadable", function=proposal.function_name, error=str(exc))
        return None


def _model_review(
    ctx: StageContext,
    incident_id: str,
    diagnosis: dict[str, Any],
    proposal: dict[str, Any],
    checks: list[str],
) -> list[str]:
    """The model's concerns about a proposal (none: it approves). The model quota refusing
    on every try hands the message back for later; on its last receive, a person reviews
    instead of the model."""
    quota = model_bucket(ctx.clients("dynamodb"), ctx.settings)
    try:
        run = asyncio.run(review(ctx.settings, diagnosis, proposal, checks, quota=quota))
    except ModelQuotaExhausted as exc:
        if not ctx.last_attempt:
            raise RetryLater(str(exc), ctx.settings.dependency_retry_s) from exc
        return [f"no model review: {exc}"]
    record_transcript(ctx.store, incident_id, PRODUCER, "review", run)
    if run.answer is None:
        return [f"no model review: {run.stopped or 'no answer'}"]
    if not run.answer.approve and not run.answer.concerns:
        return ["the model review did not approve"]
    return list(run.answer.concerns)


def on_proposal(event: EventEnvelope, incident_id: str, ctx: StageContext) -> None:
    incident = ctx.store.get(incident_id)
    if incident is None or incident.status != S.PROPOSED:
        log.info("not awaiting review", status=incident and incident.status.value)
        return
    raw = ctx.store.get_context(incident_id, ContextItem.PROPOSAL)
    if raw is None:
        raise NonRetryableError(f"{incident_id}: proposed, but no proposal is recorded")
    proposal = Proposal.model_validate(raw)
    diagnosis = ctx.store.get_context(incident_id, ContextItem.DIAGNOSIS) or {}
    want = BaselineStore(ctx.store.ddb).version(proposal.function_name, proposal.baseline_version)
    live = _versions_if_moved(ctx, proposal)
    checks, reject, ask = code_checks(proposal, want, ctx.settings.critic_max_auto_calls, live)
    model_concerns: list[str] = []
    if not reject:
        model_concerns = _model_review(ctx, incident_id, diagnosis, raw, checks)
    if float(diagnosis.get("confidence", 0)) < MIN_CONFIDENCE:
        ask.append(f"diagnosis confidence {diagnosis.get('confidence')} < {MIN_CONFIDENCE}")
    if ctx.settings.require_human_approval:
        ask.append("every proposal needs a person (require_human_approval)")
    if reject:
        verdict, reasons = Verdict.REJECT, reject
    elif ask or model_concerns:
        verdict, reasons = Verdict.ASK_HUMAN, ask + model_concerns
    else:
        verdict, reasons = Verdict.APPROVE, ["restores the recorded baseline exactly"]
    decision = Review(
        verdict=verdict,
        reasons=reasons,
        code_checks=checks,
        model_concerns=model_concerns,
        calls_digest=proposal.calls_digest(),
    )
    ctx.store.put_context(incident_id, ContextItem.REVIEW, decision.model_dump(mode="json"))
    detail = decision.model_dump(mode="json")
    corr = event.correlation_id
    if verdict == Verdict.APPROVE:
        ctx.store.transition(
            incident_id,
            S.PROPOSED,
            S.APPROVED,
            PRODUCER,
            detail,
            announce=[approved_event(incident_id, decision.calls_digest, "critic (automatic)")],
        )
    elif verdict == Verdict.REJECT:
        reason = "rejected by the critic: " + "; ".join(reasons)
        if ctx.store.transition(
            incident_id,
            S.PROPOSED,
            S.REJECTED,
            PRODUCER,
            detail,
            announce=[_event(EventType.REJECTED, incident_id, {"reasons": reasons}, corr)],
        ):
            escalate(ctx.store, incident_id, S.REJECTED, PRODUCER, reason, corr)
    else:
        request = new_request(incident_id, proposal, reasons, ctx.settings.approval_ttl_s)
        ctx.store.put_context(incident_id, ContextItem.APPROVAL, request.model_dump(mode="json"))
        ctx.store.transition(
            incident_id,
            S.PROPOSED,
            S.AWAITING_APPROVAL,
            PRODUCER,
            detail,
            announce=[
                _event(
                    EventType.AWAITING_APPROVAL,
                    incident_id,
                    {"approval": request.model_dump(mode="json")},
                    corr,
                )
            ],
        )


def _event(
    kind: EventType, incident_id: str, payload: dict[str, object], corr: str
) -> EventEnvelope:
    return incident_event(kind, PRODUCER, incident_id, payload, corr)
