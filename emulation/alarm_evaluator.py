"""Emulation: the local alarm evaluator, standing in for CloudWatch where moto never evaluates.

It reads the metric alarms defined in the emulator and their metrics, keeps each alarm's
state there (SetAlarmState), and on OK -> ALARM (and back) publishes the notification
CloudWatch would: the same JSON, to the alarm's AlarmActions (OKActions) SNS topics.
The window is sliding (the last Period x EvaluationPeriods seconds), not aligned to
minutes, so an alarm reacts within a poll interval of the first breaching datapoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog

from core.aws import Clients, Statistic
from core.principals import Principal
from core.service_process import run_service
from core.settings import Settings, get_settings

log = structlog.get_logger()
AlarmState = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]

REGION_NAMES = {
    "ca-central-1": "Canada (Central)",
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
}
COMPARATORS = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
OPERATOR_TEXT = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def notification(
    alarm: Mapping[str, Any], old: str, new: str, reason: str, now: datetime, region: str
) -> dict[str, Any]:
    """The JSON CloudWatch puts in the SNS Message (shape: shared/fixtures)."""
    arn = alarm["AlarmArn"]
    updated = alarm.get("AlarmConfigurationUpdatedTimestamp", now)
    if isinstance(updated, str):
        updated = datetime.fromisoformat(updated)
    return {
        "AlarmName": alarm["AlarmName"],
        "AlarmDescription": alarm.get("AlarmDescription"),
        "AWSAccountId": arn.split(":")[4],
        "AlarmConfigurationUpdatedTimestamp": _ts(updated.astimezone(UTC)),
        "NewStateValue": new,
        "NewStateReason": reason,
        "StateChangeTime": _ts(now),
        "Region": REGION_NAMES.get(region, region),
        "AlarmArn": arn,
        "OldStateValue": old,
        "OKActions": alarm.get("OKActions", []),
        "AlarmActions": alarm.get("AlarmActions", []),
        "InsufficientDataActions": alarm.get("InsufficientDataActions", []),
        "Trigger": {
            "MetricName": alarm["MetricName"],
            "Namespace": alarm["Namespace"],
            "StatisticType": "Statistic",
            "Statistic": alarm.get("Statistic", "Sum").upper(),
            "Unit": alarm.get("Unit"),
            "Dimensions": [
                {"value": d["Value"], "name": d["Name"]} for d in alarm.get("Dimensions", [])
            ],
            "Period": alarm["Period"],
            "EvaluationPeriods": alarm["EvaluationPeriods"],
            "DatapointsToAlarm": alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]),
            "ComparisonOperator": alarm["ComparisonOperator"],
            "Threshold": float(alarm["Threshold"]),
            "TreatMissingData": alarm.get("TreatMissingData", "missing"),
            "EvaluateLowSampleCountPercentile": "",
        },
    }


class AlarmEvaluator:
    def __init__(self, settings: Settings, clients: Clients | None = None):
        self.settings = settings
        self.clients = clients or Clients(Principal.ALARM_EVALUATOR, settings)
        self.stop_event = threading.Event()

    def evaluate(self, alarm: Mapping[str, Any], now: datetime) -> tuple[AlarmState, str]:
        """(new state, reason) from the datapoints of the alarm's last window."""
        period = int(alarm["Period"])
        periods = int(alarm["EvaluationPeriods"])
        stat: Statistic = alarm.get("Statistic", "Sum")
        points = self.clients("cloudwatch").get_metric_statistics(
            Namespace=alarm["Namespace"],
            MetricName=alarm["MetricName"],
            Dimensions=alarm.get("Dimensions", []),
            StartTime=now - timedelta(seconds=period * periods),
            EndTime=now,
            Period=period * periods,
            Statistics=[stat],
        )["Datapoints"]
        values = [float(p[stat]) for p in points]
        threshold = float(alarm["Threshold"])
        compare = COMPARATORS[alarm["ComparisonOperator"]]
        breaching = [v for v in values if compare(v, threshold)]
        shown = f"[{', '.join(f'{v:g}' for v in values) or 'no datapoints'}]"
        op = OPERATOR_TEXT[alarm["ComparisonOperator"]]
        # One aggregate datapoint over the whole window: DatapointsToAlarm of N is read as 1.
        if breaching:
            reason = (
                f"Threshold Crossed: {len(breaching)} out of the last {periods} datapoints "
                f"{shown} was {op} the threshold ({threshold:g})"
            )
            return "ALARM", reason
        return "OK", (
            f"Threshold Crossed: no datapoint of the last {periods} {shown} was {op} "
            f"the threshold ({threshold:g})"
        )

    def poll_once(self) -> list[tuple[str, AlarmState, AlarmState]]:
        """Evaluate every alarm; returns the transitions (name, old, new) it announced."""
        cw = self.clients("cloudwatch")
        sns = self.clients("sns")
        transitions: list[tuple[str, AlarmState, AlarmState]] = []
        for page in cw.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
            for alarm in page["MetricAlarms"]:
                now = datetime.now(UTC)
                new, reason = self.evaluate(alarm, now)
                old = alarm.get("StateValue", "INSUFFICIENT_DATA")
                if new == old:
                    continue
                cw.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=new, StateReason=reason)
                message = notification(alarm, old, new, reason, now, self.settings.region)
                actions = (
                    alarm.get("AlarmActions", []) if new == "ALARM" else alarm.get("OKActions", [])
                )
                if old == "INSUFFICIENT_DATA" and new == "OK":
                    actions = []  # CloudWatch only notifies OK on recovery from ALARM
                region = REGION_NAMES.get(self.settings.region, self.settings.region)
                for topic_arn in actions:
                    sns.publish(
                        TopicArn=topic_arn,
                        Subject=f'{new}: "{alarm["AlarmName"]}" in {region}'[:100],
                        Message=json.dumps(message),
                    )
                log.info(
                    "alarm state changed",
                    alarm=alarm["AlarmName"],
                    old=old,
                    new=new,
                    notified=actions,
                )
                transitions.append((alarm["AlarmName"], old, new))
        return transitions

    def run(self) -> None:
        log.info("alarm evaluator started", poll_s=self.settings.alarm_poll_s)
        while not self.stop_event.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the emulator may be away; keep polling
                log.warning("alarm evaluation failed", error=str(exc)[:300])
            self.stop_event.wait(self.settings.alarm_poll_s)


def main() -> None:
    settings = get_settings()
    run_service("alarm-evaluator", AlarmEvaluator(settings), settings.launcher_pid)


if __name__ == "__main__":
    main()
