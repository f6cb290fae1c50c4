"""What the fleet does for its users, timed: MTTR per fault kind (split by phase, beside
the fastest chain of the world's own phases its runs saw), many incidents at once, and what
each diagnosis and each whole incident costs (tokens, and dollars at the configured prices).

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

from bench.cost import per_incident
from chaos.gameday import Expectation, FaultStep, GameDay, Scenario, fresh_world
from core.aws import Clients
from core.aws_requests import READ_UNITS, WRITE_UNITS
from core.principals import Principal
from core.settings import Settings
from emulation.world import wait_for
from incidents.context_items import transcript
from incidents.incident_report import IncidentReport, load_report
from incidents.lifecycle import IncidentStatus as S
from incidents.state_machine import TERMINAL
from queues.runtime_metrics import billed_since
from queues.topology import Stage
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


# How each kind is first seen.
DETECTED_BY: dict[str, Detection] = {
    "revoke": Detection.REPORT,
    "deny": Detection.REPORT,
    "env-drift": Detection.REPORT,
    "throttle": Detection.ALARM,
    "timeout": Detection.ALARM,
    "network-block": Detection.ALARM,
    "bad-deploy": Detection.ALARM,
}
# The phases of MTTR that are the world's to take, not the fleet's to shorten:
# - detect (fault -> incident opened): the next run must start and fail; for a kind only an
#   alarm sees, the alarm's period must end and its datapoint be published and evaluated.
#   The fleet's intake (a queue hop and one transaction) is in it too: the incident's trail
#   has no mark between the symptom's arrival and the opening to split it off, so the chain
#   counts that share as unavoidable, in the fleet's favour.
# - verify (VERIFYING -> RECOVERED): by design a fix is proven by the function's own clean
#   runs after it (`verify_successful_runs`), which come on the workload's schedule; the
#   verifier's look every 0.25 s is in it too.
# Left out: diagnose, propose, review and execute are the fleet's own work (agents, checks,
# the allowlisted calls), what the ratio to the chain is there to show; the watch comes
# after RECOVERED, outside MTTR.
UNAVOIDABLE_PHASES = ("detect", "verify")
INIT_DURATION = re.compile(r"\tInit Duration: (?P<ms>[0-9.]+) ms")


def fastest_chain(splits: list[dict[str, float]]) -> dict[str, float]:
    """The least each unavoidable phase took in any of these runs (`phase_split`s). Where
    in the alarm period a fault landed moves its detection, and where the fix landed among
    the function's runs its verification, so the best of each may come from different runs.
    Their sum is at most any one run's detect and verify, so no run's MTTR is below it: the
    fastest chain the world allowed in these runs, measured, not modelled. More runs can
    only lower it."""
    if not splits:
        raise ValueError("no runs to take a fastest chain from")
    return {phase: min(split[phase] for split in splits) for phase in UNAVOIDABLE_PHASES}


def kind_figures(kind: str, totals: list[float], splits: list[dict[str, float]]) -> dict[str, Any]:
    """One fault kind's runs as results.json records them: MTTR (p50, p95), the median of
    each phase, the fastest chain and the median's ratio to it, and every run's phases."""
    phases = {
        phase: round(statistics.median(s[phase] for s in splits), 2)
        for phase in ("detect", *(p for p, _ in PHASES))
    }
    chain = fastest_chain(splits)
    chain_s = round(sum(chain.values()), 2)
    p50 = statistics.median(totals)
    return {
        "runs": len(totals),
        "detected_by": DETECTED_BY[kind].value,
        "p50_s": round(p50, 1),
        "p95_s": round(percentile(totals, 95), 1),
        "fastest_chain_s": chain_s,
        "fastest_chain_phases_s": chain,
        "p50_over_fastest_chain": round(p50 / chain_s, 2) if chain_s > 0 else None,
        "phases_p50_s": phases,
        "dominant_phase": dominant_phase(phases),
        # Each run's own phases, so the chain and the medians can be checked and recomputed.
        "by_run_s": [{"mttr": total, **split} for total, split in zip(totals, splits, strict=True)],
    }


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


# The runtime's billed counters (queues/runtime_metrics.py) as bench/cost.py prices them.
COST_KEYS = {
    "SqsRequests": "sqs_requests",
    "SnsRequests": "sns_publishes",
    WRITE_UNITS: "dynamodb_write_units",
    READ_UNITS: "dynamodb_read_units",
}


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
    spread evenly over it (the middle of each of `runs` equal slices), so that the median
    run lands mid-period, as a fault does on average, and the runs span the period's
    best and worst landings, which the fastest chain's detection takes the best of."""
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
    beside the fastest chain its runs saw (`kind_figures`)."""
    costs: list[dict[str, int]] = []
    reports: list[IncidentReport | None] = []
    overrides = dict(MTTR_OVERRIDES)
    if alarm_period_s is not None:
        overrides["alarm_period_s"] = alarm_period_s
    measured: dict[str, tuple[list[float], list[dict[str, float]]]] = {}
    with fresh_world(overrides, quiet) as settings:
        since_ms = int(time.time() * 1000)
        world_up = datetime.now(UTC)
        for kind in kinds:
            step = FAULT_KINDS[kind]
            totals, splits = [], []
            landing = fault_phases(runs)
            for i in range(runs):
                scenario = Scenario(
                    name=f"{kind} #{i + 1}", faults=[step], expect=Expectation(within_s=120)
                )
                game = GameDay(scenario, settings, quiet)
                # A fault on AWS lands anywhere in an alarm period. A run that starts as
                # soon as the last one is quiet would land at much the same point of a
                # period each time (the last failure, and so the end of the quiet window,
                # follows the last alarm); random points leave a median of five runs some
                # 2 s astray for an alarm-seen kind. So the runs are spread evenly over a
                # period instead (`fault_phases`).
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
        admin = Clients(Principal.ADMIN, settings)
        cold_s = cold_start_s(admin("logs"), function_name(1), since_ms)
        period = settings.alarm_period_s
        billed = billed_since(admin("cloudwatch"), [s.value for s in Stage], world_up)
    by_kind = {kind: kind_figures(kind, *runs_of) for kind, runs_of in measured.items()}
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
        # Every worker's billed requests and units over the part, idle polls included.
        "aws_cost_per_incident": per_incident(
            {COST_KEYS[name]: n for name, n in billed.items()},
            len(reports),
            incident_costs(reports, settings)["cost_usd_median"],
        ),
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
