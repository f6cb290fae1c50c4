"""The table `make bench` prints: each part under a line saying where and when it was
measured, so a figure carried over from an older run cannot pass for this one's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from bench.provenance import BenchResults, MeasuredPart

Rows = list[tuple[str, str]]


def measured_at(part: MeasuredPart) -> str:
    """`25940f0, 2026-11-30 02:04 UTC, 2 cores, load 0.4`: where the part's figures are from."""
    provenance = part.provenance
    said = provenance.describe()
    machine = provenance.machine
    if machine is not None and machine.cpus is not None:
        said += f", {machine.cpus} cores"
    if machine is not None and machine.load_average:
        said += f", load {machine.load_average[0]:g}"
    return said


def _runtime(f: dict[str, Any]) -> Rows:
    o = f["runtime_overhead"]
    rows = [
        ("bare receive+delete loop", f"{o['bare_msgs_per_s']} msg/s"),
        ("worker runtime, no-op handler", f"{o['runtime_msgs_per_s']} msg/s"),
        ("runtime / bare (median of rounds)", f"{o['ratio']}"),
        (
            "AWS requests per message: runtime / bare",
            f"{o.get('runtime_requests_per_msg', '?')} / {o.get('bare_requests_per_msg', '?')}",
        ),
    ]
    if "unclaimed_ratio" in o:
        rows.append(
            (
                "runtime without idempotency records / bare (requests per message)",
                f"{o['unclaimed_ratio']} ({o['unclaimed_requests_per_msg']})",
            )
        )
    if "cost_per_million_messages" in o:
        c, p = o["cost_per_million_messages"], o["per_msg"]
        rows.append(
            (
                "AWS cost per million messages at list prices: runtime / Powertools "
                "idempotency (2 write units a message)",
                f"${c['fleet_usd']} / ${c['powertools_idempotency_usd']} = "
                f"{c['fleet_over_powertools']}x ({p['sqs_requests']} SQS requests, "
                f"{p['dynamodb_requests']} DynamoDB requests, {p['write_units']} write and "
                f"{p['read_units']} read units a message)",
            )
        )
    if "tracing_cost" in o:
        rows.append(
            (
                "runtime traced / bare; traced / untraced (tracing's cost)",
                f"{o['traced_ratio']}; {o['tracing_cost']}",
            )
        )
    return rows


def _console(f: dict[str, Any]) -> Rows:
    d = f["console_dead_letters"]
    rows = [
        (
            f"console: a dead-letter page with {size} in the DLQ (p50 / p95)",
            f"{t['first_page_ms_p50']} / {t['first_page_ms_p95']} ms",
        )
        for size, t in d["sizes"].items()
    ]
    rows.append(
        (
            "console: dead letters received by those page loads",
            f"{d['received_by_page_loads']} of {d['dead_letters_read']}",
        )
    )
    return rows


def _storm(f: dict[str, Any]) -> Rows:
    rows: Rows = []
    for b in f.get("storms", [f["storm"]]):
        n = b["alerts"]
        rows += [
            (
                f"storm of {n}: incidents opened",
                f"{b['incidents_opened']} (counting {b['alerts_counted']})",
            ),
            (
                f"storm of {n}: drain ({b['workers']} worker) / bare loop",
                f"{b['drain_s']} s / {b.get('bare_drain_s', '?')} s = "
                f"{b.get('drain_over_bare', '?')}x",
            ),
            (
                f"storm of {n}: AWS requests per alert (bare loop)",
                f"{b.get('requests_per_alert', '?')} ({b.get('bare_requests_per_alert', '?')})",
            ),
            (f"storm of {n}: dead-lettered", str(b["dead_lettered"])),
        ]
    return rows


def _mttr_by_kind(period: Any, cold_start: Any, by_kind: dict[str, Any]) -> Rows:
    rows: Rows = []
    if cold_start is not None:
        rows.append(
            (
                "a new execution environment's start (REPORT Init Duration, median)",
                f"{cold_start} s (in detect or verify where the fault or its fix starts one)",
            )
        )
    for kind, m in by_kind.items():
        if "fastest_chain_s" in m:
            chain = " + ".join(f"{k} {v:g}" for k, v in m["fastest_chain_phases_s"].items())
            against = (
                f"{m['p50_over_fastest_chain']} x the fastest chain {m['fastest_chain_s']} s "
                f"({chain})"
            )
        else:
            against = "no fastest chain (measured before the runs' phases were kept)"
        rows.append(
            (
                f"MTTR {kind}, {period} s period (p50 / p95, {m['runs']} runs)",
                f"{m['p50_s']} / {m['p95_s']} s = {against}",
            )
        )
        phases = " · ".join(f"{k} {v:g}" for k, v in m["phases_p50_s"].items())
        rows.append((f"  by phase (p50, s); {m.get('dominant_phase', '?')} dominates", phases))
    return rows


