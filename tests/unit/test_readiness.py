"""Waiting for a process while it makes progress (emulation/readiness.py): a slow one is
waited for however long it takes, a dead one or a stuck one is named with its last log line.
Each test's process is stopped by its PID."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulation.readiness import NotReadyError, Watched, cpu_seconds, last_log_line, wait_ready
from emulation.world import terminate


@pytest.fixture
def start(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield tmp_path / "child.log", started
    terminate(started, 5)


def _child(log: Path, started: list[subprocess.Popen[bytes]], code: str) -> Watched:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT
        )
    started.append(process)
    return Watched("the child", process, log)


def test_a_child_busy_longer_than_the_stall_limit_is_waited_for(
    start: tuple[Path, list[subprocess.Popen[bytes]]],
) -> None:
    log, started = start
    flag = log.with_suffix(".ready")
    # Silent, but spinning (gaining CPU time) for three times the stall limit, then ready.
    watched = _child(
        log,
        started,
        "import time, pathlib\n"
        "end = time.monotonic() + 1.5\n"
        "while time.monotonic() < end: pass\n"
        f"pathlib.Path({str(flag)!r}).touch()\n"
        "time.sleep(30)\n",
    )
    took = wait_ready(watched, flag.exists, "it was ready", stall_s=0.5)
    assert took >= 1.5


def test_a_child_that_exits_is_named_with_its_code_and_last_log_line(
    start: tuple[Path, list[subprocess.Popen[bytes]]],
) -> None:
    log, started = start
    watched = _child(log, started, "print('loading'); print('cannot bind port 5000'); exit(3)")
    with pytest.raises(NotReadyError) as failed:
        wait_ready(watched, lambda: False, "it answered", stall_s=30)
    said = str(failed.value)
    assert "the child exited with 3 before it answered" in said
    assert said.endswith("cannot bind port 5000")


def test_a_child_alive_but_stuck_is_given_up_on_after_the_stall_limit(
    start: tuple[Path, list[subprocess.Popen[bytes]]],
) -> None:
    log, started = start
    watched = _child(
        log, started, "print('waiting for a lock', flush=True)\nimport time\ntime.sleep(60)"
    )
    began = time.monotonic()
    with pytest.raises(NotReadyError) as failed:
        wait_ready(watched, lambda: False, "it answered", stall_s=1)
    assert time.monotonic() - began < 30  # the stall limit, not the child's minute
    said = str(failed.value)
    assert "made no progress for 1s before it answered" in said
    assert said.endswith("waiting for a lock")
    assert watched.process.poll() is None  # given up on, not killed: the caller stops it


def test_cpu_time_counts_a_process_and_its_descendants() -> None:
    # The child spins until it has used half a second of CPU, however long a busy machine makes
    # that take, then stays a descendant until its parent is stopped, so its time is still counted.
    spin = (
        "import os, time\n"
        "parent = os.getppid()\n"
        "while time.process_time() < 0.5: pass\n"
        "while os.getppid() == parent: time.sleep(0.1)\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            f"child = subprocess.Popen([sys.executable, '-c', {spin!r}])\n"
            "import time; time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds(parent.pid, with_descendants=True) - cpu_seconds(parent.pid) < 0.3:
            assert time.monotonic() < deadline, "the child's CPU time was never counted"
            time.sleep(0.05)
    finally:
        terminate([parent], 5)


def test_the_last_log_line_skips_blank_lines_and_says_when_there_is_none(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert last_log_line(log) == "(no log)"
    log.write_text("")
    assert last_log_line(log) == "(nothing logged)"
    log.write_text("first\nsecond\n\n  \n")
    assert last_log_line(log) == "second"
    assert last_log_line(log, offset=len("first\nsecond\n")) == "(nothing logged)"
