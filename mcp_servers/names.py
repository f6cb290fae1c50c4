"""The MCP tool servers the fleet runs, by name (`fleet mcp NAME`, the worlds' processes)."""

from __future__ import annotations

from enum import StrEnum


class McpServer(StrEnum):
    SUPERVISOR = "supervisor"
    RESOLVER = "resolver"
