"""`fleet mcp`: serve one of the two MCP tool servers until SIGTERM.

It configures its own JSON logs and, started by `fleet up`, stops with it. It imports the
MCP stack alone: never the agents, the workers' handlers or the console.
"""

from __future__ import annotations

import argparse

import uvicorn

from core import structured_logging, tracing
from core.aws import Clients
from core.credentials import holding_own_keys
from core.principals import Principal
from core.service_process import stop_when_orphaned
from core.settings import Settings
from fleet.commands import Subparsers, add_command
from mcp_servers.app import build_app as build_mcp_app
from mcp_servers.names import McpServer
from mcp_servers.resolver import server as resolver
from mcp_servers.supervisor import server as supervisor


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    name = McpServer(args.server)
    build_server, principal, port = {
        McpServer.SUPERVISOR: (
            supervisor.build_server,
            Principal.MCP_SUPERVISOR,
            settings.mcp_supervisor_port,
        ),
        McpServer.RESOLVER: (
            resolver.build_server,
            Principal.MCP_RESOLVER,
            settings.mcp_resolver_port,
        ),
    }[name]
    structured_logging.configure(f"mcp-{name}")
    tracing.configure(f"mcp-{name}", settings)
    tracing.untraced()  # health checks and sessions are no spans; each tool call is (its own)
    if settings.launcher_pid:  # a child of `fleet up`: stop with it (uvicorn handles SIGTERM)
        stop_when_orphaned(settings.launcher_pid)
    server = build_server(settings, Clients(principal, holding_own_keys(settings, principal)))
    app = build_mcp_app(server, settings.resolved_mcp_api_key())
    uvicorn.run(
        app,
        host=settings.mcp_host,
        port=port,
        log_level="warning",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
    )
    return 0


def register(sub: Subparsers) -> None:
    mcp = add_command(sub, "mcp")
    mcp.add_argument("server", choices=[s.value for s in McpServer])
    mcp.set_defaults(func=cmd_mcp, own_logging=True)
