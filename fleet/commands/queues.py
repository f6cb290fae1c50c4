"""The queues for a person: `fleet tail` (live depths), `dlq` (dead letters), `failures`."""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path

from rich.console import Console
from rich.live import Live

from console.snapshot import TailSnapshot, safe_snapshot, snapshot
from core.aws import Clients
from core.errors import UsageError
from core.principals import Principal
from core.settings import Settings
from fleet.commands import Subparsers, add_command
from fleet.json_output import emit_json
from fleet.tail_view import render
from queues.dlq import DeadLetters, RedrivePlan
from queues.dlq_audit import Actor
from queues.failures import FailureLog, LetterFilter
from queues.topology import build_topology


class DlqAction(StrEnum):
    LIST = "list"
    LETTERS = "letters"
    PEEK = "peek"
    REDRIVE = "redrive"
    DELETE = "delete"
    PURGE = "purge"
    HISTORY = "history"
    EXPORT = "export"


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


def _actor(args: argparse.Namespace) -> Actor:
    """Who acts, for the audit trail: the name given, else the login at this shell."""
    return Actor(person=args.as_ or getpass.getuser(), principal=Principal.OPERATOR.value)


def _filter(args: argparse.Namespace) -> LetterFilter:
    return LetterFilter(
        reason=args.reason,
        error_class=args.error_class,
        event_type=args.event_type,
        incident_id=args.incident,
    )


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
    if action is DlqAction.HISTORY:
        return _history(args, letters)
    if not args.queue:
        raise UsageError(f"`fleet dlq {action}` needs a queue: {', '.join(letters.dlq_names())}")
    if action is DlqAction.LETTERS:
        return _letters(args, letters)
    if action is DlqAction.PEEK:
        return _peek(args, letters)
    if action is DlqAction.EXPORT:
        return _export(args, letters)
    if action is DlqAction.DELETE:
        ids = _ids(args)
        if not ids or not args.yes:
            raise UsageError("deleting needs the dead letters' --ids and --yes to confirm")
        deleted, missing = letters.delete(args.queue, ids, _actor(args))
        print(
            f"{deleted} deleted for good"
            + (f"; not found: {', '.join(missing)}" if missing else "")
        )
        return 1 if missing else 0
    if action is DlqAction.PURGE:
        if not args.yes:
            raise UsageError(
                f"purging deletes every message in {letters.resolve(args.queue)[0]} for good: "
                "add --yes to confirm"
            )
        purged = letters.purge(args.queue, _actor(args))
        print(f"purged {purged} message(s) from {letters.resolve(args.queue)[0]}")
        return 0
    return _redrive(args, letters)


def _ids(args: argparse.Namespace) -> list[str]:
    return [i for part in args.ids or [] for i in part.split(",") if i]


def _letters(args: argparse.Namespace, letters: DeadLetters) -> int:
    dlq, _ = letters.resolve(args.queue)
    try:
        page = letters.failures.dead_letters(dlq, _filter(args), args.page_size, args.cursor)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        emit_json(page.model_dump(exclude={"letters": {"__all__": {"body"}}}))
        return 0
    if not page.letters:
        print(f"no dead letters in {dlq} match" if _filter(args).given() else f"{dlq} lists none")
    for r in page.letters:
        print(
            f"{r.dead_lettered_at}  {r.message_id}  {r.event_type or '-'}  "
            f"incident {r.incident_id or '-'}  {r.error_class}: {r.reason[:160]}"
        )
    if page.cursor:
        print(f"more: --cursor {page.cursor}")
    return 0


def _peek(args: argparse.Namespace, letters: DeadLetters) -> int:
    found = letters.peek(args.queue, args.limit or 100)
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


def _export(args: argparse.Namespace, letters: DeadLetters) -> int:
    exported = letters.export(args.queue)
    text = json.dumps(exported, indent=2, default=str)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"{len(exported)} message(s) of {letters.resolve(args.queue)[0]} to {args.output}")
    else:
        print(text)
    return 0


def _plan(args: argparse.Namespace, letters: DeadLetters) -> RedrivePlan | None:
    """The exact set a filtered, limited or planned redrive moves; None: the chosen ids or
    every dead letter."""
    if args.ids_from:
        try:
            return RedrivePlan.model_validate_json(Path(args.ids_from).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"--ids-from {args.ids_from}: not a plan from `fleet dlq redrive --dry-run "
                f"--json`: {str(exc)[:200]}"
            ) from None
    if _filter(args).given() or args.limit is not None or args.dry_run:
        if _ids(args):
            raise UsageError("--ids names the messages itself: no filter, --limit or --dry-run")
        return letters.plan(args.queue, _filter(args), args.limit, args.to)
    return None


