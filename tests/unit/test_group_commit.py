"""Group commit: callers of one key that arrive while a write is under way share the next."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.group_commit import GroupCommit


class Writes:
    """Records each write; the first one waits until the test lets it go, so the callers
    that arrive meanwhile pile up behind it."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        self.fail_on = fail_on

    def __call__(self, key: str, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release_first.wait(10)
        if self.fail_on in items:
            raise RuntimeError(f"write of {items} failed")
        return [f"{key}:{item}" for item in items]


def _pile_up(writes: Writes, group: GroupCommit[str, str, str], items: list[str]) -> list[object]:
    """The first item starts a write; the others arrive while it runs; then it finishes."""
    with ThreadPoolExecutor(len(items)) as pool:
        first = pool.submit(group.submit, "k", items[0])
        assert writes.first_started.wait(10)
        rest = [pool.submit(group.submit, "k", item) for item in items[1:]]
        while sum(len(b.items) for b in group.pending.get("k", [])) < len(items) - 1:
            threading.Event().wait(0.001)  # until every caller is queued (no fixed sleep)
        writes.release_first.set()
        outcomes: list[object] = []
        for future in [first, *rest]:
            try:
                outcomes.append(future.result(10))
            except RuntimeError as exc:
                outcomes.append(exc)
        return outcomes


def test_callers_that_arrive_during_a_write_share_the_next_and_get_their_own_results() -> None:
    writes = Writes()
    group: GroupCommit[str, str, str] = GroupCommit(writes, max_batch=3)
    outcomes = _pile_up(writes, group, ["a", "b", "c", "d", "e", "f"])
    assert outcomes == [f"k:{x}" for x in "abcdef"]
    # The first alone, then the five that waited: three and two (at most three a write).
    assert writes.batches == [["a"], ["b", "c", "d"], ["e", "f"]]
    assert group.pending == {} and group.writing == set()


def test_a_failed_write_fails_its_own_callers_only() -> None:
    writes = Writes(fail_on="c")
    group: GroupCommit[str, str, str] = GroupCommit(writes, max_batch=2)
    outcomes = _pile_up(writes, group, ["a", "b", "c", "d", "e"])
    assert outcomes[:1] == ["k:a"] and outcomes[3:] == ["k:d", "k:e"]
    assert all(isinstance(o, RuntimeError) for o in outcomes[1:3])  # b and c wrote together


def test_a_lone_caller_writes_at_once() -> None:
    group: GroupCommit[str, str, int] = GroupCommit(lambda _k, items: [len(items)], max_batch=10)
    assert group.submit("k", "x") == 1


def test_a_write_that_answers_for_the_wrong_number_of_items_is_an_error() -> None:
    group: GroupCommit[str, str, int] = GroupCommit(lambda _k, _items: [], max_batch=10)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        group.submit("k", "x")


def _together(group: GroupCommit[str, str, str], items: str, expected: int | None) -> list[str]:
    """Every item submitted at once (a barrier), as the handlers of one received batch."""
    start = threading.Barrier(len(items))

    def caller(item: str) -> str:
        start.wait(10)
        return group.submit("k", item, expected)

    with ThreadPoolExecutor(len(items)) as pool:
        return [f.result(20) for f in [pool.submit(caller, x) for x in items]]


def test_callers_that_start_together_share_the_first_write_when_it_lingers() -> None:
    writes = Writes()
    writes.release_first.set()
    group: GroupCommit[str, str, str] = GroupCommit(writes, max_batch=4, linger_s=30)
    # One write of all four: the writer waited for the others, and stopped once its batch
    # was full rather than after its (half a minute's) linger.
    assert _together(group, "abcd", None) == [f"k:{x}" for x in "abcd"]
    assert [sorted(b) for b in writes.batches] == [["a", "b", "c", "d"]]


def test_a_lingering_writer_writes_once_nobody_else_comes() -> None:
    group: GroupCommit[str, str, int] = GroupCommit(
        lambda _k, items: [len(items)] * len(items), max_batch=10, linger_s=0.01
    )
    assert group.submit("k", "x") == 1


def test_a_writer_lingers_no_longer_once_every_expected_caller_has_come() -> None:
    writes = Writes()
    writes.release_first.set()
    group: GroupCommit[str, str, str] = GroupCommit(writes, max_batch=10, linger_s=30)
    # Three received together: one write of the three, well before the half minute a
    # lone linger could take.
    assert _together(group, "abc", 3) == [f"k:{x}" for x in "abc"]
    assert [sorted(b) for b in writes.batches] == [["a", "b", "c"]]
