"""The MCP servers' tools as LangChain tools, over SSE with the API key, one session per
agent run (langchain-mcp-adapters)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import cache
from typing import Any, Literal, cast

import anyio
import httpx
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT
from mcp.shared.exceptions import McpError
from mcp.types import CONNECTION_CLOSED, CallToolResult
from opentelemetry.trace import SpanKind

from core.errors import FleetError, described
from core.settings import Settings
from core.tracing import carrier, failed, span_in
from workers.agents.model_quota import ModelQuotaExhausted

Server = Literal["supervisor", "resolver"]


class ToolsUnavailable(FleetError):
    """An MCP server could not be reached, or went away during the run."""


# What a server that is down or restarting looks like from the client: the transport
# fails, the session's streams were closed under it (a call sent once the stream broke:
# anyio's ClosedResourceError), or the session says it lost its server (a call pending
# when the stream broke) or never heard back (a call sent after it broke).
UNREACHABLE = (httpx.TransportError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError)
LOST_SERVER = frozenset({CONNECTION_CLOSED, int(httpx.codes.REQUEST_TIMEOUT)})


def _unreachable(exc: BaseException) -> BaseException | None:
    """The transport failure inside `exc` (the MCP client nests them in task groups)."""
    if isinstance(exc, UNREACHABLE):
        return exc
    if isinstance(exc, McpError) and exc.error.code in LOST_SERVER:
        return exc
    return _inside(exc, _unreachable)


def _exhausted(exc: BaseException) -> BaseException | None:
    """The model quota's refusal inside `exc` (raised in the session, wrapped by its group)."""
    return exc if isinstance(exc, ModelQuotaExhausted) else _inside(exc, _exhausted)


def _inside(
    exc: BaseException, find: Callable[[BaseException], BaseException | None]
) -> BaseException | None:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if found := find(inner):
                return found
    return None


@asynccontextmanager
async def mcp_tools(settings: Settings, server: Server) -> AsyncIterator[list[BaseTool]]:
    """The server's tools for one agent run; ToolsUnavailable if the server is away."""
    try:
        async with _session_tools(settings, server) as tools:
            yield tools
    except BaseException as exc:
        if (exhausted := _exhausted(exc)) is not None:
            raise exhausted from None  # the model's quota, not the server: the caller waits
        cause = _unreachable(exc)
        if cause is None:
            raise
        raise ToolsUnavailable(
            f"the {server} MCP server ({settings.mcp_url(server)}) is unreachable: "
            f"{described(cause)}"[:500]
        ) from None


@cache
def _trust() -> ssl.SSLContext:
    """httpx's default trust (certifi's roots, or SSL_CERT_FILE / SSL_CERT_DIR), built once
    per process: each client would otherwise load the CA bundle again, some 20 ms of every
    agent run, even for a plain-http server."""
    return httpx.create_ssl_context()


def _http_client(
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """The MCP SDK's own client (`create_mcp_http_client`), with the process's trust."""
    if timeout is None:
        timeout = httpx.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    return httpx.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=_trust())


# How long opening a session may take (connect, the SSE endpoint event, initialize, list
# tools; 9 ms on a quiet machine), and each HTTP request's connect and first-byte timeout.
OPEN_TIMEOUT_S = 10.0


@asynccontextmanager
async def _session_tools(settings: Settings, server: Server) -> AsyncIterator[list[BaseTool]]:
    client = MultiServerMCPClient(
        {
            server: {
                "transport": "sse",
                "url": settings.mcp_url(server),
                "headers": {"Authorization": f"Bearer {settings.resolved_mcp_api_key()}"},
                "timeout": OPEN_TIMEOUT_S,
                "httpx_client_factory": _http_client,
                "sse_read_timeout": settings.agent_deadline_s + 30,
                "session_kwargs": {
                    "read_timeout_seconds": timedelta(seconds=settings.mcp_call_timeout_s)
                },
            }
        }
    )
    # The SDK's SSE client waits for ever on a server that died after its response headers
    # and before the endpoint event (a kill -9 while the session opens): its reader blocks
    # handing the error to a session not started yet. So the open has a deadline of its
    # own; once open, the agent's deadline and each call's timeout govern.
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_S) as opening:
            async with client.session(server) as session:
                traced = cast(ClientSession, TracedSession(session, server))
                tools = await load_mcp_tools(traced, server_name=server)
                opening.reschedule(None)
                yield tools
    except TimeoutError:
        if opening.expired():
            raise TimeoutError(f"no session opened within {OPEN_TIMEOUT_S:g} s") from None
        raise


class TracedSession:
    """An MCP client session whose tool calls are spans, their context sent in the request's
    `_meta` (the MCP and OpenTelemetry conventions) so the server's span is their child.
    langchain-mcp-adapters calls `call_tool` with no `_meta` of its own."""

    def __init__(self, session: ClientSession, server: Server):
        self._session = session
        self._server = server

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: timedelta | None = None,
        progress_callback: Any = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> CallToolResult:
        attributes = {
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": name,
            "gen_ai.operation.name": "execute_tool",
            "fleet.mcp_server": self._server,
        }
        with span_in(f"tools/call {name}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            result = await self._session.call_tool(
                name,
                arguments,
                read_timeout_seconds,
                progress_callback,
                meta={**(meta or {}), **carrier()},  # this span's context: the server's parent
            )
            if result.isError:
                failed(span, "ToolError")
            return result
