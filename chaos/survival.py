"""Fault survival: the real fleet on a fresh embedded world, a workload fault, then a fault
in the fleet itself; judged on what must never happen: an incident left unfinished, a
message lost, a remediation run twice.

Message accounting uses a ledger: a queue of the harness's own, subscribed to every topic
the stages are fed from, so it holds a copy of every message published. The consumer's
own parser and the topology's routes say which stage each copy was for and under which
event id; each must end handled (its idempotency record COMPLETED) or dead-lettered, and
nothing may be left in a stage queue. Used by `make test-faults` and by `make bench`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from chaos.gameday import (
    GAMEDAY_SETTINGS,
    Expectation,
    FaultStep,
    GameDay,
    Scenario,
    started_world,
)
from core.aws import Clients
from core.principals import Principal
from core.settings import Settings
from emulation.world import (
    PROJECT_ROOT,
    WorldError,
    read_world,
    terminate,
    wait_for,
)
from incidents.incident_report import IncidentReport, list_incidents, load_report
from incidents.lifecycle import IncidentStatus
from incidents.state_machine import TERMINAL
from incidents.store import IncidentStore
from queues.dlq import DeadLetters
from queues.events import BadMessage, new_event, parse_body
from queues.idempotency import COMPLETED, event_key
from queues.provision import queue_policy
from queues.publisher import Publisher
from queues.tables import PROCESSED_EVENTS
from queues.topology import EventType, Stage, Topic, build_topology, topic_arn

LEDGER = "survival-ledger"
STAGES = [s.value for s in Stage]
# A model that thinks for a second per turn, as a hosted one does, so a fault in the fleet
# lands inside an investigation rather than after it; queues that redeliver in seconds.
SURVIVAL_SETTINGS: dict[str, Any] = {
    **GAMEDAY_SETTINGS,
    "offline_model_latency_s": 1.0,
    "queue_visibility_timeout_s": 6,
    # The faults land before the watch ends (a resolver killed in VERIFYING, at the latest);
    # the watch itself still lasts until the alarm period it recovered in has ended and one
    # more has passed (incidents/verification.py), so its looks still hand the lease on.
    "watch_window_s": 3,
}
# The status in which each worker holds the incident's message when it is killed.
KILL_DURING = {
    "supervisor": "INVESTIGATING",
    "critic": "PROPOSED",
    "resolver": "VERIFYING",
    "watchdog": "INVESTIGATING",
}
MCP_OUTAGE_S = 10.0
EMULATOR_PAUSE_S = 5.0
DUPLICATES = 50
POISON = "{this is not JSON"


class CaseResult(BaseModel):
    case: str
    passed: bool
    lost: int
    doubled: int
    dead_lettered: int
    final_statuses: list[str]
    incidents_opened: int
    handled: int
    duration_s: float
    problems: list[str]


@dataclass
class FleetUnderTest:
    """A running `fleet up` and what the harness did to it."""

    settings: Settings
    env: dict[str, str]
    log: Callable[[str], None]
    admin: Clients = field(init=False)
    operator: Clients = field(init=False)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # (stage, event id) the harness sent straight to a stage queue, beside the topics.
    direct: set[tuple[str, str]] = field(default_factory=set)
    poison_sent: int = 0

    def __post_init__(self) -> None:
        self.admin = Clients(Principal.ADMIN, self.settings)
        self.operator = Clients(Principal.OPERATOR, self.settings)

    def pid(self, name: str) -> int:
        return int((read_world(self.settings) or {})["processes"][name])

    def restarted(self, name: str, old_pid: int) -> bool:
        return self.pid(name) != old_pid

    def queue_url(self, name: str) -> str:
        return str(self.admin("sqs").get_queue_url(QueueName=name)["QueueUrl"])

    def start_mcp(self, server: str) -> None:
        """Start an MCP server as the world would (the launcher does not restart them):
        handed its own principal's keys only."""
        own = self.settings.issued_credentials_file(Principal(f"mcp-{server}"))
        env = {**self.env, "FLEET_CREDENTIALS_FILE": str(own.resolve())}
        with open(self.settings.log_dir / f"mcp-{server}-restarted.log", "ab") as log:
            self.started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "fleet.cli", "mcp", server],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )


