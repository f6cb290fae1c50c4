"""`fleet`: one command with subcommands; every Make target is a thin wrapper over it.

Each command group (fleet/commands/) registers its subcommands and their handlers; this
module builds the parser, runs the chosen handler and turns errors into one line on stderr
and an exit code: 0 success, 1 a failure the message explains, 2 bad usage (unknown
target, function or option, or a bad setting; the message names the valid choices, or the
variable and what it wants).

Start-up is paid by every process of the world (a dozen, each `python -m fleet.cli ...`)
and by every command at a shell, so the parser imports only the group of the command that
runs; the others are listed from `fleet.commands.COMMANDS` alone. `fleet --help` imports
no group at all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fleet.commands import COMMANDS

DESCRIPTION = "Autonomous incident response for AWS Lambda."


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for this command line: the chosen command's group registered in full, every
    other command by its name and help (enough to list it, or to name it as a choice)."""
    parser = argparse.ArgumentParser(prog="fleet", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = COMMANDS.get(argv[0]) if argv else None
    if chosen is not None:
        importlib.import_module(f"fleet.commands.{chosen.group}").register(sub)
    for name, command in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=command.help)
    return parser


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    return build_parser(argv).parse_args(argv)


def _fail(message: str, code: int) -> int:
    for line in message.splitlines() or [""]:
        print(f"fleet: {line}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    # Imported once a command is to run: `--help` and a usage error need none of them.
    import logging

    from botocore.exceptions import ClientError, EndpointConnectionError

    from core import structured_logging
    from core.aws_errors import error_code, error_message
    from core.errors import FleetError, UsageError
    from core.settings import get_settings

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
