"""End to end, every process real: each shipped game-day scenario passes through the real
CLI (`fleet gameday --json`), each on a fresh world with the whole fleet."""

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


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_passes(path: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", CLI, "gameday", "--scenario", str(path), *SHORT_WATCH, "--json"],
        cwd=PROJECT_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEET_")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    (tmp_path / "gameday.log").write_text(done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout + done.stderr[-3000:]
    result = json.loads(lines[0])
    assert set(result) >= FIELDS
    failed = [c for c in result["checks"] if not c["ok"]]
    assert result["passed"] and not failed and done.returncode == 0, (
        json.dumps(failed, indent=2) + "\n" + done.stderr[-3000:]
    )