@contextlib.contextmanager
def fleet_under_test(log: Callable[[str], None]) -> Iterator[FleetUnderTest]:
    with started_world(SURVIVAL_SETTINGS) as (_, settings, env):
        fleet = FleetUnderTest(settings, env, log)
        try:
            yield fleet
        finally:
            terminate(fleet.started, 30)


class Ledger:
    """A copy of every message published to the topics the stage queues are fed from."""

    def __init__(self, fleet: FleetUnderTest):
        self.fleet = fleet
        self.topology = build_topology(fleet.settings)
        sqs, sns = fleet.admin("sqs"), fleet.admin("sns")
        self.url = sqs.create_queue(QueueName=LEDGER)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        topics = [topic_arn(fleet.settings, t) for t in (Topic.ALERTS, Topic.EVENTS)]
        sqs.set_queue_attributes(
            QueueUrl=self.url, Attributes={"Policy": json.dumps(queue_policy(arn, topics))}
        )
        for topic in topics:
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        self.copies: list[Mapping[str, Any]] = []

    def collect(self) -> None:
        sqs = self.fleet.admin("sqs")
        while True:
            got = sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not got:
                return
            self.copies.extend(got)
            sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )

    def expected(self) -> set[tuple[str, str]]:
        """(stage, event id) of every delivery the published messages owe a stage."""
        owed = set()
        for copy in self.copies:
            envelope = json.loads(copy["Body"])
            topic = Topic(envelope["TopicArn"].rsplit(":", 1)[1])
            try:
                event = parse_body(copy["Body"], copy["MessageId"])
            except BadMessage:
                continue  # what the stage makes of it is dead-lettered, and counted there
            for stage in self.topology.routes(topic, event.event_type):
                owed.add((stage.value, event.event_id))
        return owed


@dataclass
class Accounting:
    owed: set[tuple[str, str]]
    handled: set[tuple[str, str]]
    dead: set[tuple[str, str]]
    poison_dead: int
    left_in_queues: int

    @property
    def lost(self) -> set[tuple[str, str]]:
        return self.owed - self.handled - self.dead


def account(fleet: FleetUnderTest, ledger: Ledger, settle_s: float = 60.0) -> Accounting:
    """Once every owed delivery is handled or dead-lettered and the stage queues are empty
    (or the settle time is up): what happened to each."""
    dynamodb = fleet.admin("dynamodb")
    topology = build_topology(fleet.settings)
    dead_letters = DeadLetters(fleet.admin("sqs"), dynamodb, topology)
    store = IncidentStore(dynamodb)
    result = Accounting(set(), set(), set(), 0, 0)

    def settled() -> bool:
        nonlocal result
        ledger.collect()
        owed = ledger.expected() | fleet.direct
        incidents = [i["incident_id"] for i in list_incidents(store)]
        handled = set()
        for stage, event_id in owed:
            item = dynamodb.get_item(
                TableName=PROCESSED_EVENTS.name,
                Key={"event_key": {"S": event_key(stage, event_id)}},
                ConsistentRead=True,
            ).get("Item")
            if item and item["status"]["S"] == COMPLETED:
                handled.add((stage, event_id))
            elif stage == Stage.SUPERVISOR.value and any(
                store.alert_marked(incident_id, event_id) for incident_id in incidents
            ):
                # The intake makes each alert count once by its own marker, unclaimed.
                handled.add((stage, event_id))
        dead, poison = set(), 0
        for q in topology.queues:
            for letter in dead_letters.peek(q.dlq_name, limit=500):
                if letter.event_id:
                    dead.add((q.stage.value, letter.event_id))
                else:
                    poison += 1
        left = sum(_depth(fleet, q.name) for q in topology.queues if q.stage != Stage.WATCHDOG)
        result = Accounting(owed, handled, dead, poison, left)
        return not result.lost and left == 0

    with contextlib.suppress(WorldError):  # timed out: the result says what is missing
        wait_for(settled, settle_s, "every owed delivery handled or dead-lettered", 1.0)
    return result


