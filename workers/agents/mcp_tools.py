"""The MCP servers' tools as LangChain tools, over SSE with the API key, one session per
agent run (langchain-mcp-adapters)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools

from fleet.settings import Settings

Server = Literal["supervisor", "resolver"]


@asynccontextmanager
async def mcp_tools(settings: Settings, server: Server) -> AsyncIterator[list[BaseTool]]:
    client = MultiServerMCPClient(
        {
            server: {
                "transport": "sse",
                "url": settings.mcp_url(server),
                "headers": {"Authorization": f"Bearer {settings.resolved_mcp_api_key()}"},
                "timeout": 10,
                "sse_read_timeout": settings.agent_deadline_s + 30,
            }
        }
    )
    async with client.session(server) as session:
        yield await load_mcp_tools(session, server_name=server)
