"""Proof that a fix worked: a real check of the workload, not of the fix itself.

Recovery (`verify`), within a deadline: the function's runs since the fix succeed (its
latest runs, as its START/REPORT log lines tell them within seconds; the AWS/Lambda
metrics are per alarm period, too coarse to tell one run from the next) and what the fix
touched matches the baseline. MTTR ends here.

Then the watch (`watch_look`, every few seconds): for a window after recovery no run fails,
the state stays at its baseline, and the alarms come back out of ALARM (a whole clean period
later, as CloudWatch evaluates them). A failed run or a drift in the window is a relapse.

When a fix does not verify, `made_worse` tells whether to undo it: only if it brought
more failures than before it, or left a concern it restored away from its baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core.lambda_runs import Run, read_runs
from incidents.baseline_diff import DIFFS, Concern
from incidents.baselines import Baseline, read_live

# Recovery is in MTTR's critical path: looked for as often as a log read is cheap.
VERIFY_POLL_S = 0.25


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class Verification(BaseModel):
    ok: bool
    checks: list[Check]
    elapsed_s: float
    relapsed: bool = False  # the watch ended early: a run failed or the state drifted


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


def no_failure_check(logs: Any, function: str, since: datetime) -> Check:
    """No run that started since `since` failed (a relapse shows here first)."""
    runs = [r for r in read_runs(logs, function, int(since.timestamp() * 1000)) if r.finished]
    failed = [r for r in runs if not r.clean]
    return Check(
        name="no run failed",
        ok=not failed,
        detail=(
            f"{len(failed)} of {len(runs)} run(s) failed (last error: {failed[-1].error})"
            if failed
            else f"{len(runs)} run(s), none failed"
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
    """Recovered: poll until the latest runs since the fix are clean and the state is at
    its baseline, or the timeout passes. `on_poll` runs on every round (the resolver
    renews its lease there, so a verification that takes long is still one a live
    process is doing)."""
    started = time.monotonic()
    logs = clients("logs")
    while True:
        on_poll()
        runs = runs_check(logs, want.function, since, successful_runs)
        elapsed = time.monotonic() - started
        # The state is read (a dozen calls) once the runs say recovered, or at the end.
        if runs.ok or elapsed >= timeout_s:
            checks = [runs, baseline_check(clients, want, concerns)]
            ok = all(c.ok for c in checks)
            if ok or elapsed >= timeout_s:
                return Verification(ok=ok, checks=checks, elapsed_s=round(elapsed, 1))
        time.sleep(VERIFY_POLL_S)


def watch_look(
    clients: Any,
    want: Baseline,
    concerns: list[Concern],
    since: datetime,
    window_s: float,
    timeout_s: float,
    now: datetime,
) -> Verification | None:
    """One look at an incident recovered at `since` (the watch is a chain of looks, each a
    message of its own, so no worker waits through it): ok once `window_s` has passed with
    no failed run, the state at its baseline and the alarms out of ALARM; a failed run or a
    drift ends it as a relapse; alarms still in ALARM at `timeout_s` fail it. None: look
    again later."""
    logs = clients("logs")
    checks = [
        no_failure_check(logs, want.function, since),
        baseline_check(clients, want, concerns),
        alarms_check(clients("cloudwatch"), want.function),
    ]
    elapsed = (now - since).total_seconds()
    relapsed = not (checks[0].ok and checks[1].ok)
    ok = all(c.ok for c in checks) and elapsed >= window_s
    if ok or relapsed or elapsed >= timeout_s:
        return Verification(ok=ok, checks=checks, elapsed_s=round(elapsed, 1), relapsed=relapsed)
    return None


def watch_window_s(window_s: float, alarm_period_s: float, recovered_at: datetime) -> float:
    """How long the watch of an incident recovered at `recovered_at` lasts: `window_s`, and
    at least until the alarm period it recovered in has ended and one more has passed. An
    alarm for the failures before the fix fires only after their period ends (its datapoint
    is published, then evaluated): within the watch it joins this incident; after it, it
    would open another for a fault already fixed, and page a person for nothing."""
    at = recovered_at.timestamp()
    period_end = math.ceil(at / alarm_period_s) * alarm_period_s
    return max(window_s, period_end + alarm_period_s - at)


def next_look_s(since: datetime, window_s: float, look_s: float, now: datetime) -> float:
    """When to look again: every `look_s`, and exactly when the window ends if that is
    sooner (a clean watch ends on time)."""
    left = window_s - (now - since).total_seconds()
    return min(look_s, left) if left > 0 else look_s


def made_worse(
    clients: Any, want: Baseline, touched: list[Concern], function: str, fixed_at: datetime
) -> str | None:
    """Why the fix made things worse, from the live account and the function's runs in as
    long a time before the fix as has passed since; None if it did not."""
    fixed_ms = int(fixed_at.timestamp() * 1000)
    span_ms = max(1, int(time.time() * 1000) - fixed_ms)
    runs = read_runs(clients("logs"), function, fixed_ms - span_ms)
    return worse_than_before(want, read_live(clients, function), touched, runs, fixed_ms)


def worse_than_before(
    want: Baseline, now: Baseline, touched: list[Concern], runs: list[Run], fixed_ms: int
) -> str | None:
    """A concern the fix restored that is not at its baseline now (the calls did not do what
    they were for), or a larger share of the finished runs failing since the fix than before
    it. A concern the fix did not touch that drifted meanwhile is not its doing; no runs on
    either side (a throttled function runs none) is nothing to compare: neither is worse."""
    off = [c for c in touched if not DIFFS[c](want, now).at_baseline]
    if off:
        return f"{', '.join(off)} is not at its baseline after the fix meant to restore it"
    finished = [r for r in runs if r.finished]
    before = [r for r in finished if r.started_ms < fixed_ms]
    after = [r for r in finished if r.started_ms >= fixed_ms]

    def failing(rs: list[Run]) -> float:
        return sum(not r.clean for r in rs) / len(rs)

    if before and after and failing(after) > failing(before):
        return f"{failing(after):.0%} of runs fail since the fix, {failing(before):.0%} before it"
    return None
