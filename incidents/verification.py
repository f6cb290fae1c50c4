"""Proof that a fix worked: a real check of the workload, not of the fix itself.

Three things, all at once, within a deadline: the function's runs since the fix succeed
(its latest runs, as the AWS/Lambda metrics count them, have no errors and no throttles),
its alarms are out of ALARM, and what the fix touched matches the baseline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from incidents.baseline_diff import DIFFS, Concern
from incidents.baselines import Baseline, read_live

POLL_S = 1.0


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class Verification(BaseModel):
    ok: bool
    checks: list[Check]
    elapsed_s: float


def _per_second(cloudwatch: Any, function: str, metric: str, since: datetime) -> dict[str, float]:
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName=metric,
        Dimensions=[{"Name": "FunctionName", "Value": function}],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(seconds=1),
        Period=1,
        Statistics=["Sum"],
    )["Datapoints"]
    return {p["Timestamp"].isoformat(): float(p["Sum"]) for p in points if p["Timestamp"] >= since}


def runs_check(cloudwatch: Any, function: str, since: datetime, wanted: int) -> Check:
    """The latest `wanted` seconds in which the function ran or was throttled: all clean."""
    invocations = _per_second(cloudwatch, function, "Invocations", since)
    errors = _per_second(cloudwatch, function, "Errors", since)
    throttles = _per_second(cloudwatch, function, "Throttles", since)
    active = sorted(set(invocations) | set(throttles))
    latest = active[-wanted:]
    clean = [
        s
        for s in latest
        if invocations.get(s, 0) > 0 and not errors.get(s) and not throttles.get(s)
    ]
    ok = len(latest) == wanted and len(clean) == wanted
    failed = sum(errors.values()) + sum(throttles.values())
    return Check(
        name="workload runs succeed",
        ok=ok,
        detail=(
            f"{int(sum(invocations.values()))} run(s) since the fix, {int(failed)} failed or "
            f"throttled; the latest {len(clean)} of {wanted} wanted are clean"
        ),
    )


def alarms_check(cloudwatch: Any, function: str) -> Check:
    firing, total = [], 0
    for page in cloudwatch.get_paginator("describe_alarms").paginate():
        for alarm in page["MetricAlarms"]:
            dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
            if dims.get("FunctionName") != function:
                continue
            total += 1
            if alarm["StateValue"] == "ALARM":
                firing.append(alarm["AlarmName"])
    return Check(
        name="alarms out of ALARM",
        ok=not firing,
        detail=f"still in ALARM: {', '.join(firing)}" if firing else f"{total} alarm(s) not firing",
    )


def baseline_check(clients: Any, want: Baseline, concerns: list[Concern]) -> Check:
    now = read_live(clients, want.function)
    off = [c for c in concerns if not DIFFS[c](want, now).at_baseline]
    return Check(
        name="state matches the baseline",
        ok=not off,
        detail=(
            f"differs from baseline v{want.version}: {', '.join(off)}"
            if off
            else f"{', '.join(concerns)} at baseline v{want.version}"
        ),
    )


def verify(
    clients: Any,
    want: Baseline,
    concerns: list[Concern],
    since: datetime,
    successful_runs: int,
    timeout_s: float,
) -> Verification:
    """Poll the three checks until all pass or the timeout passes."""
    started = time.monotonic()
    cloudwatch = clients("cloudwatch")
    while True:
        checks = [
            runs_check(cloudwatch, want.function, since, successful_runs),
            alarms_check(cloudwatch, want.function),
            baseline_check(clients, want, concerns),
        ]
        elapsed = time.monotonic() - started
        if all(c.ok for c in checks) or elapsed >= timeout_s:
            return Verification(
                ok=all(c.ok for c in checks), checks=checks, elapsed_s=round(elapsed, 1)
            )
        time.sleep(POLL_S)
