"""End to end, every process real: each shipped game-day scenario passes through the real
CLI (`fleet gameday --json`) on a world with the whole fleet. Scenarios that ask for the same
world share one, as `fleet gameday` plays them (chaos/gameday_series.py): a handful to a
world, so the worlds run side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulation.world import PROJECT_ROOT

# `fleet.cli` itself, with reserved ports for the worlds it starts (side by side with others).
CLI = "tests.integration.reserved_ports_cli"
SCENARIOS = sorted((PROJECT_ROOT / "scenarios").glob("*.yaml"))
# A recovered fix is watched this long (at least until the alarm period it recovered in has
# ended and one more has passed: incidents/verification.py); the relapse scenario, whose
# point is the watch, sets its own 30 s.
SHORT_WATCH = ["--watch-window", "3"]
# The scenarios each `fleet gameday` call plays. Within a call those asking for the same world
# share it; one that ends escalated is played last in its world (an escalated incident holds
# its function's alerts), and a scenario that asks for other settings gets its own world.
# The longest first (3-3.5 minutes, then 2): xdist hands them out in this order.
WORLDS = {
    "config": ["env-drift", "concurrency-throttle", "errors-and-throttles", "false-alarm"],
    "network-and-code": ["network-block", "timeout", "bad-deploy", "two-faults", "code-bug"],
    "iam": ["iam-s3-revoke", "iam-explicit-deny", "every-permission-revoked", "prompt-injection"],
    "approval": ["approval-approved", "approval-rejected", "approval-expired"],
    "relapse": ["relapse"],
}
FIELDS = {
    "scenario",
    "passed",
    "final_status",
    "fault_types",
    "actions",
    "approval_requested",
    "mttr_s",
    "tool_calls",
    "incidents_opened",
    "dead_lettered",
    "checks",
}


def test_scenarios_ship_for_every_fault_kind_and_the_controls() -> None:
    from chaos.faults import FaultKind
    from chaos.gameday import FALSE_ALARM, Scenario

    scenarios = [Scenario.load(p) for p in SCENARIOS]
    kinds = {step.kind for s in scenarios for step in s.faults}
    assert {k.value for k in FaultKind} | {FALSE_ALARM} <= kinds
    assert any(s.log_lines for s in scenarios)  # the prompt-injection case
    assert any(s.approval == "reject" for s in scenarios)
    assert any(len(s.faults) > 1 for s in scenarios)  # compound faults


def test_every_shipped_scenario_is_played_once() -> None:
    played = [name for names in WORLDS.values() for name in names]
    assert sorted(played) == sorted(p.stem for p in SCENARIOS)


@pytest.mark.parametrize("names", WORLDS.values(), ids=WORLDS.keys())
def test_scenarios_pass(names: list[str], tmp_path: Path) -> None:
    paths = [str(PROJECT_ROOT / "scenarios" / f"{name}.yaml") for name in names]
    done = subprocess.run(
        [sys.executable, "-m", CLI, "gameday", "--scenario", *paths, *SHORT_WATCH, "--json"],
        cwd=PROJECT_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEET_")},
        capture_output=True,
        text=True,
        timeout=300 * len(names),
    )
    (tmp_path / "gameday.log").write_text(done.stderr)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["scenario"] for r in results) == sorted(names), done.stderr[-3000:]
    for result in results:
        assert set(result) >= FIELDS
    failed = {
        r["scenario"]: [c for c in r["checks"] if not c["ok"]] for r in results if not r["passed"]
    }
    assert not failed and done.returncode == 0, (
        json.dumps(failed, indent=2) + "\n" + done.stderr[-3000:]
    )
