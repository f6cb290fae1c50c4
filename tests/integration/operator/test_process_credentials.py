"""What each process of a running world holds: its own principal's keys, and no one else's.
Read from outside, as a person (the same user, or root) could: each process's memory
(/proc/<pid>/mem, its writable regions: everything it read, was handed or inherited, the
environment included), against the launcher's record of every key the world issued.

Memory, not /proc/<pid>/environ: a service forked from the preloader (emulation/
preloader.py) shows there the environment the preloader started with, and its own lives in
its memory, with whatever else it inherited from the preloader: that is what must hold no
one else's keys."""

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

ON_REQUEST = {"mcp-supervisor", "mcp-resolver", "console"}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)


def _memory_holds(pid: int, needles: dict[Principal, bytes]) -> set[Principal]:
    """Which of the needles are anywhere in the process's writable memory (its heap, stacks
    and anonymous maps: where a process keeps what it read and what it was handed)."""
    found: set[Principal] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw"):
                continue
            start, end = (int(a, 16) for a in fields[0].split("-"))
            try:
                mem.seek(start)
                region = mem.read(end - start)
            except (OSError, ValueError):  # a guard page, a region gone since maps was read
                continue
            found |= {name for name, needle in needles.items() if needle in region}
    return found


def test_each_child_holds_its_own_keys_and_no_one_elses(fleet: RunningWorld) -> None:
    issued = read_launcher_store(fleet.settings)
    assert set(issued) == set(Principal)  # the launcher's record: every key, the admin's too
    secrets = {p: keys["SecretAccessKey"].encode() for p, keys in issued.items()}
    processes = fleet.record["processes"]
    # The preloader, where services are forked from it, holds no one's keys.
    assert set(processes) - {"preloader"} == set(EXPECTED)
    for name, pid in processes.items():
        own = EXPECTED.get(name)
        env = _environ(pid)  # as it started: no AWS keys were ever in an environment
        assert not any(k.startswith("AWS_ACCESS") or k == "AWS_SECRET_ACCESS_KEY" for k in env)
        if name == "emulator":  # it is AWS: IAM keeps every key it issued
            continue
        held = _memory_holds(pid, secrets)
        assert held <= {own}, f"{name} holds the keys of {sorted(p.value for p in held)}"
        # What acts from its start holds its own keys by now; an MCP server or the console
        # reads them at its first request.
        if own is not None and name not in ON_REQUEST:
            assert own in held, f"{name} does not hold its own keys"
        if own is None:
            continue
        own_file = fleet.settings.issued_credentials_file(own)
        assert stat.S_IMODE(own_file.stat().st_mode) == 0o600, name
        assert json.loads(own_file.read_text())["principal"] == own.value, name


def test_a_worker_and_an_mcp_server_act_as_themselves(fleet: RunningWorld) -> None:
    """The key in each one's file is its own IAM user's, as the emulator knows it."""
    iam = fleet.clients(Principal.ADMIN)("iam")
    for name in ("worker-supervisor", "mcp-resolver"):
        principal = EXPECTED[name]
        assert principal is not None
        own = json.loads(fleet.settings.issued_credentials_file(principal).read_text())
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