def _redrive(args: argparse.Namespace, letters: DeadLetters) -> int:
    def progress(moved: int, total: int | None) -> None:
        print(
            f"\r  moved {moved}/{total if total is not None else '?'}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    plan = _plan(args, letters)
    if args.dry_run:
        assert plan is not None
        if args.json:
            emit_json(plan.model_dump())
        else:
            print(
                f"a redrive would move {len(plan.message_ids)} dead letter(s) from "
                f"{plan.queue} to {plan.destination}; nothing was moved:"
            )
            for message_id in plan.message_ids:
                print(f"  {message_id}")
            print("to move exactly these: --dry-run --json > plan.json, then --ids-from plan.json")
        return 0
    # Ctrl-C cancels between two messages: what is not moved stays a dead letter.
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        result = letters.redrive(
            args.queue,
            _actor(args),
            args.to,
            _ids(args) or None,
            args.rate,
            progress,
            cancel,
            plan,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    print(file=sys.stderr)
    if args.json:
        emit_json(result.model_dump())
    else:
        unseen = f"; not found: {', '.join(result.not_found)}" if result.not_found else ""
        cancelled = result.status == "CANCELLED"
        print(
            f"{result.moved} message(s) moved from {result.queue} to {result.destination} "
            f"({result.method}); {result.failed} failed{unseen}"
            + ("; CANCELLED: the rest are still dead letters" if cancelled else "")
        )
        print(
            f"what became of each: fleet dlq history {result.queue} --redrive {result.redrive_id}"
        )
    return 0 if result.status == "COMPLETED" and not result.failed and not result.not_found else 1


def _history(args: argparse.Namespace, letters: DeadLetters) -> int:
    if args.redrive:
        if not args.queue:
            raise UsageError("--redrive needs the queue it ran on")
        report = letters.report(args.queue, args.redrive)
        if report is None:
            raise UsageError(f"no redrive {args.redrive} of {letters.resolve(args.queue)[0]}")
        if args.json:
            emit_json(report.model_dump())
            return 0
        for e in report.entries:
            print(
                f"{e.at}  {e.action:<16} {e.person} ({e.principal})  {e.queue} -> "
                f"{e.destination}  {e.status or ''}"
            )
        for m in report.messages:
            print(
                f"  {m.message_id}  {m.event_type or '-'}  as {m.redriven_as or '-'}: "
                f"{m.outcome or 'not handled yet'}"
                + (f" ({m.outcome_detail[:160]})" if m.outcome_detail else "")
            )
        return 0
    entries = letters.history(args.queue, args.page_size)
    if args.json:
        emit_json([e.model_dump() for e in entries])
        return 0
    if not entries:
        print("no redrive, delete or purge recorded")
    for e in entries:
        what = f"{len(e.message_ids)} message(s)" if e.message_ids else "all"
        print(
            f"{e.at}  {e.action:<16} {e.person} ({e.principal})  {e.queue}"
            + (f" -> {e.destination}" if e.destination else "")
            + f"  {what}"
            + (f"  {e.status}" if e.status else "")
            + (f"  [redrive {e.redrive_id}]" if e.redrive_id else "")
        )
    return 0


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
    tail = add_command(sub, "tail")
    tail.add_argument("--once", action="store_true", help="print one snapshot and exit")
    tail.add_argument(
        "--json", action="store_true", help="print JSON (live: one snapshot per line)"
    )
    tail.set_defaults(func=cmd_tail)

    dlq = add_command(sub, "dlq")
    dlq.add_argument("action", choices=[a.value for a in DlqAction])
    dlq.add_argument("queue", nargs="?", help="a stage, its queue or its DLQ")
    dlq.add_argument("--reason", help="letters, redrive: whose failure reason contains this")
    dlq.add_argument("--error-class", help="letters, redrive: of this error class")
    dlq.add_argument("--event-type", help="letters, redrive: of this event type")
    dlq.add_argument("--incident", help="letters, redrive: of this incident")
    dlq.add_argument("--page-size", type=int, default=50, help="letters, history: per page")
    dlq.add_argument("--cursor", help="letters: the page after this (printed with a page)")
    dlq.add_argument("--to", help="redrive: to this queue instead of the source")
    dlq.add_argument("--ids", nargs="+", help="redrive, delete: these message ids")
    dlq.add_argument("--ids-from", help="redrive: exactly the plan a --dry-run --json wrote")
    dlq.add_argument("--dry-run", action="store_true", help="redrive: show what would move")
    dlq.add_argument("--rate", type=float, help="redrive: at most N messages per second")
    dlq.add_argument(
        "--limit", type=int, help="redrive: at most N (newest first); peek: at most N (100)"
    )
    dlq.add_argument("--redrive", help="history: one redrive, with each message's outcome")
    dlq.add_argument("--as", dest="as_", help="who acts, for the audit trail (default: $USER)")
    dlq.add_argument("--output", "-o", help="export: write the JSON here")
    dlq.add_argument("--yes", action="store_true", help="delete, purge: confirm")
    dlq.add_argument("--json", action="store_true", help="print JSON (every read)")
    dlq.set_defaults(func=cmd_dlq)

    failures = add_command(sub, "failures")
    failures.add_argument("--queue", help="only this source queue")
    failures.add_argument("--json", action="store_true", help="print JSON")
    failures.set_defaults(func=cmd_failures)
