"""The shared bucket in tests: a store held in the test's own process, for unit tests (the
integration tests use the rate-limits table in the emulator), with the same conditional
write on the version, so races between threads are lost and retried as they are against
DynamoDB; and takers racing on a bucket."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

from core.settings import Settings
from core.shared_bucket import BucketState, Reservation, SharedTokenBucket
from workers.agents.model_quota import MODEL_CALLS, model_quotas


class MemoryBucketStore:
    def __init__(self, round_trip_s: float = 0.0) -> None:
        """`round_trip_s`: how long a read takes to come back (a network's), which leaves
        other writers time to get in between a read and the write after it."""
        self.items: dict[str, BucketState] = {}
        self.lock = threading.Lock()
        self.round_trip_s = round_trip_s
        self.writes = 0
        self.lost = 0  # writes refused because another writer got there first
        self.reads = 0

    def load(self, name: str) -> BucketState | None:
        with self.lock:
            self.reads += 1
            found = self.items.get(name)
        if self.round_trip_s:
            time.sleep(self.round_trip_s)
        return found

    def save(self, name: str, state: BucketState, expected_version: int | None) -> bool:
        with self.lock:
            current = self.items.get(name)
            if (current.version if current else None) != expected_version:
                self.lost += 1
                return False
            self.items[name] = state
            self.writes += 1
            return True


def model_quota_in_memory(settings: Settings | None = None) -> SharedTokenBucket:
    """The fleet's model bucket as `settings` size it (the defaults: roomy), kept here."""
    quotas = model_quotas(settings or Settings())
    return SharedTokenBucket(MemoryBucketStore(), MODEL_CALLS, quotas)


def race(
    buckets: Sequence[SharedTokenBucket],
    amounts: Mapping[str, float],
    takers: int,
    seconds: float,
) -> tuple[list[Reservation], float]:
    """`takers` threads taking `amounts` as fast as they can for `seconds`, each through
    one of `buckets` in turn (clients of one bucket): what they were granted, and how long
    it took."""
    granted: list[Reservation] = []
    lock = threading.Lock()
    started = time.time()

    def taker(n: int) -> None:
        shared, i = buckets[n % len(buckets)], 0
        while time.time() < started + seconds:
            got = shared.try_take(amounts, f"t{n}-{i}", 300)
            i += 1
            if isinstance(got, Reservation):
                with lock:
                    granted.append(got)

    threads = [threading.Thread(target=taker, args=(n,)) for n in range(takers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return granted, time.time() - started
