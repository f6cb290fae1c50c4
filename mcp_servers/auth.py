"""API-key authentication for the MCP servers, as plain ASGI middleware.

Every request but the health check must carry the key (`Authorization: Bearer KEY` or
`X-API-Key: KEY`); it is compared in constant time and never logged. The SDK's own
transport security then checks Host and Origin (421/403) against DNS rebinding.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
        if lowered == b"x-api-key":
            return value.decode("latin-1").strip()
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str, exempt_paths: frozenset[str]):
        if len(api_key) < 16:
            raise ValueError("the MCP API key must be at least 16 characters")
        self.app = app
        self._key = api_key.encode()
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope.get("headers", []))
        if key is None or not hmac.compare_digest(key.encode(), self._key):
            body = json.dumps({"error": "missing or invalid API key"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="mcp"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
