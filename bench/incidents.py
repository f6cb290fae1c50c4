"""What the fleet does for its users, timed: MTTR per fault kind (split by phase, beside
the kind's physical floor on this world), many incidents at once, and what each diagnosis
and each whole incident costs (tokens, and dollars at the configured prices).

All of it drives the real fleet through game days (chaos/gameday.py): the harness breaks
the workload and watches; the fleet finds out from its alarms, as it would on AWS.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from chaos.gameday import Expectation, FaultStep, GameDay, Scenario, fresh_world
from core.aws import Clients
from core.principals import Principal
from core.settings import Settings
from emulation.alarm_evaluator import PUBLISH_DELAY_S
from emulation.world import wait_for
from incidents.context_items import transcript
from incidents.incident_report import IncidentReport, load_report
from incidents.lifecycle import IncidentStatus as S
from incidents.state_machine import TERMINAL
from workload.spec import function_name

# One of each kind of workload fault, as `fleet chaos` applies it.
FAULT_KINDS: dict[str, FaultStep] = {
    "revoke": FaultStep(kind="revoke", target="s3"),
    "deny": FaultStep(kind="deny", target="s3"),
    "throttle": FaultStep(kind="throttle", concurrency=0),
    "network-block": FaultStep(kind="network-block"),
    "env-drift": FaultStep(kind="env-drift", var="DATA_PREFIX", value="drifted/"),
    "timeout": FaultStep(kind="timeout", seconds=1),
    "bad-deploy": FaultStep(kind="bad-deploy"),
}
# MTTR ends at RECOVERED; the watch that follows only decides when the next run may start
# (each starts from a function with no incident open), so the bench watches as briefly as
# the tests do instead of the 30 s default.
MTTR_OVERRIDES: dict[str, Any] = {"watch_window_s": 10}
# Fault to RECOVERED (MTTR), in the order it happens: (phase, the status that ends it);
# then the watch, which is not part of MTTR (the function already runs cleanly).
PHASES: list[tuple[str, S]] = [
    ("diagnose", S.DIAGNOSED),
    ("propose", S.PROPOSED),
    ("review", S.APPROVED),
    ("execute", S.VERIFYING),
    ("verify", S.RECOVERED),
    ("watch", S.RESOLVED),
]
Log = Callable[[str], None]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a small sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


class Detection(StrEnum):
    """What first tells the fleet about a fault of this kind."""

    # The function's own failure report, published by the failed run itself.
    REPORT = "the function's failure report"
    # Only an alarm: the run never starts (throttled), is cut off before it can report
    # (timed out), or fails before the code that reports (a bad release's handler).
    ALARM = "an alarm"


# How each kind is first seen, and how long its first failed run takes to fail (None: the
# settings say, see `failing_run_s`).
DETECTED_BY: dict[str, Detection] = {
    "revoke": Detection.REPORT,
    "deny": Detection.REPORT,
    "env-drift": Detection.REPORT,
    "throttle": Detection.ALARM,
    "timeout": Detection.ALARM,
    "network-block": Detection.ALARM,
    "bad-deploy": Detection.ALARM,
}


def failing_run_s(kind: str, settings: Settings) -> float:
    """How long the first run after the fault takes to fail: at once for a denied call, a
    missing key or a bad release; the fault's own limit for a timeout; the function's
    timeout for a blocked network (the connection hangs); no run at all when throttled."""
    step = FAULT_KINDS[kind]
    if kind == "timeout":
        return float(step.seconds)
    if kind == "network-block":
        return float(settings.workload_timeout_s)
    return 0.0


# The runs that start a new execution environment (cold), before detection and before
# the first clean run: a changed configuration or version starts one, on AWS as here, and
# so does a run after one that was killed at its timeout. Env drift changes the
# environment variables and its fix puts them back; a bad deploy moves the alias to
# another version and back; the timeout fault changes the timeout (its first failed run is
# cut at the new timeout, start included) and the fix puts it back; a blocked network's
# runs are killed, so the first run after the fix starts cold.
COLD_STARTS: dict[str, tuple[int, int]] = {
    "revoke": (0, 0),
    "deny": (0, 0),
    "throttle": (0, 0),
    "env-drift": (1, 1),
    "bad-deploy": (1, 1),
    "timeout": (0, 1),
    "network-block": (0, 1),
}
# The kinds whose failing runs hang until the function's timeout (a blocked network: the
# connection never answers), so the fix waits for the hung run in progress.
HANGS = frozenset({"network-block"})
INIT_DURATION = re.compile(r"\tInit Duration: (?P<ms>[0-9.]+) ms")


def floor_phases(kind: str, settings: Settings, cold_start_s: float = 0.0) -> dict[str, float]:
    """The least a responder on this world needs at the median, by phase, with none of
    its own processing counted: the physical chain.

    - detect: the next run starts (half the spacing of healthy runs, on average) and
      fails; a report is then on its way. An alarm also waits for the end of the period
      the failed run ended in (half a period on average), the datapoint's publication
      after it, and the evaluator's next look (half its poll).
    - verify: after the fix, the next run starts (half an interval: failed runs end at
      once), works, and the following `verify_successful_runs - 1` runs end a healthy
      run's spacing apart.
    - each, a new execution environment's start (`cold_start_s`, measured on the world)
      where the kind's fault or fix makes one (`COLD_STARTS`).
    - a kind whose runs hang (`HANGS`) first waits, after detection, for the hung run in
      progress to end (`hung_run_wait_s`): the next run is the first the fix can reach.
    """
    half_interval = settings.target_interval_s / 2
    spacing = healthy_run_spacing_s(settings)
    cold_detect, cold_verify = COLD_STARTS[kind]
    first_run_at = spacing / 2
    detect = first_run_at + failing_run_s(kind, settings) + cold_detect * cold_start_s
    if DETECTED_BY[kind] == Detection.ALARM:
        detect += settings.alarm_period_s / 2 + PUBLISH_DELAY_S + settings.alarm_poll_s / 2
    to_next_run = (
        hung_run_wait_s(detect - first_run_at, settings) if kind in HANGS else half_interval
    )
    verify = (
        to_next_run
        + cold_verify * cold_start_s
        + settings.workload_work_s
        + (settings.verify_successful_runs - 1) * spacing
    )
    return {"detect": round(detect, 2), "verify": round(verify, 2)}


def healthy_run_spacing_s(settings: Settings) -> float:
    """How far apart healthy runs start: an interval, or the run itself where its work
    takes longer (the world starts the next run when the last has ended, as a schedule
    with one execution at a time would)."""
    return max(float(settings.target_interval_s), settings.workload_work_s)


def hung_run_wait_s(since_first_run_s: float, settings: Settings) -> float:
    """From a moment `since_first_run_s` after the first hung run started, to the end of the
    hung run then in progress. The world runs a function's executions one at a time and
    each hung run holds it for the whole timeout, so the runs after the fault come in a
    train one timeout apart, and a fix takes effect only at the train's next boundary.

    At the median alarm phase this is the median wait too: the boundary a detection lands
    before only moves up with the detection."""
    train = settings.workload_timeout_s
    # Rounded first, so a moment on a boundary is not pushed a whole run on by float noise.
    boundary = math.ceil(round(since_first_run_s / train, 6)) * train
    return boundary - since_first_run_s


def floor_s(kind: str, settings: Settings, cold_start_s: float = 0.0) -> float:
    return round(sum(floor_phases(kind, settings, cold_start_s).values()), 1)


def cold_start_s(logs: Any, function: str, since_ms: int) -> float:
    """The median start of a new execution environment of `function` since `since_ms`, as
    its REPORT lines tell it (`Init Duration`); 0 if none started."""
    starts: list[float] = []
    for page in logs.get_paginator("filter_log_events").paginate(
        logGroupName=f"/aws/lambda/{function}", startTime=since_ms, filterPattern="REPORT"
    ):
        for event in page["events"]:
            if found := INIT_DURATION.search(event["message"]):
                starts.append(float(found["ms"]) / 1000)
    return round(statistics.median(starts), 2) if starts else 0.0


def phase_split(report: IncidentReport, fault_at: datetime) -> dict[str, float]:
    """Seconds spent in each phase, from the incident's own audit trail."""
    marks = [("detect", datetime.fromisoformat(report.opened_at))]
    for phase, status in PHASES:
        at = report.reached(status.value)
        if at is None:
            raise ValueError(f"{report.incident_id} never reached {status.value}")
        marks.append((phase, datetime.fromisoformat(at)))
    split: dict[str, float] = {}
    previous = fault_at
    for phase, mark in marks:
        split[phase] = round((mark - previous).total_seconds(), 2)
        previous = mark
    return split


