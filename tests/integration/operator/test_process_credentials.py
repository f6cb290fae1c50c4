"""What each process of a running world was handed: its own principal's keys, and no one
else's. Read from outside, as a person could: /proc/<pid>/environ and the credentials file
named there, against the launcher's record of every key the world issued."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from core.credentials import read_launcher_store
from core.principals import Principal
from tests.integration.conftest import RunningWorld

# Each child of `fleet up` and the principal whose keys it must hold (None: the emulator).
EXPECTED = {
    "emulator": None,
    "lambda-runtime": Principal.LAMBDA_RUNTIME,
    "alarm-evaluator": Principal.ALARM_EVALUATOR,
    "mcp-supervisor": Principal.MCP_SUPERVISOR,
    "mcp-resolver": Principal.MCP_RESOLVER,
    "console": Principal.CONSOLE,
    "scheduler": Principal.SCHEDULER,
    "worker-supervisor": Principal.SUPERVISOR,
    "worker-resolver": Principal.RESOLVER,
    "worker-critic": Principal.CRITIC,
    "worker-watchdog": Principal.WATCHDOG,
}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)


def _handed(pid: int) -> str:
    """Everything a process was handed: its environment, and the credentials file it names."""
    env = _environ(pid)
    text = "\n".join(f"{k}={v}" for k, v in env.items())
    if "FLEET_CREDENTIALS_FILE" in env:
        text += "\n" + Path(env["FLEET_CREDENTIALS_FILE"]).read_text()
    return text


def test_each_child_holds_its_own_keys_and_no_one_elses(fleet: RunningWorld) -> None:
    issued = read_launcher_store(fleet.settings)
    assert set(issued) == set(Principal)  # the launcher's record: every key, the admin's too
    processes = fleet.record["processes"]
    assert set(processes) == set(EXPECTED)
    for name, pid in processes.items():
        env, handed = _environ(pid), _handed(pid)
        own = EXPECTED[name]
        for principal, keys in issued.items():
            present = [v for v in keys.values() if v in handed]
            if principal == own:
                assert present == list(keys.values()), f"{name} lacks its own keys"
            else:
                assert not present, f"{name} was handed {principal.value}'s keys"
        assert not any(k.startswith("AWS_ACCESS") or k == "AWS_SECRET_ACCESS_KEY" for k in env)
        assert str(fleet.settings.launcher_credentials_file.name) not in handed, name
        if own is None:
            assert "FLEET_CREDENTIALS_FILE" not in env, name
            continue
        own_file = Path(env["FLEET_CREDENTIALS_FILE"])
        assert stat.S_IMODE(own_file.stat().st_mode) == 0o600, name
        assert json.loads(own_file.read_text())["principal"] == own.value, name


def test_a_worker_and_an_mcp_server_act_as_themselves(fleet: RunningWorld) -> None:
    """The key in each one's file is its own IAM user's, as the emulator knows it."""
    iam = fleet.clients(Principal.ADMIN)("iam")
    for name in ("worker-supervisor", "mcp-resolver"):
        own = json.loads(
            Path(_environ(fleet.record["processes"][name])["FLEET_CREDENTIALS_FILE"]).read_text()
        )
        user = iam.get_access_key_last_used(AccessKeyId=own["keys"]["AccessKeyId"])["UserName"]
        assert user == Principal(own["principal"]).user_name
        assert name.removeprefix("worker-") == own["principal"]


def test_the_cli_holds_the_operators_keys_only(fleet: RunningWorld) -> None:
    """A command at a shell (the harness's environment names no credentials file) acts as
    the operator; `fleet tail` works with those keys alone."""
    assert "FLEET_CREDENTIALS_FILE" not in fleet.env
    done = fleet.fleet("tail", "--once", "--json")
    assert done.returncode == 0, done.stderr
    assert {"supervisor", "watchdog"} <= {q["stage"] for q in json.loads(done.stdout)["queues"]}


def test_a_command_handed_another_principals_keys_says_so(fleet: RunningWorld) -> None:
    supervisor = fleet.settings.issued_credentials_file(Principal.SUPERVISOR)
    done = fleet.fleet(
        "chaos", "status", env={**fleet.env, "FLEET_CREDENTIALS_FILE": str(supervisor)}
    )
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "holds the credentials of 'supervisor' only" in said, said
    assert "act as 'operator'" in said, said
