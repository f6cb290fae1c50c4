"""The console: queues, dead letters, incidents and approvals in a browser, and the same
actions as `fleet dlq` and `fleet approve|reject`, behind the token (console/auth.py).

Pages are rendered on the server (Jinja2, autoescaped: a payload is shown as text, never
run); the queue page refreshes itself from /api/queues; a redrive runs in the background
and its page follows it from /api/jobs/ID. Destructive actions are POST only, confirmed,
and carry the session's CSRF token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from console.auth import (
    authenticated,
    checked_form,
    csrf_token,
    log_in,
    session_secret,
)
from console.jobs import Jobs
from console.snapshot import snapshot
from core.aws import Clients
from core.aws_errors import error_code, error_message
from core.errors import FleetError
from core.settings import Settings
from incidents.approvals import ApprovalError, decide_and_announce
from incidents.incident_report import list_incidents, load_report
from incidents.lifecycle import IncidentStatus
from incidents.postmortem import postmortem_markdown
from incidents.proposal_drift import ProposalDrift, proposal_drift
from incidents.store import IncidentStore
from queues.dlq import DeadLetters
from queues.publisher import Publisher
from queues.topology import build_topology

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PUBLIC_PATHS = frozenset({"/login", "/health"})


class RequireToken:
    """Every page and action but the login form needs the token (401 otherwise, with the
    login form for a person)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if authenticated(request, self.token):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/api/") or "text/html" not in request.headers.get(
            "accept", ""
        ):
            response: Response = JSONResponse({"error": "the console token is needed"}, 401)
        else:
            response = TEMPLATES.TemplateResponse(
                request, "login.html", {"next": scope["path"], "error": None}, status_code=401
            )
        await response(scope, receive, send)


class Console:
    def __init__(self, settings: Settings, clients: Clients, token: str):
        self.settings = settings
        self.clients = clients
        self.token = token
        self.topology = build_topology(settings)
        self.store = IncidentStore(clients("dynamodb"))
        self.letters = DeadLetters(
            clients("sqs"), clients("dynamodb"), self.topology, settings.dlq_move_visibility_s
        )
        self.jobs = Jobs()

    # ------------------------------------------------------------------ helpers

    def page(self, request: Request, name: str, **context: Any) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {"csrf": csrf_token(request), "refresh_s": self.settings.console_refresh_s, **context},
        )

    def publisher(self) -> Publisher:
        return Publisher.for_principal(self.clients, self.settings)

    # ------------------------------------------------------------------ login

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return TEMPLATES.TemplateResponse(
                request,
                "login.html",
                {"next": request.query_params.get("next", "/"), "error": None},
            )
        form = await request.form()
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # never a redirect off this site
        if not log_in(request, str(form.get("token") or ""), self.token):
            return TEMPLATES.TemplateResponse(
                request,
                "login.html",
                {"next": target, "error": "That is not the console token."},
                status_code=401,
            )
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        await checked_form(request, self.token)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # ------------------------------------------------------------------ queues

    async def index(self, _request: Request) -> Response:
        return RedirectResponse("/queues", status_code=303)

    async def queues(self, request: Request) -> Response:
        return self.page(request, "queues.html", snap=snapshot(self.clients, self.topology))

    async def api_queues(self, _request: Request) -> Response:
        return JSONResponse(snapshot(self.clients, self.topology).model_dump())

    # ------------------------------------------------------------------ dead letters

    def _dlq(self, request: Request) -> tuple[str, str]:
        try:
            return self.letters.resolve(request.path_params["queue"])
        except FleetError as exc:
            raise HTTPException(404, str(exc)) from None

    async def dead_letters(self, request: Request) -> Response:
        dlq, source = self._dlq(request)
        letters = self.letters.peek(dlq)
        queues = [q.name for q in self.topology.queues]
        return self.page(
            request, "dlq.html", dlq=dlq, source=source, letters=letters, queues=queues
        )

    async def api_dead_letters(self, request: Request) -> Response:
        dlq, _ = self._dlq(request)
        return JSONResponse([d.model_dump() for d in self.letters.peek(dlq)])

    async def redrive(self, request: Request) -> Response:
        form = await checked_form(request, self.token)
        dlq, source = self._dlq(request)
        ids = [str(i) for i in form.getlist("ids")] if form.get("scope") == "selected" else []
        if form.get("scope") == "selected" and not ids:
            raise HTTPException(400, "no message chosen: tick the ones to redrive")
        destination = str(form.get("to") or source)
        if destination not in [q.name for q in self.topology.queues]:
            raise HTTPException(400, f"unknown destination queue {destination!r}")
        rate_text = str(form.get("rate") or "").strip()
        try:
            rate = float(rate_text) if rate_text else None
        except ValueError:
            raise HTTPException(400, f"rate {rate_text!r} is not a number") from None
        if rate is not None and rate <= 0:
            raise HTTPException(400, "the rate must be above 0 messages per second")
        job = self.jobs.start(
            dlq,
            destination,
            lambda progress: self.letters.redrive(dlq, destination, ids or None, rate, progress),
        )
        return RedirectResponse(f"/jobs/{job.job_id}", status_code=303)

    async def delete(self, request: Request) -> Response:
        form = await checked_form(request, self.token)
        dlq, _ = self._dlq(request)
        ids = [str(i) for i in form.getlist("ids")]
        if not ids:
            raise HTTPException(400, "no message chosen: tick the ones to delete")
        if form.get("confirm") != "yes":
            raise HTTPException(400, "deleting needs the confirmation box ticked")
        deleted, missing = self.letters.delete(dlq, ids)
        return self.page(
            request,
            "done.html",
            title=f"Deleted from {dlq}",
            lines=[f"{deleted} message(s) deleted for good."]
            + ([f"Not found: {', '.join(missing)}"] if missing else []),
            back=f"/dlq/{dlq}",
        )

    async def purge(self, request: Request) -> Response:
        form = await checked_form(request, self.token)
        dlq, _ = self._dlq(request)
        if form.get("confirm") != dlq:
            raise HTTPException(400, f"purging needs the queue's name, {dlq}, typed to confirm")
        purged = self.letters.purge(dlq)
        return self.page(
            request,
            "done.html",
            title=f"Purged {dlq}",
            lines=[f"{purged} message(s) deleted for good."],
            back=f"/dlq/{dlq}",
        )

    async def job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, "no such redrive")
        return self.page(request, "job.html", job=job.view())

    async def api_job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, "no such redrive")
        return JSONResponse(job.view().model_dump(mode="json"))

    # ------------------------------------------------------------------ incidents

    async def incidents(self, request: Request) -> Response:
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

    def _report(self, request: Request) -> Any:
        report = load_report(self.store, request.path_params["incident_id"])
        if report is None:
            raise HTTPException(404, "no such incident")
        return report

    async def incident(self, request: Request) -> Response:
        report = self._report(request)
        return self.page(request, "incident.html", r=report, dumps=_dumps)

    async def postmortem(self, request: Request) -> Response:
        report = self._report(request)
        return PlainTextResponse(
            postmortem_markdown(report),
            media_type="text/markdown; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{report.incident_id}-postmortem.md"'
            },
        )

    # ------------------------------------------------------------------ approvals

    async def approvals(self, request: Request) -> Response:
        pending = []
        for row in list_incidents(self.store, IncidentStatus.AWAITING_APPROVAL.value):
            request_item = self.store.get_context(row["incident_id"], "approval")
            if request_item and request_item.get("status") == "pending":
                pending.append(
                    {
                        "incident": row,
                        "request": request_item,
                        "diff": _shown(
                            proposal_drift(
                                self.clients, self.store, row["incident_id"], str(row["resource"])
                            )
                        ),
                    }
                )
        return self.page(request, "approvals.html", pending=pending, dumps=_dumps)

    async def decide(self, request: Request) -> Response:
        form = await checked_form(request, self.token)
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
                self.publisher(),
                incident_id,
                approve,
                f"{who} (console)",
                str(form.get("calls_digest") or ""),
                reason=str(form.get("reason") or "").strip() or None,
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


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if "text/html" in request.headers.get("accept", ""):
        return TEMPLATES.TemplateResponse(
            request,
            "done.html",
            {"title": f"Error {exc.status_code}", "lines": [exc.detail], "back": "/", "csrf": ""},
            status_code=exc.status_code,
        )
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


