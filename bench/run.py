"""`make bench`: measure each part on worlds of its own, print a table and write
bench/results.json, each part with the commit, time, machine and settings it was measured
at (bench/provenance.py)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import console_pages, incidents
from bench.console_pages import dead_letter_pages
from bench.provenance import LastRun, MeasuredPart, combine, current_commit, now, read, stamp, write
from bench.runtime import BATCH, runtime_overhead, storm
from bench.startup import HOG_PROCESSES, startup
from bench.table import results_table
from chaos.gameday import GAMEDAY_SETTINGS
from chaos.gameday_draw import draw_plan
from chaos.random_gameday import play_round, summarize
from chaos.survival import CASES, SURVIVAL_SETTINGS, run_case
from core import structured_logging
from core.settings import Settings
from emulation.world import PROJECT_ROOT, World, free_port, port_in_use

RESULTS = PROJECT_ROOT / "bench" / "results.json"
# The random game day's share (`fleet gameday --random 5 --seed 1`): a few minutes a round.
RANDOM_ROUNDS = 5
RANDOM_SEED = 1

PARTS = (
    "startup",
    "runtime",
    "storm",
    "console",
    "mttr",
    "mttr-period",
    "many",
    "faults",
    "random",
)
# How MTTR moves with the alarm period: the same kinds at this longer period, fewer runs
# (a run waits two whole periods for a quiet function before its fault).
LONG_PERIOD_S = 30
LONG_PERIOD_RUNS = 3
# The world the runtime, console and storm parts share: it runs no workers of its own (the
# parts run theirs) and guards one function.
SHARED_WORLD: dict[str, Any] = {
    "run_workers": False,
    "target_count": 1,
    "worker_wait_time_s": 1,
    "worker_concurrency": 10,
    "queue_visibility_timeout_s": 30,
}
# The settings that move an incident's figures, recorded with each part that plays game days.
INCIDENT_FIELDS = (
    "target_interval_s",
    "workload_work_s",
    "workload_timeout_s",
    "alarm_period_s",
    "alarm_poll_s",
    "verify_successful_runs",
    "watch_window_s",
    "workers_per_stage",
    "model",
    "offline_model_latency_s",
    "model_requests_per_minute",
    "model_tokens_per_minute",
    "agent_max_tool_calls",
)


def emulator() -> str:
    return f"moto {version('moto')} (server mode, IAM enforced)"


def tracing() -> str:
    """Whether the worlds trace: they inherit the OTEL_* variables of the bench's process."""
    here = Settings()
    if here.otel_sdk_disabled:
        return "off (OTEL_SDK_DISABLED)"
    return "on, spans to an OTLP endpoint" if here.otlp_configured else "on, spans to local files"


def game_world_settings(values: dict[str, Any]) -> dict[str, Any]:
    """What a game-day world runs with: `values` over the game-day timings over the
    defaults. A world the bench starts inherits none of its FLEET_* variables, so the
    defaults are the class's, not this process's environment."""
    defaults = {name: Settings.model_fields[name].default for name in INCIDENT_FIELDS}
    return {"emulator": emulator(), **defaults, **GAMEDAY_SETTINGS, **values, "tracing": tracing()}


def part_settings(
    messages: int,
    rounds: int,
    alerts: tuple[int, ...],
    mttr_runs: int,
    targets: int,
    random_rounds: int,
    random_seed: int,
) -> dict[str, dict[str, Any]]:
    """Each part's settings as its provenance records them: its world's, and its own."""
    shared = {"emulator": emulator(), "batch": BATCH, **SHARED_WORLD}
    return {
        # A default world: what `fleet up` starts with no settings at all.
        "startup": {
            "emulator": emulator(),
            "world": "defaults (one function, the whole fleet)",
            "cpu_hog_processes": HOG_PROCESSES,
            "tracing": tracing(),
        },
        # The runtime part switches tracing itself: every round, untraced and traced.
        "runtime": {**shared, "messages": messages, "rounds": rounds},
        "console": {
            **shared,
            "dead_letters": list(console_pages.SIZES),
            "loads": console_pages.LOADS,
            "tracing": tracing(),
        },
        "storm": {**shared, "alerts": list(alerts), "supervisor_workers": 1, "tracing": tracing()},
        "mttr": {
            **game_world_settings(incidents.MTTR_OVERRIDES),
            "runs_per_kind": mttr_runs,
            "kinds": list(incidents.FAULT_KINDS),
        },
        "mttr-period": {
            **game_world_settings({**incidents.MTTR_OVERRIDES, "alarm_period_s": LONG_PERIOD_S}),
            "runs_per_kind": LONG_PERIOD_RUNS,
            "kinds": list(incidents.PERIOD_KINDS),
        },
        "many": {**game_world_settings({"target_count": targets}), "workers_per_stage": [1, 2]},
        "faults": {**game_world_settings(SURVIVAL_SETTINGS), "cases": list(CASES)},
        "random": {**game_world_settings({}), "rounds": random_rounds, "seed": random_seed},
    }


