"""The queues and their dead letters: depths (refreshed from /api/queues), the letters of a
DLQ, and the same actions as `fleet dlq`: redrive (a background job its page follows from
/api/jobs/ID), delete and purge."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from console.jobs import Jobs
from console.pages import Pages
from console.snapshot import snapshot
from core.aws import Clients
from core.errors import FleetError
from core.settings import Settings
from queues.dlq import DeadLetters
from queues.topology import build_topology


class QueuePages(Pages):
    def __init__(self, settings: Settings, clients: Clients, token: str):
        super().__init__(settings, clients, token)
        self.topology = build_topology(settings)
        self.letters = DeadLetters(
            clients("sqs"), clients("dynamodb"), self.topology, settings.dlq_move_visibility_s
        )
        self.jobs = Jobs()

    def routes(self) -> list[Route]:
        return [
            Route("/queues", self.queues),
            Route("/api/queues", self.api_queues),
            Route("/dlq/{queue}", self.dead_letters),
            Route("/api/dlq/{queue}", self.api_dead_letters),
            Route("/dlq/{queue}/redrive", self.action(self.redrive), methods=["POST"]),
            Route("/dlq/{queue}/delete", self.action(self.delete), methods=["POST"]),
            Route("/dlq/{queue}/purge", self.action(self.purge), methods=["POST"]),
            Route("/jobs/{job_id}", self.job),
            Route("/api/jobs/{job_id}", self.api_job),
        ]

    def queues(self, request: Request) -> Response:
        return self.page(request, "queues.html", snap=snapshot(self.clients, self.topology))

    def api_queues(self, _request: Request) -> Response:
        return JSONResponse(snapshot(self.clients, self.topology).model_dump())

    def _dlq(self, request: Request) -> tuple[str, str]:
        try:
            return self.letters.resolve(request.path_params["queue"])
        except FleetError as exc:
            raise HTTPException(404, str(exc)) from None

    def dead_letters(self, request: Request) -> Response:
        dlq, source = self._dlq(request)
        letters = self.letters.peek(dlq)
        queues = [q.name for q in self.topology.queues]
        return self.page(
            request, "dlq.html", dlq=dlq, source=source, letters=letters, queues=queues
        )

    def api_dead_letters(self, request: Request) -> Response:
        dlq, _ = self._dlq(request)
        return JSONResponse([d.model_dump() for d in self.letters.peek(dlq)])

    def redrive(self, request: Request, form: FormData) -> Response:
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

    def delete(self, request: Request, form: FormData) -> Response:
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

    def purge(self, request: Request, form: FormData) -> Response:
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
