"""The resolver's MCP server: how a protected function differs from its baseline, and
whether a proposed fix restores it. Read-only: no tool changes anything."""

from __future__ import annotations

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import BaseModel

from core.aws import Clients
from core.protection import SAFE_ENV_TAG
from core.settings import Settings
from incidents.baseline_diff import (
    ConcurrencyDiff,
    ConfigDiff,
    IamDiff,
    NetworkDiff,
    concurrency_diff,
    config_diff,
    iam_diff,
    network_diff,
)
from incidents.baselines import Baseline, BaselineStore, read_live
from incidents.proposal import Concern
from incidents.remediation import ProposalVerdict, ProposedCall, validate
from incidents.restore_plan import restore_calls
from mcp_servers.app import new_server
from mcp_servers.supervisor.server import Diagnostics
from mcp_servers.tool_errors import aws_tool

INSTRUCTIONS = (
    "Compare a protected AWS Lambda function with its recorded known-good baseline (IAM, "
    "concurrency, network, configuration) and validate a proposed fix: every call must be "
    "on the allowlist, restore (part of) the baseline and nothing more, and have an inverse. "
    "Read-only: nothing here changes anything."
)


class RestoreDraft(BaseModel):
    function_name: str
    concern: Concern
    baseline_version: int
    calls: list[ProposedCall]  # empty: the concern already matches the baseline


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

    def pair(function_name: str) -> tuple[Baseline, Baseline]:
        checks.protected(function_name)
        want = baselines.latest(function_name)
        if want is None:
            raise ToolError(f"no baseline recorded for {function_name}")
        return want, read_live(clients, function_name)

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
        """Security-group egress rules against the baseline: rules missing and rules added,
        per group, and whether ingress changed."""
        return network_diff(*pair(function_name))

    @server.tool()
    @aws_tool
    def compare_configuration(function_name: str) -> ConfigDiff:
        """Timeout, memory and environment against the baseline (environment by name only:
        values are not shown)."""
        return config_diff(*pair(function_name))

    @server.tool()
    @aws_tool
    def draft_restore(function_name: str, concern: Concern) -> RestoreDraft:
        """The exact AWS calls (service, operation, parameters), each with its inverse, that
        would make one concern of the function (iam, concurrency, network or configuration)
        exactly as in its baseline; [] when it already is. Environment values the function
        does not mark safe appear as "{{baseline}}": the executor fills them in. A draft
        only: nothing runs."""
        config = checks.protected(function_name)
        safe = set(config["_tags"].get(SAFE_ENV_TAG, "").split())
        want, now = pair(function_name)
        return RestoreDraft(
            function_name=function_name,
            concern=concern,
            baseline_version=want.version,
            calls=restore_calls(concern, want, now, safe_env=safe),
        )

    @server.tool()
    @aws_tool
    def validate_proposal(function_name: str, calls: list[ProposedCall]) -> ProposalVerdict:
        """Check a proposed fix without running it. For each call: is (service, operation)
        on the remediation allowlist, do its parameters restore (part of) the baseline and
        nothing beyond it, and is its inverse given and allowlisted for the same resource?
        `valid` is true only if every call passes."""
        want, _ = pair(function_name)
        return validate(function_name, want, calls)

    return server
