"""One Lambda execution environment: a warm process that runs one function's handler.

Started by the local runtime (emulation/lambda_runtime.py) with the function's environment and
its execution role's credentials in the process environment, exactly as Lambda sets them.
It is copied apart and run as a script with the function's package on its path and the
project's source not (emulation/lambda_task.py): it may import only the standard library
and the installed libraries (boto3, botocore), never the project's packages.
Protocol: one JSON request per line on stdin, one JSON result per line on stdout. The
handler's own prints are captured and returned as log lines.

When the function's security group allows no egress, every AWS call the handler makes
hangs, as a TCP connect from a VPC with no way out does (the SYN is dropped): for the
client's connect timeout (botocore's default is 60 s) per attempt, then ConnectTimeoutError.
That is longer than the function's own timeout, so on AWS such a run ends `Task timed out`;
here too, the runtime kills the process at the function's timeout.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ConnectTimeoutError

_egress_blocked = False
# botocore's own default (botocore.config.Config.connect_timeout).
DEFAULT_CONNECT_TIMEOUT_S = 60.0


def _egress_guard(request: Any, **_: Any) -> None:
    """Before each attempt botocore sends: with no egress, wait out the connect timeout."""
    if _egress_blocked:
        config = (getattr(request, "context", None) or {}).get("client_config")
        connect_timeout = getattr(config, "connect_timeout", None) or DEFAULT_CONNECT_TIMEOUT_S
        time.sleep(float(connect_timeout))
        raise ConnectTimeoutError(endpoint_url=request.url)


@dataclass
class LambdaContext:
    aws_request_id: str
    function_name: str
    memory_limit_in_mb: int
    deadline_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def main() -> None:
    global _egress_blocked
    import os

    out = sys.stdout
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-send", _egress_guard)
    module_name, func_name = os.environ["_HANDLER"].rsplit(".", 1)
    init_error: str | None = None
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            handler = getattr(importlib.import_module(module_name), func_name)
    except Exception as exc:
        init_error = f"Runtime.ImportModuleError: {type(exc).__name__}: {exc}"
    for line in sys.stdin:
        request = json.loads(line)
        _egress_blocked = bool(request.get("egress_blocked"))
        started = time.monotonic()
        captured = io.StringIO()
        reply: dict[str, Any] = {"request_id": request["request_id"]}
        if init_error:
            reply.update(ok=False, error_type="Runtime.ImportModuleError", error_message=init_error)
        else:
            context = LambdaContext(
                aws_request_id=request["request_id"],
                function_name=os.environ["AWS_LAMBDA_FUNCTION_NAME"],
                memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
                deadline_ms=int(request["deadline_ms"]),
            )
            try:
                with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                    result = handler(request.get("event", {}), context)
                reply.update(ok=True, result=result)
            except Exception as exc:
                reply.update(
                    ok=False,
                    error_type=type(exc).__name__,
                    error_message=str(exc),
                    stack=traceback.format_exception(exc)[-3:],
                )
        reply["log"] = captured.getvalue().splitlines()
        reply["duration_ms"] = (time.monotonic() - started) * 1000
        # The process's peak resident memory (KiB on Linux): REPORT's "Max Memory Used".
        reply["max_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        out.write(json.dumps(reply, default=str) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
