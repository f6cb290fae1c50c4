from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emulation.alarm_evaluator import notification
from tests.shapes import shape


def _alarm() -> dict[str, Any]:
    # What DescribeAlarms returns for the workload's Errors alarm.
    return {
        "AlarmName": "data-processor-errors",
        "AlarmArn": "arn:aws:cloudwatch:ca-central-1:123456789012:alarm:data-processor-errors",
        "AlarmDescription": "data-processor reported errors",
        "AlarmConfigurationUpdatedTimestamp": datetime(2026, 11, 25, 17, 58, 2, 114000, UTC),
        "OKActions": ["arn:aws:sns:ca-central-1:123456789012:incident-alerts"],
        "AlarmActions": ["arn:aws:sns:ca-central-1:123456789012:incident-alerts"],
        "InsufficientDataActions": [],
        "StateValue": "OK",
        "MetricName": "Errors",
        "Namespace": "AWS/Lambda",
        "Statistic": "Sum",
        "Dimensions": [{"Name": "FunctionName", "Value": "data-processor"}],
        "Period": 60,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
    }


def test_the_notification_has_the_cloudwatch_shape(alarm_fixture: dict[str, Any]) -> None:
    now = datetime(2026, 11, 25, 18, 2, 10, 412000, UTC)
    message = notification(_alarm(), "OK", "ALARM", "Threshold Crossed: ...", now, "ca-central-1")
    assert shape(message) == shape(alarm_fixture)
    for key in (
        "AlarmName",
        "AlarmDescription",
        "AWSAccountId",
        "AlarmArn",
        "Region",
        "AlarmConfigurationUpdatedTimestamp",
        "StateChangeTime",
        "OKActions",
        "AlarmActions",
        "InsufficientDataActions",
        "NewStateValue",
        "OldStateValue",
    ):
        assert message[key] == alarm_fixture[key], key
    assert message["Trigger"] == alarm_fixture["Trigger"]


def test_the_ok_notification_swaps_the_states(alarm_fixture: dict[str, Any]) -> None:
    message = notification(_alarm(), "ALARM", "OK", "recovered", datetime.now(UTC), "ca-central-1")
    assert (message["OldStateValue"], message["NewStateValue"]) == ("ALARM", "OK")
    assert shape(message) == shape(alarm_fixture)
