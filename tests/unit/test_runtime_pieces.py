from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from chaos.faults import parse_targets
from core.aws_errors import error_code, error_message
from core.egress import egress_allowed
from core.errors import UsageError
from core.provisioning import ProvisionReport
from core.settings import Settings
from workload.spec import PermissionTarget


class _Groups:
    """A stand-in EC2 client that answers DescribeSecurityGroups with fixed rules."""

    def __init__(self, egress: list[dict[str, Any]]):
        self.egress = egress

    def describe_security_groups(self, GroupIds: list[str]) -> dict[str, Any]:
        return {"SecurityGroups": [{"GroupId": GroupIds[0], "IpPermissionsEgress": self.egress}]}


ANYWHERE = [{"CidrIp": "0.0.0.0/0"}]


@pytest.mark.parametrize(
    ("egress", "allowed"),
    [
        ([{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": ANYWHERE}], True),
        ([{"IpProtocol": "-1", "IpRanges": ANYWHERE}], True),
        ([{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": ANYWHERE}], False),
        (
            [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 443,
                    "ToPort": 443,
                    "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                }
            ],
            False,
        ),
        ([], False),
    ],
    ids=["https", "all-traffic", "http-only", "private-only", "none"],
)
def test_egress_allows_https_to_the_aws_apis(egress: list[dict[str, Any]], allowed: bool) -> None:
    assert egress_allowed(_Groups(egress), ["sg-1"]) is allowed


def test_a_function_outside_a_vpc_has_egress() -> None:
    assert egress_allowed(_Groups([]), []) is True


def test_targets_parse_and_unknown_ones_name_the_choices() -> None:
    assert parse_targets("all") == list(PermissionTarget)
    assert parse_targets("s3") == [PermissionTarget.S3]
    with pytest.raises(UsageError, match="s3, logs, metrics, sns, all"):
        parse_targets("dynamodb")


def test_the_emulator_xml_refusal_is_read_as_its_code() -> None:
    xml = (
        "<?xml version='1.0'?><ErrorResponse><Errors><Error><Code>AccessDenied</Code>"
        "<Message>User: x is not authorized to perform: lambda:GetFunction</Message>"
        "</Error></Errors></ErrorResponse>"
    )
    exc = ClientError({"Error": {"Code": "403", "Message": xml}}, "GetFunction")
    assert error_code(exc) == "AccessDenied"
    assert error_message(exc) == "User: x is not authorized to perform: lambda:GetFunction"
    plain = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "X")
    assert (error_code(plain), error_message(plain)) == ("ThrottlingException", "slow")


def test_the_report_says_no_changes_only_when_nothing_changed() -> None:
    report = ProvisionReport()
    report.record("sqs-queue", "critic", "unchanged")
    assert report.summary().startswith("no changes")
    report.record("sqs-queue", "resolver", "created")
    assert report.summary() == "1 created; 1 unchanged"


def test_settings_point_boto3_at_the_emulator_unless_told_otherwise() -> None:
    assert Settings(emulator_port=5123).endpoint_url == "http://127.0.0.1:5123"
    assert Settings(aws_endpoint_url="http://elsewhere:1").endpoint_url == "http://elsewhere:1"
    assert Settings(target="aws").endpoint_url is None
    assert Settings().region == "ca-central-1"


def test_an_mcp_server_that_is_away_is_retried_later_then_escalated() -> None:
    import asyncio

    import anyio
    import httpx
    from mcp.shared.exceptions import McpError
    from mcp.types import CONNECTION_CLOSED, ErrorData

    from queues.delivery import Delivery
    from queues.outcomes import RetryLater
    from workers.agents.mcp_tools import ToolsUnavailable, _unreachable, mcp_tools
    from workers.outages import tools_away
    from workers.stage import StageContext

    # Nothing listens on port 9 of 127.0.0.1: the client sees what a restart looks like.
    settings = Settings(mcp_supervisor_url="http://127.0.0.1:9", mcp_api_key="k" * 32)

    async def use() -> None:
        async with mcp_tools(settings, "supervisor"):
            pass

    with pytest.raises(ToolsUnavailable, match=r"supervisor MCP server .* unreachable"):
        asyncio.run(use())
    nested = ExceptionGroup("task group", [ValueError("x"), httpx.ConnectError("refused")])
    assert isinstance(_unreachable(nested), httpx.ConnectError)
    assert _unreachable(ExceptionGroup("g", [ValueError("not a transport")])) is None
    # A call written to the session after its stream broke (the server was killed under it).
    written_late = anyio.ClosedResourceError()
    assert _unreachable(ExceptionGroup("g", [ExceptionGroup("g", [written_late])])) is written_late
    # The session lost its server under a pending call, or a later call was never answered.
    closed = McpError(ErrorData(code=CONNECTION_CLOSED, message="Connection closed"))
    assert _unreachable(ExceptionGroup("task group", [closed])) is closed
    unanswered = McpError(ErrorData(code=408, message="Timed out while waiting for response"))
    assert _unreachable(unanswered) is unanswered
    refused = McpError(ErrorData(code=-32602, message="Invalid params"))
    assert _unreachable(ExceptionGroup("task group", [refused])) is None

    escalated: list[str] = []
    away = ToolsUnavailable("the supervisor MCP server is unreachable")

    def context(receive_count: int) -> StageContext:
        delivery = Delivery("supervisor", "q", "m", "r", "{}", receive_count, max_receives=5)
        return StageContext(delivery, None, settings, None, None)  # type: ignore[arg-type]

    first = context(1)
    with pytest.raises(RetryLater) as retry:
        tools_away(first, away, escalated.append)
    assert retry.value.after_s == settings.dependency_retry_s and escalated == []
    last = context(5)
    tools_away(last, away, escalated.append)
    assert escalated and "gave up after 5 attempts" in escalated[0]


def test_a_server_that_dies_while_the_session_opens_is_away_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed after its SSE response headers, before the endpoint event: the SDK's client
    alone would wait for ever (its reader blocks handing over the error)."""
    import asyncio

    from workers.agents import mcp_tools as module

    async def dies_after_headers(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        writer.transport.abort()

    monkeypatch.setattr(module, "OPEN_TIMEOUT_S", 0.5)

    async def open_session() -> None:
        server = await asyncio.start_server(dies_after_headers, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = Settings(mcp_supervisor_url=f"http://127.0.0.1:{port}", mcp_api_key="k" * 32)
        async with server:
            # The outer bound only keeps a regression from hanging the suite.
            async with asyncio.timeout(30):
                async with module.mcp_tools(settings, "supervisor"):
                    pass

    with pytest.raises(module.ToolsUnavailable, match=r"no session opened within 0.5 s"):
        asyncio.run(open_session())
