"""Who may use the console: the token, as `Authorization: Bearer` for scripts or through
the login form (a signed session cookie) for people; and CSRF protection on every
state-changing request a browser makes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

SESSION_KEY = "authenticated"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def session_secret(token: str) -> str:
    """The cookie-signing key, derived from the token: a new token logs everyone out."""
    return hmac.new(token.encode(), b"fleet-console-session", hashlib.sha256).hexdigest()


def bearer_ok(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def authenticated(request: Request, token: str) -> bool:
    return bearer_ok(request, token) or request.session.get(SESSION_KEY) is True


def log_in(request: Request, given: str, token: str) -> bool:
    if not hmac.compare_digest(given, token):
        return False
    request.session.clear()
    request.session[SESSION_KEY] = True
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return True


def csrf_token(request: Request) -> str:
    return str(request.session.get(CSRF_KEY, ""))


async def checked_form(request: Request, token: str) -> FormData:
    """The form of a state-changing request, once its CSRF token is checked (403 if not).

    A script with the bearer token needs none: a browser never sends that header on its own,
    so no other site can make it."""
    form = await request.form()
    if bearer_ok(request, token):
        return form
    expected = csrf_token(request)
    given = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
    if not expected or not hmac.compare_digest(given, expected):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form
