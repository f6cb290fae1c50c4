"""The resolver MCP server: differences from the baseline, and proposal validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import RunningWorld
from tests.integration.mcp_client import call as mcp_call
from tests.integration.mcp_client import session_calls

FUNCTION = "data-processor"
TOOLS = {
    "compare_iam",
    "compare_concurrency",
    "compare_network",
    "compare_configuration",
    "draft_restore",
    "validate_proposal",
}
COMPARE = sorted(TOOLS - {"validate_proposal", "draft_restore"})


def call(world: RunningWorld, name: str, **args: Any) -> Any:
    result = mcp_call(world, "resolver", name, **args)
    assert not result.isError, result.content
    return result.structuredContent


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_a_function_at_its_baseline_shows_no_difference(
    world: RunningWorld, transport: str
) -> None:
    world.wait_healthy(FUNCTION)
    tools, results = session_calls(
        world, "resolver", transport, [(name, {"function_name": FUNCTION}) for name in COMPARE]
    )
    assert tools == TOOLS
    for name, result in zip(COMPARE, results, strict=True):
        assert not result.isError, (name, result.content)
        assert result.structuredContent["at_baseline"] is True, (name, result.structuredContent)


@pytest.fixture
def broken(world: RunningWorld) -> Iterator[RunningWorld]:
    world.wait_healthy(FUNCTION)
    yield world
    assert world.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0


FAULTS = [
    pytest.param(
        ["revoke", "--target", "s3"],
        "compare_iam",
        lambda d: [s["Sid"] for s in d["missing_statements"]] == ["ReadInputWriteOutput"],
        id="revoke",
    ),
    pytest.param(
        ["deny", "--target", "s3"],
        "compare_iam",
        lambda d: d["extra_policies"] == ["chaos-explicit-deny"] and d["explicit_denies"],
        id="deny",
    ),
    pytest.param(
        ["throttle"],
        "compare_concurrency",
        lambda d: (d["baseline"], d["current"]) == (None, 0),
        id="throttle",
    ),
    pytest.param(
        ["network-block"],
        "compare_network",
        lambda d: d["groups"][0]["egress_missing"] and not d["at_baseline"],
        id="network-block",
    ),
    pytest.param(
        ["env-drift", "--var", "DATA_BUCKET", "--value", "x"],
        "compare_configuration",
        lambda d: d["environment_changed"] == ["DATA_BUCKET"],
        id="env-drift",
    ),
    pytest.param(
        ["timeout", "--seconds", "1"],
        "compare_configuration",
        lambda d: d["timeout_s"] == [10, 1],
        id="timeout",
    ),
]


@pytest.mark.parametrize(("fault", "tool", "check"), FAULTS)
def test_each_fault_shows_as_a_difference(
    broken: RunningWorld, fault: list[str], tool: str, check: Any
) -> None:
    assert broken.fleet("chaos", *fault, "--function", FUNCTION).returncode == 0
    diff = call(broken, tool, function_name=FUNCTION)
    assert diff["at_baseline"] is False and check(diff), diff
    # The drafted restore is exactly what the validator accepts, each call with an inverse.
    concern = tool.removeprefix("compare_")
    draft = call(broken, "draft_restore", function_name=FUNCTION, concern=concern)
    assert draft["concern"] == concern and draft["calls"], draft
    verdict = call(broken, "validate_proposal", function_name=FUNCTION, calls=draft["calls"])
    assert verdict["valid"], verdict


def _baseline(world: RunningWorld) -> dict[str, Any]:
    shown = world.fleet("baseline", "show", "--function", FUNCTION, "--json")
    return dict(json.loads(shown.stdout)[FUNCTION])


def test_validate_proposal_accepts_a_restore_and_refuses_anything_wider(
    world: RunningWorld,
) -> None:
    b = _baseline(world)
    role, policy = b["role_name"], "data-processor-baseline"
    doc = b["inline_policies"][policy]
    restore = {
        "call": {
            "service": "iam",
            "operation": "PutRolePolicy",
            "parameters": {
                "RoleName": role,
                "PolicyName": policy,
                "PolicyDocument": json.dumps(doc),
            },
        },
        "inverse": {
            "service": "iam",
            "operation": "PutRolePolicy",
            "parameters": {"RoleName": role, "PolicyName": policy, "PolicyDocument": "{}"},
        },
    }
    unthrottle = {
        "call": {
            "service": "lambda",
            "operation": "DeleteFunctionConcurrency",
            "parameters": {"FunctionName": FUNCTION},
        },
        "inverse": {
            "service": "lambda",
            "operation": "PutFunctionConcurrency",
            "parameters": {"FunctionName": FUNCTION, "ReservedConcurrentExecutions": 0},
        },
    }
    ok = call(world, "validate_proposal", function_name=FUNCTION, calls=[restore, unthrottle])
    assert ok["valid"] is True, ok

    admin_doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    wider = {
        **restore,
        "call": {
            **restore["call"],
            "parameters": {
                **restore["call"]["parameters"],
                "PolicyDocument": json.dumps(admin_doc),
            },
        },
    }
    attach_admin = {
        "call": {
            "service": "iam",
            "operation": "AttachRolePolicy",
            "parameters": {
                "RoleName": role,
                "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
            },
        },
        "inverse": {
            "service": "iam",
            "operation": "DetachRolePolicy",
            "parameters": {
                "RoleName": role,
                "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
            },
        },
    }
    off_list = {
        "call": {"service": "iam", "operation": "CreateUser", "parameters": {"UserName": "x"}}
    }
    no_inverse = {"call": unthrottle["call"]}
    for bad, reason in (
        (wider, "beyond the baseline"),
        (attach_admin, "not attached"),
        (off_list, "not on the allowlist"),
        (no_inverse, "no inverse"),
    ):
        verdict = call(world, "validate_proposal", function_name=FUNCTION, calls=[bad])
        assert verdict["valid"] is False
        assert any(reason in p for p in verdict["calls"][0]["problems"]), verdict


def test_the_resolver_tools_change_nothing(world: RunningWorld) -> None:
    before = _baseline(world)
    for name in COMPARE:
        call(world, name, function_name=FUNCTION)
    assert _baseline(world) == before
    assert world.fleet("chaos", "status", "--function", FUNCTION, "--json").returncode == 0
