"""The resolver MCP server: differences from the baseline, restore drafts and proposal
validation; a bad deploy drafted back, run under the resolver's identity and proven by
clean runs of the old version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chaos.faults import failing_release
from core.lambda_package import code_sha256
from core.lambda_versions import LATEST, read_versions
from core.principals import Principal
from incidents.baselines import BaselineStore
from incidents.executor import run_call
from incidents.proposal import Proposal
from incidents.remediation import ApiCall
from tests.integration.conftest import RunningWorld
from tests.integration.mcp_client import call as mcp_call
from tests.integration.mcp_client import session_calls
from workers.critic import code_checks
from workload.baseline import restore_function_code
from workload.deploy import handler_zip

FUNCTION = "data-processor"
TOOLS = {
    "compare_iam",
    "compare_concurrency",
    "compare_network",
    "compare_configuration",
    "compare_deployment",
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
    pytest.param(
        ["bad-deploy"],
        "compare_deployment",
        lambda d: d["live_target"][0] == LATEST and not d["runs_baseline_code"],
        id="bad-deploy",
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


def _run_as_resolver(world: RunningWorld, calls: list[dict[str, Any]]) -> None:
    """The drafted calls, made as the executor makes them: under the resolver's keys."""
    for proposed in calls:
        assert run_call(world.clients(Principal.RESOLVER), ApiCall(**proposed["call"])) == "done"


def _critic_decides(world: RunningWorld, draft: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The critic's code checks on the draft as a proposal: (reasons to reject, to ask)."""
    critic = world.clients(Principal.CRITIC)
    proposal = Proposal(
        function_name=FUNCTION,
        baseline_version=draft["baseline_version"],
        concerns=["deployment"],
        calls=draft["calls"],
        rationale="roll the deploy back",
    )
    want = BaselineStore(critic("dynamodb")).version(FUNCTION, proposal.baseline_version)
    live = read_versions(critic("lambda"), FUNCTION)
    _, reject, ask = code_checks(proposal, want, world.settings.critic_max_auto_calls, live)
    return reject, ask


def _runs_clean_on(world: RunningWorld, version: str) -> None:
    """The function's newest runs, as its log lines tell them, are clean and ran `version`."""
    world.wait_status(
        FUNCTION,
        f"clean runs of version {version}",
        lambda s: s.health == "healthy" and s.runs.last_version == version,
    )


def test_a_bad_deploy_is_drafted_back_to_the_baseline_version(broken: RunningWorld) -> None:
    assert broken.fleet("chaos", "bad-deploy", "--function", FUNCTION).returncode == 0
    diff = call(broken, "compare_deployment", function_name=FUNCTION)
    baseline_target, bad = diff["live_target"]
    assert diff["at_baseline"] is False and baseline_target == LATEST and bad != LATEST, diff
    assert LATEST in diff["versions_with_baseline_code"]  # chaos kept $LATEST's code

    draft = call(broken, "draft_restore", function_name=FUNCTION, concern="deployment")
    assert draft["note"] is None
    assert draft["calls"] == [
        {
            "call": {
                "service": "lambda",
                "operation": "UpdateAlias",
                "parameters": {"FunctionName": FUNCTION, "Name": "live", "FunctionVersion": LATEST},
            },
            "inverse": {
                "service": "lambda",
                "operation": "UpdateAlias",
                "parameters": {"FunctionName": FUNCTION, "Name": "live", "FunctionVersion": bad},
            },
        }
    ]
    verdict = call(broken, "validate_proposal", function_name=FUNCTION, calls=draft["calls"])
    assert verdict["valid"] and verdict["calls"][0]["caveats"] == [], verdict
    # The critic, reading the versions with its own keys, lets it run unattended.
    assert _critic_decides(broken, draft) == ([], [])

    _run_as_resolver(broken, draft["calls"])
    assert call(broken, "compare_deployment", function_name=FUNCTION)["at_baseline"] is True
    _runs_clean_on(broken, LATEST)


@pytest.fixture
def latest_overwritten(broken: RunningWorld, admin: Any) -> Iterator[str]:
    """As a person might deploy: the failing code uploaded to $LATEST, published, and
    `live` pointed at it. Yields the new version; puts $LATEST's code back afterwards."""
    lam = admin("lambda")
    bad = failing_release(
        handler_zip(), lam.get_function_configuration(FunctionName=FUNCTION)["Handler"]
    )
    lam.update_function_code(FunctionName=FUNCTION, ZipFile=bad)
    version = lam.publish_version(FunctionName=FUNCTION, CodeSha256=code_sha256(bad))["Version"]
    lam.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=version)
    yield str(version)
    restore_function_code(lam, FUNCTION, handler_zip())  # `broken` then points live back


def test_when_latest_runs_the_bad_code_too_live_is_drafted_to_version_1(
    broken: RunningWorld, latest_overwritten: str
) -> None:
    diff = call(broken, "compare_deployment", function_name=FUNCTION)
    assert diff["at_baseline"] is False and LATEST not in diff["versions_with_baseline_code"]
    draft = call(broken, "draft_restore", function_name=FUNCTION, concern="deployment")
    (proposed,) = draft["calls"]
    # Version 1, as deployed, is the newest version that still runs the baseline's code.
    assert proposed["call"]["parameters"]["FunctionVersion"] == "1"
    assert proposed["inverse"]["parameters"]["FunctionVersion"] == latest_overwritten
    assert "version 1" in draft["note"]
    verdict = call(broken, "validate_proposal", function_name=FUNCTION, calls=draft["calls"])
    assert verdict["valid"] and verdict["calls"][0]["caveats"], verdict
    reject, ask = _critic_decides(broken, draft)
    assert not reject and any("not the baseline's exact target" in a for a in ask)  # a person

    _run_as_resolver(broken, draft["calls"])
    after = call(broken, "compare_deployment", function_name=FUNCTION)
    assert after["at_baseline"] is True and after["live_target"] == [LATEST, "1"], after
    _runs_clean_on(broken, "1")
