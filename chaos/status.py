"""Each protected function against its baseline, and whether its last runs succeeded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from chaos.workload.baseline import BASELINE_EGRESS, security_group_id
from chaos.workload.spec import BASELINE_POLICY_NAME, MEMORY_MB, FunctionSpec
from fleet.aws import Clients
from fleet.egress import egress_signature
from fleet.lambda_concurrency import reserved_concurrency


class RecentRuns(BaseModel):
    window_s: int
    invocations: int
    errors: int
    throttles: int
    # The newest run's outcome from the AWS/Lambda metrics: success, error or throttled.
    last_outcome: str | None
    # The newest error the function's logs show in the window (None if logs are unreadable).
    last_error: str | None

    @property
    def health(self) -> str:
        return {"success": "healthy", "error": "failing", "throttled": "throttled"}.get(
            self.last_outcome or "", "idle"
        )


class FunctionStatus(BaseModel):
    function: str
    at_baseline: bool
    drift: list[str]
    runs: RecentRuns

    @property
    def health(self) -> str:
        return self.runs.health

    def as_json(self) -> dict[str, Any]:
        return {**self.model_dump(), "health": self.health}


def baseline_drift(clients: Clients, spec: FunctionSpec) -> list[str]:
    """What differs from the baseline, one line each; empty when at baseline."""
    iam, lam, ec2 = clients("iam"), clients("lambda"), clients("ec2")
    drift = []
    names = iam.list_role_policies(RoleName=spec.role_name)["PolicyNames"]
    if BASELINE_POLICY_NAME not in names:
        drift.append(f"iam: baseline policy {BASELINE_POLICY_NAME} missing")
    else:
        doc = iam.get_role_policy(RoleName=spec.role_name, PolicyName=BASELINE_POLICY_NAME)[
            "PolicyDocument"
        ]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        want = {s["Sid"] for s in spec.baseline_policy()["Statement"]}
        have = {s.get("Sid") for s in doc["Statement"]}
        for sid in sorted(want - have):
            drift.append(f"iam: statement {sid} missing")
        if doc != spec.baseline_policy() and want == have:
            drift.append(f"iam: policy {BASELINE_POLICY_NAME} differs from baseline")
    for extra in sorted(set(names) - {BASELINE_POLICY_NAME}):
        drift.append(f"iam: extra inline policy {extra}")
    for att in iam.list_attached_role_policies(RoleName=spec.role_name)["AttachedPolicies"]:
        drift.append(f"iam: extra managed policy {att['PolicyName']}")
    concurrency = reserved_concurrency(lam, spec.name)
    if concurrency is not None:
        drift.append(f"concurrency: reserved {concurrency} (baseline: unreserved)")
    config = lam.get_function_configuration(FunctionName=spec.name)
    if config.get("Timeout") != spec.timeout_s:
        drift.append(f"config: timeout {config.get('Timeout')}s (baseline {spec.timeout_s}s)")
    if config.get("MemorySize") != MEMORY_MB:
        drift.append(f"config: memory {config.get('MemorySize')} MB (baseline {MEMORY_MB} MB)")
    env = config.get("Environment", {}).get("Variables", {})
    for key in sorted(set(env) | set(spec.environment())):
        if env.get(key) != spec.environment().get(key):
            drift.append(f"config: environment {key} differs from baseline")
    group_id = security_group_id(ec2, spec)
    if group_id is None:
        drift.append("network: security group missing")
    else:
        group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        if egress_signature(group.get("IpPermissionsEgress", [])) != egress_signature(
            BASELINE_EGRESS
        ):
            drift.append("network: egress differs from baseline (HTTPS out)")
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
    try:
        events = clients("logs").filter_log_events(
            logGroupName=spec.log_group, startTime=int(start.timestamp() * 1000)
        )["events"]
        for event in sorted(events, key=lambda e: e["timestamp"]):
            message = event["message"]
            if message.startswith('{"errorType"'):
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
    )


def function_status(clients: Clients, spec: FunctionSpec, window_s: int) -> FunctionStatus:
    drift = baseline_drift(clients, spec)
    return FunctionStatus(
        function=spec.name,
        at_baseline=not drift,
        drift=drift,
        runs=recent_runs(clients, spec, window_s),
    )
