"""`fleet trace`: an incident's trace as a waterfall in the terminal."""

from __future__ import annotations

from incidents.incident_trace import IncidentTrace, TraceSpan
from incidents.report_text import plain

BAR_WIDTH = 30
NAME_WIDTH = 52


def _bar(span: TraceSpan, start_ns: int, total_ns: int) -> str:
    """Where the span lies in the whole trace: a mark from its start to its end."""
    scale = BAR_WIDTH / max(total_ns, 1)
    left = min(BAR_WIDTH - 1, int((span.start_ns - start_ns) * scale))
    width = max(1, round((span.end_ns - span.start_ns) * scale))
    return (" " * left + "█" * width)[:BAR_WIDTH].ljust(BAR_WIDTH)


def _duration(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def render_waterfall(found: IncidentTrace, max_depth: int | None = None) -> str:
    start, total = found.start_ns, found.end_ns - found.start_ns
    lines = [
        f"trace {found.trace_id}  {found.incident_id}: {len(found.spans)} spans, "
        f"{_duration(found.duration_ms)}, {len(found.processes)} processes "
        f"({', '.join(found.processes)}), {found.errors} failed",
        "",
        f"{'offset':>9}  {'took':>9}  {'process':<18} {'span':<{NAME_WIDTH}} |{'':{BAR_WIDTH}}|",
    ]
    for span in found.spans:
        if max_depth is not None and span.depth > max_depth:
            continue
        name = "  " * span.depth + plain(span.name)
        extra = []
        if span.label:
            extra.append(plain(span.label))
        if span.heartbeats:
            extra.append(f"{span.heartbeats} heartbeat(s)")
        if span.failed:
            extra.append(f"FAILED {plain(span.error or '')}".strip())
        lines.append(
            f"{(span.start_ns - start) / 1e9:>7.2f} s  {_duration(span.duration_ms):>9}  "
            f"{span.service:<18} {name[:NAME_WIDTH]:<{NAME_WIDTH}} |{_bar(span, start, total)}|"
            + (f"  {'; '.join(extra)}" if extra else "")
        )
    if found.joined:
        lines += [
            "",
            f"{len(found.joined)} later alert(s) joined it, each in a trace of its own:",
        ]
        for span in found.joined:
            lines.append(
                f"{(span.start_ns - start) / 1e9:>7.2f} s  {_duration(span.duration_ms):>9}  "
                f"{span.service:<18} trace {span.trace_id}  {plain(span.label)}"
            )
    return "\n".join(lines)