def diagnosis_cost(game: GameDay, incident_id: str) -> dict[str, int]:
    record = game.store.get_context(incident_id, transcript("diagnosis")) or {}
    return {
        "tool_calls": len(record.get("calls", [])),
        "prompt_tokens": int(record.get("prompt_tokens", 0)),
        "completion_tokens": int(record.get("completion_tokens", 0)),
    }


def incident_costs(reports: list[IncidentReport | None], settings: Settings) -> dict[str, Any]:
    """What the agents spent per incident (every stage and round): tokens, the estimated cost
    at the configured prices, and the time waiting for the fleet's model quota."""
    found = [r for r in reports if r is not None]
    tokens = [r.prompt_tokens + r.completion_tokens for r in found]
    costs = [r.cost_usd for r in found]
    waits = [r.quota_wait_s for r in found]
    return {
        "incidents": len(found),
        "tokens_median": statistics.median(tokens) if tokens else None,
        "tokens_max": max(tokens, default=None),
        "cost_usd_median": round(statistics.median(costs), 6) if costs else None,
        "cost_usd_max": max(costs, default=None),
        "cost_usd_total": round(sum(costs), 6),
        "quota_wait_s_max": max(waits, default=None),
        "priced_per_1k_usd": {
            "input": settings.model_input_price_per_1k,
            "output": settings.model_output_price_per_1k,
        },
    }


