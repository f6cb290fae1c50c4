"""One embedded world for the integration session: the real `fleet up`, over real HTTP.

It runs with its own state directory and a free port, so it never touches a developer's
world; at the end it is stopped by its PID, and every process it started is checked gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from chaos.status import FunctionStatus, function_status
from core.aws import Clients
from core.principals import Principal
from core.settings import Settings
from emulation.readiness import Watched, wait_ready
from emulation.world import (
    PROJECT_ROOT,
    pid_alive,
    read_world,
    start_world_process,
    terminate,
    wait_for,
)
from tests.ports import reserve_port
from workload.spec import spec_for

TARGETS = 2
STATUS_WINDOW_S = 5
# Queue and runtime timings short enough that redelivery, heartbeats and the DLQ can be
# watched within a test (production keeps the defaults).
FAST_QUEUES: dict[str, Any] = {
    "queue_visibility_timeout_s": 4,
    "queue_max_receive_count": 3,
    "worker_wait_time_s": 1,
    "worker_grace_s": 8,
    "retry_backoff_base_s": 0.5,
    "runtime_metrics_flush_s": 1,
}


@dataclass
class RunningWorld:
    settings: Settings
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    record: dict[str, Any] = field(default_factory=dict)

    def fleet(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this world."""
        return subprocess.run(
            [sys.executable, "-m", "fleet.cli", *args],
            cwd=PROJECT_ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def clients(self, principal: Principal) -> Clients:
        return Clients(principal, self.settings)

    def status(self, function: str) -> FunctionStatus:
        return function_status(
            self.clients(Principal.OPERATOR), spec_for(function, self.settings), STATUS_WINDOW_S
        )

    def wait_status(
        self, function: str, what: str, predicate: Any, timeout_s: float = 60
    ) -> FunctionStatus:
        seen: list[FunctionStatus] = []

        def check() -> bool:
            seen.append(self.status(function))
            return bool(predicate(seen[-1]))

        try:
            wait_for(check, timeout_s, f"{function}: {what}", every_s=0.5)
        except Exception as exc:
            raise AssertionError(
                f"{exc}; last status: {seen[-1].as_json() if seen else None}"
            ) from None
        return seen[-1]

    def wait_healthy(self, function: str) -> FunctionStatus:
        return self.wait_status(
            function, "healthy at baseline", lambda s: s.health == "healthy" and s.at_baseline
        )


def _leftover_processes(port: int) -> list[str]:
    """Processes anywhere on the machine that still serve or use this world's port."""
    leftovers = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        uses_port = f"FLEET_EMULATOR_PORT={port}\0" in environ or f"127.0.0.1:{port}\0" in environ
        if uses_port and pid_alive(int(proc.name)):
            leftovers.append(f"{proc.name}: {cmdline}")
    return leftovers


def world_overrides(state_dir: Path, **more: Any) -> dict[str, Any]:
    return {
        "state_dir": state_dir,
        "emulator_port": reserve_port(),
        "mcp_supervisor_port": reserve_port(),
        "mcp_resolver_port": reserve_port(),
        "console_port": reserve_port(),
        "target_count": TARGETS,
        # A short watch after recovery: it still ends only once the alarms are back to OK.
        "watch_window_s": 10,
        **FAST_QUEUES,
        **more,
    }


@contextmanager
def running_world(overrides: dict[str, Any]) -> Iterator[RunningWorld]:
    """`fleet up` with these settings, until the block ends; then every process it started
    must be gone and its state files removed."""
    state_dir = Path(overrides["state_dir"])
    port = int(overrides["emulator_port"])
    log_path = state_dir / "fleet-up.log"
    process, settings, env = start_world_process(overrides, log_path)
    running = RunningWorld(settings, env, process)
    try:
        running.record = read_world(settings) or {}
        yield running
    finally:
        final = read_world(settings) or running.record  # workers may have been restarted
        terminate([process], 60)
    children = final.get("processes", {})
    still = {name: pid for name, pid in children.items() if pid_alive(pid)}
    assert not still, f"the world left processes running: {still}"
    wait_for(lambda: not _leftover_processes(port), 15, "execution environments to exit")
    assert process.returncode == 0, log_path.read_text()[-2000:]
    assert not settings.world_file.exists() and not settings.launcher_credentials_file.exists()
    assert not settings.issued_credentials_file(Principal.OPERATOR).parent.exists()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, without a sandbox; and nothing that reaches for Google's hosts on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorld]:
    """The world alone (no stage workers): tests drive the queues and workers themselves."""
    overrides = world_overrides(tmp_path_factory.mktemp("world"), run_workers=False)
    with running_world(overrides) as running:
        yield running


@pytest.fixture(scope="session")
def admin(world: RunningWorld) -> Clients:
    """The bootstrap administrator: what the tests use to inspect the world."""
    return world.clients(Principal.ADMIN)


def sns_messages(sqs: Any, queue: str, max_rounds: int = 3) -> list[dict[str, Any]]:
    """Receive (and delete) what is on a queue now: SNS envelopes, parsed."""
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    bodies = []
    for _ in range(max_rounds):
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            break
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


HANDLERS = "tests.integration.handlers"


@dataclass
class Workers:
    world: RunningWorld
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, stage: str, handler: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "fleet.cli", "worker", stage]
        if handler:
            argv += ["--handler", f"{HANDLERS}:{handler}"]
        log = self.log_dir / f"{stage}-{len(self.procs)}.log"
        # Handed its own stage's keys only, as the world hands them.
        own = self.world.settings.issued_credentials_file(Principal(stage)).resolve()
        full_env = {**self.world.env, **(env or {}), "FLEET_CREDENTIALS_FILE": str(own)}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=PROJECT_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        # Waited for while it makes progress, as `fleet up` waits for its own (a busy
        # machine slows a worker's imports; only a stuck or dead one fails the test).
        wait_ready(
            Watched(f"the {stage} worker", proc, log),
            lambda: b'"consuming"' in log.read_bytes(),
            "it consumed its queue",
            self.world.settings.child_stall_s,
        )
        return proc


@pytest.fixture
def workers(world: RunningWorld, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(world, tmp_path)
    yield w
    terminate(w.procs, 15)
