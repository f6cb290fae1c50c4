"""The embedded AWS: moto in server mode, with IAM enforcement on, in its own process.

Run as ``python -m emulation.emulator --port N --admin-credentials FILE``. Before serving, it
applies :mod:`emulation.moto_patches`, :mod:`emulation.lambda_packages` and
:mod:`emulation.cloudwatch_dimensions`, creates the bootstrap administrator in-process (so no
request ever goes unauthenticated) and writes that user's keys to FILE (mode 0600). moto's
own unauthenticated control API (/moto-api/: reset, seed, IAM enforcement off) is closed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

from core.service_process import stop_when_orphaned
from emulation.iam_requests import set_source_ip

ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# moto's default account: every request without another account lands here.
ACCOUNT_ID = "123456789012"


# moto sends every path starting with this to its control API (DomainDispatcherApplication).
CONTROL_API_PREFIX = "/moto-api"
# The HTTP server's request threads, and the connections it keeps open at once (botocore
# keeps a pool of them per client, and a world runs a dozen processes of clients).
HTTP_THREADS = 64
HTTP_CONNECTIONS = 1024


def closed_control_api(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """`app`, with moto's control API refused: AWS has no door that skips IAM."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if not path.startswith(CONTROL_API_PREFIX):
            return app(environ, start_response)
        body = json.dumps(
            {
                "Error": {
                    "Code": "AccessDenied",
                    "Message": f"{CONTROL_API_PREFIX}/ is closed in the embedded world: "
                    "it answers no one, as AWS has no unauthenticated control API",
                }
            }
        ).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return wsgi


def raw_uri(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """`app`, told the request's path as it arrived. moto reads it from RAW_URI (set by
    werkzeug's and gunicorn's servers) to check a request's signature and to match S3 keys,
    which the decoded PATH_INFO would misstate; waitress names it REQUEST_URI."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "RAW_URI" not in environ and "REQUEST_URI" in environ:
            environ["RAW_URI"] = environ["REQUEST_URI"]
        return app(environ, start_response)

    return wsgi


def _bootstrap_admin(user_name: str) -> dict[str, str]:
    from moto.iam.models import iam_backends

    iam = iam_backends[ACCOUNT_ID]["aws"]
    iam.create_user(region_name="us-east-1", user_name=user_name, path="/", tags=[])
    iam.put_user_policy(user_name, "administrator", json.dumps(ADMIN_POLICY))
    key = iam.create_access_key(user_name)
    return {"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}


def _write_private(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    tmp.replace(path)


def source_ip(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """`app`, with each request's client address kept for its authorization
    (aws:SourceIp): the request's own, as AWS sees the caller's."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        set_source_ip(environ.get("REMOTE_ADDR"))
        try:
            return app(environ, start_response)
        finally:
            set_source_ip(None)

    return wsgi


def serve(
    host: str,
    port: int,
    admin_credentials: Path,
    admin_user: str,
    launcher_pid: int | None,
    clock_file: Path | None = None,
    trail_delivery_delay_s: float = 30.0,
) -> None:
    # Enforce IAM from the very first request (moto's default lets everything through).
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    from moto import settings as moto_settings

    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from waitress.server import create_server

    from emulation import (
        cloudtrail,
        cloudwatch_dimensions,
        ec2_rule_descriptions,
        iam_sessions,
        lambda_packages,
        lambda_roles,
        moto_patches,
        request_costs,
        s3_access,
        sqs_costs,
        world_clock,
    )

    world_clock.install(clock_file)
    moto_patches.apply()
    cloudtrail.apply(trail_delivery_delay_s)  # records what the patched calls answer
    iam_sessions.apply()
    s3_access.apply()
    lambda_packages.apply()
    lambda_roles.apply()  # after lambda_packages: it wraps UpdateFunctionConfiguration
    cloudwatch_dimensions.apply()
    ec2_rule_descriptions.apply()
    sqs_costs.apply()
    request_costs.apply()
    # GetFunction's Code.Location links are served beside moto (emulation/lambda_packages).
    app = source_ip(
        raw_uri(
            closed_control_api(
                lambda_packages.serve_packages(DomainDispatcherApplication(create_backend_app))
            )
        )
    )
    try:
        # Keep-alive connections and a pool of threads (waitress), not moto's development
        # server, which closes each connection after one request and starts a thread for
        # each. A long poll holds its thread for up to 20 s, so the pool is sized for
        # every receiver of a busy world at once with room left for everything else.
        server = create_server(
            app,
            host=host,
            port=port,
            threads=HTTP_THREADS,
            connection_limit=HTTP_CONNECTIONS,
            backlog=HTTP_CONNECTIONS,
            asyncore_use_poll=True,  # select() fails past 1024 open descriptors
            ident="",
        )
    except OSError as exc:
        print(f"emulator: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(3) from None
    _write_private(admin_credentials, _bootstrap_admin(admin_user))

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stop_when_orphaned(launcher_pid)
    # The server runs in a daemon thread, and so do its request threads: stopping does not
    # wait for a long poll in flight (the world's state lives and ends with this process).
    threading.Thread(target=server.run, name="http", daemon=True).start()
    stopping.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulation.emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-credentials", type=Path, required=True)
    parser.add_argument("--admin-user", default="fleet-admin")
    parser.add_argument("--launcher-pid", type=int, help="stop when this process is gone")
    parser.add_argument(
        "--clock-file", type=Path, help="the offset its owner moves the clock by (world_clock)"
    )
    parser.add_argument(
        "--trail-delivery-delay-s", type=float, default=30.0, help="CloudTrail's delivery delay"
    )
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        args.admin_credentials,
        args.admin_user,
        args.launcher_pid,
        args.clock_file,
        args.trail_delivery_delay_s,
    )


if __name__ == "__main__":
    main()
