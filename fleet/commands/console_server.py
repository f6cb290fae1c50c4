"""`fleet console`: serve the web console until SIGTERM.

It configures its own JSON logs and, started by `fleet up`, stops with it. It imports the
console's stack alone: never the agents, the workers' handlers or the MCP servers.
"""

from __future__ import annotations

import argparse
import secrets
import sys

import uvicorn

from console.app import build_app as build_console_app
from core import structured_logging, tracing
from core.aws import Clients
from core.credentials import holding_own_keys
from core.principals import Principal
from core.service_process import stop_when_orphaned
from core.settings import Settings
from fleet.commands import Subparsers, add_command


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
    console = add_command(sub, "console")
    console.add_argument("--port", type=int, help="default FLEET_CONSOLE_PORT or 8088")
    console.set_defaults(func=cmd_console, own_logging=True)
