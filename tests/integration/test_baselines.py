"""Baselines are read from the live account, versioned, and what `chaos restore` restores."""

from __future__ import annotations

import json

from core.lambda_package import code_sha256
from tests.integration.conftest import RunningWorld
from workload.deploy import handler_zip

FUNCTION = "data-processor-2"


def _show(world: RunningWorld) -> dict[str, dict]:  # type: ignore[type-arg]
    done = world.fleet("baseline", "show", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_the_world_recorded_a_baseline_of_each_function(world: RunningWorld) -> None:
    shown = _show(world)
    assert set(shown) == {"data-processor", "data-processor-2"}
    b = shown[FUNCTION]
    assert b["version"] >= 1 and b["role_name"] == f"{FUNCTION}-role"
    statements = b["inline_policies"]["data-processor-baseline"]["Statement"]
    assert {s["Sid"] for s in statements} == {
        "ReadInputWriteOutput",
        "WriteOwnLogs",
        "PutCustomMetrics",
        "ReportFailures",
        "AttachToVpc",
    }
    assert b["reserved_concurrency"] is None
    assert b["environment"]["DATA_PREFIX"] == f"{FUNCTION}/"
    (group,) = b["security_groups"]
    assert [(r["IpProtocol"], r["FromPort"]) for r in group["egress"]] == [("tcp", 443)]
    # What runs: the alias live on $LATEST, holding the package deployed from the source.
    assert b["live_target"] == "$LATEST"
    assert b["code_sha256"] == code_sha256(handler_zip())
    assert b["newest_published_version"] == "1"


def test_capture_versions_a_change_and_restore_follows_the_latest(world: RunningWorld) -> None:
    world.wait_healthy(FUNCTION)
    before = _show(world)[FUNCTION]
    unchanged = world.fleet("baseline", "capture", "--function", FUNCTION)
    assert f"baseline v{before['version']}" in unchanged.stdout  # nothing new to record

    assert world.fleet("chaos", "timeout", "--seconds", "5", "--function", FUNCTION).returncode == 0
    assert world.fleet("baseline", "capture", "--function", FUNCTION).returncode == 0
    assert _show(world)[FUNCTION]["version"] == before["version"] + 1
    restored = world.fleet("chaos", "restore", "--function", FUNCTION)
    assert "already at baseline" in restored.stdout  # 5 s is the baseline now

    assert (
        world.fleet(
            "chaos", "timeout", "--seconds", str(before["timeout_s"]), "--function", FUNCTION
        ).returncode
        == 0
    )
    assert world.fleet("baseline", "capture", "--function", FUNCTION).returncode == 0
    latest = _show(world)[FUNCTION]
    assert latest["version"] == before["version"] + 2 and latest["timeout_s"] == 10
