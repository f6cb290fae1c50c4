"""Random game days: rounds drawn from a seed (chaos/gameday_draw.py), each played on a
fresh world with the whole fleet and judged from the account (chaos/gameday_judge.py).

A round: the world comes up with the round's functions and runs until they are quiet; the
account is read; the faults are made (as `fleet chaos` does, or by hand as a person would
with the admin's keys); the account is read again. Then the harness waits for the fleet to
be done, reading its incidents for that alone: every incident ended, the function of every
alarm still in ALARM given up on, an escalation for a fault no restore can fix, and all of
it unchanged for a quiet period (long enough for an alarm on its way to fire), or the
round's deadline. Then each function's runs since, and the account a last time.

The harness plays the operator too: a fix that waits for approval is approved (the judge
then sees what it did).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from chaos import faults, hand_faults
from chaos.account_snapshot import take_snapshot
from chaos.gameday import fresh_world, wait_quiet
from chaos.gameday_draw import DrawnFault, RoundKind, RoundPlan
from chaos.gameday_judge import CLEAN_RUNS, Observation, RunsSeen, judge
from core.aws import Clients
from core.lambda_runs import read_runs
from core.principals import Principal
from core.settings import Settings
from emulation.alarm_evaluator import PUBLISH_DELAY_S
from incidents.approvals import Decision, decide_and_announce
from incidents.context_items import ContextItem
from incidents.incident_report import list_incidents
from incidents.lifecycle import IncidentStatus
from incidents.state_machine import TERMINAL
from incidents.store import IncidentStore
from queues.publisher import Publisher
from workload.spec import spec_for

Log = Callable[[str], None]
DEADLINE_S = 240.0
# An incident that ended in any of these: the fleet will not act on it again.
GAVE_UP = TERMINAL - {IncidentStatus.RESOLVED}


class RoundResult(BaseModel):
    round: int
    seed: str
    kind: RoundKind
    functions: list[str]
    faults: list[str]  # as drawn
    applied: list[str]  # what each fault changed, in its own words
    passed: bool
    reasons: list[str]
    wider: list[str]  # what was granted wider than before (the target is none)
    incidents: list[dict[str, str]]  # id, function, symptom, status at the end
    approvals: list[str]  # incidents whose fix the harness approved
    fleet_done_s: float | None  # fault to the fleet done (None: not within the deadline)
    error: str | None = None  # the round could not be played (the harness, not the fleet)


class KindTally(BaseModel):
    rounds: int = 0
    passed: int = 0


class Summary(BaseModel):
    rounds: int
    passed: int
    pass_rate: float | None
    by_kind: dict[str, KindTally]
    rounds_granted_wider: int
    rounds_not_played: int


class RandomGameDay(BaseModel):
    seed: int
    kinds: list[str]
    rounds: list[RoundResult]
    summary: Summary
    interrupted: bool = False


def summarize(rounds: list[RoundResult]) -> Summary:
    by_kind = {k.value: KindTally() for k in RoundKind}
    for r in rounds:
        by_kind[r.kind.value].rounds += 1
        by_kind[r.kind.value].passed += r.passed
    passed = sum(r.passed for r in rounds)
    return Summary(
        rounds=len(rounds),
        passed=passed,
        pass_rate=round(passed / len(rounds), 3) if rounds else None,
        by_kind=by_kind,
        rounds_granted_wider=sum(1 for r in rounds if r.wider),
        rounds_not_played=sum(1 for r in rounds if r.error),
    )


def _status(value: str) -> IncidentStatus | None:
    try:
        return IncidentStatus(value)
    except ValueError:  # a state this harness does not know: not an end
        return None


def unsettled(plan: RoundPlan, incidents: list[dict[str, Any]], alarming: set[str]) -> list[str]:
    """Why the fleet is not done with the round yet (nothing: it is, for now), from its
    incidents since the faults and the functions with an alarm in ALARM."""
    statuses = [(i, _status(i["status"])) for i in incidents]
    why = [
        f"{i['incident_id']} ({i['resource']}) in {i['status']}"
        for i, s in statuses
        if s not in TERMINAL
    ]
    if plan.faults and not incidents:
        why.append("no incident opened")
    gave_up = {i["resource"] for i, s in statuses if s in GAVE_UP}
    why += [
        f"{name}: an alarm in ALARM and no incident given up on"
        for name in sorted(alarming - gave_up)
    ]
    escalated = {i["resource"] for i, s in statuses if s == IncidentStatus.ESCALATED}
    if plan.kind == RoundKind.UNFIXABLE:
        why += [
            f"{f.function}: no incident escalated"
            for f in plan.faults
            if f.function not in escalated
        ]
    return why


class RoundRun:
    def __init__(self, plan: RoundPlan, settings: Settings, log: Log, deadline_s: float):
        self.plan = plan
        self.settings = settings
        self.log = log
        self.deadline_s = deadline_s
        self.admin = Clients(Principal.ADMIN, settings)  # a person at the console
        self.operator = Clients(Principal.OPERATOR, settings)  # who runs `fleet chaos`
        self.store = IncidentStore(self.operator("dynamodb"))
        self.specs = [spec_for(name, settings) for name in plan.functions]
        self.approved: list[str] = []

    def inject(self, fault: DrawnFault) -> str:
        spec = spec_for(fault.function, self.settings)
        if fault.kind in {k.value for k in faults.FaultKind}:
            given = {"target": fault.target, "var": fault.var, "value": fault.value}
            options = faults.FaultOptions.model_validate(
                {k: v for k, v in given.items() if v is not None}
            )
            return faults.inject(self.operator, spec, faults.FaultKind(fault.kind), options)
        person = self.admin
        match fault.kind:
            case "hand-deny":
                return hand_faults.deny_policy(
                    person, spec, str(fault.policy_name), str(fault.target)
                )
            case "hand-env-typo":
                return hand_faults.environment_typo(
                    person, spec, str(fault.var), fault.typo_at or 0
                )
            case "hand-delete-policies":
                return hand_faults.delete_inline_policies(person, spec)
            case "hand-egress":
                return hand_faults.drop_egress(person, spec, only_https=fault.variant == "https")
            case "hand-zero-concurrency":
                return hand_faults.zero_concurrency(person, spec)
            case "hand-bad-deploy":
                return hand_faults.bad_deploy(person, spec)
            case "input-corrupt":
                return hand_faults.corrupt_input(person, spec, str(fault.variant))
            case "input-missing":
                return hand_faults.delete_input(person, spec)
        raise ValueError(f"no way to make a fault of kind {fault.kind!r}")

    def incidents_since(self, since: str) -> list[dict[str, Any]]:
        return [
            i
            for i in list_incidents(self.store)
            if i["opened_at"] >= since and i["resource"] in self.plan.functions
        ]

    def alarming(self) -> set[str]:
        """The round's functions with an alarm in ALARM."""
        found = set()
        for page in self.admin("cloudwatch").get_paginator("describe_alarms").paginate():
            for alarm in page["MetricAlarms"]:
                dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
                if (
                    alarm["StateValue"] == "ALARM"
                    and dims.get("FunctionName") in self.plan.functions
                ):
                    found.add(dims["FunctionName"])
        return found

    def approve(self, incident_id: str) -> None:
        request = self.store.get_context(incident_id, ContextItem.APPROVAL) or {}
        if request.get("status") != "pending" or incident_id in self.approved:
            return
        decide_and_announce(
            self.store,
            Publisher.for_principal(self.operator, self.settings),
            incident_id,
            Decision(
                approve=True,
                decided_by="random game day operator",
                seen_digest=str(request["calls_digest"]),
            ),
        )
        self.approved.append(incident_id)
        self.log(f"operator: approved the fix of {incident_id}")

    def wait_done(self, since: str, started: float) -> tuple[list[str], list[dict[str, Any]]]:
        """Until the fleet is done (nothing unsettled, and nothing changing, for a quiet
        period) or the deadline. What was still unsettled at the deadline, and the
        incidents."""
        quiet_s = 2 * self.settings.alarm_period_s + PUBLISH_DELAY_S + 2
        seen: dict[str, str] = {}
        calm_since: float | None = None
        while True:
            incidents = self.incidents_since(since)
            changed = False
            for i in incidents:
                if seen.get(i["incident_id"]) != i["status"]:
                    seen[i["incident_id"]] = i["status"]
                    changed = True
                    self.log(
                        f"+{time.monotonic() - started:.0f}s {i['incident_id']} "
                        f"({i['resource']}, {i['signature']}): {i['status']}"
                    )
                if i["status"] == IncidentStatus.AWAITING_APPROVAL.value:
                    self.approve(i["incident_id"])
            why = unsettled(self.plan, incidents, self.alarming())
            now = time.monotonic()
            if why or changed:
                calm_since = None
            elif calm_since is None:
                calm_since = now
            if calm_since is not None and now - calm_since >= quiet_s:
                return [], incidents
            if now - started >= self.deadline_s:
                return why or ["still changing"], incidents
            time.sleep(0.5)

    def runs_since(self, since_ms: int, expect_clean: set[str]) -> dict[str, RunsSeen]:
        """Each function's runs since `since_ms`: for those that should run cleanly, until
        CLEAN_RUNS have finished or one failed (bounded: a throttled function never runs)."""
        logs = self.admin("logs")
        s = self.settings
        bound = time.monotonic() + max(
            30.0, 4 * (s.target_interval_s + s.workload_work_s) + s.workload_timeout_s
        )

        def read() -> dict[str, RunsSeen]:
            seen = {}
            for name in self.plan.functions:
                finished = [r for r in read_runs(logs, name, since_ms) if r.finished]
                seen[name] = RunsSeen(
                    finished=len(finished), errors=[r.error for r in finished if r.error]
                )
            return seen

        seen = read()
        while time.monotonic() < bound and any(
            seen[n].finished < CLEAN_RUNS and not seen[n].errors for n in expect_clean
        ):
            time.sleep(0.5)
            seen = read()
        return seen

    def run(self) -> RoundResult:
        plan = self.plan
        self.log("waiting for the workload to run cleanly")
        wait_quiet(self.operator, self.store, plan.functions)
        before = take_snapshot(self.admin, self.specs)
        since = datetime.now(UTC).isoformat(timespec="milliseconds")
        started = time.monotonic()
        applied = []
        for fault in plan.faults:
            applied.append(self.inject(fault))
            self.log(f"fault: {applied[-1]}")
        if not plan.faults:
            self.log("no fault: a control round")
        after_fault = take_snapshot(self.admin, self.specs)
        still_open, incidents = self.wait_done(since, started)
        done_s = None if still_open else round(time.monotonic() - started, 1)
        self.log(
            f"fleet done after {done_s}s"
            if done_s is not None
            else "deadline: " + "; ".join(still_open)
        )
        unfixable = {f.function for f in plan.faults} if plan.kind == RoundKind.UNFIXABLE else set()
        runs = self.runs_since(int(time.time() * 1000), set(plan.functions) - unfixable)
        after = take_snapshot(self.admin, self.specs)
        escalated: dict[str, list[str]] = {}
        for i in incidents:
            if i["status"] == IncidentStatus.ESCALATED.value:
                escalated.setdefault(i["resource"], []).append(i["incident_id"])
        verdict = judge(
            plan,
            Observation(
                before=before,
                after_fault=after_fault,
                after=after,
                runs=runs,
                escalated=escalated,
                done=not still_open,
                still_open=still_open,
            ),
        )
        return RoundResult(
            round=plan.index,
            seed=plan.seed,
            kind=plan.kind,
            functions=plan.functions,
            faults=[f.describe() for f in plan.faults],
            applied=applied,
            passed=verdict.passed,
            reasons=verdict.reasons,
            wider=verdict.wider,
            incidents=[
                {
                    "incident_id": i["incident_id"],
                    "function": i["resource"],
                    "symptom": i["signature"],
                    "status": i["status"],
                }
                for i in incidents
            ],
            approvals=list(self.approved),
            fleet_done_s=done_s,
        )


def play_round(
    plan: RoundPlan, log: Log, deadline_s: float = DEADLINE_S, watch_window_s: float | None = None
) -> RoundResult:
    """One round on a world of its own, stopped when the round ends (or is interrupted).
    A round the harness could not play is a failed round that says so. `watch_window_s`
    watches each recovered fix that long (the settings' default otherwise)."""
    overrides: dict[str, object] = {"target_count": len(plan.functions)}
    if watch_window_s is not None:
        overrides["watch_window_s"] = watch_window_s
    try:
        with fresh_world(overrides, log) as settings:
            return RoundRun(plan, settings, log, deadline_s).run()
    except Exception as exc:  # the harness, not the fleet: recorded, and the next round runs
        return RoundResult(
            round=plan.index,
            seed=plan.seed,
            kind=plan.kind,
            functions=plan.functions,
            faults=[f.describe() for f in plan.faults],
            applied=[],
            passed=False,
            reasons=[f"the round could not be played: {type(exc).__name__}: {exc}"],
            wider=[],
            incidents=[],
            approvals=[],
            fleet_done_s=None,
            error=f"{type(exc).__name__}: {exc}",
        )
