"""Group commit: callers that write under the same key while a write is under way join the
next write, instead of each making its own.

The first caller of a key becomes its writer: it writes what is pending (its own item at
least), then whatever arrived meanwhile, until nothing is left, and hands each caller its
own result. Nobody waits for a batch to fill: a lone caller writes at once, and under load
the batches grow by themselves (a database's classic group commit). A write that raises
raises in every caller whose item it held; each caller decides what that means for it.
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
    items: list[T] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    results: list[R] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommit(Generic[K, T, R]):
    def __init__(self, write: Callable[[K, list[T]], list[R]], max_batch: int):
        """`write(key, items)` writes items of one key together and returns one result per
        item, in order; at most `max_batch` items at a time."""
        self.write = write
        self.max_batch = max_batch
        self.lock = threading.Lock()
        self.pending: dict[K, list[_Batch[T, R]]] = {}
        self.writing: set[K] = set()

    def submit(self, key: K, item: T) -> R:
        with self.lock:
            batches = self.pending.setdefault(key, [])
            if not batches or len(batches[-1].items) >= self.max_batch:
                batches.append(_Batch())
            batch = batches[-1]
            batch.items.append(item)
            position = len(batch.items) - 1
            leading = key not in self.writing
            if leading:
                self.writing.add(key)
        if leading:
            self._write_all(key)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[position]

    def _write_all(self, key: K) -> None:
        while True:
            with self.lock:
                batches = self.pending.get(key, [])
                if not batches:
                    self.pending.pop(key, None)
                    self.writing.discard(key)
                    return
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