def _depth(fleet: FleetUnderTest, queue: str) -> int:
    attrs = fleet.admin("sqs").get_queue_attributes(
        QueueUrl=fleet.queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


# ---------------------------------------------------------------- the fleet's own faults


@dataclass
class Run:
    fleet: FleetUnderTest
    game: GameDay
    ledger: Ledger
    since: str

    def incident(self) -> dict[str, Any] | None:
        found = self.game.incidents_since(self.since)
        return found[0] if found else None

    def wait_status(self, status: str, timeout_s: float = 90) -> str:
        wait_for(
            lambda: (self.incident() or {}).get("status") == status,
            timeout_s,
            f"the incident to reach {status}",
            0.1,
        )
        return str((self.incident() or {})["incident_id"])


def kill_worker(stage: str) -> Callable[[Run], None]:
    def disrupt(run: Run) -> None:
        run.wait_status(KILL_DURING[stage])
        pid = run.fleet.pid(f"worker-{stage}")
        os.kill(pid, signal.SIGKILL)
        run.fleet.log(f"kill -9 worker-{stage} ({pid}); the world starts it again")
        wait_for(functools.partial(run.fleet.restarted, f"worker-{stage}", pid), 30, "a restart")

    return disrupt


def restart_mcp_server(run: Run) -> None:
    run.wait_status(IncidentStatus.INVESTIGATING.value)
    pid = run.fleet.pid("mcp-supervisor")
    os.kill(pid, signal.SIGKILL)
    run.fleet.log(f"kill -9 mcp-supervisor ({pid}); back in {MCP_OUTAGE_S:g}s")
    time.sleep(MCP_OUTAGE_S)  # the outage itself: how long the tools are away
    run.fleet.start_mcp("supervisor")


def sigterm_every_worker(run: Run) -> None:
    run.wait_status(IncidentStatus.INVESTIGATING.value)
    pids = {stage: run.fleet.pid(f"worker-{stage}") for stage in STAGES}
    for pid in pids.values():
        os.kill(pid, signal.SIGTERM)
    run.fleet.log("SIGTERM to every worker; the world starts them again")
    for stage, pid in pids.items():
        name = f"worker-{stage}"
        wait_for(functools.partial(run.fleet.restarted, name, pid), 60, f"{name} to restart")


def pause_emulator(run: Run) -> None:
    run.wait_status(IncidentStatus.INVESTIGATING.value)
    pid = run.fleet.pid("emulator")
    os.kill(pid, signal.SIGSTOP)
    run.fleet.log(f"emulator stopped (SIGSTOP) for {EMULATOR_PAUSE_S:g}s")
    try:
        time.sleep(EMULATOR_PAUSE_S)  # the outage itself
    finally:
        os.kill(pid, signal.SIGCONT)


def same_alert_many_times(run: Run) -> None:
    run.wait_status(IncidentStatus.INVESTIGATING.value)
    run.ledger.collect()
    alert = next(
        c for c in run.ledger.copies if json.loads(c["Body"])["TopicArn"].endswith(Topic.ALERTS)
    )
    event = parse_body(alert["Body"], alert["MessageId"])
    sqs, url = run.fleet.admin("sqs"), run.fleet.queue_url(Stage.SUPERVISOR.value)
    for start in range(0, DUPLICATES, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": alert["Body"]}
                for i in range(start, min(start + 10, DUPLICATES))
            ],
        )
    run.fleet.direct.add((Stage.SUPERVISOR.value, event.event_id))
    run.fleet.log(f"the same alert ({event.event_id}) delivered {DUPLICATES} more times")


