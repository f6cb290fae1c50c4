"""Emulation: the local Lambda runtime, standing in for Lambda where moto cannot run code.

Every TARGET_INTERVAL seconds it invokes each protected function through its alias `live`
(as the schedule does on AWS), running the package that version holds (fetched from
GetFunction's Code.Location and checked against CodeSha256; emulation/lambda_task.py) with
the handler its configuration names, and honouring what the emulator stores for it:
reserved concurrency (0: throttled, not run), timeout (a run past it is killed and
counted as an error), environment variables, execution role (the handler runs under
credentials from assuming it), and its security group's egress (none: every AWS call
hangs in its connect until the run times out). Like Lambda, it writes START/END/REPORT
(`Init Duration` on the first run of a new execution environment: a changed configuration
or version, or one whose last run was killed, starts cold) and the handler's lines to the
function's log group with the role's credentials (START names the executed version), and
publishes the AWS/Lambda metrics Invocations, Errors, Throttles and Duration per period
(emulation/lambda_metrics.py), per function and per alias and ExecutedVersion, as Lambda
does.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from core.aws import Clients, client, session_from_keys
from core.egress import egress_allowed
from core.lambda_concurrency import reserved_concurrency
from core.lambda_versions import LIVE_ALIAS
from core.principals import Principal
from core.protection import protected_functions
from core.service_process import run_service
from core.settings import Settings, get_settings
from emulation import world_clock
from emulation.lambda_metrics import Dimensions, PeriodMetrics, publish
from emulation.lambda_task import TaskCache, bootstrap_command, python_path

log = structlog.get_logger()
# Lambda renews a function's role keys well before they expire: this long before, by the
# world's clock (which tests may move on, emulation/world_clock.py).
RENEW_BEFORE_EXPIRY = timedelta(minutes=15)
# How often the publisher looks for a period that has ended (the lag after its end).
PUBLISH_CHECK_S = 0.5


@dataclass
class Invocation:
    function_name: str
    request_id: str
    outcome: str  # "success" | "error" | "throttled"
    duration_ms: float = 0.0
    error_type: str | None = None
    error_message: str | None = None


class ExecutionEnvironment:
    """A warm process for one version's configuration and code; replaced when either changes."""

    def __init__(
        self,
        config: Mapping[str, Any],
        keys: dict[str, str],
        settings: Settings,
        task_dir: Path,
        bootstrap: Path,
    ):
        self.fingerprint = config_fingerprint(config)
        # The role keys it was started with: renewed keys start a new environment.
        self.access_key_id = keys["AccessKeyId"]
        self.version = str(config.get("Version", "$LATEST"))
        self.id = uuid.uuid4().hex
        self.max_memory_mb = 0
        # A cold start: from the process's start to its first handler's start, which
        # Lambda reports once per environment as REPORT's `Init Duration`.
        self.spawned_at = time.monotonic()
        self.invocations = 0
        self.init_ms: float | None = None
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # The package (as /var/task), then the libraries Lambda's runtime provides.
            "PYTHONPATH": python_path(task_dir),
            "LAMBDA_TASK_ROOT": str(task_dir),
            "_HANDLER": config["Handler"],
            "AWS_LAMBDA_FUNCTION_NAME": config["FunctionName"],
            "AWS_LAMBDA_FUNCTION_VERSION": self.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.get("MemorySize", 128)),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(config.get("Timeout", 3)),
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_ACCESS_KEY_ID": keys["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
            "AWS_SESSION_TOKEN": keys["SessionToken"],
            **config.get("Environment", {}).get("Variables", {}),
        }
        if settings.endpoint_url:
            env["AWS_ENDPOINT_URL"] = settings.endpoint_url
        self.process = subprocess.Popen(
            bootstrap_command(bootstrap),
            cwd=task_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def invoke(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """The handler's reply, or None if it ran past the timeout (then the env is dead)."""
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            self.max_memory_mb = max(self.max_memory_mb, self._peak_memory_mb())
            self.stop()
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"execution environment exited with {self.process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        self.max_memory_mb = max(self.max_memory_mb, int(reply.get("max_memory_mb", 0)))
        self.invocations += 1
        if self.invocations == 1:
            took_ms = (time.monotonic() - self.spawned_at) * 1000
            self.init_ms = max(0.0, took_ms - float(reply.get("duration_ms", 0.0)))
        return reply

    def _peak_memory_mb(self) -> int:
        """The process's peak resident memory, read before it is killed (Linux)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
        return 0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def config_fingerprint(config: Mapping[str, Any]) -> str:
    keys = ("Version", "CodeSha256", "Handler", "Role", "Timeout", "MemorySize", "Environment")
    return json.dumps({k: config.get(k) for k in keys}, sort_keys=True, default=str)


class FunctionRunner:
    """Invokes one function on its schedule, as Lambda's scheduler and runtime would."""

    def __init__(self, name: str, clients: Clients, settings: Settings, metrics: PeriodMetrics):
        self.name = name
        self.clients = clients
        self.settings = settings
        self.metrics = metrics
        self.env: ExecutionEnvironment | None = None
        self._role_keys: dict[str, str] | None = None
        self._role_keys_for: str | None = None
        self._role_keys_expire: datetime | None = None
        self.clock = world_clock.of_state_dir(settings.state_dir)
        self._log_clients: dict[str, Any] = {}
        self.tasks = TaskCache(settings.state_dir / "lambda")

    def _assume(self, role_arn: str) -> dict[str, str]:
        expires = self._role_keys_expire
        fresh = expires is not None and self.clock.now() < expires - RENEW_BEFORE_EXPIRY
        if self._role_keys is None or self._role_keys_for != role_arn or not fresh:
            creds = self.clients("sts").assume_role(
                RoleArn=role_arn, RoleSessionName=self.name[:64]
            )["Credentials"]
            self._role_keys = {
                k: creds[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")
            }
            self._role_keys_for = role_arn
            self._role_keys_expire = creds["Expiration"]
            self._log_clients.clear()
        return self._role_keys

    def tick(self) -> Invocation:
        lam = self.clients("lambda")
        function = lam.get_function(FunctionName=self.name, Qualifier=LIVE_ALIAS)
        config = function["Configuration"]
        version = str(config["Version"])
        request_id = str(uuid.uuid4())
        if reserved_concurrency(lam, self.name) == 0:
            # Never started: no log line at all, only the Throttles metric.
            self._metrics({"Throttles": 1.0}, version, time.time())
            return Invocation(self.name, request_id, "throttled")
        group_ids = config.get("VpcConfig", {}).get("SecurityGroupIds", [])
        egress = egress_allowed(self.clients("ec2"), group_ids)
        keys = self._assume(config["Role"])
        if (
            self.env is None
            or not self.env.alive
            or self.env.fingerprint != config_fingerprint(config)
            or self.env.access_key_id != keys["AccessKeyId"]
        ):
            if self.env is not None:
                self.env.stop()
            task_dir = self.tasks.task_dir(function)
            self.env = ExecutionEnvironment(
                config, keys, self.settings, task_dir, self.tasks.bootstrap()
            )
        timeout_s = float(config.get("Timeout", 3))
        started = time.time()
        request = {
            "request_id": request_id,
            "event": {"source": "fleet.schedule", "time": datetime.now(UTC).isoformat()},
            "egress_blocked": not egress,
            "deadline_ms": int((started + timeout_s) * 1000),
        }
        reply = self.env.invoke(request, timeout_s)
        ended = time.time()
        duration_ms = (ended - started) * 1000
        lines = [f"START RequestId: {request_id} Version: {version}"]
        # Lambda's own lines at the end of the run (timed out, END, REPORT).
        closing: list[str] = []
        status = ""
        if reply is None:
            # As Lambda writes a timeout (python3.12): the run is cut at exactly the
            # timeout, no error record, and the REPORT line says `Status: timeout`.
            duration_ms = timeout_s * 1000
            inv = Invocation(
                self.name,
                request_id,
                "error",
                duration_ms,
                "Sandbox.Timedout",
                f"Task timed out after {timeout_s:.2f} seconds",
            )
            at = datetime.fromtimestamp(ended, UTC)
            closing.append(
                f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z {request_id} "
                f"{inv.error_message}"
            )
            status = "\tStatus: timeout"
        else:
            lines += reply.get("log", [])
            duration_ms = float(reply.get("duration_ms", duration_ms))
            if reply["ok"]:
                inv = Invocation(self.name, request_id, "success", duration_ms)
            else:
                inv = Invocation(
                    self.name,
                    request_id,
                    "error",
                    duration_ms,
                    reply.get("error_type"),
                    reply.get("error_message"),
                )
                closing.append(
                    json.dumps(
                        {
                            "errorType": inv.error_type,
                            "errorMessage": inv.error_message,
                            "requestId": request_id,
                        }
                    )
                )
        memory = config.get("MemorySize", 128)
        # The first run of a new environment says how long its start took (a timed-out
        # one is cut before it can tell).
        first_run = reply is not None and self.env.invocations == 1
        init = f"\tInit Duration: {self.env.init_ms:.2f} ms" if first_run else ""
        closing.append(f"END RequestId: {request_id}")
        closing.append(
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory} MB\t"
            f"Max Memory Used: {self.env.max_memory_mb} MB{init}{status}"
        )
        self._write_logs(keys, lines, started, closing, ended)
        self._metrics(
            {
                "Invocations": 1.0,
                "Errors": 1.0 if inv.outcome == "error" else 0.0,
                # Lambda reports Throttles beside every run too (0): the Throttles alarm
                # then sees a healthy period as not breaching rather than missing.
                "Throttles": 0.0,
                "Duration": duration_ms,
            },
            version,
            ended,
        )
        return inv

    def _write_logs(
        self,
        keys: dict[str, str],
        lines: list[str],
        started: float,
        closing: list[str],
        ended: float,
    ) -> None:
        """With the execution role's credentials, as Lambda does: no permission, no logs."""
        assert self.env is not None
        key = keys["AccessKeyId"]
        if key not in self._log_clients:
            self._log_clients[key] = client(
                session_from_keys(keys, self.settings), "logs", self.settings
            )
        logs = self._log_clients[key]
        group = f"/aws/lambda/{self.name}"
        stream = f"{datetime.now(UTC):%Y/%m/%d}/[{self.env.version}]{self.env.id}"
        # START and the handler's lines from the run's start (their own times are not
        # known), Lambda's closing lines at its end.
        first, last = int(started * 1000), int(ended * 1000)
        events = [{"timestamp": first + i, "message": line} for i, line in enumerate(lines)]
        last = max(last, first + len(lines))
        events += [{"timestamp": last + i, "message": line} for i, line in enumerate(closing)]
        try:
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
            logs.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=events,
            )
        except Exception as exc:  # e.g. AccessDenied after a revoke: Lambda drops the logs too
            log.warning("function logs dropped", function=self.name, error=str(exc)[:300])

    def _metrics(self, values: dict[str, float], version: str, at: float) -> None:
        for name, value in values.items():
            unit = "Milliseconds" if name == "Duration" else "Count"
            self.metrics.add(name, value, unit, metric_dimensions(self.name, version), at)

    def close(self) -> None:
        if self.env is not None:
            self.env.stop()


def metric_dimensions(function: str, version: str) -> list[Dimensions]:
    """Lambda publishes an alias's runs per function (what the alarms watch) and per alias
    and executed version."""
    return [
        (("FunctionName", function),),
        (
            ("FunctionName", function),
            ("Resource", f"{function}:{LIVE_ALIAS}"),
            ("ExecutedVersion", version),
        ),
    ]


class LambdaRuntime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.metrics = PeriodMetrics(settings.alarm_period_s)

    def run(self) -> None:
        clients = Clients(Principal.LAMBDA_RUNTIME, self.settings)
        names = protected_functions(clients("lambda"))
        log.info(
            "lambda runtime started", functions=names, interval_s=self.settings.target_interval_s
        )
        for name in names:
            t = threading.Thread(target=self._loop, args=(name,), name=name, daemon=True)
            t.start()
            self.threads.append(t)
        publisher = threading.Thread(target=self._publish_loop, name="metrics", daemon=True)
        publisher.start()
        self.stop_event.wait()
        for t in self.threads:
            t.join(timeout=self.settings.workload_timeout_s + 5)
        publisher.join(timeout=10)

    def _publish_loop(self) -> None:
        """Each period's metrics just after it ends; whatever is held, at shutdown."""
        cloudwatch = Clients(Principal.LAMBDA_RUNTIME, self.settings)("cloudwatch")
        held: list[dict[str, Any]] = []
        while True:
            stopping = self.stop_event.wait(PUBLISH_CHECK_S)
            held += self.metrics.take_ended(time.time(), everything=stopping)
            try:
                publish(cloudwatch, held)
                held = []
            except Exception as exc:  # the emulator may be away: keep them for the next try
                log.warning("lambda metrics not published", error=str(exc)[:300])
            if stopping:
                return

    def _loop(self, name: str) -> None:
        # Each function gets its own clients: boto3 clients are thread-safe, sessions aren't.
        runner = FunctionRunner(
            name, Clients(Principal.LAMBDA_RUNTIME, self.settings), self.settings, self.metrics
        )
        last_outcome = None
        try:
            while not self.stop_event.is_set():
                started = time.monotonic()
                try:
                    inv = runner.tick()
                    if inv.outcome != last_outcome:
                        log.info(
                            "invocation outcome changed",
                            function=name,
                            outcome=inv.outcome,
                            error_type=inv.error_type,
                            error=inv.error_message,
                        )
                        last_outcome = inv.outcome
                except Exception as exc:  # the emulator may be away; keep the schedule
                    log.warning("invocation failed to run", function=name, error=str(exc)[:300])
                    last_outcome = None
                elapsed = time.monotonic() - started
                self.stop_event.wait(max(0.0, self.settings.target_interval_s - elapsed))
        finally:
            runner.close()


def main() -> None:
    settings = get_settings()
    run_service("lambda-runtime", LambdaRuntime(settings), settings.launcher_pid)


if __name__ == "__main__":
    main()
