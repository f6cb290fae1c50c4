"""The CLI's choices are the project's own enums, and loading it pulls in neither moto nor
Pulumi (a worker's or MCP server's image starts `fleet` without them mattering)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaos.faults import TARGETS, FaultKind
from emulation.world import PROJECT_ROOT
from fleet.cli import build_parser
from incidents.lifecycle import IncidentStatus
from mcp_servers.names import McpServer
from queues.topology import Stage


def test_loading_the_cli_imports_no_moto_pulumi_or_infra() -> None:
    check = (
        "import sys; from fleet import cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'moto', 'pulumi', 'infra'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


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
    assert callable(build_parser().parse_args(argv).func)


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
        build_parser().parse_args(argv)
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
        args = build_parser().parse_args(argv)
        args.func(args, Settings())
    if isinstance(refused.value, SystemExit):
        assert refused.value.code == 2
    assert says in str(refused.value) + capsys.readouterr().err
