"""The terminal rendering of a tail snapshot (rich)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from console.snapshot import TailSnapshot


def render(snap: TailSnapshot) -> Group:
    queues = Table(title=f"queues at {snap.at} (counters: last hour)", title_justify="left")
    # Short headers: the table must fit an 80-column terminal.
    columns = (
        "stage",
        "visible",
        "flight",
        "delay",
        "DLQ",
        "oldest",
        "recv",
        "ok",
        "retry",
        "dead",
        "avg ms",
    )
    for column in columns:
        queues.add_column(column, justify="left" if column == "stage" else "right")
    for q in snap.queues:
        age = "n/a" if q.oldest_age_s is None else f"{q.oldest_age_s:.0f}s"
        dlq = Text(str(q.dlq_visible), style="bold red" if q.dlq_visible else "")
        avg = "-" if q.handler_avg_ms is None else f"{q.handler_avg_ms:.0f}"
        queues.add_row(
            q.stage,
            str(q.visible),
            str(q.in_flight),
            str(q.delayed),
            dlq,
            age,
            str(q.received),
            str(q.succeeded),
            str(q.retried),
            str(q.dead_lettered),
            avg,
        )
    incidents = Table(title="incidents by status", title_justify="left")
    incidents.add_column("status")
    incidents.add_column("count", justify="right")
    for status, count in snap.incidents.items():
        if count:
            incidents.add_row(status, str(count))
    if not any(snap.incidents.values()):
        incidents.add_row("(none)", "0")
    parts: list[Table | Text] = [queues, incidents]
    if snap.error:
        parts.append(
            Text(f"error: {snap.error} (showing the last good snapshot)", style="bold red")
        )
    return Group(*parts)
