"""The embedded world: start the emulator, provision everything, run the emulated services.

`fleet up` runs :func:`run_world` in the foreground until Ctrl-C or SIGTERM, then stops
every process it started (by PID) and removes its state files. `fleet down` signals it.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from access.policies import Arns
from core.aws import Clients, session_from_keys
from core.credentials import (
    as_launcher,
    read_launcher_store,
    remove_issued_credentials,
    write_launcher_store,
    write_own_credentials,
)
from core.dynamodb import provision_tables
from core.errors import FleetError
from core.principals import Principal
from core.provisioning import ProvisionReport
from core.settings import Settings
from core.shared_bucket import RATE_LIMITS
from emulation import world_clock
from emulation.identities import provision_identities
from emulation.preloader_client import Preloader, PreloaderError, become_subreaper
from emulation.readiness import ChildProcess, NotReadyError, Watched, wait_ready
from incidents.baselines import capture
from incidents.tables import TABLES
from queues.provision import MessagingProvisioner
from queues.topology import build_topology
from workload.deploy import WorkloadDeployer
from workload.spec import function_specs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 10.0
# A worker that dies more often than this is crash-looping: it is left down, and reported.
MAX_RESTARTS_PER_MINUTE = 5
# What the worker runtime logs once it consumes (queues/consumer.py, structlog's JSON).
CONSUMING_LINE = b'"event": "consuming"'


class WorldError(FleetError):
    pass


@dataclass(frozen=True)
class ServiceProcess:
    """A process the world runs, how to start it, and the principal whose keys it is handed
    (None: the emulator, which holds no fleet identity)."""

    name: str
    argv: list[str]
    principal: Principal | None


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise WorldError(f"timed out after {timeout_s:g}s waiting for {what}")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for worlds started side by side)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(take: Callable[[], int] = free_port) -> dict[str, int]:
    """Ports for every server of a world started beside others: the emulator, the two MCP
    servers and the console (as settings)."""
    return {
        name: take()
        for name in ("emulator_port", "mcp_supervisor_port", "mcp_resolver_port", "console_port")
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child not yet reaped by its parent is a zombie: gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def read_world(settings: Settings) -> dict[str, Any] | None:
    """The running world's record, or None if no world is running (stale files ignored)."""
    try:
        world: dict[str, Any] = json.loads(settings.world_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return world if pid_alive(int(world["pid"])) else None


def write_private_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    tmp.replace(path)


def write_private_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def child_environment(settings: Settings, principal: Principal | None) -> dict[str, str]:
    """What a child needs to find the world, and the file of its own principal's keys
    (FLEET_CREDENTIALS_FILE; none for None); no AWS credentials are inherited.

    Every setting the launcher was given (from its environment or, in process, by keyword)
    is passed on as its FLEET_ variable, so a world started from code (`fleet bench`) has
    its children on the same ports as one started from the shell. The launcher's own store
    of every key is never among them (Settings.explicit_environment leaves it out)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k != "FLEET_CREDENTIALS_FILE"
    }
    env.update(settings.explicit_environment())
    if principal is not None:
        own = settings.issued_credentials_file(principal)
        env["FLEET_CREDENTIALS_FILE"] = str(own.resolve())
    env.update(
        FLEET_STATE_DIR=str(settings.state_dir.resolve()),
        FLEET_EMULATOR_PORT=str(settings.emulator_port),
        FLEET_EMULATOR_HOST=settings.emulator_host,
        AWS_REGION=settings.region,
        FLEET_LAUNCHER_PID=str(os.getpid()),
        PYTHONUNBUFFERED="1",
    )
    return env


# What provisioning has done so far (:func:`provisioning` yields each as it is done).
ProvisionStep = Literal["identities", "messaging", "tables", "workload"]


def provision(settings: Settings, targets: int, report: ProvisionReport) -> None:
    """Everything the world holds, to spec. Idempotent: a second run changes nothing.

    It acts as the world's launcher (so does `fleet provision`): it signs as the admin and
    writes each principal's own credentials file beside the launcher's store."""
    for _step in provisioning(settings, targets, report):
        pass


def provisioning(
    settings: Settings, targets: int, report: ProvisionReport
) -> Iterator[ProvisionStep]:
    """:func:`provision`, step by step: it yields once each step is done, so that the
    launcher can start what needs no more than that while the rest is provisioned."""
    settings = as_launcher(settings)
    admin = Clients(Principal.ADMIN, settings)
    topology = build_topology(settings)
    arns = Arns(settings, topology)
    issued = read_launcher_store(settings)
    keys = provision_identities(admin("iam"), arns, report, issued)
    if keys != issued:
        write_launcher_store(settings, keys)
    for principal, own in keys.items():
        if principal != Principal.ADMIN:  # the admin's keys stay with the launcher
            write_own_credentials(settings, principal, own)
    yield "identities"
    MessagingProvisioner(admin("sns"), admin("sqs"), report).apply(topology)
    yield "messaging"
    provision_tables(admin("dynamodb"), (*TABLES, RATE_LIMITS), report)
    yield "tables"
    WorkloadDeployer(admin, report, settings.alarm_period_s).deploy(
        function_specs(settings, targets)
    )
    yield "workload"


class World:
    def __init__(self, settings: Settings, targets: int, echo: Callable[[str], None] = print):
        # The launcher holds every principal's keys; each child is handed its own.
        self.settings = as_launcher(settings)
        self.targets = targets
        self.echo = echo
        self.processes: dict[str, ChildProcess] = {}
        # The services' common imports done once, each forked from it (emulation/preloader.py).
        self.preloader: Preloader | None = None
        self.log_offsets: dict[str, int] = {}
        self.stop_event = threading.Event()
        self.started_at = time.time()

    def _spawn(self, service: ServiceProcess) -> None:
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.settings.log_dir / f"{service.name}.log"
        # Where this run's lines start: a state directory used before keeps its old logs.
        self.log_offsets[service.name] = log_path.stat().st_size if log_path.exists() else 0
        env = child_environment(self.settings, service.principal)
        if service.argv[1:3] == ["-m", "fleet.cli"] and self._preloaded():
            assert self.preloader is not None
            try:
                self.processes[service.name] = self.preloader.spawn(
                    service.argv, env, PROJECT_ROOT, log_path
                )
                return
            except PreloaderError as exc:
                self.echo(f"preloader: {exc}; each service starts on its own from now")
                self.preloader = None
        with open(log_path, "ab") as log_file:
            self.processes[service.name] = subprocess.Popen(
                service.argv,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def _start_preloader(self) -> None:
        """Where the launcher can adopt the services it forks (Linux), and unless turned off
        (FLEET_PRELOAD_SERVICES=false): it imports while the emulator starts."""
        if not (self.settings.preload_services and become_subreaper()):
            return
        log_path = self.settings.log_dir / "preloader.log"
        self.log_offsets["preloader"] = log_path.stat().st_size if log_path.exists() else 0
        self.preloader = Preloader(child_environment(self.settings, None), PROJECT_ROOT, log_path)
        self.processes["preloader"] = self.preloader.process

    def _preloaded(self) -> bool:
        """Whether the preloader is there to fork a service, once it has imported."""
        if self.preloader is None:
            return False
        if not self.preloader.ready:
            try:
                self._wait_ready("preloader", self.preloader.said_ready, "it had imported")
            except (WorldError, PreloaderError) as exc:
                self.echo(f"preloader: {exc}; each service starts on its own")
                self.preloader = None
                return False
        return True

    def _consuming(self, name: str) -> bool:
        """The worker said it is consuming (its runtime's first line once its queue is set
        up)."""
        log_path = self.settings.log_dir / f"{name}.log"
        with open(log_path, "rb") as log_file:
            log_file.seek(self.log_offsets.get(name, 0))
            return CONSUMING_LINE in log_file.read()

    def _emulator_answers(self, admin_file: Path) -> bool:
        if not admin_file.exists():
            return False
        try:
            keys = json.loads(admin_file.read_text())
            session = session_from_keys(keys, self.settings)
            sts = session.client("sts", endpoint_url=self.settings.endpoint_url)
            sts.get_caller_identity()
        except Exception:
            return False
        return True

    def _wait_ready(self, name: str, ready: Callable[[], bool], what: str) -> None:
        """Wait for a child while it lives and makes progress (emulation/readiness.py)."""
        watched = Watched(
            name,
            self.processes[name],
            self.settings.log_dir / f"{name}.log",
            self.log_offsets.get(name, 0),
        )
        try:
            wait_ready(watched, ready, what, self.settings.child_stall_s)
        except NotReadyError as exc:
            raise WorldError(str(exc)) from None

    def mcp_servers(self) -> list[tuple[str, int]]:
        return [
            ("supervisor", self.settings.mcp_supervisor_port),
            ("resolver", self.settings.mcp_resolver_port),
        ]

    def _healthy(self, host: str, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def check_can_start(self) -> None:
        s = self.settings
        running = read_world(s)
        if running:
            raise WorldError(
                f"a world is already running (pid {running['pid']}, port {running['port']}): "
                "stop it with `fleet down`"
            )
        if port_in_use(s.emulator_host, s.emulator_port):
            raise WorldError(
                f"port {s.emulator_port} on {s.emulator_host} is in use: free it, or choose "
                "another with --port or FLEET_EMULATOR_PORT"
            )
        if port_in_use(s.console_host, s.console_port):
            raise WorldError(
                f"port {s.console_port} on {s.console_host} (the console) is in use: free it, "
                "or choose another with FLEET_CONSOLE_PORT"
            )
        for server, port in self.mcp_servers():
            if port_in_use(s.mcp_host, port):
                raise WorldError(
                    f"port {port} on {s.mcp_host} (the {server} MCP server) is in use: free "
                    f"it, or choose another with FLEET_MCP_{server.upper()}_PORT"
                )

    def start(self) -> None:
        """The emulator; then, while the rest is provisioned, each process as soon as what it
        needs exists (its keys; its queues): each spends its first seconds importing, on the
        core provisioning leaves idle. Each is waited for while it lives and makes progress,
        however busy the machine."""
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        admin_file = s.state_dir / "admin-credentials.json"
        admin_file.unlink(missing_ok=True)
        # A new emulator's sessions start at real time: a clock moved for the last is gone.
        (s.state_dir / world_clock.FILE_NAME).unlink(missing_ok=True)
        t0 = time.monotonic()
        self._spawn(
            ServiceProcess(
                "emulator",
                [
                    sys.executable,
                    "-m",
                    "emulation.emulator",
                    "--host",
                    s.emulator_host,
                    "--port",
                    str(s.emulator_port),
                    "--admin-credentials",
                    str(admin_file),
                    "--launcher-pid",
                    str(os.getpid()),
                    "--clock-file",
                    str(s.state_dir / world_clock.FILE_NAME),
                    "--trail-delivery-delay-s",
                    str(s.trail_delivery_delay_s),
                ],
                principal=None,
            )
        )
        self._start_preloader()
        self._wait_ready(
            "emulator",
            lambda: self._emulator_answers(admin_file),
            f"it answered on {s.endpoint_url}",
        )
        self.echo(
            f"emulator: moto {s.endpoint_url} (IAM enforced), up in {time.monotonic() - t0:.1f}s"
        )
        write_launcher_store(s, {Principal.ADMIN: json.loads(admin_file.read_text())})
        admin_file.unlink()
        report = ProvisionReport()
        t1 = time.monotonic()
        for step in provisioning(s, self.targets, report):
            if step == "identities":  # their keys and secrets exist: the servers may start
                self._write_secrets()
                for service in self.servers():
                    self._spawn(service)
            elif step == "messaging" and s.run_workers:  # their queues exist
                for service in self.fleet_services():
                    self._spawn(service)
        self.echo(f"provisioned in {time.monotonic() - t1:.1f}s: {report.summary()}")
        # Just deployed from its known-good definition, into an emulator started a moment
        # ago: each function's first baseline. Only `fleet baseline capture` moves it later.
        names = [spec.name for spec in function_specs(s, self.targets)]
        captured = capture(Clients(Principal.OPERATOR, s), names, "fleet up")
        self.echo("baselines: " + ", ".join(f"{b.function} v{b.version}" for b in captured))
        # They run the workload and watch its alarms: only once it is deployed.
        for service in (
            ServiceProcess(
                Principal.LAMBDA_RUNTIME.value,
                [sys.executable, "-m", "emulation.lambda_runtime"],
                Principal.LAMBDA_RUNTIME,
            ),
            ServiceProcess(
                Principal.ALARM_EVALUATOR.value,
                [sys.executable, "-m", "emulation.alarm_evaluator"],
                Principal.ALARM_EVALUATOR,
            ),
        ):
            self._spawn(service)
        for server, port in self.mcp_servers():
            self._wait_ready(
                f"mcp-{server}",
                functools.partial(self._healthy, s.mcp_host, port),
                f"it answered on {s.mcp_host}:{port}",
            )
        self._wait_ready(
            "console",
            functools.partial(self._healthy, s.console_host, s.console_port),
            f"it answered on {s.console_host}:{s.console_port}",
        )
        # Ready means the fleet takes alerts: a worker still importing would leave the
        # first incident waiting for it.
        for service in self.fleet_services() if s.run_workers else ():
            if service.name.startswith("worker-"):
                self._wait_ready(
                    service.name,
                    functools.partial(self._consuming, service.name),
                    "it consumed its queue",
                )
        self.write_world_file()
        self.echo(
            f"world ready in {time.monotonic() - t0:.1f}s: {', '.join(names)} running every "
            f"{s.target_interval_s:g}s; console on http://{s.console_host}:{s.console_port} "
            f"(token: CONSOLE_TOKEN or {s.console_token_file}); logs in {s.log_dir}/; "
            "Ctrl-C or `fleet down` stops it"
        )

    def _write_secrets(self) -> None:
        s = self.settings
        if not s.mcp_api_key:  # generated once per world, kept beside its credentials
            write_private_text(s.mcp_api_key_file, secrets.token_urlsafe(32))
        if not s.console_token:  # generated once per world, beside its other secrets
            write_private_text(s.console_token_file, secrets.token_urlsafe(24))

    def servers(self) -> list[ServiceProcess]:
        """The MCP tool servers and the console: they need their keys, and nothing else to
        start (a page or a tool call reads AWS when it is asked)."""
        cli = [sys.executable, "-m", "fleet.cli"]
        return [
            *(
                ServiceProcess(f"mcp-{server}", [*cli, "mcp", server], Principal(f"mcp-{server}"))
                for server, _port in self.mcp_servers()
            ),
            ServiceProcess("console", [*cli, "console"], Principal.CONSOLE),
        ]

    def fleet_services(self) -> list[ServiceProcess]:
        """The fleet itself: the stage workers (`workers_per_stage` of each, as an ECS
        service's tasks) and the watchdog's schedule."""
        cli = [sys.executable, "-m", "fleet.cli"]
        return [
            ServiceProcess(
                "scheduler", [sys.executable, "-m", "emulation.scheduler"], Principal.SCHEDULER
            ),
            *(
                ServiceProcess(
                    f"worker-{stage}" + (f"-{i}" if i > 1 else ""),
                    [*cli, "worker", stage],
                    Principal(stage),
                )
                for stage in ("supervisor", "resolver", "critic", "watchdog")
                for i in range(1, self.settings.workers_per_stage + 1)
            ),
        ]

    def write_world_file(self) -> None:
        s = self.settings
        write_private_json(
            s.world_file,
            {
                "pid": os.getpid(),
                "port": s.emulator_port,
                "endpoint": s.endpoint_url,
                "region": s.region,
                "targets": self.targets,
                "processes": {name: p.pid for name, p in self.processes.items()},
                "logs": str(s.log_dir.resolve()),
                "started_at": self.started_at,
            },
        )

    def watch(self) -> int:
        """Until asked to stop (0). A worker or the scheduler that dies is started again (as
        ECS would); another child's death is reported; the emulator's ends the world (1)."""
        reported: set[str] = set()
        restartable = {service.name: service for service in self.fleet_services()}
        restarts: dict[str, list[float]] = {}
        while not self.stop_event.wait(0.5):
            for name, proc in list(self.processes.items()):
                if proc.poll() is None or name in reported:
                    continue
                recent = [t for t in restarts.get(name, []) if time.monotonic() - t < 60]
                if name in restartable and len(recent) < MAX_RESTARTS_PER_MINUTE:
                    if self.stop_event.is_set():
                        continue
                    self.echo(f"{name} exited with {proc.returncode}; starting it again")
                    restarts[name] = [*recent, time.monotonic()]
                    self._spawn(restartable[name])
                    self.write_world_file()
                    continue
                if name in restartable:  # crash-looping: leave it down, and say so
                    self.echo(f"{name} exited {len(recent)} times within a minute; not restarted")
                reported.add(name)
                self.echo(
                    f"{name} exited with {proc.returncode}; see {self.settings.log_dir}/{name}.log"
                )
                if name == "emulator":
                    return 1
        return 0

    def stop(self) -> None:
        """Everything that talks to AWS first, then AWS itself: a worker finishing its
        in-flight work, handing back what it holds and flushing its metrics needs the
        emulator there (as AWS would be). Stopped together, the emulator went in a second
        and each worker spent its grace retrying a dead endpoint."""
        last = {"emulator", "preloader"}
        clients = [p for name, p in self.processes.items() if name not in last]
        terminate(list(reversed(clients)), STOP_GRACE_S)
        terminate([p for name, p in self.processes.items() if name in last], STOP_GRACE_S)
        for path in (
            self.settings.world_file,
            self.settings.mcp_api_key_file,
            self.settings.console_token_file,
        ):
            path.unlink(missing_ok=True)
        remove_issued_credentials(self.settings)


def terminate(processes: Sequence[ChildProcess], grace_s: float) -> None:
    """SIGTERM each, in order; whatever has not exited after the grace period is killed."""
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_world(settings: Settings, targets: int, echo: Callable[[str], None] = print) -> int:
    world = World(settings, targets, echo)
    world.check_can_start()  # before the try: a refused start must not touch a running world

    def request_stop(signum: int, _frame: object) -> None:
        if world.stop_event.is_set():
            return
        world.stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        world.start()
        return world.watch()
    finally:
        world.stop()
        echo("world stopped")


def start_world_process(
    values: dict[str, Any], log_path: Path
) -> tuple[subprocess.Popen[bytes], Settings, dict[str, str]]:
    """`fleet up` as a child process with exactly these settings (as FLEET_* variables;
    nothing inherited from this process's FLEET_*, AWS_* or MCP key), once its world is up.
    The caller stops it by its PID (:func:`terminate`).

    The caller started the world, so it acts as its launcher: the settings returned hold
    every principal's keys (core/credentials.py). The environment returned holds none: a
    command run with it acts as the operator, as at a shell."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "FLEET_")) and k != "MCP_API_KEY"
    }
    env.update({f"FLEET_{name.upper()}": str(value) for name, value in values.items()})
    settings = as_launcher(Settings(**values))
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli", "up"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # Waited for while it or a process it started makes progress: `fleet up` gives up on a
    # stuck child itself, and says which.
    watched = Watched("fleet up", process, log_path, with_descendants=True)
    try:
        wait_ready(
            watched,
            lambda: (read_world(settings) or {}).get("pid") == process.pid,
            "its world came up",
            settings.child_stall_s,
        )
    except NotReadyError as exc:
        terminate([process], STOP_GRACE_S)
        raise WorldError(f"{exc}\n{log_path.read_text(errors='replace')[-2000:]}") from None
    except BaseException:  # Ctrl-C while it comes up: stopped all the same
        terminate([process], STOP_GRACE_S)
        raise
    return process, settings, env


def stop_world(settings: Settings, timeout_s: float = 30.0) -> int:
    world = read_world(settings)
    if world is None:
        raise WorldError(f"no world is running (no live world file at {settings.world_file})")
    pid = int(world["pid"])
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), timeout_s, f"the world (pid {pid}) to stop", 0.2)
    return pid
