"""Ports for the worlds tests start side by side, reserved so that no two take the same one.

`emulation.world.free_port` asks the kernel for a free port in the ephemeral range and lets
it go; the world binds it seconds later (its MCP servers last). Meanwhile every outgoing
connection on the machine draws its local port from that same range, and so does every
other world starting at the same time: with several worlds up at once an MCP server was
seen to fail with "address already in use". These come from below the ephemeral range,
where nothing is handed out by the kernel, and each is reserved machine-wide (an flock on a
file per port, held until the process that reserved it exits), so test processes, workers
and other checkouts' runs never share one.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path

from emulation.world import port_in_use

HOST = "127.0.0.1"
# Below Linux's default ephemeral range (32768-60999) and above the well-known services.
FIRST, LAST = 20000, 32000
LOCKS = Path(tempfile.gettempdir()) / "incident-fleet-test-ports"
_held: list[int] = []  # lock file descriptors: closed (released) when this process exits


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def reserve_port() -> int:
    """A port nothing listens on, outside the ephemeral range, that no other test process
    holds; it stays this process's until it exits."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    low, high = _ephemeral_range()
    span = LAST - FIRST
    start = random.randrange(span)
    for i in range(span):
        port = FIRST + (start + i) % span
        if low <= port <= high:
            continue
        fd = os.open(LOCKS / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if port_in_use(HOST, port):
            os.close(fd)
            continue
        _held.append(fd)
        return port
    raise RuntimeError(f"no free port between {FIRST} and {LAST}")
