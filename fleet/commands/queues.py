"""The queues for a person: `fleet tail` (live depths), `dlq` (dead letters), `failures`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from enum import StrEnum

from rich.console import Console
from rich.live import Live

from console.snapshot import TailSnapshot, safe_snapshot, snapshot
from core.aws import Clients
from core.errors import UsageError
from core.principals import Principal
from core.settings import Settings
from fleet.commands import Subparsers
from fleet.json_output import emit_json
from fleet.tail_view import render
from queues.dlq import DeadLetters
from queues.failures import FailureLog
from queues.topology import build_topology


class DlqAction(StrEnum):
    LIST = "list"
    PEEK = "peek"
    REDRIVE = "redrive"
    PURGE = "purge"


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    clients = Clients(Principal.OPERATOR, settings)
    topology = build_topology(settings)
    if args.once:
        once = safe_snapshot(clients, topology, None)
        if args.json:
            emit_json(once.model_dump())
        else:
            Console().print(render(once))
        return 1 if once.error else 0
    snap: TailSnapshot | None = None
    try:
        # --json streams one snapshot per line (for scripts); otherwise a live table.
        with Live(auto_refresh=False, console=Console(quiet=args.json)) as live:
            while True:
                snap = safe_snapshot(clients, topology, snap)
                if args.json:
                    print(json.dumps(snap.model_dump()), flush=True)
                else:
                    live.update(render(snap), refresh=True)
                time.sleep(settings.tail_refresh_s)
    except KeyboardInterrupt:
        return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    clients = Clients(Principal.OPERATOR, settings)
    topology = build_topology(settings)
    letters = DeadLetters(
        clients("sqs"), clients("dynamodb"), topology, settings.dlq_move_visibility_s
    )
    action = DlqAction(args.action)
    if action is DlqAction.LIST:
        queues = snapshot(clients, topology).queues
        if args.json:
            emit_json([q.model_dump() for q in queues])
            return 0
        header = ("queue", "visible", "in flight", "delayed", "dlq", "depth")
        print("{:<12} {:>7} {:>9} {:>7}   {:<16} {:>5}".format(*header))
        for q in queues:
            print(
                f"{q.queue:<12} {q.visible:>7} {q.in_flight:>9} {q.delayed:>7}   "
                f"{q.dlq:<16} {q.dlq_visible:>5}"
            )
        return 0
    if not args.queue:
        raise UsageError(f"`fleet dlq {action}` needs a queue: {', '.join(letters.dlq_names())}")
    if action is DlqAction.PEEK:
        return _peek(args, letters)
    if action is DlqAction.PURGE:
        if not args.yes:
            raise UsageError(
                f"purging deletes every message in {letters.resolve(args.queue)[0]} for good: "
                "add --yes to confirm"
            )
        print(
            f"purged {letters.purge(args.queue)} message(s) from {letters.resolve(args.queue)[0]}"
        )
        return 0
    return _redrive(args, letters)


def _peek(args: argparse.Namespace, letters: DeadLetters) -> int:
    found = letters.peek(args.queue, args.limit)
    if args.json:
        emit_json([d.model_dump() for d in found])
        return 0
    if not found:
        print(f"{letters.resolve(args.queue)[0]} is empty")
    for d in found:
        print(
            f"{d.message_id}  {d.event_type or '-'}  incident {d.incident_id or '-'}  "
            f"received {d.receive_count}x  sent {d.sent_at}"
        )
        print(
            f"  failed in {d.failed_stage or d.source_queue}: {d.error_class or '?'}: "
            f"{d.failure_reason or 'no reason recorded (moved by the redrive policy)'}"
        )
        print("  " + d.body.replace("\n", "\n  "))
    return 0


def _redrive(args: argparse.Namespace, letters: DeadLetters) -> int:
    def progress(moved: int, total: int | None) -> None:
        print(
            f"\r  moved {moved}/{total if total is not None else '?'}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    ids = [i for part in args.ids or [] for i in part.split(",") if i]
    result = letters.redrive(args.queue, args.to, ids or None, args.rate, progress)
    print(file=sys.stderr)
    if args.json:
        emit_json(result.model_dump())
    else:
        print(
            f"{result.moved} message(s) moved from {result.queue} to {result.destination} "
            f"({result.method}); {result.failed} failed"
            + (f"; not found: {', '.join(result.not_found)}" if result.not_found else "")
        )
    return 0 if not result.failed and not result.not_found else 1


def cmd_failures(args: argparse.Namespace, settings: Settings) -> int:
    records = FailureLog(Clients(Principal.OPERATOR, settings)("dynamodb")).all(args.queue)
    if args.json:
        emit_json([r.model_dump() for r in records])
        return 0
    for r in records:
        where = "DLQ" if r.dead_lettered else f"retrying ({r.receive_count} receives)"
        print(
            f"{r.last_failure_at}  {r.queue:10} {r.message_id}  {where}  {r.error_class}: "
            f"{r.reason[:160]}"
        )
    if not records:
        print("no failures recorded")
    return 0


def register(sub: Subparsers) -> None:
    tail = sub.add_parser("tail", help="live table of queue depths and incidents")
    tail.add_argument("--once", action="store_true", help="print one snapshot and exit")
    tail.add_argument(
        "--json", action="store_true", help="print JSON (live: one snapshot per line)"
    )
    tail.set_defaults(func=cmd_tail)

    dlq = sub.add_parser("dlq", help="dead letters: list the queues, peek, redrive, purge")
    dlq.add_argument("action", choices=[a.value for a in DlqAction])
    dlq.add_argument("queue", nargs="?", help="a stage, its queue or its DLQ")
    dlq.add_argument("--to", help="redrive: to this queue instead of the source")
    dlq.add_argument("--ids", nargs="+", help="redrive: only these message ids")
    dlq.add_argument("--rate", type=float, help="redrive: at most N messages per second")
    dlq.add_argument("--limit", type=int, default=100, help="peek: at most N messages")
    dlq.add_argument("--yes", action="store_true", help="purge: confirm")
    dlq.add_argument("--json", action="store_true", help="print JSON (list, peek, redrive)")
    dlq.set_defaults(func=cmd_dlq)

    failures = sub.add_parser("failures", help="why messages failed, newest first")
    failures.add_argument("--queue", help="only this source queue")
    failures.add_argument("--json", action="store_true", help="print JSON")
    failures.set_defaults(func=cmd_failures)
