"""Starting and stopping a world, as an operator would: `fleet down`, and a launcher that is
killed without a chance to clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from core.principals import Principal
from core.settings import Settings
from emulation.world import PROJECT_ROOT, pid_alive, port_in_use, read_world, wait_for
from tests.ports import reserve_port


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Settings, dict[str, str]]:
    port = reserve_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLEET_"))}
    # Every port reserved, the console's too: not 8088, which another world may hold.
    mcp_port, resolver_port, console_port = reserve_port(), reserve_port(), reserve_port()
    env.update(
        FLEET_STATE_DIR=str(tmp_path),
        FLEET_EMULATOR_PORT=str(port),
        FLEET_MCP_SUPERVISOR_PORT=str(mcp_port),
        FLEET_MCP_RESOLVER_PORT=str(resolver_port),
        FLEET_CONSOLE_PORT=str(console_port),
    )
    settings = Settings(
        state_dir=tmp_path,
        emulator_port=port,
        mcp_supervisor_port=mcp_port,
        mcp_resolver_port=resolver_port,
        console_port=console_port,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "up"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: (read_world(settings) or {}).get("pid") == proc.pid, 90, "the world")
    return proc, settings, env


def test_fleet_down_stops_the_world_and_everything_it_started(tmp_path: Path) -> None:
    proc, settings, env = _start(tmp_path)
    children = (read_world(settings) or {})["processes"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fleet.cli", "down"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"pid {proc.pid}" in done.stdout
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [pid for pid in children.values() if pid_alive(pid)]
    assert not port_in_use("127.0.0.1", settings.emulator_port)
    assert not settings.launcher_credentials_file.exists()
    assert not settings.issued_credentials_file(Principal.OPERATOR).parent.exists()


def test_a_killed_launcher_leaves_no_process_holding_the_port(tmp_path: Path) -> None:
    proc, settings, _ = _start(tmp_path)
    children = (read_world(settings) or {})["processes"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Each child notices within a second and stops gracefully; on a 2-core machine running
    # other worlds beside this one (make test runs side by side) the emulator alone has
    # taken 14 s to stop, so the bound is generous: the claim is that they stop at all.
    wait_for(
        lambda: not any(pid_alive(pid) for pid in children.values()),
        60,
        "the orphaned children to stop themselves",
    )
    wait_for(lambda: not port_in_use("127.0.0.1", settings.emulator_port), 5, "the port to be free")
