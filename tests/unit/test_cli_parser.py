"""The CLI's choices are the project's own enums, and each process it starts imports only what
its command needs (no moto or Pulumi in a worker's or MCP server's image, no agents in the
console, nothing at all for `fleet --help`)."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from chaos.faults import TARGETS, FaultKind
from emulation.world import PROJECT_ROOT
from fleet.cli import parse_arguments
from fleet.commands import COMMANDS
from incidents.lifecycle import IncidentStatus
from mcp_servers.names import McpServer
from queues.topology import Stage

# What each process of a world must not import: a dozen start at once on two cores, and
# each second of imports is paid by every one of them (and `fleet --help` by a person).
NOT_AT_ALL = {"moto", "pulumi", "pulumi_aws", "infra", "bench"}
AGENTS = {"langgraph", "langchain", "langchain_aws", "langchain_mcp_adapters"}
MCP = {"mcp", "mcp_servers"}
CONSOLE = {"console", "jinja2"}
WORLD = {"emulation", "chaos"}
FOR_A_PROCESS = [
    # `fleet --help` lists every command from the table alone: not even the settings.
    ([], NOT_AT_ALL | AGENTS | MCP | CONSOLE | WORLD | {"pydantic", "boto3", "structlog"}),
    (["worker", "watchdog"], NOT_AT_ALL | AGENTS | MCP | CONSOLE | WORLD),
    (["worker", "supervisor"], NOT_AT_ALL | CONSOLE | WORLD),
    (["worker", "resolver"], NOT_AT_ALL | CONSOLE | WORLD),
    (["worker", "critic"], NOT_AT_ALL | CONSOLE | WORLD | MCP),
    (["mcp", "supervisor"], NOT_AT_ALL | AGENTS | CONSOLE | WORLD | {"workers"}),
    (["mcp", "resolver"], NOT_AT_ALL | AGENTS | CONSOLE | WORLD | {"workers"}),
    (["console"], NOT_AT_ALL | AGENTS | MCP | WORLD | {"workers"}),
    # The world's launcher: not the game days' code (`fleet demo` has it), nor any service's.
    (["up"], NOT_AT_ALL - {"moto"} | AGENTS | MCP | CONSOLE | {"chaos", "workers"}),
]
# The process's own imports: the parser for its command line, and a worker's stage handler.
IMPORTS_OF = """
import json, sys
from fleet.cli import parse_arguments
from fleet.commands import COMMANDS
argv = json.loads(sys.argv[1])
args = parse_arguments(argv) if argv else None
if argv[:1] == ["worker"]:
    from fleet.commands.worker import DEFAULT_HANDLERS, _load_handler
    from queues.topology import Stage
    _load_handler(DEFAULT_HANDLERS[Stage(argv[1])])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


# Ids from the command line alone: a set's order differs between processes, and xdist's
# workers must collect the same ids.
@pytest.mark.parametrize(
    ("argv", "forbidden"),
    FOR_A_PROCESS,
    ids=[" ".join(argv) or "--help" for argv, _forbidden in FOR_A_PROCESS],
)
def test_each_process_imports_only_what_its_command_needs(
    argv: list[str], forbidden: set[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF, json.dumps(argv)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) & forbidden == set()


@pytest.mark.parametrize(
    "module", ["emulation.lambda_runtime", "emulation.alarm_evaluator", "emulation.scheduler"]
)
def test_the_worlds_own_services_import_neither_moto_nor_the_fleet(module: str) -> None:
    """The Lambda runtime, the alarm evaluator and the scheduler stand in for AWS: they talk
    to the emulator over HTTP like anyone else, and run none of the fleet's stages."""
    check = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    imported = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert imported & (NOT_AT_ALL | AGENTS | MCP | CONSOLE | {"workers", "chaos"}) == set()


def test_help_lists_every_command_without_importing_a_group() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("    ")]
    assert [name for name in listed if name in COMMANDS] == list(COMMANDS)


def test_every_command_is_declared_by_the_group_the_table_names() -> None:
    for name, command in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"fleet.commands.{command.group}").register(sub)
        assert name in sub.choices, f"fleet.commands.{command.group} does not declare {name}"


@pytest.mark.parametrize(
    "argv",
    [
        *(["worker", s.value] for s in Stage),
        *(["mcp", s.value] for s in McpServer),
        *(["chaos", k.value] for k in FaultKind if k is not FaultKind.ENV_DRIFT),
        ["chaos", FaultKind.ENV_DRIFT.value, "--var", "X", "--value", "y"],
        *(["chaos", "revoke", "--target", t] for t in TARGETS),
        *(["incidents", "list", "--status", s.value] for s in IncidentStatus),
    ],
    ids=" ".join,
)
def test_every_enum_member_is_a_choice(argv: list[str]) -> None:
    assert callable(parse_arguments(argv).func)


@pytest.mark.parametrize(
    "argv",
    [
        ["worker", "janitor"],
        ["mcp", "critic"],
        ["chaos", "flood"],
        ["incidents", "list", "--status", "resolved"],
    ],
)
def test_anything_else_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(argv)
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["gameday"], "one of the arguments --scenario --random is required"),
        (["gameday", "--random", "2", "--scenario", "x.yaml"], "not allowed with"),
        (["gameday", "--random", "0"], "1 round or more"),
        (["gameday", "--random", "2", "--kinds", "revoke,flood"], "choose from: revoke"),
        (["gameday", "--random", "2", "--max-faults", "4"], "between 1 and 3"),
        (["gameday", "--random", "2", "--only-round", "3"], "between 1 and 2"),
    ],
)
def test_a_random_game_day_refuses_what_it_cannot_draw_before_any_world_starts(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.errors import UsageError
    from core.settings import Settings

    with pytest.raises((SystemExit, UsageError)) as refused:  # argparse's, or the command's
        args = parse_arguments(argv)
        args.func(args, Settings())
    if isinstance(refused.value, SystemExit):
        assert refused.value.code == 2
    assert says in str(refused.value) + capsys.readouterr().err
