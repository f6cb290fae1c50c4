"""`fleet`: one command with subcommands; every Make target is a thin wrapper over it.

Each command group (fleet/commands/) registers its subcommands and their handlers; this
module builds the parser from them, runs the chosen handler and turns errors into one line
on stderr and an exit code: 0 success, 1 a failure the message explains, 2 bad usage
(unknown target, function or option, or a bad setting; the message names the valid
choices, or the variable and what it wants).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from botocore.exceptions import ClientError, EndpointConnectionError

from core import structured_logging
from core.aws_errors import error_code, error_message
from core.errors import FleetError, UsageError
from core.settings import get_settings
from fleet.commands import baselines, bench, chaos, gameday, incidents, queues, services, world

# In the order `fleet --help` lists them.
COMMAND_GROUPS = (world, chaos, baselines, incidents, queues, services, gameday, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet", description="Autonomous incident response for AWS Lambda."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def _fail(message: str, code: int) -> int:
    for line in message.splitlines() or [""]:
        print(f"fleet: {line}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Long-running processes (own_logging) configure their own JSON logs; a command for a
    # person shows only warnings from the libraries it uses, on stderr.
    if not getattr(args, "own_logging", False):
        structured_logging.configure("cli", logging.WARNING)
    try:
        return int(args.func(args, get_settings()))
    except UsageError as exc:  # InvalidSettings too: one line per bad variable
        return _fail(str(exc), 2)
    except FleetError as exc:
        return _fail(str(exc), 1)
    except EndpointConnectionError as exc:
        return _fail(
            f"cannot reach AWS at {exc.kwargs.get('endpoint_url')}: is the world up (`fleet up`)?",
            1,
        )
    except ClientError as exc:
        return _fail(f"{exc.operation_name} refused: {error_code(exc)}: {error_message(exc)}", 1)


if __name__ == "__main__":
    sys.exit(main())