@contextlib.contextmanager
def _shared_world(log: Callable[[str], None]) -> Iterator[Settings]:
    """The world of the runtime, console and storm parts, with every key (the bench
    started it, so it acts as its launcher), until the block ends."""
    port = free_port()
    assert not port_in_use("127.0.0.1", port)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as state:
        settings = Settings(
            state_dir=Path(state),
            emulator_port=port,
            mcp_supervisor_port=free_port(),
            mcp_resolver_port=free_port(),
            console_port=free_port(),
            **SHARED_WORLD,
        )
        world = World(settings, 1, echo=lambda line: log(f"[dim]{line}[/dim]"))
        world.check_can_start()
        try:
            world.start()
            yield world.settings
        finally:
            world.stop()


def _runtime(
    settings: Settings, messages: int, rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    log(f"runtime overhead: {messages} messages x {rounds} rounds ...")
    overhead = runtime_overhead(settings, messages, rounds)
    return {"runtime_overhead": overhead, "runtime_overhead_ratio": overhead["ratio"]}


def _storms(
    settings: Settings, alerts: tuple[int, ...], log: Callable[[str], None]
) -> dict[str, Any]:
    storms = []
    for n in alerts:
        log(f"alert storm: {n} alarm notifications, bare loop then supervisor ...")
        storms.append(storm(settings, n, 1))
    out: dict[str, Any] = {"storm": storms[0], "storms": storms}
    if len(storms) > 1:
        small, large = storms[0], storms[-1]
        # Per alert, the largest storm against the smallest: 1.0 is a cost that does not
        # grow with the storm.
        out["storm_scaling"] = {
            "alerts": [small["alerts"], large["alerts"]],
            "requests_per_alert": round(
                large["requests_per_alert"] / small["requests_per_alert"], 2
            ),
            "drain_per_alert": round(large["drain_ms_per_alert"] / small["drain_ms_per_alert"], 2),
        }
    return out


def run(
    messages: int = 1000,
    rounds: int = 3,
    alerts: tuple[int, ...] = (500, 5000),
    mttr_runs: int = 5,
    targets: int = 10,
    parts: tuple[str, ...] = PARTS,
    random_rounds: int = RANDOM_ROUNDS,
    random_seed: int = RANDOM_SEED,
) -> int:
    console = Console()
    # The runtime under test logs like a worker would, to stderr; only warnings here, so
    # the terminal does not become part of what is measured.
    structured_logging.configure("bench", level=logging.WARNING)

    def log(line: str) -> None:
        console.print(line, highlight=False)

    wanted = set(parts)
    read(RESULTS)  # a results file this cannot read fails the run now, not after the measuring
    started = LastRun(at=now(), commit=current_commit(PROJECT_ROOT), measured=[], errors={})
    settings_of = part_settings(
        messages, rounds, alerts, mttr_runs, targets, random_rounds, random_seed
    )
    measured: dict[str, MeasuredPart] = {}
    errors: dict[str, str] = {}

    def part(name: str, measure: Callable[[], dict[str, Any]]) -> None:
        if name not in wanted:
            return
        console.rule(name)
        # Stamped as the part starts: the commit, the time and the machine's load then.
        provenance = stamp(settings_of[name], PROJECT_ROOT)
        try:
            figures = measure()
        except Exception as exc:  # one part failing must not cost the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"[red]{name} failed: {errors[name]}[/red]")
            return
        measured[name] = MeasuredPart(provenance=provenance, figures=figures)

    part("startup", lambda: {"startup": startup(log)})
    if wanted & {"runtime", "storm", "console"}:
        try:
            with _shared_world(log) as world:
                part("runtime", lambda: _runtime(world, messages, rounds, log))
                part("console", lambda: {"console_dead_letters": dead_letter_pages(world)})
                part("storm", lambda: _storms(world, alerts, log))
        except Exception as exc:  # the shared world did not start or stop
            errors["runtime+storm+console"] = f"{type(exc).__name__}: {exc}"
            log(f"[red]the shared world failed: {errors['runtime+storm+console']}[/red]")
    part("mttr", lambda: incidents.mttr(mttr_runs, log))
    part("mttr-period", lambda: {"mttr_long_period": _long_period(log)})
    part("many", lambda: {"many": _many(targets, log)})
    part("faults", lambda: {"faults": _faults(log)})
    part("random", lambda: {"random_gameday": _random(random_rounds, random_seed, log)})

    # A partial run (--parts) keeps the other parts as they were, provenance and all. Read
    # again: another run may have written the file meanwhile.
    results = combine(read(RESULTS), measured, errors, PARTS, started)
    write(RESULTS, results)
    console.print(results_table(results))
    console.print(f"written to {RESULTS}")
    faults = measured["faults"].figures["faults"] if "faults" in measured else {}
    survived = all(case["passed"] for case in faults.values())
    return 0 if not errors and survived else 1


def _many(targets: int, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"{targets} copies of the workload broken at once, one worker per stage ...")
    one = incidents.many(targets, 1, lambda line: None)
    log("... and two workers per stage ...")
    two = incidents.many(targets, 2, lambda line: None)
    return {
        "targets": targets,
        "one_worker_s": one["seconds"],
        "two_workers_s": two["seconds"],
        "one_worker_recovered_s": one["recovered_s"],
        "two_workers_recovered_s": two["recovered_s"],
        "resolved": min(one["resolved"], two["resolved"]),
        "cost": two["cost"],
        "speedup": round(one["seconds"] / two["seconds"], 2) if two["seconds"] else None,
        "runs": {"one_worker": one, "two_workers": two},
    }


def _long_period(log: Callable[[str], None]) -> dict[str, Any]:
    log(f"MTTR at a {LONG_PERIOD_S} s alarm period: {', '.join(incidents.PERIOD_KINDS)} ...")
    measured = incidents.mttr(
        LONG_PERIOD_RUNS, log, alarm_period_s=LONG_PERIOD_S, kinds=incidents.PERIOD_KINDS
    )
    return {
        "alarm_period_s": measured["alarm_period_s"],
        "cold_start_s": measured["cold_start_s"],
        "mttr": measured["mttr"],
    }


def _random(rounds: int, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    """`fleet gameday --random ROUNDS --seed SEED`: the share of rounds the judge passed."""
    log(f"random game day: {rounds} round(s) from seed {seed}, each on a fresh world ...")
    results = []
    for plan in draw_plan(seed, rounds):
        result = play_round(plan, lambda _line: None)
        verdict = "passed" if result.passed else "FAILED: " + "; ".join(result.reasons)[:200]
        log(f"  round {plan.index} ({plan.describe()}): {verdict}")
        results.append(result)
    summary = summarize(results)
    return {
        "seed": seed,
        "ran": f"fleet gameday --random {rounds} --seed {seed}",
        **summary.model_dump(mode="json"),
        "failed": [
            {"round": r.round, "faults": r.faults, "reasons": r.reasons}
            for r in results
            if not r.passed
        ],
    }


def _faults(log: Callable[[str], None]) -> dict[str, Any]:
    out = {}
    for case in CASES:
        log(f"fault survival: {case} ...")
        result = run_case(case)
        log(f"  {'passed' if result.passed else 'FAILED'} in {result.duration_s}s")
        out[case] = {
            "passed": result.passed,
            "lost": result.lost,
            "doubled": result.doubled,
            "dead_lettered": result.dead_lettered,
            "handled": result.handled,
            "final_statuses": result.final_statuses,
            "seconds": result.duration_s,
            "problems": result.problems,
        }
    return out