def _mttr(f: dict[str, Any]) -> Rows:
    rows = _mttr_by_kind(f.get("alarm_period_s"), f.get("cold_start_s"), f.get("mttr", {}))
    if "tool_calls" in f:
        t, tokens = f["tool_calls"], f["diagnosis_tokens"]
        rows += [
            (
                "tool calls per diagnosis (median / max)",
                f"{t['median']} / {t['max']} of {t['budget']}",
            ),
            (
                "tokens per diagnosis (prompt / completion, median)",
                f"{tokens['prompt_median']} / {tokens['completion_median']}",
            ),
        ]
    if "incident_cost" in f:
        c = f["incident_cost"]
        price = c["priced_per_1k_usd"]
        rows += [
            (
                "tokens per incident, every stage (median / max)",
                f"{c['tokens_median']} / {c['tokens_max']}",
            ),
            (
                f"estimated model cost per incident (median / max; ${price['input']:g} in, "
                f"${price['output']:g} out per 1k tokens)",
                f"${c['cost_usd_median']:.4f} / ${c['cost_usd_max']:.4f}",
            ),
        ]
    if "aws_cost_per_incident" in f:
        a = f["aws_cost_per_incident"]
        counts = ", ".join(f"{v:g} {k.replace('_', ' ')}" for k, v in a["aws_per_incident"].items())
        rows.append(
            (
                "AWS + model cost per incident at list prices (every worker's requests, "
                "idle polls included)",
                f"${a['aws_usd']:.6f} + ${a['model_usd'] or 0:.4f} = "
                f"${a['total_usd']:.4f} ({counts})",
            )
        )
    return rows


def _mttr_period(f: dict[str, Any]) -> Rows:
    long = f["mttr_long_period"]
    return _mttr_by_kind(long.get("alarm_period_s"), long.get("cold_start_s"), long.get("mttr", {}))


def _many(f: dict[str, Any]) -> Rows:
    m = f["many"]
    rows = [
        (
            f"{m['targets']} incidents at once: 1 / 2 workers per stage",
            f"{m['one_worker_s']} / {m['two_workers_s']} s ({m['resolved']} resolved)",
        ),
        (
            "  … the last one recovered: 1 / 2 workers per stage",
            f"{m['one_worker_recovered_s']} / {m['two_workers_recovered_s']} s",
        ),
    ]
    if "cost" in m:
        c = m["cost"]
        rows.append(
            (
                "  … tokens and estimated cost per incident (median); longest quota wait",
                f"{c['tokens_median']}, ${c['cost_usd_median']:.4f}; {c['quota_wait_s_max']} s",
            )
        )
    return rows


def _faults(f: dict[str, Any]) -> Rows:
    rows: Rows = []
    for case, result in f["faults"].items():
        verdict = "passed" if result["passed"] else "FAILED: " + "; ".join(result["problems"])
        rows.append(
            (f"survives {case}", f"{verdict} (lost {result['lost']}, doubled {result['doubled']})")
        )
    return rows


def _random(f: dict[str, Any]) -> Rows:
    g = f["random_gameday"]
    rate = "n/a" if g["pass_rate"] is None else f"{g['pass_rate']:.0%}"
    kinds = ", ".join(
        f"{k} {t['passed']}/{t['rounds']}" for k, t in g["by_kind"].items() if t["rounds"]
    )
    return [
        (
            f"random game days: {g['ran']}",
            f"{g['passed']} of {g['rounds']} passed ({rate}); {kinds}; "
            f"granted wider in {g['rounds_granted_wider']}",
        )
    ]


def _startup(f: dict[str, Any]) -> Rows:
    s = f["startup"]

    def spread(d: dict[str, float]) -> str:
        return f"{d['median']:.2f} s (min {d['min']:.2f}, max {d['max']:.2f})"

    ready = s["world_ready_s"]
    return [
        ("fleet --help, median", spread(s["help_s"])),
        ("fleet worker --help, median", spread(s["worker_help_s"])),
        ("a default world to ready, quiet", spread(ready["quiet"])),
        ("... beside a CPU hog", spread(ready["cpu_hog"])),
        ("hog / quiet (medians)", f"{s['world_ready_hog_over_quiet']}"),
    ]


ROWS: dict[str, Callable[[dict[str, Any]], Rows]] = {
    "startup": _startup,
    "runtime": _runtime,
    "console": _console,
    "storm": _storm,
    "mttr": _mttr,
    "mttr-period": _mttr_period,
    "many": _many,
    "faults": _faults,
    "random": _random,
}


def results_table(results: BenchResults) -> Table:
    table = Table(title="make bench: each part as measured, at the commit and time it names")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, part in results.parts.items():
        carried = " (carried over)" if name in results.carried_over else ""
        table.add_row(f"[bold]{name}[/bold]{carried}", f"[bold]{measured_at(part)}[/bold]")
        rows = ROWS.get(name)
        if rows is None:  # a part this bench no longer measures
            table.add_row("  figures", ", ".join(part.figures))
            continue
        for label, value in rows(part.figures):
            table.add_row(label, value)
    for name, error in results.last_run.errors.items():
        table.add_row(f"[red]{name}[/red]", error[:80])
    return table
