"""`make bench`: start a world, measure, print a table and write bench/results.json."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.runtime import runtime_overhead, storm
from fleet import structured_logging
from fleet.settings import Settings
from fleet.world import PROJECT_ROOT, World, free_port, port_in_use

RESULTS = PROJECT_ROOT / "bench" / "results.json"


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return done.stdout.strip() + ("-dirty" if dirty else "")


def run(messages: int = 300, rounds: int = 3, alerts: int = 500, storm_workers: int = 1) -> int:
    console = Console()
    # The runtime under test logs like a worker would, to stderr; only warnings here, so
    # the terminal does not become part of what is measured.
    structured_logging.configure("bench", level=logging.WARNING)
    port = free_port()
    assert not port_in_use("127.0.0.1", port)
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
        world = World(settings, 1, echo=lambda line: console.print(f"[dim]{line}[/dim]"))
        world.check_can_start()
        try:
            world.start()
            console.print(f"runtime overhead: {messages} messages x {rounds} rounds ...")
            overhead = runtime_overhead(settings, messages, rounds)
            console.print(f"alert storm: {alerts} alarm notifications ...")
            burst = storm(settings, alerts, storm_workers)
        finally:
            world.stop()
    results: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "batch": overhead["batch"],
            "worker_concurrency": settings.worker_concurrency,
            "worker_wait_time_s": settings.worker_wait_time_s,
            "emulator": "moto 5.2.5 (server mode, IAM enforced)",
        },
        "runtime_overhead_ratio": overhead["ratio"],
        "runtime_overhead": overhead,
        "storm": burst,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    table = Table(title=f"make bench ({results['commit']}, {os.cpu_count()} cores)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("bare receive+delete loop", f"{overhead['bare_msgs_per_s']} msg/s")
    table.add_row("worker runtime, no-op handler", f"{overhead['runtime_msgs_per_s']} msg/s")
    table.add_row("runtime / bare (median of rounds)", f"{overhead['ratio']}")
    table.add_row("storm: alerts", str(burst["alerts"]))
    table.add_row("storm: incidents opened", str(burst["incidents_opened"]))
    table.add_row("storm: alerts counted on it", str(burst["alerts_counted"]))
    table.add_row(f"storm: drain time ({burst['workers']} worker)", f"{burst['drain_s']} s")
    table.add_row("storm: dead-lettered", str(burst["dead_lettered"]))
    console.print(table)
    console.print(f"written to {RESULTS.relative_to(PROJECT_ROOT)}")
    return 0
