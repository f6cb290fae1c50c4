"""One incident is one trace, across every process it passes through: the fleet runs with
the standard OTEL_EXPORTER_OTLP_ENDPOINT pointed at a receiver in this test (an in-memory
exporter for other processes' spans), and an incident driven from a revoked permission to
RESOLVED is read back from what arrived there."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import chaos.gameday
from chaos.gameday import GameDay, Scenario, fresh_world
from core.aws import Clients
from core.credentials import read_launcher_store
from core.settings import Settings
from emulation.alarm_evaluator import notification
from emulation.world import PROJECT_ROOT, wait_for
from incidents.lifecycle import IncidentStatus as S
from queues.topology import Topic, topic_arn
from tests.otlp_collector import OtlpCollector
from tests.ports import reserve_port

STORM = 6  # alarm notifications published while the incident is open
CANARY = "canary-log-line-5b1e: AccessDenied for s3:GetObject token=sk-canary-9f2c"


@pytest.fixture(scope="module")
def traced() -> Iterator[dict[str, Any]]:
    """A world whose processes export their spans here, an incident driven through it with
    a storm of alerts, and what the test needs to judge it."""
    with pytest.MonkeyPatch.context() as patch, OtlpCollector() as collector:
        patch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        patch.setattr(chaos.gameday, "free_port", reserve_port)
        scenario = Scenario.load(PROJECT_ROOT / "scenarios" / "iam-s3-revoke.yaml")
        # The fix is watched only until its alarm periods end: the storm lands before.
        with fresh_world({"target_count": 1, "watch_window_s": 3}, lambda _line: None) as settings:
            game = GameDay(scenario, settings)
            game.wait_healthy()
            _write_log_line(game.admin, CANARY)
            since = datetime.now(UTC).isoformat(timespec="milliseconds")
            game.apply_faults()
            wait_for(lambda: game.incidents_since(since), 120, "an incident to open", 0.2)
            storm = _storm(game, settings)
            wait_for(
                lambda: [i["status"] for i in game.incidents_since(since)] == [S.RESOLVED.value],
                240,
                "the incident to be resolved",
                0.5,
            )
            (incident,) = game.incidents_since(since)
            secrets = _secrets(settings)
            # What the last stage exports reaches the receiver within its batch delay.
            wait_for(
                lambda: any(_moved_to(s, S.RESOLVED.value) for s in collector.spans),
                30,
                "the span that resolved it",
                0.2,
            )
        yield {
            "incident_id": incident["incident_id"],
            "spans": collector.spans,
            "storm": storm,
            "secrets": secrets,
        }


def _write_log_line(admin: Clients, line: str) -> None:
    """A line in the function's own logs, as the diagnosis reads them: text a span must not
    carry (log text is data)."""
    logs = admin("logs")
    group, stream = "/aws/lambda/data-processor", "trace-test"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": int(time.time() * 1000), "message": line}],
    )


def _storm(game: GameDay, settings: Settings) -> list[str]:
    """Alarm notifications for the broken function, as CloudWatch sends while it flaps; the
    alert event ids they become."""
    cloudwatch, sns = game.admin("cloudwatch"), game.operator("sns")
    alarm = next(
        a
        for a in cloudwatch.describe_alarms()["MetricAlarms"]
        if {"Name": "FunctionName", "Value": "data-processor"} in a.get("Dimensions", [])
        and a["MetricName"] == "Errors"
    )
    ids = []
    for _ in range(STORM):
        message = notification(
            alarm, "OK", "ALARM", "Threshold Crossed", datetime.now(UTC), settings.region
        )
        sent = sns.publish(TopicArn=topic_arn(settings, Topic.ALERTS), Message=json.dumps(message))
        ids.append(f"sns:{sent['MessageId']}")
    return ids


def _secrets(settings: Settings) -> list[str]:
    """Every secret this world has: the MCP key, the console token, each principal's keys."""
    found = [settings.resolved_mcp_api_key(), settings.console_token_file.read_text().strip()]
    for keys in read_launcher_store(settings).values():
        found += [v for k, v in keys.items() if "secret" in k.lower()]
    assert len(found) > 4
    return found


def _moved_to(span: dict[str, Any], status: str) -> bool:
    return any(
        e["name"] == "incident.status" and e["attributes"].get("to") == status
        for e in span["events"]
    )


