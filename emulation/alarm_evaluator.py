"""Emulation: the local alarm evaluator, standing in for CloudWatch where moto never evaluates.

It reads the metric alarms defined in the emulator and their metrics, keeps each alarm's
state there (SetAlarmState), and on OK -> ALARM (and back) publishes the notification
CloudWatch would: the same JSON, to the alarm's AlarmActions (OKActions) SNS topics.

As CloudWatch does, it evaluates whole periods aligned to the epoch, and only periods that
have ended: it retrieves the evaluation range (EvaluationPeriods + 2 periods), evaluates
the most recent EvaluationPeriods datapoints, fills missing ones by TreatMissingData only
when there are too few real ones, and goes to ALARM when at least DatapointsToAlarm of them
breach (documented in "How alarm state is evaluated when data is missing"). The reason
names the datapoints in CloudWatch's words. Known difference: CloudWatch's documented table
sends `missing` to ALARM for a lone breaching datapoint at the old end of the range
(`X - - - -`); here a lone breaching datapoint under `missing` is INSUFFICIENT_DATA
wherever it is, as the same table does for `- - - - X`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog

from core.aws import Clients, Statistic
from core.principals import Principal
from core.service_process import run_service
from core.settings import Settings, get_settings

log = structlog.get_logger()
AlarmState = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
TreatMissingData = Literal["missing", "notBreaching", "breaching", "ignore"]
# The evaluation range: CloudWatch retrieves more periods than it evaluates (its documented
# 3-of-3 example retrieves 5).
EXTRA_RANGE_PERIODS = 2
# A period is evaluated this long after it ends: its datapoint is published just after the
# end (emulation/lambda_metrics.py), and a period read before it arrives would look missing.
PUBLISH_DELAY_S = 3.0

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


@dataclass(frozen=True)
class Datapoint:
    """One period of the alarm's metric: its start, and its statistic (None: missing)."""

    start: datetime
    value: float | None


@dataclass(frozen=True)
class Decision:
    state: AlarmState
    reason: str
    evaluated: list[Datapoint]


