"""A small random game day through the real CLI (`fleet gameday --random --json`): rounds
drawn from a seed, each on a fresh world with the whole fleet, judged from the account.

The draw is narrowed (`--kinds`, one function, one fault a round) to faults the fleet
handles today, so that a regression in what it already does fails here; the seed's rounds
include a control round and fixable ones (checked before any world starts, so a change to
the draw that loses them says so instead of passing on less).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chaos.gameday_draw import RoundKind, draw_plan, parse_kinds
from emulation.world import PROJECT_ROOT

# `fleet.cli` itself, with reserved ports for the worlds it starts (side by side with others).
CLI = "tests.integration.reserved_ports_cli"
# Seed 1's first two rounds: a fixable one and a control (checked below, before any world
# starts); `make bench` plays more.
SEED, ROUNDS = "1", "2"
KINDS = "revoke,deny,timeout,env-drift,control"
NARROW = ["--kinds", KINDS, "--max-functions", "1", "--max-faults", "1", "--json"]
# Each recovered fix is watched only as long as its alarm periods need.
SHORT_WATCH = ["--watch-window", "3"]


@pytest.mark.timeout(900)
def test_a_seeded_random_game_day_passes_and_says_what_it_judged() -> None:
    plan = draw_plan(int(SEED), int(ROUNDS), parse_kinds(KINDS), 1, 1)
    kinds = [r.kind for r in plan]
    assert RoundKind.CONTROL in kinds and RoundKind.FIXABLE in kinds, [r.describe() for r in plan]

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            CLI,
            "gameday",
            "--random",
            ROUNDS,
            "--seed",
            SEED,
            *SHORT_WATCH,
            *NARROW,
        ],
        cwd=PROJECT_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEET_")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    result = json.loads(done.stdout)
    failed = [r for r in result["rounds"] if not r["passed"]]
    assert done.returncode == 0 and not failed, (
        json.dumps(failed, indent=2) + "\n" + done.stderr[-4000:]
    )
    # What was played is what the seed drew, and the plan was printed before it.
    assert [(r["round"], r["kind"], r["faults"]) for r in result["rounds"]] == [
        (p.index, p.kind.value, [f.describe() for f in p.faults]) for p in plan
    ]
    assert all(f"round {p.index} (seed {p.seed})" in done.stderr for p in plan)
    summary = result["summary"]
    assert summary["rounds"] == 2 and summary["passed"] == 2 and summary["pass_rate"] == 1.0
    assert summary["rounds_granted_wider"] == 0
    control = next(r for r in result["rounds"] if r["kind"] == "control")
    assert control["applied"] == [] and control["incidents"] == []
    for fixable in (r for r in result["rounds"] if r["kind"] == "fixable"):
        assert fixable["applied"] and fixable["incidents"], fixable
