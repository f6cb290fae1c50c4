"""Game days: a scenario (YAML) is run on an embedded world with the whole fleet (its own,
or one shared with the scenarios before it: chaos/gameday_series.py), and judged on what a
user would notice: how the incident ended, what was diagnosed, what ran, how long it took,
whether anything was lost.

The harness plays the world and the operator: it applies the faults (as `fleet chaos`
does), writes any extra log lines, and answers approval requests as the scenario says.
It never tells the fleet anything: the fleet finds out from its alarms and tools.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from chaos import faults, hand_faults
from chaos.status import function_status
from core.aws import Clients
from core.errors import UsageError
from core.principals import Principal
from core.settings import Settings
from emulation.alarm_evaluator import PUBLISH_DELAY_S, notification
from emulation.world import free_port, free_ports, start_world_process, terminate, wait_for
from incidents.approvals import Decision, decide_and_announce
from incidents.context_items import ContextItem
from incidents.incident_report import IncidentReport, list_incidents, load_report
from incidents.lifecycle import IncidentStatus
from incidents.remediation import ALLOWLIST
from incidents.state_machine import TERMINAL
from incidents.store import IncidentStore
from queues.failures import FailureLog
from queues.publisher import Publisher
from queues.topology import Topic, build_topology, topic_arn
from workload.spec import FunctionSpec, spec_for

FALSE_ALARM = "false-alarm"
# Faults in the function's input, made by a person (no restore of the baseline fixes them):
# input that makes even the baseline code fail, and no input at all.
INPUT_FAULTS: dict[str, Callable[[Clients, FunctionSpec], str]] = {
    "bad-input": lambda clients, spec: hand_faults.corrupt_input(clients, spec, "no-records"),
    "missing-input": hand_faults.delete_input,
}
INJECTED_STREAM = "gameday-injected"  # the log stream a scenario's extra lines are written to
Answer = Literal["auto", "approve", "reject", "ignore"]
# Faster queues than production, so a game day takes seconds (the same as the tests').
GAMEDAY_SETTINGS: dict[str, Any] = {
    "queue_visibility_timeout_s": 10,
    "worker_wait_time_s": 1,
    "worker_grace_s": 8,
    "retry_backoff_base_s": 0.5,
    "runtime_metrics_flush_s": 2,
}


class FaultStep(BaseModel):
    kind: str
    function: str = "data-processor"
    # When it is applied: with the others at the start (after `after_s` more seconds), or
    # again once the incident has RECOVERED (a relapse within the watch window).
    when: Literal["start", "recovered"] = "start"
    after_s: float = Field(default=0.0, ge=0, le=120)
    target: str = "s3"
    concurrency: int = 0
    var: str = "DATA_PREFIX"
    value: str = "drifted/"
    seconds: int = 1


class Expectation(BaseModel):
    fault_types: list[str] | None = None
    # One fault type, any of these: for compound faults, where which one shows first
    # depends on timing the fleet does not control (as on AWS).
    diagnosed_one_of: list[str] | None = None
    final_status: IncidentStatus = IncidentStatus.RESOLVED
    max_actions: int | None = None
    # No round of the incident executes more calls than this: for faults that land at
    # different moments, where how many rounds they take depends on timing (a fault after
    # a round's fix is another round's), but no round should do more than its faults need.
    max_actions_per_round: int | None = None
    within_s: float = 60.0
    approval_requested: bool | None = None
    rolled_back: bool | None = None
    # At most this many incidents opened (every symptom of a function joins one).
    max_incidents: int | None = None
    # The rounds of investigate-fix-verify the incident took.
    rounds: int | None = None


class Scenario(BaseModel):
    name: str
    description: str = ""
    targets: int = Field(default=1, ge=1, le=10)
    faults: list[FaultStep]
    log_lines: list[str] = []
    approval: Answer = "auto"
    # Settings for this world (FLEET_* without the prefix), e.g. require_human_approval.
    settings: dict[str, Any] = {}
    expect: Expectation

    @classmethod
    def load(cls, path: Path) -> Scenario:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read scenario {path}: {exc}") from None
        try:
            scenario = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UsageError(f"{path}: {where}: {first['msg']}") from None
        kinds = {k.value for k in faults.FaultKind} | {FALSE_ALARM, *INPUT_FAULTS}
        for step in scenario.faults:
            if step.kind not in kinds:
                raise UsageError(
                    f"{path}: unknown fault kind {step.kind!r}; choose one of: "
                    f"{', '.join(sorted(kinds))}"
                )
        return scenario


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class GameDayResult(BaseModel):
    scenario: str
    passed: bool
    final_status: str | None
    fault_types: list[str]
    actions: list[dict[str, Any]]
    approval_requested: bool
    mttr_s: float | None  # fault applied -> RECOVERED (runs clean, state at baseline)
    tool_calls: int
    incidents_opened: int
    dead_lettered: int
    checks: list[Check]
    incident_id: str | None = None
    fault_at: str | None = None


@contextlib.contextmanager
def started_world(
    overrides: dict[str, Any],
) -> Iterator[tuple[subprocess.Popen[bytes], Settings, dict[str, str]]]:
    """`fleet up` (the whole fleet) in its own state directory on free ports, with game-day
    timings unless overridden: its process, settings and environment until the block ends,
    then stopped by its PID."""
    with tempfile.TemporaryDirectory(prefix="fleet-world-") as state_dir:
        values = {
            "state_dir": state_dir,
            # free_port looked up at call time: the tests swap in their reserved ports.
            **free_ports(lambda: free_port()),
            **GAMEDAY_SETTINGS,
            **overrides,
        }
        world, settings, env = start_world_process(values, Path(state_dir) / "fleet-up.log")
        try:
            yield world, settings, env
        finally:
            terminate([world], 60)


@contextlib.contextmanager
def fresh_world(overrides: dict[str, Any], log: Callable[[str], None]) -> Iterator[Settings]:
    with started_world(overrides) as (_, settings, _env):
        log(f"world up on {settings.endpoint_url} (logs: {settings.log_dir})")
        yield settings


def detection_horizon_s(settings: Settings) -> int:
    """How long after a fault the fleet may first hear of it: an alarm fires once the
    period the failures fell in has ended and its datapoint is in, and one more period
    passes for the evaluation range to hold it."""
    return int(2 * settings.alarm_period_s + PUBLISH_DELAY_S) + 1


def wait_quiet(operator: Clients, store: IncidentStore, names: list[str]) -> None:
    """Until each function is quiet: its runs clean over two whole alarm periods (so an
    alarm still due for an earlier failure has fired), none of its alarms in ALARM, and no
    incident open for it. Otherwise a game run right after another could start while the
    last one's alarm is on its way, and its fault be taken in by an incident opened before
    it (bench runs fault after fault on one world)."""
    settings = operator.settings
    period = settings.alarm_period_s
    window = max(
        5,
        int(3 * settings.target_interval_s + settings.workload_work_s),
        detection_horizon_s(settings),
    )
    cloudwatch = operator("cloudwatch")
    for name in names:
        spec = spec_for(name, settings)

        def quiet(spec: Any = spec) -> bool:
            if function_status(operator, spec, window).health != "healthy":
                return False
            for page in cloudwatch.get_paginator("describe_alarms").paginate():
                for alarm in page["MetricAlarms"]:
                    dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
                    if dims.get("FunctionName") == spec.name and alarm["StateValue"] == "ALARM":
                        return False
            return not any(
                i["resource"] == spec.name and IncidentStatus(i["status"]) not in TERMINAL
                for i in list_incidents(store)
            )

        wait_for(quiet, 90 + 3 * period, f"{name} to run cleanly before the faults", 0.5)


class GameDay:
    def __init__(
        self, scenario: Scenario, settings: Settings, log: Callable[[str], None] = lambda _: None
    ):
        self.scenario = scenario
        self.settings = settings
        self.log = log
        self.operator = Clients(Principal.OPERATOR, settings)
        self.admin = Clients(Principal.ADMIN, settings)
        self.store = IncidentStore(self.operator("dynamodb"))
        self.seen: dict[str, str] = {}  # incident id -> last status shown
        # Dead letters already there before the faults (a world shared with scenarios before).
        self.dead_before = 0
        # When a fault applied after the others landed (monotonic): the watch lasts until
        # the fleet could have seen it (`detection_horizon_s`).
        self.late_fault_at: float | None = None

    def wait_healthy(self) -> None:
        names = {f.function for f in self.scenario.faults} or {"data-processor"}
        wait_quiet(self.operator, self.store, sorted(names))

    def write_log_lines(self) -> None:
        if not self.scenario.log_lines:
            return
        logs = self.admin("logs")
        for name in {f.function for f in self.scenario.faults} or {"data-processor"}:
            group, stream = f"/aws/lambda/{name}", INJECTED_STREAM
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
            now = int(time.time() * 1000)
            logs.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[
                    {"timestamp": now + i, "message": line}
                    for i, line in enumerate(self.scenario.log_lines)
                ],
            )

    def tidy(self) -> None:
        """Remove what this game day wrote that no restore of a baseline would undo (its
        injected log lines), so a scenario played next on the world does not read them."""
        if not self.scenario.log_lines:
            return
        logs = self.admin("logs")
        for name in {f.function for f in self.scenario.faults} or {"data-processor"}:
            with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
                logs.delete_log_stream(
                    logGroupName=f"/aws/lambda/{name}", logStreamName=INJECTED_STREAM
                )

    def apply_faults(self, when: str = "start") -> None:
        for step in self.scenario.faults:
            if step.when != when:
                continue
            if step.after_s:
                self.log(f"(the next fault in {step.after_s:g}s)")
                time.sleep(step.after_s)  # the scenario's own timeline, not a wait
                self.late_fault_at = time.monotonic()
            spec = spec_for(step.function, self.settings)
            if step.kind == FALSE_ALARM:
                self.log(f"fault: a false alarm for {step.function} (nothing is broken)")
                self._false_alarm(step.function)
                continue
            if step.kind in INPUT_FAULTS:
                self.log("fault: " + INPUT_FAULTS[step.kind](self.admin, spec))
                continue
            options = faults.FaultOptions(**step.model_dump(exclude={"kind", "function"}))
            self.log(
                "fault: " + faults.inject(self.operator, spec, faults.FaultKind(step.kind), options)
            )

    def _false_alarm(self, function: str) -> None:
        cloudwatch = self.admin("cloudwatch")
        alarm = next(
            a
            for a in cloudwatch.describe_alarms()["MetricAlarms"]
            if {"Name": "FunctionName", "Value": function} in a.get("Dimensions", [])
            and a["MetricName"] == "Errors"
        )
        message = notification(
            alarm,
            "OK",
            "ALARM",
            "Threshold Crossed: game day",
            datetime.now(UTC),
            self.settings.region,
        )
        self.operator("sns").publish(
            TopicArn=topic_arn(self.settings, Topic.ALERTS),
            Subject=f'ALARM: "{alarm["AlarmName"]}"',
            Message=json.dumps(message),
        )

    def incidents_since(self, since: str) -> list[dict[str, Any]]:
        return [i for i in list_incidents(self.store) if i["opened_at"] >= since]

    def _answer(self, incident_id: str) -> None:
        answer = self.scenario.approval
        if answer == "ignore":
            return
        request = self.store.get_context(incident_id, ContextItem.APPROVAL) or {}
        if request.get("status") != "pending":
            return
        approve = answer in ("approve", "auto")
        decide_and_announce(
            self.store,
            Publisher.for_principal(self.operator, self.settings),
            incident_id,
            Decision(
                approve=approve,
                decided_by="game-day operator",
                seen_digest=str(request["calls_digest"]),
                reason=None if approve else "game day: the operator rejects this fix",
            ),
        )
        self.log(f"operator: {'approved' if approve else 'rejected'} {incident_id}")

    def watch(self, since: str, deadline_s: float) -> list[dict[str, Any]]:
        """Until an incident has opened and every one since the faults is terminal."""
        end = time.monotonic() + deadline_s
        relapsed = False
        while time.monotonic() < end:
            incidents = self.incidents_since(since)
            for i in incidents:
                if self.seen.get(i["incident_id"]) != i["status"]:
                    self.seen[i["incident_id"]] = i["status"]
                    self.log(f"{i['incident_id']}: {i['status']} (round {i.get('round', 1)})")
                if i["status"] == IncidentStatus.AWAITING_APPROVAL.value:
                    self._answer(i["incident_id"])
                if i["status"] == IncidentStatus.RECOVERED.value and not relapsed:
                    relapsed = True  # once: the fault comes back while the fix is watched
                    self.apply_faults("recovered")
            seen_late = (
                self.late_fault_at is None
                or time.monotonic() - self.late_fault_at >= detection_horizon_s(self.settings)
            )
            ended = incidents and all(IncidentStatus(i["status"]) in TERMINAL for i in incidents)
            if ended and seen_late:
                return incidents
            time.sleep(0.5)
        return self.incidents_since(since)

    def dead_letters(self) -> int:
        sqs = self.admin("sqs")
        total = 0
        for q in build_topology(self.settings).queues:
            url = sqs.get_queue_url(QueueName=q.dlq_name)["QueueUrl"]
            attrs = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            total += int(attrs["ApproximateNumberOfMessages"])
        return total

    def _dead_letter_detail(self, dead: int) -> str:
        if not dead:
            return "0 dead letters"
        records = FailureLog(self.operator("dynamodb")).all()
        reasons = "; ".join(f"{r.queue}: {r.error_class}: {r.reason[:160]}" for r in records[:3])
        return f"{dead} dead letter(s): {reasons}"

    def run(self) -> GameDayResult:
        self.log("waiting for the workload to run cleanly")
        self.wait_healthy()
        self.dead_before = self.dead_letters()
        self.write_log_lines()
        since = datetime.now(UTC).isoformat(timespec="milliseconds")
        started = time.monotonic()
        fault_at = datetime.now(UTC)
        self.apply_faults()
        incidents = self.watch(since, self.scenario.expect.within_s * 2 + 60)
        return self.judge(incidents, fault_at, time.monotonic() - started)

    def judge(
        self, incidents: list[dict[str, Any]], fault_at: datetime, _elapsed: float
    ) -> GameDayResult:
        reports = [r for r in (load_report(self.store, i["incident_id"]) for i in incidents) if r]
        main: IncidentReport | None = min(reports, key=lambda r: r.opened_at, default=None)
        expect = self.scenario.expect
        actions = [a for r in reports for a in r.actions]
        fault_types = sorted(set((main.diagnosis or {}).get("fault_types", []))) if main else []
        mttr = None
        # A fix is recovered when its runs are clean; with nothing to fix (a false alarm),
        # the incident is resolved without a fix, and that is the end.
        recovered_at = (
            (main.reached(IncidentStatus.RECOVERED.value) or main.closed_at) if main else None
        )
        if main and main.status == "RESOLVED" and recovered_at:
            mttr = round((datetime.fromisoformat(recovered_at) - fault_at).total_seconds(), 1)
        approval_requested = any(
            r.reached(IncidentStatus.AWAITING_APPROVAL.value) is not None for r in reports
        )
        dead = self.dead_letters() - self.dead_before
        checks = [
            Check(
                name="final status",
                ok=main is not None and main.status == expect.final_status.value,
                detail=f"{main.status if main else 'no incident opened'} "
                f"(expected {expect.final_status.value})",
            ),
            Check(
                name="only allowlisted calls ran",
                ok=all((a["service"], a["operation"]) in ALLOWLIST for a in actions),
                detail=", ".join(f"{a['service']}:{a['operation']}" for a in actions) or "no call",
            ),
            Check(
                name="each remediation ran once",
                ok=len({json.dumps(a, sort_keys=True) for a in actions}) == len(actions),
                detail=f"{len(actions)} call(s) recorded",
            ),
            Check(
                name="nothing dead-lettered", ok=dead == 0, detail=self._dead_letter_detail(dead)
            ),
        ]
        if expect.fault_types is not None:
            checks.append(
                Check(
                    name="diagnosis",
                    ok=fault_types == sorted(expect.fault_types),
                    detail=f"{fault_types} (expected {sorted(expect.fault_types)})",
                )
            )
        if expect.diagnosed_one_of is not None:
            checks.append(
                Check(
                    name="diagnosis",
                    ok=len(fault_types) == 1 and fault_types[0] in expect.diagnosed_one_of,
                    detail=f"{fault_types} (expected one of {sorted(expect.diagnosed_one_of)})",
                )
            )
        if expect.max_actions is not None:
            checks.append(
                Check(
                    name="actions",
                    ok=len(actions) <= expect.max_actions,
                    detail=f"{len(actions)} (at most {expect.max_actions})",
                )
            )
        if expect.max_actions_per_round is not None:
            rounds_of = main.rounds if main else []
            checks.append(
                Check(
                    name="actions per round",
                    ok=all(len(r.actions) <= expect.max_actions_per_round for r in rounds_of),
                    detail="; ".join(
                        f"round {r.number}: "
                        + (
                            ", ".join(f"{a['service']}:{a['operation']}" for a in r.actions)
                            or "none"
                        )
                        for r in rounds_of
                    )
                    + f" (at most {expect.max_actions_per_round} a round)",
                )
            )
        if expect.final_status == IncidentStatus.RESOLVED:
            checks.append(
                Check(
                    name="recovered in time",
                    ok=mttr is not None and mttr <= expect.within_s,
                    detail=f"{mttr}s (within {expect.within_s:g}s)",
                )
            )
            checks.append(self._workload_check())
        if expect.approval_requested is not None:
            checks.append(
                Check(
                    name="approval requested",
                    ok=approval_requested == expect.approval_requested,
                    detail=f"{approval_requested} (expected {expect.approval_requested})",
                )
            )
        if expect.max_incidents is not None:
            checks.append(
                Check(
                    name="one incident per function",
                    ok=len(reports) <= expect.max_incidents,
                    detail=f"{len(reports)} opened (at most {expect.max_incidents}); symptoms "
                    + ", ".join(sorted({s for i in incidents for s in i.get("symptoms", [])})),
                )
            )
        if expect.rounds is not None:
            rounds = (
                sum(1 for e in main.timeline if e.action.endswith("-> INVESTIGATING"))
                if main
                else 0
            )
            checks.append(
                Check(
                    name="rounds",
                    ok=rounds == expect.rounds,
                    detail=f"{rounds} (expected {expect.rounds})",
                )
            )
        if expect.rolled_back is not None:
            rolled = any(r.reached(IncidentStatus.ROLLED_BACK.value) for r in reports)
            checks.append(
                Check(
                    name="rolled back",
                    ok=rolled == expect.rolled_back,
                    detail=f"{rolled} (expected {expect.rolled_back}); "
                    f"{sum(len(r.rollbacks) for r in reports)} rollback call(s)",
                )
            )
        return GameDayResult(
            scenario=self.scenario.name,
            passed=all(c.ok for c in checks),
            final_status=main.status if main else None,
            fault_types=fault_types,
            actions=[
                {"service": a["service"], "operation": a["operation"], "params": a["parameters"]}
                for a in actions
            ],
            approval_requested=approval_requested,
            mttr_s=mttr,
            tool_calls=sum(r.tool_calls for r in reports),
            incidents_opened=len(reports),
            dead_lettered=dead,
            checks=checks,
            incident_id=main.incident_id if main else None,
            fault_at=fault_at.isoformat(),
        )

    def _workload_check(self) -> Check:
        window = max(5, int(3 * self.settings.target_interval_s + self.settings.workload_work_s))
        bad = []
        for name in sorted({f.function for f in self.scenario.faults}):
            status = function_status(self.operator, spec_for(name, self.settings), window)
            if status.health != "healthy" or not status.at_baseline:
                bad.append(f"{name}: {status.health}, drift {status.drift}")
        return Check(
            name="workload healthy at baseline",
            ok=not bad,
            detail="; ".join(bad) or "every faulted function runs cleanly at its baseline",
        )