def _incident_trace(traced: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The trace of the span that resolved the incident, and its spans."""
    spans = traced["spans"]
    resolving = next(s for s in spans if _moved_to(s, S.RESOLVED.value))
    return resolving["trace_id"], [s for s in spans if s["trace_id"] == resolving["trace_id"]]


def test_the_incident_is_one_trace_from_its_first_alert_to_resolved(
    traced: dict[str, Any],
) -> None:
    _trace_id, spans = _incident_trace(traced)
    incident_id = traced["incident_id"]
    process = [s for s in spans if s["kind"] == "CONSUMER"]
    # It starts where the supervisor took its first alert: the one root of the trace.
    roots = [s for s in spans if s["parent_id"] is None]
    assert len(roots) == 1 and roots[0]["name"] == "process supervisor", roots
    assert roots[0]["attributes"]["fleet.event_type"].startswith("alert.")
    stages = {s["attributes"]["fleet.stage"] for s in process}
    assert stages >= {"supervisor", "resolver", "critic"}, stages
    moves = [
        e["attributes"]["to"] for s in spans for e in s["events"] if e["name"] == "incident.status"
    ]
    for status in ("INVESTIGATING", "DIAGNOSED", "PROPOSED", "APPROVED", "RECOVERED", "RESOLVED"):
        assert status in moves, moves
    # Every span of it names the incident, whichever process made it.
    assert {s["attributes"].get("incident.id") for s in spans} == {incident_id}
    assert {s["service"] for s in spans} >= {
        "fleet-worker-supervisor",
        "fleet-worker-resolver",
        "fleet-worker-critic",
        "fleet-mcp-supervisor",
        "fleet-mcp-resolver",
    }


def test_tool_model_and_aws_calls_are_spans_of_it(traced: dict[str, Any]) -> None:
    _trace_id, spans = _incident_trace(traced)
    by_id = {s["span_id"]: s for s in spans}
    servers = [s for s in spans if s["kind"] == "SERVER" and s["name"].startswith("tools/call ")]
    assert {s["service"] for s in servers} == {"fleet-mcp-supervisor", "fleet-mcp-resolver"}
    for server in servers:  # each under the worker's own span of the same call
        client = by_id[server["parent_id"]]
        assert client["kind"] == "CLIENT" and client["name"] == server["name"]
        assert client["service"].startswith("fleet-worker-")
    # The tools' own AWS calls are under the server's span.
    tool_aws = [s for s in spans if s["parent_id"] in {t["span_id"] for t in servers}]
    assert any(s["attributes"].get("rpc.system") == "aws-api" for s in tool_aws), tool_aws
    models = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert models and all(s["attributes"]["gen_ai.usage.input_tokens"] > 0 for s in models)
    aws = {s["name"] for s in spans if s["attributes"].get("rpc.system") == "aws-api"}
    assert "IAM.PutRolePolicy" in aws, aws  # the fix itself
    assert {"DynamoDB.TransactWriteItems", "incident-events send"} <= aws


def test_storm_alerts_are_linked_to_it_not_traces_of_incidents(traced: dict[str, Any]) -> None:
    trace_id, _spans = _incident_trace(traced)
    alerts = {
        s["attributes"].get("fleet.event_id"): s
        for s in traced["spans"]
        if s["kind"] == "CONSUMER" and s["attributes"].get("fleet.event_id") in traced["storm"]
    }
    assert set(alerts) == set(traced["storm"])
    for alert in alerts.values():
        assert alert["trace_id"] != trace_id
        assert alert["attributes"]["incident.id"] == traced["incident_id"]
        assert [link["trace_id"] for link in alert["links"]] == [trace_id]


def test_no_span_carries_a_secret_or_log_text(traced: dict[str, Any]) -> None:
    text = json.dumps(traced["spans"])
    assert "canary-log-line-5b1e" not in text and "sk-canary-9f2c" not in text
    for secret in traced["secrets"]:
        assert secret not in text
    # The canary was there to be read: the diagnosis read the function's logs.
    assert any(s["name"] == "tools/call recent_log_events" for s in traced["spans"])


def test_idle_polls_and_heartbeats_make_no_spans(traced: dict[str, Any]) -> None:
    names = {s["name"] for s in traced["spans"]}
    assert "SQS.ReceiveMessage" not in names
    assert "SQS.ChangeMessageVisibilityBatch" not in names
    assert "SQS.DeleteMessageBatch" not in names
