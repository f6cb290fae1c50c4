"""The queues and their dead letters: depths (refreshed from /api/queues, with a chart of
the last minutes), the letters of a DLQ (filtered and paged from their failure records),
and the same actions as `fleet dlq`: a dry run of a filtered redrive, the redrive itself
(a background job its page follows from /api/jobs/ID, and can cancel), delete, purge, the
audit trail with each redriven message's outcome, and a JSON export."""

from __future__ import annotations

import json

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from console.depth_history import DepthHistory
from console.jobs import Jobs
from console.pages import Pages
from console.snapshot import snapshot
from core.aws import Clients
from core.errors import FleetError
from core.principals import Principal
from core.settings import Settings
from queues.dlq import DeadLetters, RedrivePlan
from queues.dlq_audit import Actor, new_redrive_id
from queues.failures import LetterFilter, LetterPage
from queues.topology import build_topology

PAGE_SIZE = 50
FILTERS = ("reason", "error_class", "event_type", "incident_id")


class QueuePages(Pages):
    def __init__(self, settings: Settings, clients: Clients, token: str):
        super().__init__(settings, clients, token)
        self.topology = build_topology(settings)
        self.letters = DeadLetters(
            clients("sqs"), clients("dynamodb"), self.topology, settings.dlq_move_visibility_s
        )
        self.jobs = Jobs()
        self.depths = DepthHistory(
            clients,
            self.topology,
            settings.console_refresh_s,
            settings.console_chart_minutes * 60,
        )
        self.depths.start()

    def routes(self) -> list[Route]:
        return [
            Route("/queues", self.queues),
            Route("/api/queues", self.api_queues),
            Route("/dlq/{queue}", self.dead_letters),
            Route("/api/dlq/{queue}", self.api_dead_letters),
            Route("/dlq/{queue}/peek", self.peek),
            Route("/dlq/{queue}/plan", self.plan),
            Route("/dlq/{queue}/export.json", self.export),
            Route("/dlq/{queue}/redrive", self.action(self.redrive), methods=["POST"]),
            Route("/dlq/{queue}/delete", self.action(self.delete), methods=["POST"]),
            Route("/dlq/{queue}/purge", self.action(self.purge), methods=["POST"]),
            Route("/jobs/{job_id}", self.job),
            Route("/api/jobs/{job_id}", self.api_job),
            Route("/jobs/{job_id}/cancel", self.action(self.cancel), methods=["POST"]),
            Route("/dlq-audit", self.audit),
            Route("/dlq-audit/{queue}/{redrive_id}", self.redrive_report),
        ]

    def queues(self, request: Request) -> Response:
        snap = snapshot(self.clients, self.topology)
        return self.page(request, "queues.html", snap=snap, history=self.depths.series())

    def api_queues(self, _request: Request) -> Response:
        snap = snapshot(self.clients, self.topology)
        return JSONResponse({**snap.model_dump(), "history": self.depths.series()})

    def _dlq(self, request: Request) -> tuple[str, str]:
        try:
            return self.letters.resolve(request.path_params["queue"])
        except FleetError as exc:
            raise HTTPException(404, str(exc)) from None

    @staticmethod
    def _where(request: Request) -> LetterFilter:
        return LetterFilter(**{k: request.query_params.get(k) or None for k in FILTERS})

    def _page_of(self, request: Request, dlq: str) -> tuple[LetterFilter, LetterPage]:
        where = self._where(request)
        try:
            page = self.letters.failures.dead_letters(
                dlq, where, PAGE_SIZE, request.query_params.get("cursor") or None
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return where, page

    def dead_letters(self, request: Request) -> Response:
        """A page of the DLQ's letters, from their failure records: no message is received
        to show it, whatever the DLQ's depth."""
        dlq, source = self._dlq(request)
        where, page = self._page_of(request, dlq)
        return self.page(
            request,
            "dlq.html",
            dlq=dlq,
            source=source,
            page=page,
            where=where.given(),
            depth=self.letters.depth(dlq),
            queues=[q.name for q in self.topology.queues],
        )

    def api_dead_letters(self, request: Request) -> Response:
        dlq, _ = self._dlq(request)
        _where, page = self._page_of(request, dlq)
        return JSONResponse(page.model_dump())

    def peek(self, request: Request) -> Response:
        """The DLQ as SQS holds it (those without a failure record too): received and handed
        straight back, at most 100."""
        dlq, source = self._dlq(request)
        return self.page(
            request, "dlq_peek.html", dlq=dlq, source=source, letters=self.letters.peek(dlq)
        )

    def export(self, request: Request) -> Response:
        dlq, _ = self._dlq(request)
        return Response(
            json.dumps(self.letters.export(dlq), indent=2, default=str),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{dlq}.json"'},
        )

    def plan(self, request: Request) -> Response:
        """A dry run: exactly the dead letters a redrive of this filter would move."""
        dlq, source = self._dlq(request)
        limit_text = request.query_params.get("limit", "").strip()
        try:
            limit = int(limit_text) if limit_text else None
            plan = self.letters.plan(dlq, self._where(request), limit)
        except (ValueError, FleetError) as exc:
            raise HTTPException(400, f"limit {limit_text!r}: {exc}") from None
        return self.page(
            request,
            "plan.html",
            plan=plan,
            source=source,
            queues=[q.name for q in self.topology.queues],
        )

    @staticmethod
    def _actor(form: FormData) -> Actor:
        person = str(form.get("as") or "").strip() or "console"
        return Actor(person=person[:80], principal=Principal.CONSOLE.value)

    def redrive(self, request: Request, form: FormData) -> Response:
        dlq, source = self._dlq(request)
        scope = form.get("scope")
        ids = [str(i) for i in form.getlist("ids")] if scope in ("selected", "plan") else []
        if scope == "selected" and not ids:
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
        plan = None
        if scope == "plan":  # exactly the ids the dry run showed, with its filter for the trail
            if not ids:
                raise HTTPException(400, "the plan moves nothing")
            try:
                filters = json.loads(str(form.get("filters") or "{}"))
                limit = int(str(form.get("limit"))) if form.get("limit") else None
            except ValueError:
                raise HTTPException(400, "the plan's filter or limit is malformed") from None
            plan = RedrivePlan(
                queue=dlq, destination=destination, filters=filters, limit=limit, message_ids=ids
            )
        actor, redrive_id = self._actor(form), new_redrive_id()
        job = self.jobs.start(
            redrive_id,
            dlq,
            destination,
            lambda progress, cancel: self.letters.redrive(
                dlq,
                actor,
                destination,
                None if plan else ids or None,
                rate,
                progress,
                cancel,
                plan,
                redrive_id,
            ),
        )
        return RedirectResponse(f"/jobs/{job.job_id}", status_code=303)

    def delete(self, request: Request, form: FormData) -> Response:
        dlq, _ = self._dlq(request)
        ids = [str(i) for i in form.getlist("ids")]
        if not ids:
            raise HTTPException(400, "no message chosen: tick the ones to delete")
        if form.get("confirm") != "yes":
            raise HTTPException(400, "deleting needs the confirmation box ticked")
        deleted, missing = self.letters.delete(dlq, ids, self._actor(form))
        return self.page(
            request,
            "done.html",
            title=f"Deleted from {dlq}",
            lines=[f"{deleted} message(s) deleted for good."]
            + ([f"Not found: {', '.join(missing)}"] if missing else []),
            back=f"/dlq/{dlq}",
        )

    def purge(self, request: Request, form: FormData) -> Response:
        dlq, _ = self._dlq(request)
        if form.get("confirm") != dlq:
            raise HTTPException(400, f"purging needs the queue's name, {dlq}, typed to confirm")
        purged = self.letters.purge(dlq, self._actor(form))
        return self.page(
            request,
            "done.html",
            title=f"Purged {dlq}",
            lines=[f"{purged} message(s) deleted for good."],
            back=f"/dlq/{dlq}",
        )

    # A redrive's progress is in memory: these answer on the event loop.

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

    def cancel(self, request: Request, _form: FormData) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, "no such redrive")
        job.cancel.set()  # the mover stops after the message in hand; the rest stay
        return RedirectResponse(f"/jobs/{job.job_id}", status_code=303)

    def audit(self, request: Request) -> Response:
        queue = request.query_params.get("queue") or None
        try:
            entries = self.letters.history(queue, PAGE_SIZE)
        except FleetError as exc:
            raise HTTPException(404, str(exc)) from None
        return self.page(request, "dlq_audit.html", entries=entries, queue=queue)

    def redrive_report(self, request: Request) -> Response:
        dlq, _ = self._dlq(request)
        report = self.letters.report(dlq, request.path_params["redrive_id"])
        if report is None:
            raise HTTPException(404, "no such redrive in the audit trail")
        return self.page(request, "redrive_report.html", report=report)
