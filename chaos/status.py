"""Each protected function against its baseline, and whether its last runs succeeded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from core.aws import Clients
from core.lambda_versions import LATEST, live_target
from incidents.baseline_diff import (
    concurrency_diff,
    config_diff,
    deployment_diff,
    iam_diff,
    network_diff,
)
from incidents.baselines import BaselineStore, read_live
from workload.spec import FunctionSpec


class RecentRuns(BaseModel):
    window_s: int
    invocations: int
    errors: int
    throttles: int
    # The newest run's outcome from the AWS/Lambda metrics: success, error or throttled.
    last_outcome: str | None
    # The newest error the function's logs show in the window (None if logs are unreadable).
    last_error: str | None
    # The version the newest START line in the window says ran ("$LATEST" or a number).
    last_version: str | None = None

    @property
    def health(self) -> str:
        return {"success": "healthy", "error": "failing", "throttled": "throttled"}.get(
            self.last_outcome or "", "idle"
        )


class FunctionStatus(BaseModel):
    function: str
    # The version the alias `live` points to: what the next scheduled run executes.
    live_target: str
    at_baseline: bool
    drift: list[str]
    runs: RecentRuns

    @property
    def health(self) -> str:
        return self.runs.health

    def as_json(self) -> dict[str, Any]:
        return {**self.model_dump(), "health": self.health}


def baseline_drift(clients: Clients, function: str) -> list[str]:
    """What differs from the function's latest recorded baseline, one line each."""
    want = BaselineStore(clients("dynamodb")).latest(function)
    if want is None:
        return [f"no baseline recorded (`fleet baseline capture --function {function}`)"]
    now = read_live(clients, function)
    iam, concurrency = iam_diff(want, now), concurrency_diff(want, now)
    network, config = network_diff(want, now), config_diff(want, now)
    deployment = deployment_diff(want, now)
    drift = [f"iam: baseline policy {name} missing" for name in iam.missing_policies]
    drift += [f"iam: statement {s.get('Sid', s)} missing" for s in iam.missing_statements]
    drift += [f"iam: policy {name} differs from baseline" for name in iam.changed_policies]
    drift += [f"iam: extra inline policy {name}" for name in iam.extra_policies]
    drift += [f"iam: extra managed policy {arn}" for arn in iam.attached_extra]
    drift += [f"iam: managed policy {arn} detached" for arn in iam.attached_missing]
    if not concurrency.at_baseline:
        wanted = "unreserved" if concurrency.baseline is None else concurrency.baseline
        current = "unreserved" if concurrency.current is None else concurrency.current
        drift.append(f"concurrency: reserved {current} (baseline: {wanted})")
    if config.timeout_s:
        drift.append(f"config: timeout {config.timeout_s[1]}s (baseline {config.timeout_s[0]}s)")
    if config.memory_mb:
        drift.append(f"config: memory {config.memory_mb[1]} MB (baseline {config.memory_mb[0]} MB)")
    drift += [
        f"config: environment {name} differs from baseline" for name in config.environment_changed
    ]
    drift += [
        f"network: egress of {g.group_name} differs from baseline"
        for g in network.groups
        if g.egress_missing or g.egress_extra
    ]
    drift += [
        f"network: ingress of {g.group_name} changed" for g in network.groups if g.ingress_changed
    ]
    if deployment.live_target:
        was, target = deployment.live_target
        drift.append(f"deploy: alias live -> {target} (baseline: {was})")
    if deployment.code_sha256:
        was_sha, sha = deployment.code_sha256
        drift.append(f"deploy: live runs code {sha} (baseline: {was_sha})")
    return drift


def recent_runs(clients: Clients, spec: FunctionSpec, window_s: int) -> RecentRuns:
    now = datetime.now(UTC)
    start = now - timedelta(seconds=window_s)
    cw = clients("cloudwatch")
    # Per-second sums: the runtime emits each run's metrics in one call with one timestamp,
    # so the newest second with a datapoint is the newest run.
    per_second: dict[str, dict[datetime, float]] = {}
    for metric in ("Invocations", "Errors", "Throttles"):
        points = cw.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName=metric,
            Dimensions=[{"Name": "FunctionName", "Value": spec.name}],
            StartTime=start,
            EndTime=now,
            Period=1,
            Statistics=["Sum"],
        )["Datapoints"]
        per_second[metric] = {p["Timestamp"]: float(p["Sum"]) for p in points}
    sums = {metric: int(sum(values.values())) for metric, values in per_second.items()}
    seconds = set(per_second["Invocations"]) | set(per_second["Throttles"])
    last_outcome = None
    if seconds:
        newest = max(seconds)
        if per_second["Errors"].get(newest):
            last_outcome = "error"
        elif per_second["Invocations"].get(newest):
            last_outcome = "success"
        else:
            last_outcome = "throttled"
    last_error = None
    last_version = None
    try:
        events = clients("logs").filter_log_events(
            logGroupName=spec.log_group, startTime=int(start.timestamp() * 1000)
        )["events"]
        for event in sorted(events, key=lambda e: e["timestamp"]):
            message = event["message"]
            if message.startswith("START RequestId: ") and " Version: " in message:
                last_version = message.rsplit(" Version: ", 1)[1].strip()
            elif message.startswith('{"errorType"'):
                err = json.loads(message)
                last_error = f"{err['errorType']}: {err['errorMessage']}"
            elif "Task timed out" in message:
                last_error = message.split(" ", 2)[-1]
    except Exception as exc:  # logs may be unreadable; the metrics still tell the story
        last_error = f"(logs unreadable: {type(exc).__name__})" if sums["Errors"] else None
    return RecentRuns(
        window_s=window_s,
        invocations=sums["Invocations"],
        errors=sums["Errors"],
        throttles=sums["Throttles"],
        last_outcome=last_outcome,
        last_error=last_error,
        last_version=last_version,
    )


def function_status(clients: Clients, spec: FunctionSpec, window_s: int) -> FunctionStatus:
    drift = baseline_drift(clients, spec.name)
    return FunctionStatus(
        function=spec.name,
        live_target=live_target(clients("lambda"), spec.name) or LATEST,
        at_baseline=not drift,
        drift=drift,
        runs=recent_runs(clients, spec, window_s),
    )
