"""A token bucket that any number of processes share: one DynamoDB item, changed only by
conditional writes on its version, so together they never take more than it holds and no
update is lost (a write that lost a race reads the item again and starts over).

Each dimension of a bucket (requests, tokens, ...) fills continuously from a per-minute
quota. A bucket that held a whole minute's quota and refilled at the quota's rate would let
a minute see twice the quota (a full bucket spent at once, then a minute of refill). This
one holds a share of the quota (`Quota.burst`) and refills at the rest over a minute, so no
60-second window ever sees more than the quota, and a burst still goes through at once.

A take is a reservation: it is held until its taker settles it with what it actually used,
and the difference comes back (a model call reserves its input and the most it may write,
as Bedrock itself does, and gives back what it did not write). What is held also lowers how
full the bucket may get, so that what comes back cannot lift a minute past the quota. A
reservation its taker never settles (the process died) lapses after its hold, counted as
used in full.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from core.aws_retry import call
from core.dynamodb import TableSpec, from_item, to_item
from core.errors import FleetError

# One item per shared bucket, by its name.
RATE_LIMITS = TableSpec(name="rate-limits", hash_key="bucket")
# A waiter looks again at least this often: what a settled call gives back is seen within it.
POLL_S = 1.0
# A write that lost a race is tried again at once, up to this many times, before the caller
# waits a little: under that much contention, a pause spreads the writers out.
RACES = 8


class NoRoom(FleetError):
    """The bucket had no room for a take within the time the taker would wait."""

    def __init__(self, bucket: str, amounts: Mapping[str, float], waited_s: float):
        wanted = ", ".join(f"{amount:g} {name}" for name, amount in amounts.items())
        super().__init__(
            f"the shared bucket {bucket!r} had no room for {wanted} within {waited_s:g} s"
        )
        self.bucket = bucket
        self.waited_s = waited_s


@dataclass(frozen=True)
class Quota:
    """A quota per minute, and the share of it that may go at once (the bucket's size).
    `settled`: a take of it is an estimate, held until its taker says what it used (tokens);
    otherwise a take is used as taken (requests)."""

    per_minute: float
    burst: float
    settled: bool = False

    def __post_init__(self) -> None:
        if self.per_minute <= 0 or not 0 < self.burst < 1:
            raise ValueError(f"a quota needs per_minute > 0 and 0 < burst < 1, not {self}")

    @property
    def capacity(self) -> float:
        return self.per_minute * self.burst

    @property
    def refill_per_s(self) -> float:
        return self.per_minute * (1 - self.burst) / 60


@dataclass(frozen=True)
class Reservation:
    bucket: str
    id: str
    amounts: dict[str, float]


@dataclass(frozen=True)
class Held:
    amounts: dict[str, float]
    until: float  # epoch seconds: unsettled by then, it lapses (counted as used)


@dataclass(frozen=True)
class BucketState:
    """What a bucket holds (`levels`, per dimension) as of `at`, what is reserved and not
    settled yet (`held`, by reservation id), and the version its next write must find."""

    levels: dict[str, float]
    held: dict[str, Held]
    at: float
    version: int


class BucketStore(Protocol):
    def load(self, name: str) -> BucketState | None: ...

    def save(self, name: str, state: BucketState, expected_version: int | None) -> bool:
        """Write `state` if the stored version is still `expected_version` (None: no item
        yet); False if another writer got there first."""
        ...


def _floats(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


class DynamoBucketStore:
    """Buckets as items of the `rate-limits` table, written on condition of their version."""

    def __init__(self, dynamodb: Any):
        self.ddb = dynamodb

    def load(self, name: str) -> BucketState | None:
        got = call(
            self.ddb.get_item,
            TableName=RATE_LIMITS.name,
            Key=to_item({"bucket": name}),
            ConsistentRead=True,
        ).get("Item")
        if not got:
            return None
        item = from_item(got)
        held = {
            rid: Held(_floats(h["amounts"]), float(h["until"])) for rid, h in item["held"].items()
        }
        return BucketState(_floats(item["levels"]), held, float(item["at"]), int(item["version"]))

    def save(self, name: str, state: BucketState, expected_version: int | None) -> bool:
        item = {
            "bucket": name,
            "levels": state.levels,
            "held": {
                rid: {"amounts": h.amounts, "until": h.until} for rid, h in state.held.items()
            },
            "at": state.at,
            "version": state.version,
        }
        condition: dict[str, Any] = (
            {
                "ConditionExpression": "attribute_not_exists(#b)",
                "ExpressionAttributeNames": {"#b": "bucket"},
            }
            if expected_version is None
            else {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": to_item({":v": expected_version}),
            }
        )
        try:
            call(self.ddb.put_item, TableName=RATE_LIMITS.name, Item=to_item(item), **condition)
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True


class SharedTokenBucket:
    def __init__(
        self,
        store: BucketStore,
        name: str,
        quotas: Mapping[str, Quota],
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.name = name
        self.quotas = dict(quotas)
        self.clock = clock
        # The bucket as this client last read or wrote it. The next write starts from it
        # instead of reading the item again: a write is conditional on the version it
        # starts from, so a state another client has changed since only costs a write
        # that loses (and a read), never an update lost. A process whose takes and
        # settlements follow one another alone then spends one request on each, not two.
        self._last: BucketState | None = None

    def _refilled(self, stored: BucketState | None, now: float) -> BucketState:
        """The bucket as of `now`: a new one starts full; lapsed reservations are dropped
        (counted as used); each level refills at its rate, up to its capacity less what is
        held."""
        if stored is None:
            return BucketState({d: q.capacity for d, q in self.quotas.items()}, {}, now, 0)
        held = {rid: h for rid, h in stored.held.items() if h.until > now}
        # Another host's clock may run a little ahead: time never goes back, so no stretch
        # of it refills twice.
        now = max(now, stored.at)
        elapsed = now - stored.at
        levels = {}
        for dim, quota in self.quotas.items():
            room = quota.capacity - sum(h.amounts.get(dim, 0.0) for h in held.values())
            level = stored.levels.get(dim, quota.capacity)
            levels[dim] = min(room, level + quota.refill_per_s * elapsed)
        return BucketState(levels, held, now, stored.version)

    def _stored(self) -> BucketState | None:
        """The state to start a write from: the last this client saw, or a fresh read."""
        if self._last is None:
            self._last = self.store.load(self.name)
        return self._last

    def _save(self, state: BucketState, expected_version: int | None) -> bool:
        # Lost (another client wrote since) or failed: the next try reads the bucket again.
        self._last = None
        saved = self.store.save(self.name, state, expected_version)
        if saved:
            self._last = state
        return saved

    def fits(self, amounts: Mapping[str, float]) -> None:
        """ValueError, saying why, if the bucket could never hold `amounts` at once."""
        for dim, amount in amounts.items():
            quota = self.quotas.get(dim)
            if quota is None:
                raise ValueError(
                    f"the bucket {self.name!r} has no {dim!r} (it has {list(self.quotas)})"
                )
            if amount > quota.capacity:
                raise ValueError(
                    f"{amount:g} {dim} can never fit the bucket {self.name!r}, which holds "
                    f"{quota.capacity:g} ({quota.burst:g} of {quota.per_minute:g} a minute)"
                )

    def try_take(
        self, amounts: Mapping[str, float], reservation_id: str, hold_s: float
    ) -> Reservation | float:
        """Reserve `amounts` now if the bucket has them: the reservation; else how many
        seconds until it might (refill alone; a settlement may free room sooner)."""
        self.fits(amounts)
        for _ in range(RACES):
            now = self.clock()
            remembered = self._last is not None
            stored = self._stored()
            if stored is not None and reservation_id in stored.held:
                # Ours already: a write that answered with an error had landed.
                return Reservation(self.name, reservation_id, dict(amounts))
            state = self._refilled(stored, now)
            short = [
                (amount - state.levels[dim]) / self.quotas[dim].refill_per_s
                for dim, amount in amounts.items()
                if amount > state.levels[dim]
            ]
            if short and remembered:
                # Another client may have given back since: no room is only said on a read.
                self._last = None
                continue
            if short:
                return max(short)
            levels = {d: v - amounts.get(d, 0.0) for d, v in state.levels.items()}
            settled = {d: a for d, a in amounts.items() if self.quotas[d].settled}
            held = {**state.held, reservation_id: Held(settled, now + hold_s)}
            written = replace(state, levels=levels, held=held, version=state.version + 1)
            if self._save(written, None if stored is None else stored.version):
                return Reservation(self.name, reservation_id, dict(amounts))
        return 0.0  # lost every race: look again after a pause

    def settle(self, reservation: Reservation, used: Mapping[str, float]) -> None:
        """Give back what the reservation held of a settled quota beyond what was `used`
        (or take the excess, if more was used than reserved). A lapsed reservation was
        counted as used in full: only an excess is taken then."""
        for _ in range(RACES * 4):
            now = self.clock()
            stored = self._stored()
            if stored is None:
                return  # the bucket was deleted: nothing to give back to
            state = self._refilled(stored, now)
            live = reservation.id in state.held
            levels = dict(state.levels)
            for dim, reserved in reservation.amounts.items():
                spent = used.get(dim, reserved)
                if live and self.quotas[dim].settled:
                    levels[dim] += reserved - spent
                else:  # used as taken (or lapsed): only an excess is taken
                    levels[dim] -= max(0.0, spent - reserved)
            held = {rid: h for rid, h in state.held.items() if rid != reservation.id}
            written = replace(state, levels=levels, held=held, version=state.version + 1)
            if self._save(written, stored.version):
                return
            time.sleep(random.uniform(0, 0.02))
        raise RuntimeError(
            f"could not settle {reservation.id} in the bucket {self.name!r}: every write lost "
            f"a race; it lapses after its hold, counted as used"
        )

    def _pause(
        self, wanted_s: float, deadline: float, amounts: Mapping[str, float], wait_s: float
    ) -> float:
        """How long to sleep before looking again: until the refill may suffice, at most a
        poll, with jitter so that waiters do not all look at once; NoRoom past the deadline."""
        left = deadline - self.clock()
        if left <= 0:
            raise NoRoom(self.name, amounts, wait_s)
        return min(left, min(max(wanted_s, 0.05), POLL_S) * random.uniform(1.0, 1.25))

    def take(
        self, amounts: Mapping[str, float], reservation_id: str, hold_s: float, wait_s: float
    ) -> Reservation:
        """Reserve `amounts`, waiting up to `wait_s` for room; NoRoom if none came."""
        deadline = self.clock() + wait_s
        while True:
            got = self.try_take(amounts, reservation_id, hold_s)
            if isinstance(got, Reservation):
                return got
            time.sleep(self._pause(got, deadline, amounts, wait_s))

    async def atake(
        self, amounts: Mapping[str, float], reservation_id: str, hold_s: float, wait_s: float
    ) -> Reservation:
        """`take` for a coroutine: the event loop runs on while it waits."""
        deadline = self.clock() + wait_s
        while True:
            got = await asyncio.to_thread(self.try_take, amounts, reservation_id, hold_s)
            if isinstance(got, Reservation):
                return got
            await asyncio.sleep(self._pause(got, deadline, amounts, wait_s))
