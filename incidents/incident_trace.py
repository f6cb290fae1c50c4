"""An incident's trace as a waterfall, read from the local trace files (core/tracing.py):
what `fleet trace` prints and the console's incident page draws.

The incident's trace is the one its first alert started (the trace the storm's later
alerts link to); every span of it is shown, in order of start, each under its parent
within its process (a message's processing starts a stage's work at the left). Alerts that
joined the incident in traces of their own are listed beside it, by their processing span.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.tracing import INCIDENT_ID

# The span a message's processing is (queues/tracing.py names it "process <queue>").
PROCESS_PREFIX = "process "


@dataclass(frozen=True)
class TraceSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    error: str | None
    attributes: dict[str, Any]
    heartbeats: int
    moves: list[str]  # the incident's status moves this span made ("A -> B")
    links: list[dict[str, Any]]
    depth: int = 0

    @classmethod
    def of(cls, record: dict[str, Any]) -> TraceSpan:
        return cls(
            trace_id=record["trace_id"],
            span_id=record["span_id"],
            parent_id=record.get("parent_id"),
            name=record["name"],
            service=str(record.get("service", "")).removeprefix("fleet-"),
            kind=record.get("kind", "INTERNAL"),
            start_ns=int(record["start_ns"]),
            end_ns=int(record["end_ns"]),
            status=record.get("status", "UNSET"),
            error=record.get("error"),
            attributes=record.get("attributes", {}),
            heartbeats=sum(1 for e in record.get("events", []) if e.get("name") == "heartbeat"),
            moves=[
                f"{e['attributes'].get('from')} -> {e['attributes'].get('to')}"
                for e in record.get("events", [])
                if e.get("name") == "incident.status"
            ],
            links=record.get("links", []),
        )

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"

    @property
    def label(self) -> str:
        """What the span did, beyond its name: the event a message carried, the outcome."""
        a = self.attributes
        parts = [str(a[k]) for k in ("fleet.event_type", "fleet.outcome") if k in a]
        parts += [f"[{move}]" for move in self.moves]
        if "gen_ai.usage.input_tokens" in a:
            parts.append(
                f"{a['gen_ai.usage.input_tokens']}+{a.get('gen_ai.usage.output_tokens', 0)} tokens"
            )
        return " ".join(parts)

    def row(self, start_ns: int) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "depth": self.depth,
            "name": self.name,
            "process": self.service,
            "kind": self.kind,
            "offset_ms": round((self.start_ns - start_ns) / 1e6, 1),
            "duration_ms": round(self.duration_ms, 1),
            "status": self.status,
            "error": self.error,
            "label": self.label,
            "heartbeats": self.heartbeats,
            "status_moves": self.moves,
            "attributes": self.attributes,
            "links": self.links,
        }


@dataclass
class IncidentTrace:
    incident_id: str
    trace_id: str | None
    spans: list[TraceSpan] = field(default_factory=list)  # waterfall order
    joined: list[TraceSpan] = field(default_factory=list)  # alerts in traces of their own

    @property
    def start_ns(self) -> int:
        return min((s.start_ns for s in self.spans), default=0)

    @property
    def end_ns(self) -> int:
        return max((s.end_ns for s in self.spans), default=0)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def processes(self) -> list[str]:
        return sorted({s.service for s in self.spans})

    @property
    def errors(self) -> int:
        return sum(1 for s in self.spans if s.failed)

    def as_json(self) -> dict[str, Any]:
        start = self.start_ns
        return {
            "incident_id": self.incident_id,
            "trace_id": self.trace_id,
            "duration_ms": round(self.duration_ms, 1),
            "processes": self.processes,
            "errors": self.errors,
            "spans": [s.row(start) for s in self.spans],
            "joined_alerts": [s.row(start) for s in self.joined],
        }


def _records(trace_dir: Path, incident_id: str) -> Iterator[dict[str, Any]]:
    """Every span line that names the incident (a cheap text test first: the files hold
    every process's spans)."""
    for path in sorted(trace_dir.glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if incident_id in line:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a process killed mid-write


def load_incident_trace(trace_dir: Path, incident_id: str) -> IncidentTrace:
    spans = [
        s
        for s in map(TraceSpan.of, _records(trace_dir, incident_id))
        if s.attributes.get(INCIDENT_ID) == incident_id
    ]
    if not spans:
        return IncidentTrace(incident_id, None)
    linked = Counter(link["trace_id"] for s in spans for link in s.links)
    sizes = Counter(s.trace_id for s in spans)
    # The trace the joined alerts link to; with none linked, the one with the most work.
    trace_id = (linked or sizes).most_common(1)[0][0]
    own = [s for s in spans if s.trace_id == trace_id]
    joined = [
        s
        for s in spans
        if s.trace_id != trace_id and s.parent_id is None and s.name.startswith(PROCESS_PREFIX)
    ]
    return IncidentTrace(
        incident_id, trace_id, _waterfall(own), sorted(joined, key=lambda s: s.start_ns)
    )


def _waterfall(spans: list[TraceSpan]) -> list[TraceSpan]:
    """In order of start, each span one level under its parent, except a message's
    processing (a consumer span), which is a stage's work and starts again at the left:
    else every hop would push the next stage further right."""
    by_id = {s.span_id: s for s in spans}
    depth: dict[str, int] = {}

    def depth_of(span: TraceSpan) -> int:
        if span.span_id not in depth:
            parent = by_id.get(span.parent_id or "")
            if span.kind == "CONSUMER" or parent is None:
                depth[span.span_id] = 0
            else:
                depth[span.span_id] = depth_of(parent) + 1
        return depth[span.span_id]

    ordered = sorted(spans, key=lambda s: (s.start_ns, depth_of(s)))
    return [TraceSpan(**{**s.__dict__, "depth": depth_of(s)}) for s in ordered]
