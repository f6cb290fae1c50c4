"""Each protected function against its baseline, and whether its last runs succeeded.

Runs are read from the function's log lines (START/END/REPORT and error records: within
seconds, as on AWS); throttles from the per-period Throttles metric (a throttled
invocation writes no log line), so a throttle shows once a whole period has passed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from core.aws import Clients
from core.lambda_runs import read_runs
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
    # The newest run's outcome from the function's log lines (success or error), or
    # throttled from the per-period Throttles metric (a throttle writes no line).
    last_outcome: str | None
    # The newest error the function's logs show in the window (or why they are unreadable).
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
        f"network: egress rule descriptions of {g.group_name} differ from baseline"
        for g in network.groups
        if g.egress_description_changed and not (g.egress_missing or g.egress_extra)
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


def _per_period(
    clients: Clients, spec: FunctionSpec, metric: str, since: datetime, now: datetime
) -> dict[datetime, float]:
    """A metric's sums per whole period, as Lambda publishes them."""
    points = clients("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName=metric,
        Dimensions=[{"Name": "FunctionName", "Value": spec.name}],
        StartTime=since,
        EndTime=now,
        Period=clients.settings.alarm_period_s,
        Statistics=["Sum"],
    )["Datapoints"]
    return {p["Timestamp"]: float(p["Sum"]) for p in points}


def recent_runs(clients: Clients, spec: FunctionSpec, window_s: int) -> RecentRuns:
    """Runs in the last `window_s` seconds from the function's log lines (START…REPORT, and
    the error records between); throttles from the per-period Throttles metric.

    The newest outcome is the newest finished run's. When no line has been written since
    the latest published period began, that period's metrics tell it instead: a throttled
    invocation writes no line, and neither does a run whose role may not write logs."""
    now = datetime.now(UTC)
    period_s = clients.settings.alarm_period_s
    # Far enough back to see the latest whole published period and the runs since it began.
    start = now - timedelta(seconds=max(window_s, 3 * period_s))
    window_start = now - timedelta(seconds=window_s)
    last_error = None
    try:
        runs = read_runs(clients("logs"), spec.name, int(start.timestamp() * 1000))
    except Exception as exc:  # logs may be unreadable: say so, don't guess
        runs = []
        last_error = f"(logs unreadable: {type(exc).__name__})"
    finished = [r for r in runs if r.finished]
    in_window = [r for r in finished if (r.ended_ms or 0) >= window_start.timestamp() * 1000]
    failed = [r for r in in_window if not r.clean]
    if failed:
        last_error = failed[-1].error
    last_outcome = None
    if finished:
        last_outcome = "success" if finished[-1].clean else "error"
    per_period = {m: _per_period(clients, spec, m, start, now) for m in ("Errors", "Throttles")}
    throttles = per_period["Throttles"]
    periods = set(throttles) | set(per_period["Errors"])
    if periods:
        latest = max(periods)
        if not any(r.started_ms >= latest.timestamp() * 1000 for r in runs):
            if throttles.get(latest):
                last_outcome = "throttled"
            elif per_period["Errors"].get(latest):
                last_outcome = "error"
    return RecentRuns(
        window_s=window_s,
        invocations=len(in_window),
        errors=len(failed),
        throttles=int(
            sum(v for at, v in throttles.items() if at + timedelta(seconds=period_s) > window_start)
        ),
        last_outcome=last_outcome,
        last_error=last_error,
        last_version=runs[-1].version if runs else None,
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
