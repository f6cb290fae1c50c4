"""The `fleet` command groups: each module registers its subcommands and their handlers.

A handler takes the parsed arguments and the settings and returns the exit code; it raises
UsageError (exit 2) or another FleetError (exit 1) with a one-line message.

`COMMANDS` names every command, the group module that declares it and its one-line help.
The CLI imports a group only when one of its commands runs (fleet/cli.py): `fleet --help`
is answered from this table alone, and a worker imports the worker's stack, not the
console's, the MCP servers' or the bench's. So this module imports nothing heavy.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

if TYPE_CHECKING:  # a type only: importing the settings costs pydantic-settings
    from core.settings import Settings

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = "Callable[[argparse.Namespace, Settings], int]"


class Command(NamedTuple):
    group: str  # the module under fleet.commands that declares it
    help: str


# In the order `fleet --help` lists them.
COMMANDS: dict[str, Command] = {
    "up": Command(
        "world",
        "start the embedded world (emulator, workload, alarms, MCP servers, the four "
        "workers) until Ctrl-C",
    ),
    "down": Command("world", "stop the running world"),
    "provision": Command("world", "apply the topology and workload spec again (idempotent)"),
    "demo": Command(
        "demo", "start the world and the fleet, break the workload, watch it fixed, stop"
    ),
    "chaos": Command("chaos", "break the workload, or restore it"),
    "baseline": Command("baselines", "record or show the known-good baselines"),
    "incidents": Command("incidents", "incidents: list, show one, write a postmortem"),
    "trace": Command(
        "incidents",
        "an incident's trace as a waterfall: every stage, tool call, model call and AWS "
        "call, with durations and failures (from the local trace files)",
    ),
    "approve": Command("incidents", "approve the pending fix of an incident"),
    "reject": Command("incidents", "reject the pending fix of an incident"),
    "tail": Command("queues", "live table of queue depths and incidents"),
    "dlq": Command(
        "queues",
        "dead letters: list the queues, list (filtered, paged) or peek at the letters, "
        "redrive (filtered, limited, dry run), delete, purge, the audit trail, export",
    ),
    "failures": Command("queues", "why messages failed, newest first"),
    "worker": Command("worker", "run a stage worker on its queue until SIGTERM"),
    "mcp": Command("mcp_server", "serve an MCP tool server (SSE /sse, streamable HTTP /mcp)"),
    "console": Command("console_server", "serve the web console (queues, DLQs, incidents)"),
    "gameday": Command(
        "gameday",
        "run game-day scenarios, or random rounds judged from the account, each on a "
        "fresh world with the whole fleet",
    ),
    "bench": Command(
        "bench",
        "measure the fleet (own worlds): runtime, storm, MTTR, load, fault survival, "
        "random game days",
    ),
}


def add_command(sub: Subparsers, name: str, **options: Any) -> argparse.ArgumentParser:
    """The parser of one of `COMMANDS`, with its help from the table."""
    return sub.add_parser(name, help=COMMANDS[name].help, **options)
