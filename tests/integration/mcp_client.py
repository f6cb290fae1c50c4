"""Calling the fleet's MCP servers with the SDK's own client, as the workers will."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.integration.conftest import RunningWorld


def base_url(world: RunningWorld, server: str) -> str:
    port = {
        "supervisor": world.settings.mcp_supervisor_port,
        "resolver": world.settings.mcp_resolver_port,
    }[server]
    return f"http://{world.settings.mcp_host}:{port}"


async def _session_call(
    world: RunningWorld, server: str, transport: str, calls: list[tuple[str, dict[str, Any]]]
) -> tuple[set[str], list[Any]]:
    headers = {"Authorization": f"Bearer {world.settings.resolved_mcp_api_key()}"}
    base = base_url(world, server)
    async with contextlib.AsyncExitStack() as stack:
        if transport == "sse":
            streams = await stack.enter_async_context(sse_client(f"{base}/sse", headers=headers))
        else:
            http = await stack.enter_async_context(httpx.AsyncClient(headers=headers))
            streams = await stack.enter_async_context(
                streamable_http_client(f"{base}/mcp", http_client=http)
            )
        session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
        await session.initialize()
        tools = {t.name for t in (await session.list_tools()).tools}
        results = [await session.call_tool(name, args) for name, args in calls]
    return tools, results


def session_calls(
    world: RunningWorld, server: str, transport: str, calls: list[tuple[str, dict[str, Any]]]
) -> tuple[set[str], list[Any]]:
    return asyncio.run(_session_call(world, server, transport, calls))


def call(world: RunningWorld, server: str, name: str, transport: str = "sse", **args: Any) -> Any:
    _, (result,) = session_calls(world, server, transport, [(name, args)])
    return result
