"""A bad setting in the environment is one line naming the variable, what it got and what it
wants, and exit 2: the real CLI, as a person runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emulation.world import PROJECT_ROOT


def _tail_once(bad: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Only the bad variables speak: no FLEET_ setting of the caller's shell leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", "tail", "--once"],
        cwd=PROJECT_ROOT,
        env={**env, **bad},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_port_is_one_line_naming_the_variable_and_exit_2() -> None:
    done = _tail_once({"FLEET_EMULATOR_PORT": "abc"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "fleet: FLEET_EMULATOR_PORT='abc' is not valid: expected an integer"
    ]
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value", "wanted"),
    [
        ("FLEET_TARGET", "gcp", "expected 'embedded' or 'aws'"),
        ("FLEET_TARGET_COUNT", "0", "expected a value of at least 1"),
        ("FLEET_RUN_WORKERS", "maybe", "expected true or false"),
        ("FLEET_MCP_ALLOWED_HOSTS", "mcp:8080", "expected a JSON list"),
    ],
)
def test_every_kind_of_bad_value_is_one_line(variable: str, value: str, wanted: str) -> None:
    done = _tail_once({variable: value})
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"fleet: {variable}={value!r} is not valid: {wanted}")
    assert "Traceback" not in done.stderr


def test_several_bad_variables_are_one_line_each() -> None:
    bad = {"FLEET_EMULATOR_PORT": "abc", "FLEET_ALARM_POLL_S": "soon", "FLEET_ACCOUNT_ID": "12"}
    done = _tail_once(bad)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == len(bad)
    for variable, value in bad.items():
        assert sum(line.startswith(f"fleet: {variable}={value!r} ") for line in lines) == 1
    assert "Traceback" not in done.stderr
