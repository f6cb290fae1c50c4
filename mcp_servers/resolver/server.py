"""The resolver's MCP server: how a protected function differs from its baseline, and
whether a proposed fix restores it. Read-only: no tool changes anything."""

from __future__ import annotations

from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import BaseModel

from core.aws import Clients
from core.protection import SAFE_ENV_TAG
from core.settings import Settings
from incidents.baseline_diff import (
    ConcurrencyDiff,
    ConfigDiff,
    DeploymentDiff,
    IamDiff,
    NetworkDiff,
    concurrency_diff,
    config_diff,
    deployment_diff,
    iam_diff,
    network_diff,
)
from incidents.baselines import Baseline, BaselineStore, read_live
from incidents.proposal import Concern
from incidents.remediation import ProposalVerdict, ProposedCall, validate
from incidents.restore_plan import restore_calls, restore_note
from mcp_servers.app import new_server
from mcp_servers.supervisor.server import Diagnostics
from mcp_servers.tool_errors import aws_tool

INSTRUCTIONS = (
    "Compare a protected AWS Lambda function with its recorded known-good baseline (IAM, "
    "concurrency, network, configuration, deployment) and validate a proposed fix: every "
    "call must be on the allowlist, restore (part of) the baseline and nothing more, and "
    "have an inverse. Read-only: nothing here changes anything."
)


class RestoreDraft(BaseModel):
    function_name: str
    concern: Concern
    baseline_version: int
    calls: list[ProposedCall]  # empty: the concern matches the baseline, or see `note`
    # Why no call restores a concern that differs, or how the calls fall short of the
    # baseline's exact value; None when the calls restore it exactly.
    note: str | None = None


def build_server(settings: Settings, clients: Clients) -> FastMCP:
    server = new_server(
        "fleet-resolver-tools",
        INSTRUCTIONS,
        settings.mcp_host,
        settings.mcp_resolver_port,
        settings.mcp_allowed_hosts,
    )
    checks = Diagnostics(clients)
    baselines = BaselineStore(clients("dynamodb"))

    def pair(function_name: str, config: dict[str, Any] | None = None) -> tuple[Baseline, Baseline]:
        """The baseline and the function now. `config`: what `protected` just returned."""
        if config is None:
            config = checks.protected(function_name)
        want = baselines.latest(function_name)
        if want is None:
            raise ToolError(f"no baseline recorded for {function_name}")
        return want, read_live(clients, function_name, config)

    @server.tool()
    @aws_tool
    def compare_iam(function_name: str) -> IamDiff:
        """The function's execution role against its baseline: baseline policies and
        statements that are missing, statements and policies it does not have (explicit
        Deny statements listed apart), and managed policies attached or detached since."""
        return iam_diff(*pair(function_name))

    @server.tool()
    @aws_tool
    def compare_concurrency(function_name: str) -> ConcurrencyDiff:
        """Reserved concurrency against the baseline (None: unreserved; 0: every run
        throttled)."""
        return concurrency_diff(*pair(function_name))

    @server.tool()
    @aws_tool
    def compare_network(function_name: str) -> NetworkDiff:
        """Security-group egress rules against the baseline, one peer per rule: rules
        missing and rules added, rules whose description differs, per group, and whether
        ingress changed."""
        return network_diff(*pair(function_name))

    @server.tool()
    @aws_tool
    def compare_configuration(function_name: str) -> ConfigDiff:
        """Timeout, memory and environment against the baseline (environment by name only:
        values are not shown)."""
        return config_diff(*pair(function_name))

    @server.tool()
    @aws_tool
    def compare_deployment(function_name: str) -> DeploymentDiff:
        """What the alias `live` runs against the baseline: its target and the CodeSha256
        of the package that target runs (each as (baseline, current) when they differ),
        which versions hold the baseline's package, and the newest published version now
        and at the baseline. At baseline when `live` runs the baseline's package, on the
        baseline's target or on a published (immutable) version holding that package."""
        return deployment_diff(*pair(function_name))

    @server.tool()
    @aws_tool
    def draft_restore(function_name: str, concern: Concern) -> RestoreDraft:
        """The exact AWS calls (service, operation, parameters), each with its inverse, that
        would make one concern of the function (iam, concurrency, network, configuration
        or deployment) as in its baseline; [] when it already is. Deployment: point the
        alias `live` back at the baseline's version, or at the newest published version
        that still runs the baseline's package. `note` says why nothing can be drafted for
        a concern that differs, or how the calls fall short of the baseline's exact
        value. Environment values the function does not mark safe appear as
        "{{baseline}}": the executor fills them in. A draft only: nothing runs."""
        config = checks.protected(function_name)
        safe = set(config["_tags"].get(SAFE_ENV_TAG, "").split())
        want, now = pair(function_name, config)
        return RestoreDraft(
            function_name=function_name,
            concern=concern,
            baseline_version=want.version,
            calls=restore_calls(concern, want, now, safe_env=safe),
            note=restore_note(concern, want, now),
        )

    @server.tool()
    @aws_tool
    def validate_proposal(function_name: str, calls: list[ProposedCall]) -> ProposalVerdict:
        """Check a proposed fix without running it. For each call: is (service, operation)
        on the remediation allowlist, do its parameters restore (part of) the baseline and
        nothing beyond it, and is its inverse given and allowlisted for the same resource?
        A move of the alias `live` must name a version that exists and runs the baseline's
        package, with an inverse pointing it back at today's target. `valid` is true only
        if every call passes; `caveats` name what a valid call leaves short of the
        baseline's exact value (a person decides those)."""
        want, now = pair(function_name)
        return validate(function_name, want, calls, now.versions())

    return server
