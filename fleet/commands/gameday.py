"""`fleet gameday`: game-day scenarios (those asking for the same world played one after
another on it), or random rounds judged from the account, each on a fresh world."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from chaos.gameday import Scenario
from chaos.gameday_draw import CHOICES, MAX_FAULTS, MAX_FUNCTIONS, draw_plan, parse_kinds
from chaos.gameday_series import play_scenarios
from chaos.random_gameday import DEADLINE_S, RandomGameDay, RoundResult, play_round, summarize
from core.errors import UsageError
from core.settings import Settings
from fleet.commands import Subparsers, add_command

INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


def cmd_gameday(args: argparse.Namespace, settings: Settings) -> int:
    if args.random is not None:
        return cmd_random(args)
    paths = [Path(p) for p in args.scenario]
    for path in paths:  # every file is checked before the first world starts
        Scenario.load(path)

    def log(line: str) -> None:
        print(f"    {line}", file=sys.stderr if args.json else sys.stdout, flush=True)

    passed = 0
    for result in play_scenarios(paths, log, args.watch_window):
        passed += result.passed
        if args.json:
            print(json.dumps(result.model_dump(mode="json")), flush=True)
            continue
        print(
            f"==> {result.scenario}: {'PASSED' if result.passed else 'FAILED'}: "
            f"{result.final_status}, "
            f"faults {result.fault_types}, {len(result.actions)} action(s), "
            f"mttr {result.mttr_s}s, {result.tool_calls} tool calls"
        )
        for check in result.checks:
            print(f"      [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    if not args.json:
        print(f"{passed} of {len(paths)} scenario(s) passed")
    return 0 if passed == len(paths) else 1


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def round_line(r: RoundResult) -> str:
    verdict = "PASS" if r.passed else "FAIL"
    done = f"fleet done in {r.fleet_done_s:g}s" if r.fleet_done_s is not None else "not done"
    faults = "; ".join(r.faults) or "no fault"
    return (
        f"round {r.round} (seed {r.seed}) {verdict} {r.kind.value} on {', '.join(r.functions)}: "
        f"{faults} [{done}]"
    )


def cmd_random(args: argparse.Namespace) -> int:
    kinds = parse_kinds(args.kinds)
    plan = draw_plan(args.seed, args.random, kinds, args.max_functions, args.max_faults)
    if args.only_round is not None:
        if not 1 <= args.only_round <= args.random:
            raise UsageError(f"--only-round must be between 1 and {args.random}")
        plan = plan[args.only_round - 1 : args.only_round]
    out = sys.stderr if args.json else sys.stdout
    t0 = time.monotonic()

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    def log(line: str) -> None:
        say(f"    [{time.monotonic() - t0:5.0f}s] {line}")

    say(f"random game day, seed {args.seed}: {len(plan)} round(s), each on a fresh world")
    for r in plan:
        say(f"  round {r.index} (seed {r.seed}): {r.describe()}")
    results: list[RoundResult] = []
    interrupted = False
    # SIGTERM stops it as Ctrl-C does: the round's world is stopped on the way out.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for r in plan:
            say(f"==> round {r.index} of {len(plan)} (seed {r.seed}): {r.describe()}")
            result = play_round(r, log, args.deadline, args.watch_window)
            results.append(result)
            say(round_line(result))
            for reason in result.reasons:
                say(f"      - {reason}")
    except KeyboardInterrupt:  # the round's world was stopped on the way out
        interrupted = True
        say("interrupted: the round's world is stopped; the rounds played so far:")
    finally:
        signal.signal(signal.SIGTERM, previous)
    game = RandomGameDay(
        seed=args.seed,
        kinds=kinds,
        rounds=results,
        summary=summarize(results),
        interrupted=interrupted,
    )
    if args.json:
        print(json.dumps(game.model_dump(mode="json"), indent=2), flush=True)
    else:
        print_summary(game)
    if interrupted:
        return INTERRUPTED
    return 0 if results and all(r.passed for r in results) else 1


def print_summary(game: RandomGameDay) -> None:
    s = game.summary
    rate = f"{s.pass_rate:.0%}" if s.pass_rate is not None else "n/a"
    print(f"{s.passed} of {s.rounds} round(s) passed ({rate}), seed {game.seed}")
    kinds = [f"{k} {t.passed}/{t.rounds}" for k, t in s.by_kind.items() if t.rounds]
    print(f"  by kind: {', '.join(kinds) or 'no round played'}")
    print(f"  rounds with anything granted wider than before: {s.rounds_granted_wider}")
    if s.rounds_not_played:
        print(f"  rounds the harness could not play: {s.rounds_not_played}")
    for r in game.rounds:
        if not r.passed:
            print(f"  round {r.round} (seed {r.seed}) failed: {r.reasons[0]}")


def register(sub: Subparsers) -> None:
    gameday = add_command(
        sub,
        "gameday",
        description="Game days on embedded worlds with the whole fleet. --scenario runs "
        "the scenarios given, those that ask for the same world (functions and settings) one "
        "after another on one world, as a team's game day runs fault after fault on one "
        "environment; a scenario that does not end RESOLVED and passed leaves its world to "
        "be stopped, and the next starts on a fresh one. --random N draws N rounds from "
        "--seed (the same seed, the same rounds), each on a fresh world: controls with no "
        "fault, faults no restore can fix (broken input data), and "
        "1-3 fixable faults made by `fleet chaos` or by hand with the AWS API. Each round is "
        "judged from the account alone: back to its state before the faults and running "
        "cleanly, nothing granted wider, nothing changed where nothing should be. Exit "
        "status: 0 when every scenario or round passed, 1 otherwise, 130 when interrupted.",
    )
    what = gameday.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenario", nargs="+", metavar="FILE")
    what.add_argument("--random", type=int, metavar="N", help="play N random rounds")
    gameday.add_argument("--seed", type=int, default=1, help="the draw's seed (default 1)")
    gameday.add_argument(
        "--kinds",
        metavar="K,K",
        help="draw only these fault kinds (and control rounds if named): " + ", ".join(CHOICES),
    )
    gameday.add_argument(
        "--max-functions",
        type=int,
        default=MAX_FUNCTIONS,
        metavar="N",
        help=f"at most N functions a world (1-{MAX_FUNCTIONS})",
    )
    gameday.add_argument(
        "--max-faults",
        type=int,
        default=MAX_FAULTS,
        metavar="N",
        help=f"at most N faults a fixable round (1-{MAX_FAULTS})",
    )
    gameday.add_argument(
        "--only-round", type=int, metavar="K", help="play only round K of the draw (to replay it)"
    )
    gameday.add_argument(
        "--deadline",
        type=float,
        default=DEADLINE_S,
        metavar="S",
        help="seconds from the faults for the fleet to be done (default %(default)g)",
    )
    gameday.add_argument(
        "--watch-window",
        type=float,
        metavar="S",
        help="watch each recovered fix S seconds before it is resolved (default: the "
        "settings' FLEET_WATCH_WINDOW_S, 30); a scenario that sets its own keeps it",
    )
    gameday.add_argument(
        "--json",
        action="store_true",
        help="scenarios: one JSON object each; random: the whole result as one JSON object "
        "(progress on stderr)",
    )
    gameday.set_defaults(func=cmd_gameday)
