"""Every AWS request this process sends, counted by service and operation.

Each attempt counts, retries included: that is what AWS meters, bills and throttles, and
what no machine's speed changes (`make bench` reports it per message and per alert beside
the seconds). botocore emits `request-created.<service>.<Operation>` once per attempt; every
client made by `core.aws.client` is registered here.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

# A process's counter reporting itself (the runtime's metrics flush) is not its work.
SELF_REPORTING = frozenset({("cloudwatch", "PutMetricData")})


class RequestCounter:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def on_request_created(self, event_name: str, **_kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            self._counts[(service, operation)] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)


def sent_between(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> int:
    """Requests sent between two snapshots, the self-reporting ones left out."""
    return sum(after[key] - before.get(key, 0) for key in after if key not in SELF_REPORTING)


REQUESTS = RequestCounter()


def count_requests(client: Any) -> Any:
    client.meta.events.register("request-created", REQUESTS.on_request_created)
    return client
