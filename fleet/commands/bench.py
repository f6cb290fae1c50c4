"""`fleet bench`: measure the fleet on its own worlds and write bench/results.json."""

from __future__ import annotations

import argparse

from bench.run import PARTS, RANDOM_ROUNDS, RANDOM_SEED, run
from core.errors import UsageError
from core.settings import Settings
from fleet.commands import Subparsers, add_command


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise UsageError(f"unknown bench part(s) {unknown}; choose from {', '.join(PARTS)}")
    return run(
        messages=args.messages,
        rounds=args.rounds,
        alerts=args.alerts,
        mttr_runs=args.runs,
        targets=args.targets,
        parts=parts,
        random_rounds=args.random_rounds,
        random_seed=args.random_seed,
    )


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"storm sizes must be 1 or more: {text!r}")
    return sizes


def register(sub: Subparsers) -> None:
    bench = add_command(sub, "bench")
    bench.add_argument(
        "--messages",
        type=int,
        default=1000,
        help="messages per round of the runtime part; with fewer, the runtime's own start "
        "weighs in (its ratio to the bare loop: 0.31 at 300, about 0.4 at 1,000)",
    )
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument(
        "--alerts",
        type=_sizes,
        default=(500, 5000),
        help="alert storm sizes, comma-separated (default 500,5000)",
    )
    bench.add_argument("--runs", type=int, default=5, help="incidents per fault kind (MTTR)")
    bench.add_argument("--targets", type=int, default=10, help="workload copies broken at once")
    bench.add_argument(
        "--random-rounds",
        type=int,
        default=RANDOM_ROUNDS,
        help="rounds of the random game day (part random; default %(default)s)",
    )
    bench.add_argument(
        "--random-seed", type=int, default=RANDOM_SEED, help="its seed (default %(default)s)"
    )
    bench.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="what to measure, comma-separated (default: %(default)s); the rest keeps its "
        "latest figures in bench/results.json",
    )
    bench.set_defaults(func=cmd_bench)
