"""One HTTP app per MCP server: SSE at /sse (+ /messages/), streamable HTTP at /mcp, and
/health for readiness, behind the API key. A server module only defines its tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ContentBlock
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.tracing import extracted, span_in
from mcp_servers.auth import ApiKeyMiddleware

HEALTH_PATH = "/health"


class TracedServer(FastMCP):
    """A FastMCP server whose every tool call is a span in the caller's trace: the client
    sends its context in the request's `_meta` (traceparent, tracestate, baggage, as the
    MCP and OpenTelemetry conventions have it), and the tool's AWS calls are its children."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> Sequence[ContentBlock] | dict[str, Any]:
        request = self.get_context().request_context
        meta = request.meta.model_dump(exclude_none=True) if request and request.meta else {}
        parent = extracted({k: str(v) for k, v in meta.items()})
        attributes = {
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": name,
            "gen_ai.operation.name": "execute_tool",
            "fleet.mcp_server": self.name,
        }
        with span_in(f"tools/call {name}", parent, SpanKind.SERVER, attributes):
            return await super().call_tool(name, arguments)


def new_server(
    name: str, instructions: str, host: str, port: int, also_known_as: Sequence[str] = ()
) -> FastMCP:
    """`also_known_as`: more "name:port" Host values to accept (a service-discovery name)."""
    return TracedServer(
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
