"""One incident's whole story, read back from the store: for `fleet incidents show`, the
postmortem, the demo, game days and the console.

An incident may take several rounds of investigate-fix-verify. The current round's records
keep their plain names in the context; a finished round's are kept under `archived(n, ...)`,
and the audit entry that started round n says so (`status ... -> INVESTIGATING`, detail
`{"round": n, "reason": ...}`). The report reads each round back, and builds from the latest
diagnosis what a person needs when the fleet will not act (the `Handover`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, computed_field

from core.change_history import ChangeHistory
from incidents.context_items import ContextItem, ContextKey, archived, transcript
from incidents.diagnosis import Diagnosis, Evidence
from incidents.incident import Incident
from incidents.lifecycle import IncidentStatus
from incidents.store import IncidentStore, audit_detail

S = IncidentStatus
# The fleet will not act any further: a person takes over.
STOPPED: frozenset[str] = frozenset({S.ESCALATED, S.FAILED, S.ROLLED_BACK, S.REJECTED})
AGENT_STAGES = ("diagnosis", "proposal", "review")
# Drift means someone (or something) changed the account; who did is in CloudTrail's event
# history, which a report reads only where it was given it (`change_history`).
WHO_CHANGED_UNSEEN = (
    "not looked up here: `fleet incidents show` and `fleet incidents postmortem` read "
    "CloudTrail's event history for it"
)


class ReportSource(Protocol):
    """What a report reads: the incident store's reads (an `IncidentStore` is one)."""

    def get(self, incident_id: str) -> Incident | None: ...

    def audit(self, incident_id: str) -> list[dict[str, Any]]: ...

    def get_context(
        self, incident_id: str, item: ContextItem | ContextKey
    ) -> dict[str, Any] | None: ...


class TimelineEntry(BaseModel):
    at: str
    actor: str
    action: str
    detail: dict[str, Any]
    round: int = 1  # the round of investigate-fix-verify the entry belongs to


def starts_round(entry: TimelineEntry) -> int | None:
    """The round an audit entry starts (a move back to INVESTIGATING that names its round)."""
    if entry.action.startswith("status ") and entry.action.endswith(f"-> {S.INVESTIGATING}"):
        number = entry.detail.get("round")
        return number if isinstance(number, int) else None
    return None


class Round(BaseModel):
    """One round of investigate-fix-verify: what it believed, did and saw."""

    number: int
    started_at: str
    ended_at: str | None = None  # when the next round started (None: the current round)
    ended_because: str | None = None  # why another round was needed
    diagnosis: dict[str, Any] | None = None
    proposal: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = []  # the calls executed in this round, as recorded
    rollbacks: list[dict[str, Any]] = []
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # the tokens at the prices the agents ran with
    quota_wait_s: float = 0.0  # the agents' time waiting for the fleet's model quota


class Handover(BaseModel):
    """What a person needs to take over: built from the latest diagnosis. Every string in
    it may quote tool output or log text: data to show escaped, never to interpret."""

    needs_a_person: bool  # the fleet stopped (ESCALATED, FAILED, ROLLED_BACK, REJECTED)
    why: str | None  # why the fleet stopped, or why the diagnosis would have it stop
    diagnosed_in_round: int | None  # None: no diagnosis was recorded
    hypothesis: str | None  # the best hypothesis (the diagnosis's root cause)
    fault_types: list[str] = []
    confidence: float | None = None
    symptoms: list[str] = []  # what was seen failing (counts, error lines quoted)
    drifts: list[str] = []  # every way the live function differs from its baseline
    evidence: list[Evidence] = []  # the claims, each with the tool output it quotes
    ruled_out: list[str] = []  # checked and found at baseline or healthy
    unexplained: list[str] = []  # symptoms no drift explains
    unseen: list[str] = []  # what could not be seen: a tool refused, logs missing
    next_step: str = ""
    # Set when drift was found: someone changed the account, and who cannot be seen here.
    who_changed: str | None = None


