"""Baselines are read from the live account, versioned, and what `chaos restore` restores;
the fleet's own restore puts egress rules back exactly, descriptions included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from core.egress import exact_rules
from core.lambda_package import code_sha256
from core.principals import Principal
from incidents.executor import run_call
from incidents.remediation import ApiCall
from tests.integration.conftest import RunningWorld
from tests.integration.mcp_client import call as mcp_call
from workload.baseline import BASELINE_EGRESS
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
    assert b["code_by_version"] == {"$LATEST": b["code_sha256"], "1": b["code_sha256"]}
    shown = world.fleet("baseline", "show", "--function", FUNCTION).stdout
    assert f"live -> $LATEST, running code {b['code_sha256']}" in shown


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


def _resolver(world: RunningWorld, tool: str, **args: Any) -> Any:
    result = mcp_call(world, "resolver", tool, function_name=FUNCTION, **args)
    assert not result.isError, result.content
    return result.structuredContent


def _restore_network_as_the_fleet_does(world: RunningWorld) -> list[str]:
    """Draft, validate and run the network restore under the resolver's keys: the calls
    the fleet would make. Returns their operations."""
    draft = _resolver(world, "draft_restore", concern="network")
    verdict = _resolver(world, "validate_proposal", calls=draft["calls"])
    assert verdict["valid"] and not any(c["caveats"] for c in verdict["calls"]), verdict
    for proposed in draft["calls"]:
        assert run_call(world.clients(Principal.RESOLVER), ApiCall(**proposed["call"])) == "done"
    return [p["call"]["operation"] for p in draft["calls"]]


@pytest.fixture
def group(world: RunningWorld, admin: Any) -> Iterator[str]:
    world.wait_healthy(FUNCTION)
    config = admin("lambda").get_function_configuration(FunctionName=FUNCTION)
    yield config["VpcConfig"]["SecurityGroupIds"][0]
    assert world.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0


def _egress(admin: Any, group_id: str) -> list[dict[str, Any]]:
    found = admin("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    return list(found["IpPermissionsEgress"])


def test_a_blocked_network_comes_back_with_its_rule_descriptions(
    world: RunningWorld, admin: Any, group: str
) -> None:
    recorded = _show(world)[FUNCTION]
    (baseline_group,) = recorded["security_groups"]
    # The baseline holds what a restore must put back: the rule's description too.
    assert exact_rules(baseline_group["egress"]) == exact_rules(BASELINE_EGRESS)
    assert "AWS APIs over HTTPS" in json.dumps(baseline_group["egress"])

    assert world.fleet("chaos", "network-block", "--function", FUNCTION).returncode == 0
    assert _egress(admin, group) == []
    assert _restore_network_as_the_fleet_does(world) == ["AuthorizeSecurityGroupEgress"]
    assert exact_rules(_egress(admin, group)) == exact_rules(baseline_group["egress"])

    # A description edited or removed by hand is drift too, and is described back in place.
    for by_hand in ({"Description": "edited by hand"}, {}):  # {}: EC2 removes it
        admin("ec2").update_security_group_rule_descriptions_egress(
            GroupId=group,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 443,
                    "ToPort": 443,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0", **by_hand}],
                }
            ],
        )
        (diff,) = _resolver(world, "compare_network")["groups"]
        assert diff["egress_description_changed"] and not diff["egress_missing"], diff
        assert any("descriptions" in line for line in world.status(FUNCTION).drift)
        assert _restore_network_as_the_fleet_does(world) == [
            "UpdateSecurityGroupRuleDescriptionsEgress"
        ]
        assert exact_rules(_egress(admin, group)) == exact_rules(baseline_group["egress"])
        assert _resolver(world, "compare_network")["at_baseline"] is True

    # Only an explicit capture moves a baseline: the fault and both fixes recorded nothing.
    assert _show(world)[FUNCTION]["version"] == recorded["version"]
    world.wait_healthy(FUNCTION)