def events_out_of_order(run: Run) -> None:
    incident_id = run.wait_status(IncidentStatus.INVESTIGATING.value)
    publisher = Publisher.for_principal(run.fleet.operator, run.fleet.settings)
    # Early: an approval for a fix nobody has proposed yet, and a proposal to review (stray
    # messages of their own ids, as a replay or another system's bug would send).
    for event_type in (EventType.APPROVED, EventType.PROPOSED):
        publisher.publish(
            new_event(
                event_type,
                "survival-harness",
                {},
                incident_id=incident_id,
                event_id=f"{incident_id}:early-{event_type.value}",
            )
        )
    run.fleet.log("published incident.approved and incident.proposed before their time")
    # Late: once the incident is over, its diagnosis again (the same event, redelivered).
    wait_for(
        lambda: IncidentStatus((run.incident() or {}).get("status", "RECEIVED")) in TERMINAL,
        150,
        "the incident to end",
        0.5,
    )
    run.ledger.collect()
    events = [json.loads(json.loads(c["Body"])["Message"]) for c in run.ledger.copies]
    diagnosed = next(e for e in events if e.get("event_type") == EventType.DIAGNOSED.value)
    publisher.publish(parse_body(json.dumps(diagnosed), "late"))
    run.fleet.log("published the incident's diagnosis again after it ended")


def poison_every_queue(run: Run) -> None:
    sqs = run.fleet.admin("sqs")
    for stage in STAGES:
        sqs.send_message(QueueUrl=run.fleet.queue_url(stage), MessageBody=POISON)
    run.fleet.poison_sent = len(STAGES)
    run.fleet.log("a poison message on every stage queue")


CASES: dict[str, Callable[[Run], None]] = {
    **{f"kill-9-{stage}": kill_worker(stage) for stage in STAGES},
    "mcp-server-killed-and-restarted": restart_mcp_server,
    "sigterm-every-worker": sigterm_every_worker,
    "emulator-paused": pause_emulator,
    "same-alert-50-times": same_alert_many_times,
    "events-out-of-order": events_out_of_order,
    "poison-in-every-queue": poison_every_queue,
}


def _doubled(reports: list[IncidentReport]) -> int:
    calls = [json.dumps(a, sort_keys=True) for r in reports for a in r.actions]
    return len(calls) - len(set(calls))


def run_case(name: str, log: Callable[[str], None] = lambda _: None) -> CaseResult:
    disrupt = CASES[name]
    started = time.monotonic()
    with fleet_under_test(log) as fleet:
        ledger = Ledger(fleet)
        scenario = Scenario(
            name=name,
            faults=[FaultStep(kind="revoke", target="s3")],
            expect=Expectation(within_s=120),
        )
        game = GameDay(scenario, fleet.settings, log)
        game.wait_healthy()
        since = datetime.now(UTC).isoformat(timespec="milliseconds")
        game.apply_faults()
        run = Run(fleet, game, ledger, since)
        disrupt(run)
        incidents = game.watch(since, 240)
        accounting = account(fleet, ledger)
        reports = [r for r in (load_report(game.store, i["incident_id"]) for i in incidents) if r]
        statuses = [r.status for r in reports]
        problems = []
        if not reports:
            problems.append("no incident opened")
        unfinished = [s for s in statuses if IncidentStatus(s) not in TERMINAL]
        if unfinished:
            problems.append(f"incidents not finished: {unfinished}")
        if len(reports) > 1:
            problems.append(f"{len(reports)} incidents for one fault")
        if accounting.lost:
            problems.append(f"lost: {sorted(accounting.lost)[:5]}")
        if accounting.left_in_queues:
            problems.append(f"{accounting.left_in_queues} message(s) left in stage queues")
        if accounting.poison_dead != fleet.poison_sent:
            problems.append(
                f"{accounting.poison_dead} poison message(s) dead-lettered of {fleet.poison_sent}"
            )
        doubled = _doubled(reports)
        if doubled:
            problems.append(f"{doubled} remediation call(s) ran twice")
        return CaseResult(
            case=name,
            passed=not problems,
            lost=len(accounting.lost),
            doubled=doubled,
            dead_lettered=len(accounting.dead) + accounting.poison_dead,
            final_statuses=statuses,
            incidents_opened=len(reports),
            handled=len(accounting.handled),
            duration_s=round(time.monotonic() - started, 1),
            problems=problems,
        )
