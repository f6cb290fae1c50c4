"""Proof that a fix worked: a real check of the workload, not of the fix itself.

Three things, all at once, within a deadline: the function's runs since the fix succeed
(its latest runs, as its START/REPORT log lines tell them within seconds, have no error;
the AWS/Lambda metrics are per alarm period, too coarse to tell one run from the next),
its alarms are out of ALARM, and what the fix touched matches the baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core.lambda_runs import read_runs
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


def runs_check(logs: Any, function: str, since: datetime, wanted: int) -> Check:
    """The latest `wanted` runs that started since the fix, as the function's log lines tell
    them (START…REPORT, no error record): all clean. A throttled invocation never starts
    and writes nothing, so it is not a run: while throttled, the count stays at zero."""
    runs = read_runs(logs, function, int(since.timestamp() * 1000))
    finished = [r for r in runs if r.finished]
    latest = finished[-wanted:]
    clean = [r for r in latest if r.clean]
    failed = [r for r in finished if not r.clean]
    ok = len(latest) == wanted and len(clean) == wanted
    if not runs:
        detail = "no run has started since the fix (throttled, or not invoked yet)"
    else:
        detail = (
            f"{len(finished)} run(s) since the fix, {len(failed)} failed; the latest "
            f"{len(clean)} of {wanted} wanted are clean"
        )
        if failed:
            detail += f" (last error: {failed[-1].error})"
    return Check(name="workload runs succeed", ok=ok, detail=detail)


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
    on_poll: Callable[[], None] = lambda: None,
) -> Verification:
    """Poll the three checks until all pass or the timeout passes; `on_poll` runs on every
    round (the resolver renews its lease there, so a verification that takes long is
    still one a live process is doing)."""
    started = time.monotonic()
    cloudwatch, logs = clients("cloudwatch"), clients("logs")
    while True:
        on_poll()
        checks = [
            runs_check(logs, want.function, since, successful_runs),
            alarms_check(cloudwatch, want.function),
            baseline_check(clients, want, concerns),
        ]
        elapsed = time.monotonic() - started
        if all(c.ok for c in checks) or elapsed >= timeout_s:
            return Verification(
                ok=all(c.ok for c in checks), checks=checks, elapsed_s=round(elapsed, 1)
            )
        time.sleep(POLL_S)
