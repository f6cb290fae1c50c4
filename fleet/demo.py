"""`make demo`: the embedded world end to end, with nobody touching anything.

Start the world, watch the workload succeed, revoke its S3 permissions, watch it fail and
the alarm reach the supervisor queue, restore the baseline, watch it recover and the alarm
clear, then stop everything. Exit 0 only if each of those was seen.
"""

from __future__ import annotations

import subprocess
import sys
import time

from chaos import faults
from chaos.status import FunctionStatus, function_status
from chaos.workload.spec import PermissionTarget, function_specs
from fleet.aws import Clients
from fleet.principals import Principal
from fleet.settings import Settings
from fleet.world import PROJECT_ROOT, read_world, terminate, wait_for
from queues.tail import snapshot
from queues.topology import Stage, build_topology

STEP_TIMEOUT_S = 90.0


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _show(status: FunctionStatus) -> None:
    r = status.runs
    baseline = "at baseline" if status.at_baseline else "drifted: " + "; ".join(status.drift)
    print(
        f"    {status.function}: {status.health}; last {r.window_s}s: {r.invocations} runs, "
        f"{r.errors} errors; {baseline}"
    )
    if r.last_error:
        print(f"    last error: {r.last_error}")


def run_demo(settings: Settings) -> int:
    world = subprocess.Popen([sys.executable, "-m", "fleet.cli", "up"], cwd=PROJECT_ROOT)
    try:
        _say("starting the embedded world")
        wait_for(
            lambda: (
                (read_world(settings) or {}).get("pid") == world.pid or world.poll() is not None
            ),
            STEP_TIMEOUT_S,
            "the world to come up",
        )
        if world.poll() is not None:
            print("the world failed to start", file=sys.stderr)
            return 1
        clients = Clients(Principal.OPERATOR, settings)
        spec = function_specs(settings, 1)[0]
        window = max(5, int(3 * settings.target_interval_s + settings.workload_work_s))
        supervisor_queue = build_topology(settings).queue(Stage.SUPERVISOR).name

        def status() -> FunctionStatus:
            return function_status(clients, spec, window)

        def supervisor_depth() -> int:
            snap = snapshot(clients, build_topology(settings))
            return next(q.visible for q in snap.queues if q.queue == supervisor_queue)

        def errors_alarm() -> str:
            alarms = clients("cloudwatch").describe_alarms(AlarmNames=[spec.alarm_names[0]])
            return str(alarms["MetricAlarms"][0].get("StateValue"))

        _say(f"{spec.name} runs every {settings.target_interval_s:g}s; waiting for healthy runs")
        wait_for(lambda: status().health == "healthy", STEP_TIMEOUT_S, "healthy runs", 0.5)
        _show(status())
        alerts_before = supervisor_depth()

        _say("chaos: revoke the role's S3 permissions")
        print("    " + faults.revoke(clients, spec, [PermissionTarget.S3]))
        broken_at = time.monotonic()
        wait_for(
            lambda: (
                (s := status()).health == "failing" and "AccessDenied" in (s.runs.last_error or "")
            ),
            STEP_TIMEOUT_S,
            "the workload to fail with AccessDenied",
            0.5,
        )
        print(f"    failing {time.monotonic() - broken_at:.1f}s after the fault:")
        _show(status())
        wait_for(lambda: errors_alarm() == "ALARM", STEP_TIMEOUT_S, "the Errors alarm", 0.5)
        alarm_s = time.monotonic() - broken_at
        wait_for(
            lambda: supervisor_depth() >= alerts_before + 2,
            STEP_TIMEOUT_S,
            "the alarm notification and the failure report on the supervisor queue",
            0.5,
        )
        print(
            f"    alarm {spec.alarm_names[0]}: ALARM {alarm_s:.1f}s after the fault; "
            f"supervisor queue: {supervisor_depth()} "
            "message(s) (the alarm notification and the function's own failure report)"
        )

        _say("chaos: restore the baseline")
        print("    " + faults.restore(clients, spec))
        restored_at = time.monotonic()
        wait_for(
            lambda: (s := status()).health == "healthy" and s.at_baseline,
            STEP_TIMEOUT_S,
            "the workload to recover",
            0.5,
        )
        print(f"    healthy {time.monotonic() - restored_at:.1f}s after the restore:")
        _show(status())
        depth = supervisor_depth()
        wait_for(
            lambda: errors_alarm() == "OK" and supervisor_depth() > depth,
            STEP_TIMEOUT_S + settings.alarm_period_s,
            "the alarm's OK notification",
            0.5,
        )
        print(
            f"    alarm {spec.alarm_names[0]}: OK {time.monotonic() - restored_at:.1f}s after the "
            f"restore (period {settings.alarm_period_s}s); supervisor queue: {supervisor_depth()} "
            "message(s) (the OK notification arrived)"
        )
        _say("demo complete: broken, seen failing, restored, seen healthy")
        return 0
    finally:
        terminate([world], 30)
