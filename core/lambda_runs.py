"""A Lambda function's runs as its log group tells them, within seconds of each run.

Lambda writes `START RequestId: …` when a run begins, then the handler's lines, an error
record if the run failed (`{"errorType": …}`, or `<time> <id> Task timed out after N.NN
seconds`), then `END` and `REPORT RequestId: …` when it ends. That is the only evidence
finer than a metric period that AWS gives about a run. A throttled invocation never
starts, so it writes nothing at all: it shows only in the Throttles metric.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

START = re.compile(r"^START RequestId: (?P<id>\S+)(?: Version: (?P<version>\S+))?")
REPORT = re.compile(r"^REPORT RequestId: (?P<id>\S+)\tDuration: (?P<ms>[0-9.]+) ms")
TIMED_OUT = re.compile(r"^\S+ (?P<id>\S+) (?P<text>Task timed out after [0-9.]+ seconds)")


class Run(BaseModel):
    """One invocation: from its START line to its REPORT line."""

    request_id: str
    stream: str
    started_ms: int
    ended_ms: int | None = None  # the REPORT line's time; None while it runs (or if lost)
    duration_ms: float | None = None
    error: str | None = None  # "KeyError: 'x'", "Task timed out after 1.00 seconds"
    version: str | None = None  # the executed version START names ("$LATEST", "3")

    @property
    def finished(self) -> bool:
        return self.ended_ms is not None

    @property
    def clean(self) -> bool:
        return self.finished and self.error is None


def log_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def _error_record(message: str) -> str | None:
    """The runtime's JSON error record of a failed run, as `Type: message`."""
    if not message.startswith('{"errorType"'):
        return None
    try:
        record = json.loads(message)
    except ValueError:
        return None
    return f"{record.get('errorType')}: {record.get('errorMessage')}"


def parse_runs(events: Iterable[Mapping[str, Any]]) -> list[Run]:
    """Runs from FilterLogEvents' events, oldest first. Lines outside a START…REPORT pair
    (a run begun before the window, the handler's own audit stream) belong to no run."""
    by_stream: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_stream.setdefault(str(event.get("logStreamName", "")), []).append(event)
    runs: list[Run] = []
    for stream, stream_events in by_stream.items():
        open_run: Run | None = None
        for event in sorted(stream_events, key=lambda e: int(e["timestamp"])):
            message = str(event["message"]).rstrip("\n")
            if match := START.match(message):
                open_run = Run(
                    request_id=match["id"],
                    stream=stream,
                    started_ms=int(event["timestamp"]),
                    version=match["version"],
                )
                runs.append(open_run)
                continue
            if open_run is None:
                continue
            if match := REPORT.match(message):
                if match["id"] == open_run.request_id:
                    open_run.ended_ms = int(event["timestamp"])
                    open_run.duration_ms = float(match["ms"])
                    if "Status: timeout" in message and open_run.error is None:
                        open_run.error = "Task timed out"
                open_run = None
            elif (match := TIMED_OUT.match(message)) and match["id"] == open_run.request_id:
                open_run.error = match["text"]
            elif (error := _error_record(message)) is not None:
                open_run.error = error
    return sorted(runs, key=lambda r: r.started_ms)


def read_runs(logs: Any, function_name: str, since_ms: int) -> list[Run]:
    """The runs of a function that started at or after `since_ms`, oldest first."""
    events: list[Mapping[str, Any]] = []
    paginator = logs.get_paginator("filter_log_events")
    for page in paginator.paginate(logGroupName=log_group(function_name), startTime=since_ms):
        events.extend(page["events"])
    return [r for r in parse_runs(events) if r.started_ms >= since_ms]
