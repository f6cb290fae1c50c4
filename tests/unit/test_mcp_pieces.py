from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from mcp.server.fastmcp.exceptions import ToolError

from mcp_servers.auth import ApiKeyMiddleware, presented_key
from mcp_servers.bounds import MAX_MESSAGE_CHARS, clip
from mcp_servers.tool_errors import aws_tool


def test_an_aws_refusal_becomes_a_readable_tool_error() -> None:
    @aws_tool
    def refused() -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "not for you"}}, "GetRolePolicy"
        )

    with pytest.raises(ToolError, match="GetRolePolicy failed: AccessDenied: not for you"):
        refused()

    @aws_tool
    def away() -> None:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    with pytest.raises(ToolError, match="AWS unreachable"):
        away()


def test_long_log_lines_are_clipped_and_say_so() -> None:
    text, clipped = clip("x" * (MAX_MESSAGE_CHARS + 10))
    assert clipped and text.endswith("[... 10 more characters]")
    assert clip("short") == ("short", False)


def test_the_key_is_read_from_either_header_and_checked() -> None:
    assert presented_key([(b"authorization", b"Bearer abc")]) == "abc"
    assert presented_key([(b"X-API-Key", b"def")]) == "def"
    assert presented_key([(b"authorization", b"Basic abc")]) is None
    with pytest.raises(ValueError, match="at least 16"):
        ApiKeyMiddleware(lambda *a: None, "short", frozenset())  # type: ignore[arg-type,return-value]


def test_a_wrong_key_never_reaches_the_app() -> None:
    reached, sent = [], []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append(scope["path"])

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    guard = ApiKeyMiddleware(app, "k" * 32, frozenset({"/health"}))
    for headers in ([], [(b"authorization", b"Bearer " + b"x" * 32)]):
        asyncio.run(guard({"type": "http", "path": "/sse", "headers": headers}, None, send))  # type: ignore[arg-type]
    asyncio.run(guard({"type": "http", "path": "/health", "headers": []}, None, send))  # type: ignore[arg-type]
    asyncio.run(
        guard(
            {
                "type": "http",
                "path": "/mcp",
                "headers": [(b"authorization", b"Bearer " + b"k" * 32)],
            },
            None,
            send,
        )
    )  # type: ignore[arg-type]
    assert reached == ["/health", "/mcp"]
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [401, 401]


def test_a_server_answers_to_its_service_discovery_name_and_no_other() -> None:
    from starlette.testclient import TestClient

    from mcp_servers.app import build_app, new_server

    key = "k" * 32
    server = new_server("t", "test", "0.0.0.0", 8080, ["mcp-supervisor:8080"])
    app = build_app(server, key)
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    with TestClient(app) as client:
        for host, refused in (("mcp-supervisor:8080", False), ("evil.example:8080", True)):
            answer = client.post("/mcp", json=body, headers={**headers, "Host": host})
            assert (answer.status_code == 421) is refused, (host, answer.status_code)
