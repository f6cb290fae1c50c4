"""`make demo`: the whole fleet on the embedded world, end to end, with nobody touching
anything.

Start the world and the four workers, wait for healthy runs, revoke the workload's S3
permissions, and show the incident moving through its states as the fleet detects,
diagnoses, proposes, reviews, fixes and verifies. Then print the timeline, the diagnosis
with its evidence, the actions and the MTTR, stop everything, and exit 0 only if the
workload recovered (the game-day checks of scenarios/iam-s3-revoke.yaml all pass).
"""

from __future__ import annotations

import time

from chaos.gameday import GameDay, Scenario, fresh_world
from emulation.world import PROJECT_ROOT
from incidents.incident_report import load_report
from incidents.report_text import render_text

SCENARIO = PROJECT_ROOT / "scenarios" / "iam-s3-revoke.yaml"


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
