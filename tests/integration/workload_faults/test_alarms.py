"""The alarm notification reaches the supervisor queue in the real CloudWatch format, and the
OK notification follows recovery."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.incidents import cold_start_s
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
    # CloudWatch's words, naming the datapoint of one whole period aligned to the epoch.
    reason = re.fullmatch(
        r"Threshold Crossed: 1 out of the last 1 datapoints \[(\d+\.\d+) \((\S+ \S+)\)\] "
        r"was greater than or equal to the threshold \(1\.0\) \(minimum 1 datapoint for "
        r"OK -> ALARM transition\)\.",
        message["NewStateReason"],
    )
    assert reason, message["NewStateReason"]
    assert float(reason.group(1)) >= 1.0
    period_start = datetime.strptime(reason.group(2), "%d/%m/%y %H:%M:%S").replace(tzinfo=UTC)
    assert period_start.timestamp() % world.settings.alarm_period_s == 0

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


def test_a_blocked_network_hangs_until_the_function_times_out(
    world: RunningWorld, admin: Any
) -> None:
    # As on AWS: the connect hangs (botocore waits 60 s), the function's 10 s timeout ends the
    # run, and Lambda writes the timeout line, END and REPORT with `Status: timeout`.
    world.wait_healthy(FUNCTION)
    logs = admin("logs")
    since = int(datetime.now(UTC).timestamp() * 1000)
    assert world.fleet("chaos", "network-block", "--function", FUNCTION).returncode == 0
    timed_out: list[dict[str, Any]] = []

    def a_run_timed_out() -> bool:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{FUNCTION}", startTime=since)
        timed_out[:] = [e for e in events["events"] if "Task timed out after" in e["message"]]
        return bool(timed_out)

    try:
        wait_for(a_run_timed_out, 60, "a run that times out", 0.5)
        events = logs.filter_log_events(
            logGroupName=f"/aws/lambda/{FUNCTION}",
            logStreamNames=[timed_out[0]["logStreamName"]],
            startTime=since,
        )["events"]
    finally:
        assert world.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0
    line = timed_out[0]["message"]
    stamp, request_id, text = line.split(" ", 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), line
    assert text == "Task timed out after 10.00 seconds"
    run = [e["message"] for e in events if request_id in e["message"]]
    assert run[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert run[-3:] == [
        line,
        f"END RequestId: {request_id}",
        run[-1],
    ]
    assert re.fullmatch(
        rf"REPORT RequestId: {request_id}\tDuration: 10000\.00 ms\tBilled Duration: 10000 ms"
        r"\tMemory Size: 256 MB\tMax Memory Used: \d+ MB\tStatus: timeout",
        run[-1],
    ), run[-1]
    # The call hung: no error record of an immediate connect failure in that run.
    assert not any("ConnectTimeoutError" in m for m in run)
    world.wait_healthy(FUNCTION)


def test_a_new_execution_environment_reports_its_start_once(
    world: RunningWorld, admin: Any
) -> None:
    # As Lambda's REPORT line does: `Init Duration` on the first run of an environment a
    # changed configuration started, and not on the warm runs after it.
    world.wait_healthy(FUNCTION)
    logs = admin("logs")
    since = int(datetime.now(UTC).timestamp() * 1000)
    drift = ["env-drift", "--var", "PROBE", "--value", "1", "--function", FUNCTION]
    assert world.fleet("chaos", *drift).returncode == 0
    starts: list[re.Match[str] | None] = []

    def warm_runs_after_a_cold_one() -> bool:
        events = logs.filter_log_events(
            logGroupName=f"/aws/lambda/{FUNCTION}", startTime=since, filterPattern="REPORT"
        )["events"]
        reports = [e["message"] for e in sorted(events, key=lambda e: e["timestamp"])]
        starts[:] = [re.search(r"\tInit Duration: ([0-9.]+) ms$", r) for r in reports]
        # (A run that was under way at the change ends warm, before the first cold one.)
        cold = next((i for i, m in enumerate(starts) if m), None)
        return cold is not None and len(starts) >= cold + 3

    try:
        wait_for(warm_runs_after_a_cold_one, 60, "two runs after the first cold one", 0.5)
    finally:
        assert world.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0
    cold = next(i for i, m in enumerate(starts) if m)
    first = starts[cold]
    assert first is not None and float(first[1]) > 0
    assert starts[cold + 1 : cold + 3] == [None, None]
    # The bench's floor reads the same lines (the restore has started another since).
    assert 0 < cold_start_s(logs, FUNCTION, since) < 10  # Lambda's own init limit
    world.wait_healthy(FUNCTION)
