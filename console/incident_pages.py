"""Incidents and the fixes waiting for a person: the list, one incident's story and its
postmortem, the pending approvals beside the live drift from baseline, and the same decision
as `fleet approve|reject`."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from console.pages import Pages, dumps
from core.aws import Clients
from core.settings import Settings
from incidents.approvals import ApprovalError, Decision, decide_and_announce
from incidents.context_items import ContextItem
from incidents.incident_report import IncidentReport, list_incidents, load_report
from incidents.incident_trace import load_incident_trace
from incidents.lifecycle import IncidentStatus
from incidents.postmortem import postmortem_markdown
from incidents.proposal_drift import ProposalDrift, proposal_drift
from incidents.store import IncidentStore
from queues.publisher import Publisher


class IncidentPages(Pages):
    def __init__(self, settings: Settings, clients: Clients, token: str):
        super().__init__(settings, clients, token)
        self.store = IncidentStore(clients("dynamodb"))

    def routes(self) -> list[Route]:
        return [
            Route("/incidents", self.incidents),
            Route("/incidents/{incident_id}", self.incident),
            Route("/incidents/{incident_id}/postmortem.md", self.postmortem),
            Route("/approvals", self.approvals),
            Route(
                "/approvals/{incident_id}/{decision:str}",
                self.action(self.decide),
                methods=["POST"],
            ),
        ]

    def incidents(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status and status not in {s.value for s in IncidentStatus}:
            raise HTTPException(400, f"unknown status {status!r}")
        rows = list_incidents(self.store, status)
        return self.page(
            request,
            "incidents.html",
            rows=rows,
            status=status,
            statuses=[s.value for s in IncidentStatus],
        )

    def _report(self, request: Request) -> IncidentReport:
        report = load_report(self.store, request.path_params["incident_id"])
        if report is None:
            raise HTTPException(404, "no such incident")
        return report

    def incident(self, request: Request) -> Response:
        report = self._report(request)
        # The waterfall is drawn from the local trace files; with an OTLP endpoint the spans
        # are in the user's own backend, and the page says so.
        found = load_incident_trace(self.settings.trace_dir, report.incident_id)
        return self.page(
            request,
            "incident.html",
            r=report,
            dumps=dumps,
            trace=found,
            otlp=self.settings.otlp_configured,
        )

    def postmortem(self, request: Request) -> Response:
        report = self._report(request)
        return PlainTextResponse(
            postmortem_markdown(report),
            media_type="text/markdown; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{report.incident_id}-postmortem.md"'
            },
        )

    def approvals(self, request: Request) -> Response:
        pending = []
        for row in list_incidents(self.store, IncidentStatus.AWAITING_APPROVAL.value):
            request_item = self.store.get_context(row["incident_id"], ContextItem.APPROVAL)
            if request_item and request_item.get("status") == "pending":
                drift = proposal_drift(
                    self.clients, self.store, row["incident_id"], str(row["resource"])
                )
                pending.append({"incident": row, "request": request_item, "diff": _shown(drift)})
        return self.page(request, "approvals.html", pending=pending, dumps=dumps)

    def decide(self, request: Request, form: FormData) -> Response:
        incident_id = request.path_params["incident_id"]
        if request.path_params["decision"] not in ("approve", "reject"):
            raise HTTPException(404, "decide with /approve or /reject")
        approve = request.path_params["decision"] == "approve"
        who = str(form.get("approver") or "").strip()
        if not who:
            raise HTTPException(400, "say who decides: the approver's name is recorded")
        try:
            decided = decide_and_announce(
                self.store,
                Publisher.for_principal(self.clients, self.settings),
                incident_id,
                Decision(
                    approve=approve,
                    decided_by=f"{who} (console)",
                    seen_digest=str(form.get("calls_digest") or ""),
                    reason=str(form.get("reason") or "").strip() or None,
                ),
            )
        except ApprovalError as exc:
            raise HTTPException(409, str(exc)) from None
        return self.page(
            request,
            "done.html",
            title=f"{incident_id}: {decided.status}",
            lines=[f"{decided.status} by {decided.decided_by} at {decided.decided_at}."],
            back=f"/incidents/{incident_id}",
        )


def _shown(drift: ProposalDrift) -> dict[str, Any]:
    """The drift as the approvals page shows it: each concern's diff, or why there is none."""
    if drift.missing_baseline:
        return {"error": f"no baseline v{drift.baseline_version} of {drift.function}"}
    return {concern: diff.model_dump(mode="json") for concern, diff in drift.diffs.items()}
