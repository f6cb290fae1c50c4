"""The watch after a fix holds the function, not a worker: with one resolver slot, a second
function broken at the same time is fixed while the first one's fix is still watched."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import chaos.gameday
from chaos.gameday import Expectation, FaultStep, GameDay, Scenario, fresh_world
from emulation.world import wait_for
from incidents.incident_report import load_report
from incidents.leases import ResourceLeases
from incidents.lifecycle import IncidentStatus as S
from incidents.state_machine import TERMINAL
from tests.ports import reserve_port
from workload.spec import function_name

# One message at a time in each worker, and a watch long enough to tell "during" from
# "after": without the delayed looks, the second fix would wait for the first watch's end.
ONE_SLOT = {"target_count": 2, "worker_concurrency": 1, "watch_window_s": 20}


@pytest.mark.timeout(600)
def test_a_second_function_is_fixed_while_the_first_fix_is_watched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chaos.gameday, "free_port", reserve_port)
    names = [function_name(i) for i in (1, 2)]
    with fresh_world(ONE_SLOT, lambda _line: None) as settings:
        scenario = Scenario(
            name="two at once, one slot",
            targets=2,
            faults=[FaultStep(kind="revoke", target="s3", function=n) for n in names],
            expect=Expectation(within_s=300),
        )
        game = GameDay(scenario, settings, lambda _line: None)
        game.wait_healthy()
        since = datetime.now(UTC).isoformat(timespec="milliseconds")
        game.apply_faults()
        leases = ResourceLeases(game.operator("dynamodb"), settings.remediation_lease_s)
        watched_and_held: list[str] = []

        def both_ended() -> bool:
            found = game.incidents_since(since)
            for incident in found:  # a watched function stays held by its incident
                if incident["status"] == S.RECOVERED.value:
                    lease = leases.current(incident["resource"])
                    if lease is not None and lease.holder == incident["incident_id"]:
                        watched_and_held.append(incident["resource"])
            return len(found) == 2 and all(S(i["status"]) in TERMINAL for i in found)

        wait_for(both_ended, 300, "both incidents to end", 0.5)
        found = game.incidents_since(since)
        reports = [load_report(game.store, i["incident_id"]) for i in found]
        assert all(r is not None and r.status == S.RESOLVED.value for r in reports), found
        recovered = sorted(
            datetime.fromisoformat(r.reached(S.RECOVERED.value) or "") for r in reports if r
        )
        resolved = sorted(
            datetime.fromisoformat(r.reached(S.RESOLVED.value) or "") for r in reports if r
        )
        # The second fix verified before the first watch ended: the watch gave its slot back.
        assert recovered[1] < resolved[0], (recovered, resolved)
        assert set(watched_and_held) == set(names)
        # And each function is free again once its watch is over.
        assert all(leases.current(n) is None for n in names)


# Alarms a period long enough that the alarm for a fault's first failures fires after
# the function has recovered, and a watch shorter than that wait.
LATE_ALARM = {"alarm_period_s": 30, "watch_window_s": 5}


@pytest.mark.timeout(600)
def test_the_alarm_for_failures_before_a_fix_joins_its_incident_not_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chaos.gameday, "free_port", reserve_port)
    name = function_name(1)
    with fresh_world(LATE_ALARM, lambda _line: None) as settings:
        scenario = Scenario(
            name="a late alarm",
            faults=[FaultStep(kind="revoke", target="s3", function=name)],
            expect=Expectation(within_s=120),
        )
        game = GameDay(scenario, settings, lambda _line: None)
        game.wait_healthy()
        since = datetime.now(UTC)
        game.apply_faults()
        cloudwatch = game.operator("cloudwatch")

        def fired_since_the_fault() -> bool:
            """The function's errors alarm has changed state since the fault: it fired."""
            for page in cloudwatch.get_paginator("describe_alarms").paginate():
                for alarm in page["MetricAlarms"]:
                    dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
                    if dims.get("FunctionName") == name and alarm["MetricName"] == "Errors":
                        return bool(alarm["StateUpdatedTimestamp"] > since)
            return False

        def settled() -> bool:
            found = game.incidents_since(since.isoformat(timespec="milliseconds"))
            return (
                fired_since_the_fault()
                and bool(found)
                and all(S(i["status"]) in TERMINAL for i in found)
            )

        wait_for(settled, 240, "the late alarm and every incident to end", 1.0)
        found = game.incidents_since(since.isoformat(timespec="milliseconds"))
        # One fault, one incident: the function's own report opened it, and the alarm that
        # fired after its recovery was counted on it during the watch.
        assert [i["status"] for i in found] == [S.RESOLVED.value], found
        incident = game.store.get(found[0]["incident_id"])
        assert incident is not None and incident.alert_count >= 2
