"""The alarm notification reaches the supervisor queue in the real CloudWatch format, and the
OK notification follows recovery."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulation.world import wait_for
from tests.integration.conftest import RunningWorld, sns_messages
from tests.shapes import shape

FUNCTION = "data-processor-2"


def _wait_for_notification(
    world: RunningWorld, admin: Any, alarm: str, state: str, timeout_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    reports: list[dict[str, Any]] = []

    def arrived() -> bool:
        for envelope in sns_messages(admin("sqs"), "supervisor"):
            message = json.loads(envelope["Message"])
            if message.get("AlarmName") == alarm and message.get("NewStateValue") == state:
                found.append((envelope, message))
            elif message.get("report_type") == "lambda.failure":
                reports.append(message)
        return bool(found)

    wait_for(arrived, timeout_s, f"{state} notification of {alarm} on the supervisor queue", 0.5)
    return found[0]


@pytest.mark.parametrize(
    ("fault", "alarm_suffix"),
    [(["revoke", "--target", "s3"], "errors"), (["throttle"], "throttles")],
    ids=["errors-alarm", "throttles-alarm"],
)
def test_alarm_and_recovery_notifications(
    world: RunningWorld,
    admin: Any,
    fault: list[str],
    alarm_suffix: str,
    alarm_fixture: dict[str, Any],
    envelope_fixture: dict[str, Any],
) -> None:
    alarm = f"{FUNCTION}-{alarm_suffix}"
    world.wait_healthy(FUNCTION)
    sns_messages(admin("sqs"), "supervisor")  # what earlier tests left
    assert world.fleet("chaos", *fault, "--function", FUNCTION).returncode == 0
    try:
        envelope, message = _wait_for_notification(world, admin, alarm, "ALARM", 60)
    finally:
        assert world.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0

    assert shape(message) == shape(alarm_fixture)
    assert set(envelope) >= set(envelope_fixture)
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"].endswith(":incident-alerts")
    assert envelope["Subject"] == f'ALARM: "{alarm}" in Canada (Central)'
    assert message["OldStateValue"] == "OK"
    assert message["Trigger"]["Namespace"] == "AWS/Lambda"
    assert message["Trigger"]["Dimensions"] == [{"value": FUNCTION, "name": "FunctionName"}]
    assert message["NewStateReason"].startswith("Threshold Crossed")

    world.wait_healthy(FUNCTION)
    period = world.settings.alarm_period_s
    _, ok = _wait_for_notification(world, admin, alarm, "OK", 3 * period + 30)
    assert ok["OldStateValue"] == "ALARM"
    assert shape(ok) == shape(alarm_fixture)


def test_the_function_reports_its_own_failure(world: RunningWorld, admin: Any) -> None:
    world.wait_healthy(FUNCTION)
    sns_messages(admin("sqs"), "supervisor")
    assert (
        world.fleet(
            "chaos", "env-drift", "--var", "DATA_BUCKET", "--value", "gone", "--function", FUNCTION
        ).returncode
        == 0
    )
    reports: list[dict[str, Any]] = []

    def reported() -> bool:
        for envelope in sns_messages(admin("sqs"), "supervisor"):
            message = json.loads(envelope["Message"])
            if (
                message.get("report_type") == "lambda.failure"
                and message["function_name"] == FUNCTION
            ):
                reports.append(message)
        return bool(reports)

    try:
        wait_for(reported, 60, "the failure report", 0.5)
    finally:
        assert world.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0
    # The role may only read its own bucket prefix, so another bucket is refused (as on AWS).
    assert reports[0]["error_type"] == "AccessDenied"
    assert "GetObject" in reports[0]["error_message"]
    world.wait_healthy(FUNCTION)
