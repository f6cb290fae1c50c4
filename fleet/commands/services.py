"""The long-running processes: `fleet worker` (a stage's consumer), `mcp` (a tool server) and
`console` (the web console). Each configures its own JSON logs and, started by `fleet up`,
stops with it."""

from __future__ import annotations

import argparse
import importlib
import os
import secrets
import sys

import uvicorn

from console.app import build_app as build_console_app
from core import structured_logging, tracing
from core.aws import Clients
from core.errors import UsageError
from core.principals import Principal
from core.service_process import stop_when_orphaned
from core.settings import Settings
from fleet.commands import Subparsers
from mcp_servers.app import build_app as build_mcp_app
from mcp_servers.names import McpServer
from mcp_servers.resolver import server as resolver
from mcp_servers.supervisor import server as supervisor
from queues.topology import Stage, build_topology
from workers.stage import StageHandler, build_consumer

# module:function of each stage's handler; `fleet worker --handler` runs another.
DEFAULT_HANDLERS = {
    Stage.SUPERVISOR: "workers.supervisor:handle",
    Stage.RESOLVER: "workers.resolver:handle",
    Stage.CRITIC: "workers.critic:handle",
    Stage.WATCHDOG: "workers.watchdog:handle",
}


def _load_handler(spec: str) -> StageHandler:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load handler {spec!r}: {exc}") from None


def holding_own_keys(settings: Settings, principal: Principal) -> Settings:
    """A service started by `fleet up` is handed its own credentials file; started by hand,
    it takes its own principal's file from the state directory (never the operator's, which
    a command at a shell holds)."""
    if settings.credentials_file is not None:
        return settings
    own = settings.issued_credentials_file(principal)
    return settings.model_copy(update={"credentials_file": own})


def run_consumer(stage: Stage, handler: StageHandler, settings: Settings) -> int:
    """Run the stage's consumer until SIGTERM; its exit code. (The worker runtime's entry.)"""
    consumer = build_consumer(
        build_topology(settings).queue(stage),
        handler,
        settings,
        Clients(Principal(stage.value), holding_own_keys(settings, Principal(stage.value))),
    )
    consumer.install_signal_handlers()
    return consumer.run()


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    stage = Stage(args.stage)
    spec = args.handler or DEFAULT_HANDLERS.get(stage)
    if spec is None:
        raise UsageError(f"no handler for stage {stage.value} yet; pass --handler module:function")
    handler = _load_handler(spec)
    if args.concurrency:
        settings = settings.model_copy(update={"worker_concurrency": args.concurrency})
    structured_logging.configure(f"worker-{stage.value}")
    tracing.configure(f"worker-{stage.value}", settings)
    if settings.launcher_pid:  # a child of `fleet up`: leave with it
        stop_when_orphaned(settings.launcher_pid)
    code = run_consumer(stage, handler, settings)
    tracing.flush()  # os._exit skips what the SDK does at exit
    sys.stderr.flush()
    # Handler threads still running past the grace period had their messages returned:
    # leave without waiting for them.
    os._exit(code)


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


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    structured_logging.configure("console")
    tracing.configure("console", settings)
    tracing.untraced()  # page loads are no spans; a person's decision is, in its incident's
    if args.port:
        settings = settings.model_copy(update={"console_port": args.port})
    token, source = settings.console_token, "CONSOLE_TOKEN"
    if not token and settings.console_token_file.exists():
        token, source = (
            settings.console_token_file.read_text().strip(),
            str(settings.console_token_file),
        )
    url = f"http://{settings.console_host}:{settings.console_port}"
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"console on {url}; token (generated, set CONSOLE_TOKEN to choose): {token}")
    else:
        print(f"console on {url}; token from {source}")
    sys.stdout.flush()
    if settings.launcher_pid:
        stop_when_orphaned(settings.launcher_pid)
    clients = Clients(Principal.CONSOLE, holding_own_keys(settings, Principal.CONSOLE))
    app = build_console_app(settings, clients, token)
    uvicorn.run(app, host=settings.console_host, port=settings.console_port, log_level="warning")
    return 0


def register(sub: Subparsers) -> None:
    worker = sub.add_parser("worker", help="run a stage worker on its queue until SIGTERM")
    worker.add_argument("stage", choices=[s.value for s in Stage])
    worker.add_argument("--handler", help="module:function to run instead of the stage's own")
    worker.add_argument("--concurrency", type=int, help="messages in flight at once")
    worker.set_defaults(func=cmd_worker, own_logging=True)

    mcp = sub.add_parser("mcp", help="serve an MCP tool server (SSE /sse, streamable HTTP /mcp)")
    mcp.add_argument("server", choices=[s.value for s in McpServer])
    mcp.set_defaults(func=cmd_mcp, own_logging=True)

    console = sub.add_parser("console", help="serve the web console (queues, DLQs, incidents)")
    console.add_argument("--port", type=int, help="default FLEET_CONSOLE_PORT or 8088")
    console.set_defaults(func=cmd_console, own_logging=True)
