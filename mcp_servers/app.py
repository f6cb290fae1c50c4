"""One HTTP app per MCP server: SSE at /sse (+ /messages/), streamable HTTP at /mcp, and
/health for readiness, behind the API key. A server module only defines its tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_servers.auth import ApiKeyMiddleware

HEALTH_PATH = "/health"


def new_server(
    name: str, instructions: str, host: str, port: int, also_known_as: Sequence[str] = ()
) -> FastMCP:
    """`also_known_as`: more "name:port" Host values to accept (a service-discovery name)."""
    return FastMCP(
        name,
        instructions=instructions,
        host=host,
        port=port,
        # DNS rebinding: only our own address as Host, and no foreign Origin.
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{host}:{port}", f"localhost:{port}", *also_known_as],
            allowed_origins=[f"http://{host}:{port}", f"http://localhost:{port}"],
        ),
    )


def build_app(server: FastMCP, api_key: str) -> ApiKeyMiddleware:
    sse = server.sse_app()
    streamable = server.streamable_http_app()

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": server.name})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    app = Starlette(
        routes=[Route(HEALTH_PATH, health, methods=["GET"]), *sse.routes, *streamable.routes],
        lifespan=lifespan,
    )
    return ApiKeyMiddleware(app, api_key, exempt_paths=frozenset({HEALTH_PATH}))
