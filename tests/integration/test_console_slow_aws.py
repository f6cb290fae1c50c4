"""A slow AWS call holds up only the request that made it: while one page waits on AWS, the
console still answers everyone else (its AWS calls run off the event loop).

AWS is made slow for real: the emulator is stopped (SIGSTOP), so the console's request to it
is accepted by the kernel and then waits, unanswered, until the emulator is resumed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from emulation.world import wait_for
from tests.integration.conftest import RunningWorld

# Only a guard against hanging the suite when the loop is blocked; no timing is asserted.
GUARD_S = 20


def _tcp_sockets() -> list[tuple[int, int, int, str]]:
    """(local port, remote port, bytes received but unread, inode) of every IPv4 socket."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues, inode = fields[1], fields[2], fields[4], fields[9]
        rows.append(
            (
                int(local.rsplit(":", 1)[1], 16),
                int(remote.rsplit(":", 1)[1], 16),
                int(queues.split(":")[1], 16),
                inode,
            )
        )
    return rows


def _waiting_on(pid: int, port: int) -> bool:
    """Process `pid` has sent a request to `port` that the server there has not read yet."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    sockets = _tcp_sockets()
    ours = {local for local, remote, _, inode in sockets if inode in inodes and remote == port}
    return any(
        local == port and remote in ours and unread > 0 for local, remote, unread, _ in sockets
    )


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_page_waiting_on_aws_does_not_hold_up_the_console(world: RunningWorld) -> None:
    base = f"http://{world.settings.console_host}:{world.settings.console_port}"
    token = world.settings.console_token_file.read_text().strip()
    emulator = int(world.record["processes"]["emulator"])
    console = int(world.record["processes"]["console"])
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=base, timeout=GUARD_S) as client:
        with _stopped(emulator):
            queues = pool.submit(
                httpx.get,
                f"{base}/queues",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            wait_for(
                lambda: _waiting_on(console, world.settings.emulator_port),
                GUARD_S,
                "the console to wait on the stopped emulator",
            )
            try:
                health = client.get("/health")
                login = client.get("/login")
            except httpx.TimeoutException:
                raise AssertionError(
                    "the console answered nothing while one page waited on AWS"
                ) from None
            assert health.json() == {"status": "ok"}
            assert login.status_code == 200 and 'name="token"' in login.text
            assert not queues.done(), "the queues page came back while AWS could not answer"
        # Once AWS answers again, so does the page that waited for it.
        assert queues.result().status_code == 200
