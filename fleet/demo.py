"""`make demo`: the whole fleet on the embedded world, end to end, with nobody touching
anything.

Start the world and the four workers, wait for healthy runs, revoke the workload's S3
permissions, and show the incident moving through its states as the fleet detects,
diagnoses, proposes, reviews, fixes and verifies. Then print the timeline, the diagnosis
with its evidence, the actions, the incident's trace stage by stage and the MTTR, stop
everything (keeping the trace files for `fleet trace`), and exit 0 only if the workload
recovered (the game-day checks of scenarios/iam-s3-revoke.yaml all pass).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from chaos.gameday import GameDay, Scenario, fresh_world
from core.settings import Settings
from emulation.world import PROJECT_ROOT
from fleet.trace_view import render_waterfall
from incidents.incident_report import load_report
from incidents.incident_trace import IncidentTrace, load_incident_trace
from incidents.report_text import render_text

SCENARIO = PROJECT_ROOT / "scenarios" / "iam-s3-revoke.yaml"
# How long the last stage's spans may take to reach the trace file (exported each second).
TRACE_WAIT_S = 10.0


def _trace(settings: Settings, incident_id: str, status: str) -> IncidentTrace:
    """The incident's trace once the span that moved it to `status` is written."""
    deadline = time.monotonic() + TRACE_WAIT_S
    while True:
        found = load_incident_trace(settings.trace_dir, incident_id)
        if any(m.endswith(f"-> {status}") for s in found.spans for m in s.moves):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _keep_traces(settings: Settings, into: Path) -> None:
    """The demo's world lives in a temporary directory: its trace files are copied where
    `fleet trace` looks by default, so the incident can be looked at after the demo."""
    into.mkdir(parents=True, exist_ok=True)
    for path in settings.trace_dir.glob("*.jsonl"):
        shutil.copy(path, into / f"demo-{path.name}")


def run_demo() -> int:
    scenario = Scenario.load(SCENARIO)
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    say("starting the embedded world and the fleet (emulator, workload, MCP servers, workers)")
    with fresh_world({"target_count": scenario.targets, **scenario.settings}, say) as settings:
        gameday = GameDay(scenario, settings, say)
        result = gameday.run()
        print()
        if result.incident_id:
            report = load_report(gameday.store, result.incident_id)
            if report:
                print(render_text(report))
                found = _trace(settings, report.incident_id, report.status)
                if found.trace_id is not None:  # none with OTEL_SDK_DISABLED, or OTLP
                    print()
                    print(render_waterfall(found, 0))
                    kept = Settings().trace_dir
                    _keep_traces(settings, kept)
                    print(f"\nevery span of it: fleet trace {report.incident_id} (from {kept})")
        print()
        print(
            f"MTTR (fault injected -> RECOVERED): {result.mttr_s}s; {result.tool_calls} tool "
            f"calls; {result.incidents_opened} incident(s); {result.dead_lettered} dead letters"
        )
        for check in result.checks:
            print(f"  [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
        say("stopping everything")
    if result.passed:
        print("demo complete: the fleet found the fault, fixed it, and proved it fixed")
        return 0
    print("demo FAILED: the fleet did not recover the workload (see the checks above)")
    return 1
