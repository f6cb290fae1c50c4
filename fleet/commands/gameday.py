"""`fleet gameday`: game-day scenarios, each on a fresh world with the whole fleet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chaos.gameday import Scenario, run_scenario
from core.settings import Settings
from fleet.commands import Subparsers


def cmd_gameday(args: argparse.Namespace, settings: Settings) -> int:
    paths = [Path(p) for p in args.scenario]
    for path in paths:  # every file is checked before the first world starts
        Scenario.load(path)

    def log(line: str) -> None:
        print(f"    {line}", file=sys.stderr if args.json else sys.stdout, flush=True)

    passed = 0
    for path in paths:
        if not args.json:
            print(f"==> {path.stem}", flush=True)
        result = run_scenario(path, log)
        passed += result.passed
        if args.json:
            print(json.dumps(result.model_dump(mode="json")), flush=True)
            continue
        print(
            f"    {'PASSED' if result.passed else 'FAILED'}: {result.final_status}, "
            f"faults {result.fault_types}, {len(result.actions)} action(s), "
            f"mttr {result.mttr_s}s, {result.tool_calls} tool calls"
        )
        for check in result.checks:
            print(f"      [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    if not args.json:
        print(f"{passed} of {len(paths)} scenario(s) passed")
    return 0 if passed == len(paths) else 1


def register(sub: Subparsers) -> None:
    gameday = sub.add_parser(
        "gameday", help="run game-day scenarios, each on a fresh world with the whole fleet"
    )
    gameday.add_argument("--scenario", nargs="+", required=True, metavar="FILE")
    gameday.add_argument("--json", action="store_true", help="one JSON object per scenario")
    gameday.set_defaults(func=cmd_gameday)
