"""`fleet` pointed at a deployed stack (`eval "$(pulumi stack output fleetEnv)"`): with
FLEET_TARGET=aws it uses the caller's own credentials (the standard chain) and no file of
the embedded world. The emulator plays the account; the operator's keys play the user's."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.credentials import read_launcher_store
from core.principals import Principal
from tests.integration.conftest import RunningWorld


def _stack_env(world: RunningWorld, empty_dir: Path) -> dict[str, str]:
    keys = read_launcher_store(world.settings)[Principal.OPERATOR]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "AWS_"))}
    env.update(
        # What `pulumi stack output fleetEnv` exports …
        FLEET_TARGET="aws",
        AWS_REGION=world.settings.region,
        FLEET_ACCOUNT_ID=world.settings.account_id,
        # … and the user's own credentials, at an endpoint standing in for AWS.
        AWS_ACCESS_KEY_ID=keys["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=keys["SecretAccessKey"],
        AWS_ENDPOINT_URL=world.settings.endpoint_url or "",
        # Nothing of the embedded world's state directory may be needed.
        FLEET_STATE_DIR=str(empty_dir),
    )
    return env


def test_read_commands_and_chaos_work_against_a_stack(world: RunningWorld, tmp_path: Path) -> None:
    env = _stack_env(world, tmp_path / "no-world")
    dlqs = world.fleet("dlq", "list", "--json", env=env)
    assert dlqs.returncode == 0, dlqs.stderr
    assert {q["queue"] for q in json.loads(dlqs.stdout)} >= {"supervisor", "resolver"}

    snapshot = world.fleet("tail", "--once", "--json", env=env)
    assert snapshot.returncode == 0, snapshot.stderr
    assert {"supervisor", "critic"} <= {q["stage"] for q in json.loads(snapshot.stdout)["queues"]}

    status = world.fleet("chaos", "status", "--function", "data-processor-2", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["function"] == "data-processor-2"
    restored = world.fleet("chaos", "restore", "--function", "data-processor-2", env=env)
    assert restored.returncode == 0, restored.stderr
    assert "already at baseline" in restored.stdout
    assert not (tmp_path / "no-world").exists() or not any((tmp_path / "no-world").iterdir())