def evaluation_range(now: datetime, period_s: int, periods: int) -> list[datetime]:
    """The starts of the latest `periods` + EXTRA_RANGE_PERIODS whole periods that have
    ended (and been published), aligned to the epoch, oldest first."""
    ended_by = (now - timedelta(seconds=PUBLISH_DELAY_S)).timestamp()
    last_start = int(ended_by // period_s) * period_s - period_s
    count = periods + EXTRA_RANGE_PERIODS
    return [datetime.fromtimestamp(last_start - i * period_s, UTC) for i in reversed(range(count))]


def _value(v: float) -> str:
    return repr(float(v))  # CloudWatch writes Java doubles: 3.0, 0.5


def _listed(points: list[Datapoint]) -> str:
    """`[3.0 (29/11/26 06:10:00), …]`, newest first, as CloudWatch lists them."""
    shown = [
        f"{_value(p.value)} ({p.start:%d/%m/%y %H:%M:%S})"
        for p in sorted(points, key=lambda p: p.start, reverse=True)
        if p.value is not None
    ]
    return f"[{', '.join(shown)}]"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def decide(alarm: Mapping[str, Any], points: list[Datapoint], current: AlarmState) -> Decision:
    """The alarm's state from the datapoints of its evaluation range (oldest first)."""
    n = int(alarm["EvaluationPeriods"])
    m = int(alarm.get("DatapointsToAlarm") or n)
    treat: TreatMissingData = alarm.get("TreatMissingData") or "missing"
    threshold = float(alarm["Threshold"])
    operator = alarm["ComparisonOperator"]

    def breaches(value: float) -> bool:
        return bool(COMPARATORS[operator](value, threshold))

    op = OPERATOR_TEXT[operator]
    present = [p for p in points if p.value is not None]
    shown_threshold = f"the threshold ({_value(threshold)})"
    if not present:
        missing = min(n, len(points))
        if treat == "missing":
            return Decision(
                "INSUFFICIENT_DATA",
                f"Insufficient Data: {_plural(missing, 'datapoint')} "
                f"{'was' if missing == 1 else 'were'} unknown.",
                [],
            )
        if treat == "ignore":
            return Decision(current, "Missing data ignored: the current state is kept.", [])
        kind = "Breaching" if treat == "breaching" else "NonBreaching"
        reason = (
            f"Threshold Crossed: no datapoints were received for {_plural(missing, 'period')} "
            f"and {_plural(missing, 'missing datapoint')} "
            f"{'was' if missing == 1 else 'were'} treated as [{kind}]."
        )
        return Decision("ALARM" if treat == "breaching" else "OK", reason, [])
    # Enough real datapoints: the most recent N, and the treatment is not needed.
    evaluated = present[-n:]
    filled = n - len(evaluated) if treat in ("breaching", "notBreaching") else 0
    breaching = [p for p in evaluated if p.value is not None and breaches(p.value)]
    count = len(breaching) + (filled if treat == "breaching" else 0)
    fill_note = (
        f" and {_plural(filled, 'missing datapoint')} "
        f"{'was' if filled == 1 else 'were'} treated as "
        f"[{'Breaching' if treat == 'breaching' else 'NonBreaching'}]"
        if filled
        else ""
    )
    if count >= m:
        reason = (
            f"Threshold Crossed: {count} out of the last {n} datapoints {_listed(breaching)} "
            f"{'was' if count == 1 else 'were'} {op} {shown_threshold}{fill_note} "
            f"(minimum {_plural(m, 'datapoint')} for OK -> ALARM transition)."
        )
        return Decision("ALARM", reason, evaluated)
    calm = [p for p in evaluated if p not in breaching]
    if not calm and treat in ("missing", "ignore"):
        # Only breaching datapoints, too few of them, and nothing known about the rest.
        if treat == "ignore":
            return Decision(current, "Missing data ignored: the current state is kept.", evaluated)
        unknown = n - len(evaluated)
        return Decision(
            "INSUFFICIENT_DATA",
            f"Insufficient Data: {_plural(unknown, 'datapoint')} "
            f"{'was' if unknown == 1 else 'were'} unknown.",
            evaluated,
        )
    if n == 1:
        reason = f"Threshold Crossed: 1 datapoint {_listed(calm)} was not {op} {shown_threshold}."
    else:
        ok_count = n - count
        reason = (
            f"Threshold Crossed: {ok_count} out of the last {n} datapoints {_listed(calm)} "
            f"{'was' if ok_count == 1 else 'were'} not {op} {shown_threshold}{fill_note} "
            f"(minimum {_plural(n - m + 1, 'datapoint')} for ALARM -> OK transition)."
        )
    return Decision("OK", reason, evaluated)


class AlarmEvaluator:
    def __init__(self, settings: Settings, clients: Clients | None = None):
        self.settings = settings
        self.clients = clients or Clients(Principal.ALARM_EVALUATOR, settings)
        self.stop_event = threading.Event()

    def datapoints(self, alarm: Mapping[str, Any], now: datetime) -> list[Datapoint]:
        """The alarm's statistic for each period of its evaluation range (oldest first)."""
        period = int(alarm["Period"])
        starts = evaluation_range(now, period, int(alarm["EvaluationPeriods"]))
        stat: Statistic = alarm.get("Statistic", "Sum")
        points = self.clients("cloudwatch").get_metric_statistics(
            Namespace=alarm["Namespace"],
            MetricName=alarm["MetricName"],
            Dimensions=alarm.get("Dimensions", []),
            StartTime=starts[0],
            EndTime=starts[-1] + timedelta(seconds=period),
            Period=period,
            Statistics=[stat],
        )["Datapoints"]
        # Each datapoint to the aligned period it falls in.
        by_start: dict[datetime, float] = {}
        for p in points:
            at = int(p["Timestamp"].timestamp() // period) * period
            by_start[datetime.fromtimestamp(at, UTC)] = float(p[stat])
        return [Datapoint(start, by_start.get(start)) for start in starts]

    def evaluate(self, alarm: Mapping[str, Any], now: datetime) -> tuple[AlarmState, str]:
        """(new state, reason) from the whole periods of the alarm's evaluation range."""
        current: AlarmState = alarm.get("StateValue", "INSUFFICIENT_DATA")
        decision = decide(alarm, self.datapoints(alarm, now), current)
        return decision.state, decision.reason

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
