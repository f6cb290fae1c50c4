"""The console: queues, dead letters, incidents and approvals in a browser, and the same
actions as `fleet dlq` and `fleet approve|reject`, behind the token (console/auth.py).

Pages are rendered on the server (Jinja2, autoescaped: a payload is shown as text, never
run); the queue page refreshes itself from /api/queues; a redrive runs in the background
and its page follows it from /api/jobs/ID. Destructive actions are POST only, confirmed,
and carry the session's CSRF token. AWS is called off the event loop (console/pages.py).
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from console.auth import authenticated, checked_form, log_in, session_secret
from console.incident_pages import IncidentPages
from console.pages import TEMPLATES, Pages
from console.queue_pages import QueuePages
from core.aws import Clients
from core.aws_errors import error_code, error_message
from core.settings import Settings

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


class SessionPages(Pages):
    """Logging in and out, and the health check: nothing here calls AWS."""

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.index),
        ]

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

    async def index(self, _request: Request) -> Response:
        return RedirectResponse("/queues", status_code=303)


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
    routes = [
        *SessionPages(settings, clients, token).routes(),
        *QueuePages(settings, clients, token).routes(),
        *IncidentPages(settings, clients, token).routes(),
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