def quiet(_line: str) -> None:
    """The game day's own running commentary: not part of the bench's output."""


# The figures at a longer alarm period, for how they move with it: the kinds an alarm
# detects, and one the function reports itself (which the period should not move).
PERIOD_KINDS = ("revoke", "throttle", "timeout", "network-block", "bad-deploy")


def fault_phases(runs: int) -> list[float]:
    """Where in an alarm period each of `runs` faults lands, as a fraction of the period:
    spread evenly over it (the middle of each of `runs` equal slices), so that the runs'
    median lands mid-period, where the floor's does."""
    return [(i + 0.5) / runs for i in range(runs)]


def until_phase(phase: float, period_s: float, now: float) -> float:
    """Seconds from `now` (epoch seconds) to the next moment at `phase` of an alarm period;
    CloudWatch aligns its periods to the epoch."""
    target = (now // period_s + phase) * period_s
    return target - now if target > now else target + period_s - now


def mttr(
    runs: int,
    progress: Log,
    alarm_period_s: int | None = None,
    kinds: tuple[str, ...] = tuple(FAULT_KINDS),
) -> dict[str, Any]:
    """Each fault kind `runs` times on one world: fault → RECOVERED (MTTR), by phase,
    beside the kind's floor (`floor_phases`)."""
    by_kind: dict[str, Any] = {}
    costs: list[dict[str, int]] = []
    reports: list[IncidentReport | None] = []
    overrides = dict(MTTR_OVERRIDES)
    if alarm_period_s is not None:
        overrides["alarm_period_s"] = alarm_period_s
    measured: dict[str, tuple[list[float], list[dict[str, float]]]] = {}
    with fresh_world(overrides, quiet) as settings:
        since_ms = int(time.time() * 1000)
        for kind in kinds:
            step = FAULT_KINDS[kind]
            totals, splits = [], []
            landing = fault_phases(runs)
            for i in range(runs):
                scenario = Scenario(
                    name=f"{kind} #{i + 1}", faults=[step], expect=Expectation(within_s=120)
                )
                game = GameDay(scenario, settings, quiet)
                # The floor assumes a fault lands anywhere in an alarm period. A run that
                # starts as soon as the last one is quiet would land at much the same point
                # of a period each time (the last failure, and so the end of the quiet
                # window, follows the last alarm); random points leave a median of five
                # runs some 2 s astray for an alarm-seen kind. So the runs are spread
                # evenly over a period instead (`fault_phases`).
                game.wait_healthy()
                time.sleep(until_phase(landing[i], settings.alarm_period_s, time.time()))
                result = game.run()
                if not result.passed or result.incident_id is None or result.mttr_s is None:
                    failed = [c.detail for c in result.checks if not c.ok]
                    raise RuntimeError(f"{kind} run {i + 1} did not pass: {failed}")
                report = load_report(game.store, result.incident_id)
                assert report is not None and result.fault_at is not None
                # MTTR counts from the moment the game day applied the fault.
                fault_at = datetime.fromisoformat(result.fault_at)
                totals.append(result.mttr_s)
                splits.append(phase_split(report, fault_at))
                costs.append(diagnosis_cost(game, result.incident_id))
                reports.append(report)
                progress(f"{kind} #{i + 1}: recovered in {result.mttr_s}s")
            measured[kind] = (totals, splits)
        logs = Clients(Principal.ADMIN, settings)("logs")
        cold_s = cold_start_s(logs, function_name(1), since_ms)
        period = settings.alarm_period_s
    for kind, (totals, splits) in measured.items():
        phases = {
            phase: round(statistics.median(s[phase] for s in splits), 2)
            for phase in ("detect", *(p for p, _ in PHASES))
        }
        floor = floor_s(kind, settings, cold_s)
        by_kind[kind] = {
            "runs": runs,
            "detected_by": DETECTED_BY[kind].value,
            "p50_s": round(statistics.median(totals), 1),
            "p95_s": round(percentile(totals, 95), 1),
            "floor_s": floor,
            "floor_phases_s": floor_phases(kind, settings, cold_s),
            "p50_over_floor": round(statistics.median(totals) / floor, 2),
            "phases_p50_s": phases,
            "dominant_phase": dominant_phase(phases),
        }
    calls = [c["tool_calls"] for c in costs]
    prompt = [c["prompt_tokens"] for c in costs]
    completion = [c["completion_tokens"] for c in costs]
    return {
        "alarm_period_s": period,
        "cold_start_s": cold_s,
        "mttr": by_kind,
        "tool_calls": {
            "median": statistics.median(calls),
            "max": max(calls),
            "budget": settings.agent_max_tool_calls,
        },
        "diagnosis_tokens": {
            "prompt_median": statistics.median(prompt),
            "prompt_max": max(prompt),
            "completion_median": statistics.median(completion),
            "completion_max": max(completion),
            "counted_as": "the offline model's estimate of what the same conversation sends "
            "to Bedrock: 4 characters a token",
        },
        "incident_cost": incident_costs(reports, settings),
    }


def dominant_phase(phases: dict[str, float]) -> str:
    """The phase of MTTR (fault → RECOVERED; the watch comes after) that took longest."""
    in_mttr = {k: v for k, v in phases.items() if k != "watch"}
    return max(in_mttr, key=lambda k: in_mttr[k])


def last_recovered_s(reports: list[IncidentReport | None], fault_at: datetime) -> float | None:
    """Fault → the moment the last of these incidents first ran cleanly again; None if any
    never did."""
    recovered_at = [r.reached(S.RECOVERED.value) if r else None for r in reports]
    if not recovered_at or None in recovered_at:
        return None
    last = max(datetime.fromisoformat(at) for at in recovered_at if at)
    return round((last - fault_at).total_seconds(), 1)


@dataclass
class AtOnce:
    game: GameDay
    incidents: list[dict[str, Any]]  # every incident opened since the faults, all ended
    since: str  # just before the faults (ISO, ms)
    seconds: float  # the faults → the last incident ended


def revoked_at_once(settings: Settings, targets: int, within_s: float) -> AtOnce:
    """Once they all run cleanly, `targets` copies of the workload lose their S3 access at
    once; until every incident that opened has ended (RESOLVED after its watch, or given
    up)."""
    names = [function_name(i) for i in range(1, targets + 1)]
    scenario = Scenario(
        name=f"{targets} at once",
        targets=targets,
        faults=[FaultStep(kind="revoke", target="s3", function=n) for n in names],
        expect=Expectation(within_s=within_s),
    )
    game = GameDay(scenario, settings, quiet)
    game.wait_healthy()
    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    started = time.monotonic()
    game.apply_faults()

    def all_ended() -> bool:
        found = game.incidents_since(since)
        return len(found) >= targets and all(S(i["status"]) in TERMINAL for i in found)

    wait_for(all_ended, within_s, f"{targets} incidents to end", 1.0)
    elapsed = time.monotonic() - started
    return AtOnce(game, game.incidents_since(since), since, elapsed)


def many(targets: int, workers_per_stage: int, progress: Log) -> dict[str, Any]:
    """`targets` copies of the workload broken at once; fault → the last one RECOVERED
    (MTTR) and → the last one ended (RESOLVED after its watch, or given up)."""
    overrides = {"target_count": targets, "workers_per_stage": workers_per_stage}
    with fresh_world(overrides, quiet) as settings:
        burst = revoked_at_once(settings, targets, 900)
        found = burst.incidents
        resolved = sum(1 for i in found if i["status"] == S.RESOLVED.value)
        reports = [load_report(burst.game.store, i["incident_id"]) for i in found]
        recovered_s = last_recovered_s(reports, datetime.fromisoformat(burst.since))
        progress(
            f"{targets} targets, {workers_per_stage} worker(s) per stage: {burst.seconds:.1f}s"
        )
        return {
            "seconds": round(burst.seconds, 1),
            "recovered_s": recovered_s,
            "incidents": len(found),
            "resolved": resolved,
            "cost": incident_costs(reports, settings),
        }