# AWS refusals that mean "not now" or "not so": the operator's request, not the console.
CONFLICTS = frozenset({"PurgeQueueInProgress", "QueueDoesNotExist", "ReceiptHandleIsInvalid"})


async def _aws_error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    code = error_code(exc)
    # SQS names some codes AWS.SimpleQueueService.X; the last part is what they mean.
    status = 409 if code.rsplit(".", 1)[-1] in CONFLICTS else 502
    message = f"AWS refused {exc.operation_name}: {code}: {error_message(exc)}"
    return await _error_page(request, HTTPException(status, message))


def build_app(settings: Settings, clients: Clients, token: str) -> Starlette:
    c = Console(settings, clients, token)
    routes = [
        Route("/health", c.health),
        Route("/login", c.login, methods=["GET", "POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/", c.index),
        Route("/queues", c.queues),
        Route("/api/queues", c.api_queues),
        Route("/dlq/{queue}", c.dead_letters),
        Route("/api/dlq/{queue}", c.api_dead_letters),
        Route("/dlq/{queue}/redrive", c.redrive, methods=["POST"]),
        Route("/dlq/{queue}/delete", c.delete, methods=["POST"]),
        Route("/dlq/{queue}/purge", c.purge, methods=["POST"]),
        Route("/jobs/{job_id}", c.job),
        Route("/api/jobs/{job_id}", c.api_job),
        Route("/incidents", c.incidents),
        Route("/incidents/{incident_id}", c.incident),
        Route("/incidents/{incident_id}/postmortem.md", c.postmortem),
        Route("/approvals", c.approvals),
        Route("/approvals/{incident_id}/{decision:str}", c.decide, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(token),
                session_cookie="fleet_console",
                same_site="strict",
                # Secure only when served over HTTPS: on plain http://127.0.0.1 a browser
                # would drop a Secure cookie and no one could log in.
                https_only=settings.console_https,
                max_age=8 * 3600,
            ),
            Middleware(RequireToken, token=token),
        ],
        exception_handlers={HTTPException: _error_page, ClientError: _aws_error_page},
    )