class IncidentReport(BaseModel):
    incident_id: str
    resource: str
    signature: str  # the first alert's symptom
    status: str
    opened_at: str
    closed_at: str | None
    alert_count: int
    timeline: list[TimelineEntry]
    # The current round's records (the latest round: what an operator acts on).
    diagnosis: dict[str, Any] | None
    proposal: dict[str, Any] | None
    review: dict[str, Any] | None
    approval: dict[str, Any] | None
    verification: dict[str, Any] | None
    actions: list[dict[str, Any]]  # every call executed, in every round, as recorded
    rollbacks: list[dict[str, Any]]
    tool_calls: int  # the agents' cost, over every round
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = 0.0  # estimated: the tokens at the configured prices per 1,000
    quota_wait_s: float = 0.0
    symptoms: list[str] = []  # every alert symptom seen (errors, throttles...)
    round: int = 1  # the round the incident is in
    rounds: list[Round] = []  # each round, the current one last
    # Who changed the function, its role and its network around the incident, from
    # CloudTrail (core/change_history.py); None where nobody looked.
    change_history: ChangeHistory | None = None

    def _entered(self, status: str) -> list[TimelineEntry]:
        return [e for e in self.timeline if e.action.endswith(f"-> {status}")]

    def reached(self, status: str, round_number: int | None = None) -> str | None:
        """When the incident first entered `status` (in `round_number`, if given); None if
        it never did."""
        for entry in self._entered(status):
            if round_number is None or entry.round == round_number:
                return entry.at
        return None

    def _since_opened(self, at: str) -> float:
        opened = datetime.fromisoformat(self.opened_at)
        return round((datetime.fromisoformat(at) - opened).total_seconds(), 1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def recover_s(self) -> float | None:
        """Opened to RECOVERED, the MTTR: the recovery that held (the last time it entered
        RECOVERED, if it is RECOVERED or RESOLVED now; a relapse started another round)."""
        entered = self._entered(S.RECOVERED)
        if self.status not in (S.RECOVERED, S.RESOLVED) or not entered:
            return None
        return self._since_opened(entered[-1].at)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resolve_s(self) -> float | None:
        """Opened to resolved, the watch window included (None unless resolved)."""
        if self.status != S.RESOLVED or not self.closed_at:
            return None
        return self._since_opened(self.closed_at)

    def agent_cost(self) -> str:
        """What the agents spent on the incident, in a line: tool calls, tokens, the
        estimated cost, and any wait for the fleet's model quota."""
        line = (
            f"{self.tool_calls} tool calls, ~{self.prompt_tokens} prompt and "
            f"~{self.completion_tokens} completion tokens, ~${self.cost_usd:.4f} estimated"
        )
        if self.quota_wait_s >= 0.1:
            line += f"; {self.quota_wait_s:.1f} s waiting for the fleet's model quota"
        return line

    @computed_field  # type: ignore[prop-decorator]
    @property
    def handover(self) -> Handover:
        """What a person needs: prominent when the fleet stopped, a record otherwise."""
        return _handover(self)


def who_changed(report: IncidentReport) -> str:
    """Who made the changes, as the trail tells it, or why it was not read."""
    history = report.change_history
    return history.who_changed() if history is not None else WHO_CHANGED_UNSEEN


def _handover(report: IncidentReport) -> Handover:
    needs = report.status in STOPPED
    stopped = [e for e in report.timeline if any(e.action.endswith(f"-> {s}") for s in STOPPED)]
    why = next((reason for e in reversed(stopped) if (reason := _reason(e))), None)
    diagnosed = next((r for r in reversed(report.rounds) if r.diagnosis), None)
    if diagnosed is None or diagnosed.diagnosis is None:
        return Handover(needs_a_person=needs, why=why, diagnosed_in_round=None, hypothesis=None)
    d = Diagnosis.model_validate(diagnosed.diagnosis)
    return Handover(
        needs_a_person=needs,
        why=why or (d.escalation_reason if d.escalate else None),
        diagnosed_in_round=diagnosed.number,
        hypothesis=d.root_cause,
        fault_types=[f.value for f in d.fault_types],
        confidence=d.confidence,
        symptoms=d.symptoms,
        drifts=d.drifts,
        evidence=d.evidence,
        ruled_out=d.ruled_out,
        unexplained=d.unexplained,
        unseen=d.unseen,
        next_step=d.next_step,
        who_changed=who_changed(report) if d.drifts else None,
    )


def _timeline(source: ReportSource, incident_id: str) -> list[TimelineEntry]:
    entries, current = [], 1
    for e in sorted(source.audit(incident_id), key=lambda e: int(e["seq"])):
        entry = TimelineEntry(
            at=str(e["at"]), actor=str(e["actor"]), action=str(e["action"]), detail=audit_detail(e)
        )
        current = starts_round(entry) or current
        entries.append(entry.model_copy(update={"round": current}))
    return entries


def _round(
    source: ReportSource,
    incident: Incident,
    number: int,
    timeline: list[TimelineEntry],
    started_at: str,
    next_start: TimelineEntry | None,
) -> Round:
    finished = number < incident.round

    def ctx(item: ContextItem | ContextKey) -> dict[str, Any] | None:
        key = archived(number, item) if finished else item
        return source.get_context(incident.incident_id, key)

    transcripts = [ctx(transcript(stage)) or {} for stage in AGENT_STAGES]
    mine = [e for e in timeline if e.round == number]
    return Round(
        number=number,
        started_at=started_at,
        ended_at=next_start.at if next_start else None,
        ended_because=_reason(next_start),
        diagnosis=ctx(ContextItem.DIAGNOSIS),
        proposal=ctx(ContextItem.PROPOSAL),
        review=ctx(ContextItem.REVIEW),
        approval=ctx(ContextItem.APPROVAL),
        verification=ctx(ContextItem.VERIFICATION),
        actions=[e.detail for e in mine if e.action == "api_call"],
        rollbacks=[e.detail for e in mine if e.action == "rollback_call"],
        tool_calls=sum(len(t.get("calls", [])) for t in transcripts),
        prompt_tokens=sum(int(t.get("prompt_tokens", 0)) for t in transcripts),
        completion_tokens=sum(int(t.get("completion_tokens", 0)) for t in transcripts),
        # Recorded before the fleet priced its tokens: nothing, not a guess at today's price.
        cost_usd=round(sum(float(t.get("cost_usd", 0)) for t in transcripts), 6),
        quota_wait_s=round(sum(float(t.get("quota_wait_s", 0)) for t in transcripts), 3),
    )


def _reason(entry: TimelineEntry | None) -> str | None:
    return str(entry.detail["reason"]) if entry and entry.detail.get("reason") else None


def load_report(source: ReportSource, incident_id: str) -> IncidentReport | None:
    incident = source.get(incident_id)
    if incident is None:
        return None
    timeline = _timeline(source, incident_id)
    starts = {n: e for e in timeline if (n := starts_round(e)) is not None}
    rounds = [
        _round(
            source,
            incident,
            number,
            timeline,
            starts[number].at if number in starts else incident.opened_at,
            starts.get(number + 1),
        )
        for number in range(1, incident.round + 1)
    ]
    current = rounds[-1]
    return IncidentReport(
        incident_id=incident_id,
        resource=incident.resource,
        signature=incident.signature,
        # Recorded before an incident kept its symptoms: its one symptom is its signature.
        symptoms=incident.symptoms or [incident.signature],
        status=incident.status.value,
        opened_at=incident.opened_at,
        closed_at=incident.closed_at,
        alert_count=incident.alert_count,
        round=incident.round,
        rounds=rounds,
        timeline=timeline,
        diagnosis=current.diagnosis,
        proposal=current.proposal,
        review=current.review,
        approval=current.approval,
        verification=current.verification,
        actions=[a for r in rounds for a in r.actions],
        rollbacks=[a for r in rounds for a in r.rollbacks],
        tool_calls=sum(r.tool_calls for r in rounds),
        prompt_tokens=sum(r.prompt_tokens for r in rounds),
        completion_tokens=sum(r.completion_tokens for r in rounds),
        cost_usd=round(sum(r.cost_usd for r in rounds), 6),
        quota_wait_s=round(sum(r.quota_wait_s for r in rounds), 3),
    )


def list_incidents(store: IncidentStore, status: str | None = None) -> list[dict[str, Any]]:
    statuses = [IncidentStatus(status)] if status else list(IncidentStatus)
    rows = [i for s in statuses for i in store.by_status(s)]
    return sorted(
        (
            {
                "incident_id": i.incident_id,
                "status": i.status.value,
                "resource": i.resource,
                "signature": i.signature,
                "symptoms": i.symptoms or [i.signature],
                "round": i.round,
                "alerts": i.alert_count,
                "opened_at": i.opened_at,
                "updated_at": i.updated_at,
            }
            for i in rows
        ),
        key=lambda r: str(r["opened_at"]),
        reverse=True,
    )
