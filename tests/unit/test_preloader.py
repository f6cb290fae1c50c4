"""The preloader (emulation/preloader.py): a service forked from it is the launcher's own
child, shows its own command line, writes its own log and exits with its own code.

The launcher here is a small script in a process of its own: it makes itself a child
subreaper, which a test worker process must not become."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulation.world import PROJECT_ROOT

LAUNCHER = """
import json, os, sys
from pathlib import Path
from emulation.preloader_client import Preloader, become_subreaper
from emulation.readiness import Watched, wait_ready
assert become_subreaper()
here = Path(sys.argv[1])
preloader = Preloader(dict(os.environ), Path.cwd(), here / "preloader.log")
watched = Watched("preloader", preloader.process, here / "preloader.log")
wait_ready(watched, preloader.said_ready, "it imported", stall_s=60)
found = {}
for name, argv in [
    ("help", [sys.executable, "-m", "fleet.cli", "--help"]),
    ("usage", [sys.executable, "-m", "fleet.cli", "no-such-command"]),
    ("server", [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"]),
]:
    child = preloader.spawn(argv, {**os.environ, "MARK": name}, Path.cwd(), here / f"{name}.log")
    parent = int(Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    if name == "server":  # still running: its title, then stopped by its PID
        title = Path(f"/proc/{child.pid}/cmdline").read_bytes().rstrip(b"\\0").decode()
        child.terminate()
    found[name] = {"parent": parent, "code": child.wait(60)}
    if name == "server":
        found[name]["title"] = title
print(json.dumps({"launcher": os.getpid(), "found": found}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_CHILD_SUBREAPER")
def test_a_forked_service_is_the_launchers_child_with_its_own_command_line_log_and_code(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout)
    found = said["found"]
    assert {f["parent"] for f in found.values()} == {said["launcher"]}
    assert found["help"]["code"] == 0
    assert "usage: fleet" in (tmp_path / "help.log").read_text()
    assert found["usage"]["code"] == 2  # argparse's usage error, as from a process of its own
    assert "invalid choice" in (tmp_path / "usage.log").read_text()
    # Its own command line, set before the preloader said its PID; and SIGTERM ends it.
    assert found["server"]["title"].endswith("-m http.server 0 --bind 127.0.0.1")
    assert found["server"]["code"] == -15
