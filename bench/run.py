"""`make bench`: start a world, measure, print a table and write bench/results.json."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import incidents
from bench.console_pages import dead_letter_pages
from bench.runtime import runtime_overhead, storm
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


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return done.stdout.strip() + ("-dirty" if dirty else "")


PARTS = ("runtime", "storm", "console", "mttr", "mttr-period", "many", "faults", "random")
# How MTTR moves with the alarm period: the same kinds at this longer period, fewer runs
# (a run waits two whole periods for a quiet function before its fault).
LONG_PERIOD_S = 30
LONG_PERIOD_RUNS = 3


def _runtime_and_storm(
    parts: set[str],
    messages: int,
    rounds: int,
    alerts: tuple[int, ...],
    log: Callable[[str], None],
) -> dict[str, Any]:
    port = free_port()
    assert not port_in_use("127.0.0.1", port)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as state:
        settings = Settings(
            state_dir=Path(state),
            emulator_port=port,
            mcp_supervisor_port=free_port(),
            mcp_resolver_port=free_port(),
            console_port=free_port(),
            # The storm and the overhead run their own workers.
            run_workers=False,
            target_count=1,
            worker_wait_time_s=1,
            worker_concurrency=10,
            queue_visibility_timeout_s=30,
        )
        world = World(settings, 1, echo=lambda line: log(f"[dim]{line}[/dim]"))
        world.check_can_start()
        try:
            world.start()
            # The bench started this world: it acts as its launcher, with every key.
            settings = world.settings
            if "runtime" in parts:
                log(f"runtime overhead: {messages} messages x {rounds} rounds ...")
                out["runtime_overhead"] = runtime_overhead(settings, messages, rounds)
                out["runtime_overhead_ratio"] = out["runtime_overhead"]["ratio"]
            if "console" in parts:
                log("console: dead-letter page loads at 50 and at 1,000 dead letters ...")
                out["console_dead_letters"] = dead_letter_pages(settings)
            if "storm" in parts:
                storms = []
                for n in alerts:
                    log(f"alert storm: {n} alarm notifications, bare loop then supervisor ...")
                    storms.append(storm(settings, n, 1))
                out["storm"] = storms[0]
                out["storms"] = storms
                if len(storms) > 1:
                    small, large = storms[0], storms[-1]
                    # Per alert, the largest storm against the smallest: 1.0 is a cost that
                    # does not grow with the storm.
                    out["storm_scaling"] = {
                        "alerts": [small["alerts"], large["alerts"]],
                        "requests_per_alert": round(
                            large["requests_per_alert"] / small["requests_per_alert"], 2
                        ),
                        "drain_per_alert": round(
                            large["drain_ms_per_alert"] / small["drain_ms_per_alert"], 2
                        ),
                    }
        finally:
            world.stop()
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
    measured: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def part(name: str, measure: Callable[[], dict[str, Any]]) -> None:
        if name not in wanted:
            return
        console.rule(name)
        try:
            measured.update(measure())
        except Exception as exc:  # one part failing must not cost the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"[red]{name} failed: {errors[name]}[/red]")

    if wanted & {"runtime", "storm", "console"}:
        try:
            measured.update(_runtime_and_storm(wanted, messages, rounds, alerts, log))
        except Exception as exc:
            errors["runtime+storm"] = f"{type(exc).__name__}: {exc}"
            log(f"[red]runtime+storm failed: {errors['runtime+storm']}[/red]")
    part("mttr", lambda: incidents.mttr(mttr_runs, log))
    part("mttr-period", lambda: {"mttr_long_period": _long_period(log)})
    part("many", lambda: {"many": _many(targets, log)})
    part("faults", lambda: {"faults": _faults(log)})
    part("random", lambda: {"random_gameday": _random(random_rounds, random_seed, log)})

    # A partial run (--parts) keeps the other parts' latest figures, and says so.
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    carried = [k for k in previous.get("figures", []) if k not in measured]
    results: dict[str, Any] = {
        **{k: previous[k] for k in carried if k in previous},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "emulator": "moto 5.2.5 (server mode, IAM enforced)",
            "runtime": {"batch": 10, "worker_concurrency": 10, "worker_wait_time_s": 1},
            "incidents": {
                **GAMEDAY_SETTINGS,
                "target_interval_s": Settings().target_interval_s,
                "alarm_period_s": Settings().alarm_period_s,
                "watch_window_s": {
                    "mttr": incidents.MTTR_OVERRIDES["watch_window_s"],
                    "others": Settings().watch_window_s,
                },
                "model": "offline",
                # Every model call takes from the fleet's quota (the defaults: roomy).
                "model_quota_per_minute": {
                    "requests": Settings().model_requests_per_minute,
                    "tokens": Settings().model_tokens_per_minute,
                },
            },
            "fault_survival": SURVIVAL_SETTINGS,
        },
        **measured,
        "figures": sorted(set(measured) | set(carried)),
        "carried_over": carried,
        "errors": errors,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(_table(results))
    console.print(f"written to {RESULTS.relative_to(PROJECT_ROOT)}")
    survived = all(case["passed"] for case in measured.get("faults", {}).values())
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


def _table(r: dict[str, Any]) -> Table:
    table = Table(title=f"make bench ({r['commit']}, {r['machine']['cpus']} cores)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if "runtime_overhead" in r:
        o = r["runtime_overhead"]
        table.add_row("bare receive+delete loop", f"{o['bare_msgs_per_s']} msg/s")
        table.add_row("worker runtime, no-op handler", f"{o['runtime_msgs_per_s']} msg/s")
        table.add_row("runtime / bare (median of rounds)", f"{o['ratio']}")
        table.add_row(
            "AWS requests per message: runtime / bare",
            f"{o.get('runtime_requests_per_msg', '?')} / {o.get('bare_requests_per_msg', '?')}",
        )
        if "unclaimed_ratio" in o:
            table.add_row(
                "runtime without idempotency records / bare (requests per message)",
                f"{o['unclaimed_ratio']} ({o['unclaimed_requests_per_msg']})",
            )
        if "tracing_cost" in o:
            table.add_row(
                "runtime traced / bare; traced / untraced (tracing's cost)",
                f"{o['traced_ratio']}; {o['tracing_cost']}",
            )
    if "console_dead_letters" in r:
        d = r["console_dead_letters"]
        for size, t in d["sizes"].items():
            table.add_row(
                f"console: a dead-letter page with {size} in the DLQ (p50 / p95)",
                f"{t['first_page_ms_p50']} / {t['first_page_ms_p95']} ms",
            )
        table.add_row(
            "console: dead letters received by those page loads",
            f"{d['received_by_page_loads']} of {d['dead_letters_read']}",
        )
    if "storm" in r:
        for b in r.get("storms", [r["storm"]]):
            n = b["alerts"]
            table.add_row(
                f"storm of {n}: incidents opened",
                f"{b['incidents_opened']} (counting {b['alerts_counted']})",
            )
            table.add_row(
                f"storm of {n}: drain ({b['workers']} worker) / bare loop",
                f"{b['drain_s']} s / {b.get('bare_drain_s', '?')} s = "
                f"{b.get('drain_over_bare', '?')}x",
            )
            table.add_row(
                f"storm of {n}: AWS requests per alert (bare loop)",
                f"{b.get('requests_per_alert', '?')} ({b.get('bare_requests_per_alert', '?')})",
            )
            table.add_row(f"storm of {n}: dead-lettered", str(b["dead_lettered"]))
    long = r.get("mttr_long_period") or {}
    if "cold_start_s" in r:
        table.add_row(
            "a new execution environment's start (REPORT Init Duration, median)",
            f"{r['cold_start_s']} s (in the floors of the kinds that start one)",
        )
    for period, by_kind in (
        (r.get("alarm_period_s"), r.get("mttr", {})),
        (long.get("alarm_period_s"), long.get("mttr", {})),
    ):
        for kind, m in by_kind.items():
            phases = " · ".join(f"{k} {v:g}" for k, v in m["phases_p50_s"].items())
            table.add_row(
                f"MTTR {kind}, {period} s period (p50 / p95, {m['runs']} runs)",
                f"{m['p50_s']} / {m['p95_s']} s = {m['p50_over_floor']} x floor {m['floor_s']} s",
            )
            table.add_row(f"  by phase (p50, s); {m.get('dominant_phase', '?')} dominates", phases)
    if "many" in r:
        m = r["many"]
        table.add_row(
            f"{m['targets']} incidents at once: 1 / 2 workers per stage",
            f"{m['one_worker_s']} / {m['two_workers_s']} s ({m['resolved']} resolved)",
        )
        table.add_row(
            "  … the last one recovered: 1 / 2 workers per stage",
            f"{m['one_worker_recovered_s']} / {m['two_workers_recovered_s']} s",
        )
        if "cost" in m:
            c = m["cost"]
            table.add_row(
                "  … tokens and estimated cost per incident (median); longest quota wait",
                f"{c['tokens_median']}, ${c['cost_usd_median']:.4f}; {c['quota_wait_s_max']} s",
            )
    if "tool_calls" in r:
        t, tokens = r["tool_calls"], r["diagnosis_tokens"]
        table.add_row(
            "tool calls per diagnosis (median / max)",
            f"{t['median']} / {t['max']} of {t['budget']}",
        )
        table.add_row(
            "tokens per diagnosis (prompt / completion, median)",
            f"{tokens['prompt_median']} / {tokens['completion_median']}",
        )
    if "incident_cost" in r:
        c = r["incident_cost"]
        price = c["priced_per_1k_usd"]
        table.add_row(
            "tokens per incident, every stage (median / max)",
            f"{c['tokens_median']} / {c['tokens_max']}",
        )
        table.add_row(
            f"estimated model cost per incident (median / max; ${price['input']:g} in, "
            f"${price['output']:g} out per 1k tokens)",
            f"${c['cost_usd_median']:.4f} / ${c['cost_usd_max']:.4f}",
        )
    for case, f in r.get("faults", {}).items():
        verdict = "passed" if f["passed"] else "FAILED: " + "; ".join(f["problems"])
        table.add_row(f"survives {case}", f"{verdict} (lost {f['lost']}, doubled {f['doubled']})")
    if "random_gameday" in r:
        g = r["random_gameday"]
        rate = "n/a" if g["pass_rate"] is None else f"{g['pass_rate']:.0%}"
        kinds = ", ".join(
            f"{k} {t['passed']}/{t['rounds']}" for k, t in g["by_kind"].items() if t["rounds"]
        )
        table.add_row(
            f"random game days: {g['ran']}",
            f"{g['passed']} of {g['rounds']} passed ({rate}); {kinds}; "
            f"granted wider in {g['rounds_granted_wider']}",
        )
    for name, error in r.get("errors", {}).items():
        table.add_row(f"[red]{name}[/red]", error[:80])
    return table
