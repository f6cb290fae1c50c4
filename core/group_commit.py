"""Group commit: callers that write under the same key while a write is under way join the
next write, instead of each making its own.

The first caller of a key becomes its writer: it writes what is pending (its own item at
least), then whatever arrived meanwhile, until nothing is left, and hands each caller its
own result. Under load the batches grow by themselves (a database's classic group commit).
The writer may linger before each write while callers keep arriving (each within
`linger_s` of the one before, as a producer's linger.ms), until as many have as may come
together: callers that start together, such as the handlers of one received batch, then
share one write instead of the first writing alone. A write that raises raises in every
caller whose item it held; each caller decides what that means for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Batch(Generic[T, R]):
    enough: int  # callers that may come together: no lingering once this many have
    items: list[T] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    results: list[R] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommit(Generic[K, T, R]):
    def __init__(
        self, write: Callable[[K, list[T]], list[R]], max_batch: int, linger_s: float = 0.0
    ):
        """`write(key, items)` writes items of one key together and returns one result per
        item, in order; at most `max_batch` items at a time. Before each write, the writer
        waits for more callers while each comes within `linger_s` of the last, until the
        batch holds as many as may come together (`submit`'s `expected`) or is full."""
        self.write = write
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.pending: dict[K, list[_Batch[T, R]]] = {}
        self.writing: set[K] = set()

    def submit(self, key: K, item: T, expected: int | None = None) -> R:
        """Write `item` with whatever else of `key` joins it; its own result. `expected`:
        how many callers of this key may come together (a writer lingers no longer once
        they have all arrived)."""
        with self.lock:
            batches = self.pending.setdefault(key, [])
            if not batches or len(batches[-1].items) >= self.max_batch:
                batches.append(_Batch(min(self.max_batch, expected or self.max_batch)))
            batch = batches[-1]
            batch.items.append(item)
            position = len(batch.items) - 1
            leading = key not in self.writing
            if leading:
                self.writing.add(key)
            else:
                self.arrived.notify_all()
        if leading:
            self._write_all(key)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[position]

    def _linger(self, batch: _Batch[T, R]) -> None:
        """Wait (the lock held, released while waiting) while callers keep joining, until
        enough have."""
        if self.linger_s <= 0:
            return
        joined = len(batch.items)
        while joined < batch.enough:
            self.arrived.wait(self.linger_s)
            if len(batch.items) == joined:
                return  # nobody came within linger_s
            joined = len(batch.items)

    def _write_all(self, key: K) -> None:
        while True:
            with self.lock:
                batches = self.pending.get(key, [])
                if not batches:
                    self.pending.pop(key, None)
                    self.writing.discard(key)
                    return
                self._linger(batches[0])
                batch = batches.pop(0)
            try:
                batch.results = self.write(key, batch.items)
                if len(batch.results) != len(batch.items):
                    raise RuntimeError(
                        f"a group write returned {len(batch.results)} results "
                        f"for {len(batch.items)} items"
                    )
            except BaseException as exc:  # every caller of this batch sees its failure
                batch.error = exc
            batch.done.set()
