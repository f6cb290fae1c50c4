"""Each queue's and DLQ's depth over the last minutes, for the queues page's charts.

SQS keeps no history a console can read at this grain (CloudWatch's AWS/SQS metrics are a
minute apart, and the emulator has none): the console samples the depths itself, every
`interval_s`, from a thread of its own, and keeps `window_s` of them in memory. A console
just started shows a short chart that grows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import structlog

from core.aws import Clients
from core.tracing import untraced
from queues.topology import TopologySpec

log = structlog.get_logger()


class DepthHistory:
    def __init__(
        self, clients: Clients, topology: TopologySpec, interval_s: float, window_s: float
    ):
        self.sqs: Any = clients("sqs")
        self.topology = topology
        self.interval_s = interval_s
        self.samples: deque[tuple[str, dict[str, tuple[int, int]]]] = deque(
            maxlen=max(2, int(window_s / interval_s))
        )
        self.lock = threading.Lock()
        self.urls: dict[str, str] = {}
        self.stopped = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="depth-history", daemon=True).start()

    def _run(self) -> None:
        untraced()  # sampling is no incident's work
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except Exception as exc:  # AWS away: a gap in the chart, not a dead console
                log.warning("could not sample queue depths", error=str(exc)[:200])
            self.stopped.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _depth(self, name: str, *fields: str) -> int:
        if name not in self.urls:
            self.urls[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.urls[name], AttributeNames=list(fields)
        )["Attributes"]
        return sum(int(attributes[f]) for f in fields)

    def sample(self) -> None:
        """One sample: each queue's messages (visible and in flight), and its DLQ's."""
        depths = {
            q.name: (
                self._depth(
                    q.name, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
                ),
                self._depth(q.dlq_name, "ApproximateNumberOfMessages"),
            )
            for q in self.topology.queues
        }
        at = datetime.now(UTC).isoformat(timespec="seconds")
        with self.lock:
            self.samples.append((at, depths))

    def series(self) -> dict[str, Any]:
        """{"at": [times], "queues": {queue: {"depth": [...], "dlq": [...]}}}, oldest first."""
        with self.lock:
            samples = list(self.samples)
        names = [q.name for q in self.topology.queues]
        return {
            "at": [at for at, _ in samples],
            "queues": {
                n: {
                    "depth": [d.get(n, (0, 0))[0] for _, d in samples],
                    "dlq": [d.get(n, (0, 0))[1] for _, d in samples],
                }
                for n in names
            },
        }
