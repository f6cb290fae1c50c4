"""How fast the fleet starts: `fleet --help` and `fleet worker --help` as whole processes,
and a default world from `fleet up` to ready (every process started and ready: the MCP
servers and the console answering, each worker consuming), on a quiet machine and beside
a CPU hog (two processes spinning, one per core of this machine's kind).

A world's dozen processes each import for seconds of CPU; what `fleet up` waits for, and
how long, is emulation/readiness.py. The hog shows what a busy machine does to it.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from emulation.world import PROJECT_ROOT, STOP_GRACE_S, free_ports, start_world_process, terminate

HELP_RUNS = 7
WORLD_RUNS = 3
HOG_PROCESSES = 2
# A spinning loop that leaves by itself if the bench dies without stopping it.
HOG = "import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end: pass\n"
HOG_LIMIT_S = 900


def spread(samples: list[float]) -> dict[str, float]:
    """min, median and max of timings, in seconds."""
    return {
        "min": round(min(samples), 3),
        "median": round(statistics.median(samples), 3),
        "max": round(max(samples), 3),
    }


def command_s(argv: list[str]) -> float:
    """Wall time of one whole process, from its start to its exit."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fleet.cli", *argv],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def world_ready_s() -> float:
    """From starting `fleet up` (default settings, the whole fleet, one function) to its
    world being ready; the world is stopped after."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-start-") as state:
        values = {"state_dir": state, **free_ports()}
        started = time.perf_counter()
        process, _settings, _env = start_world_process(values, Path(state) / "fleet-up.log")
        ready = time.perf_counter() - started
        terminate([process], 60)
    return ready


@contextlib.contextmanager
def cpu_hog(processes: int = HOG_PROCESSES) -> Iterator[None]:
    """Processes that spin until the block ends; each is stopped by its PID."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG.format(limit_s=HOG_LIMIT_S)])
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        terminate(hogs, STOP_GRACE_S)


def startup(log: Callable[[str], None]) -> dict[str, Any]:
    log(f"start-up: fleet --help and fleet worker --help x {HELP_RUNS} ...")
    command_s(["--help"])  # the first run reads the files from disk; the rest are what counts
    help_s = [command_s(["--help"]) for _ in range(HELP_RUNS)]
    worker_help_s = [command_s(["worker", "--help"]) for _ in range(HELP_RUNS)]
    log(f"start-up: a default world to ready x {WORLD_RUNS}, quiet ...")
    quiet = [world_ready_s() for _ in range(WORLD_RUNS)]
    log(f"start-up: a default world to ready x {WORLD_RUNS}, beside {HOG_PROCESSES} spinners ...")
    with cpu_hog():
        busy = [world_ready_s() for _ in range(WORLD_RUNS)]
    return {
        "help_s": spread(help_s),
        "worker_help_s": spread(worker_help_s),
        "world_ready_s": {"quiet": spread(quiet), "cpu_hog": spread(busy)},
        "world_ready_hog_over_quiet": round(statistics.median(busy) / statistics.median(quiet), 2),
        "runs": {"help": HELP_RUNS, "world": WORLD_RUNS, "hog_processes": HOG_PROCESSES},
    }
