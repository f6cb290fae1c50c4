"""One remediation per resource at a time: a lease in the store, with an expiry and renewal.

Before its first call on a function the resolver takes the function's lease, and holds it
through verification (and a rollback) and the watch after it, renewing it as it goes; the
watch is a chain of delayed looks, each resuming the lease the one before handed over.
Another incident's resolver that wants the same function waits for it; a holder killed -9
stops renewing, and the function is free again when the lease runs out. Each holding has
its own token, so a holder that was presumed dead and comes back can neither renew nor
release a lease that has since passed to someone else: it finds out (`LeaseLost`) and
stops acting.

The watchdog reads the lease too: an incident whose resolver holds a live lease is being
worked on, however long verification takes; one whose lease ran out was abandoned.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from core.dynamodb import from_item, to_item
from incidents.tables import RESOURCE_LEASES

WAIT_POLL_S = 1.0


class LeaseLost(Exception):
    """The lease ran out and someone else took the resource: stop acting on it."""


class ResourceBusy(Exception):
    """Another incident holds the resource's lease for longer than the caller would wait."""

    def __init__(self, holding: Lease, waited_s: float):
        super().__init__(
            f"{holding.resource} is being remediated by {holding.holder} "
            f"(lease until {holding.expires_at:.0f}); waited {waited_s:.0f}s"
        )
        self.holding = holding


@dataclass(frozen=True)
class Lease:
    resource: str
    holder: str  # the incident acting on the resource
    token: str  # this holding: a renewal or release must present it
    expires_at: float  # epoch seconds

    def live(self, now: float) -> bool:
        return self.expires_at > now


class ResourceLeases:
    def __init__(
        self, dynamodb: Any, lease_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.ddb = dynamodb
        self.lease_s = lease_s
        self.clock = clock

    def current(self, resource: str) -> Lease | None:
        """The live lease on a resource, if anyone holds one."""
        item = self.ddb.get_item(
            TableName=RESOURCE_LEASES.name,
            Key=to_item({"resource": resource}),
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return None
        data = from_item(item)
        lease = Lease(
            resource=resource,
            holder=str(data["holder"]),
            token=str(data["token"]),
            expires_at=float(data["expires_at"]),
        )
        return lease if lease.live(self.clock()) else None

    def acquire(self, resource: str, holder: str) -> Lease | None:
        """The resource's lease for `holder`, unless a live lease is held (by anyone,
        the same incident's other delivery included: one holding at a time)."""
        now = self.clock()
        lease = Lease(resource, holder, uuid.uuid4().hex, now + self.lease_s)
        try:
            self.ddb.put_item(
                TableName=RESOURCE_LEASES.name,
                Item=to_item(
                    {
                        "resource": resource,
                        "holder": holder,
                        "token": lease.token,
                        "expires_at": lease.expires_at,
                        "acquired_at": now,
                    }
                ),
                ConditionExpression="attribute_not_exists(#r) OR expires_at < :now",
                ExpressionAttributeNames={"#r": "resource"},
                ExpressionAttributeValues=to_item({":now": now}),
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return None
        return lease

    def resume(self, resource: str, holder: str) -> Lease | None:
        """The lease `holder` kept between two steps of its work (the watch's looks, each a
        message of its own), renewed; or, if it ran out meanwhile, a new one. None when
        someone else holds it now."""
        holding = self.current(resource)
        if holding is not None and holding.holder == holder:
            with suppress(LeaseLost):  # ran out and taken in between: try to acquire
                return self.renew(holding)
        return self.acquire(resource, holder)

    def wait_for(self, resource: str, holder: str, wait_s: float) -> Lease:
        """Acquire, waiting up to `wait_s` for another holder to finish or to run out."""
        started = time.monotonic()
        while True:
            lease = self.acquire(resource, holder)
            if lease is not None:
                return lease
            waited = time.monotonic() - started
            if waited >= wait_s:
                holding = self.current(resource)
                if holding is None:
                    continue  # freed between the two reads
                raise ResourceBusy(holding, waited)
            time.sleep(WAIT_POLL_S)

    def renew(self, lease: Lease) -> Lease:
        """The same holding, for another `lease_s`. Raises LeaseLost if it is not ours any
        more (it ran out and was taken, or released)."""
        now = self.clock()
        renewed = replace(lease, expires_at=now + self.lease_s)
        try:
            self.ddb.update_item(
                TableName=RESOURCE_LEASES.name,
                Key=to_item({"resource": lease.resource}),
                UpdateExpression="SET expires_at = :until",
                ConditionExpression="#t = :token",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues=to_item(
                    {":until": renewed.expires_at, ":token": lease.token}
                ),
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            raise LeaseLost(
                f"the lease on {lease.resource} held for {lease.holder} passed to someone else"
            ) from None
        return renewed

    def release(self, lease: Lease) -> None:
        """Free the resource, if this holding still has it (else there is nothing of ours
        to free)."""
        with suppress(self.ddb.exceptions.ConditionalCheckFailedException):
            self.ddb.delete_item(
                TableName=RESOURCE_LEASES.name,
                Key=to_item({"resource": lease.resource}),
                ConditionExpression="#t = :token",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues=to_item({":token": lease.token}),
            )


class HeldLease:
    """A lease being held: `keep()` renews it once a third of it has passed, so a caller
    can call it on every step of a loop."""

    def __init__(self, leases: ResourceLeases, lease: Lease) -> None:
        self.leases = leases
        self.lease = lease
        self.handed_over = False

    def keep(self) -> None:
        remaining = self.lease.expires_at - self.leases.clock()
        if remaining < self.leases.lease_s * 2 / 3:
            self.lease = self.leases.renew(self.lease)

    def release(self) -> None:
        self.leases.release(self.lease)

    def hand_over(self) -> None:
        """Keep the lease past this holder's block: the next step of the same work, in
        another message, resumes it (`ResourceLeases.resume`). Renewed now, so it outlives
        the gap between the two."""
        self.lease = self.leases.renew(self.lease)
        self.handed_over = True


@contextmanager
def remediating(
    leases: ResourceLeases, resource: str, holder: str, wait_s: float
) -> Iterator[HeldLease]:
    """Hold the resource's lease for the block (waiting up to `wait_s` for it), released at
    the end however the block ends, unless handed over to the work's next step; a holder
    that dies leaves it to run out."""
    held = HeldLease(leases, leases.wait_for(resource, holder, wait_s))
    try:
        yield held
    finally:
        if not held.handed_over:
            held.release()
