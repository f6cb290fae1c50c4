"""What the console's groups of pages share: the templates, the page around each answer, and
how a route that calls AWS runs.

boto3 blocks. A route that calls AWS is a plain `def`, which Starlette runs in its
threadpool; a form action checks the CSRF token on the event loop and then runs its handler
in the threadpool (`Pages.action`). On the loop, one slow AWS call would stall every other
request and the pages' live refresh."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from console.auth import checked_form, csrf_token
from core.aws import Clients
from core.settings import Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

Endpoint = Callable[[Request], Awaitable[Response]]
FormHandler = Callable[[Request, FormData], Response]


class Pages:
    def __init__(self, settings: Settings, clients: Clients, token: str):
        self.settings = settings
        self.clients = clients
        self.token = token

    def page(self, request: Request, name: str, **context: Any) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {"csrf": csrf_token(request), "refresh_s": self.settings.console_refresh_s, **context},
        )

    def action(self, handler: FormHandler) -> Endpoint:
        """A state-changing endpoint: the form, once its CSRF token is checked (403 if not),
        goes to `handler` in the threadpool."""

        async def endpoint(request: Request) -> Response:
            form = await checked_form(request, self.token)
            return await run_in_threadpool(handler, request, form)

        return endpoint


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
