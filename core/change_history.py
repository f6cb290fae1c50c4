"""Who changed a function, its role or its network, and when: read from CloudTrail's event
history (``LookupEvents``), on AWS and in the embedded world alike.

A drift says what differs from the baseline; the trail says who made it. The account's
writes over a window are read, and those naming the function, its execution role or its
security groups kept; each change is told as made by a person (or anything else) or by the
fleet itself (its workers and servers, under their own identities). LookupEvents
answers 2 requests a second per account and Region, so its client is paced to that
(:func:`trail_client`); events appear minutes after a call on AWS, so an empty answer says
when it was asked.
https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import BaseModel, computed_field

from core.aws import Clients, client
from core.aws_errors import error_code
from core.principals import Principal

# The fleet's own identities: what they change is the fleet's doing (a fix, a rollback).
FLEET_USERS = frozenset(
    p.user_name
    for p in (
        Principal.SUPERVISOR,
        Principal.RESOLVER,
        Principal.CRITIC,
        Principal.WATCHDOG,
        Principal.MCP_SUPERVISOR,
        Principal.MCP_RESOLVER,
    )
)
# AWS answers 2 LookupEvents a second per account and Region, whoever asks: botocore's
# adaptive retries pace this client to what it is allowed (a client-side token bucket that
# learns from each ThrottlingException), with room to wait out other readers.
TRAIL_RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 10})
MAX_PAGES = 10  # 500 writes of the account, newest first


def trail_client(clients: Clients) -> Any:
    """A CloudTrail client of `clients`' principal, paced to LookupEvents' limit."""
    return client(clients.session, "cloudtrail", clients.settings, TRAIL_RETRIES)


class Change(BaseModel, frozen=True):
    at: datetime
    event: str  # CloudTrail's eventName, e.g. UpdateFunctionConfiguration20150331v2
    source: str  # e.g. lambda.amazonaws.com
    resource: str  # the name it was looked up by
    who: str  # e.g. "IAMUser fleet-operator", "AssumedRole ops-role/alice"
    who_arn: str | None
    by_fleet: bool
    error: str | None = None  # the call was refused (or failed): nothing changed

    def line(self) -> str:
        refused = f", refused ({self.error})" if self.error else ""
        return (
            f"{self.event} on {self.resource} by {self.who} at "
            f"{self.at.strftime('%Y-%m-%dT%H:%M:%SZ')}{refused}"
        )


class ChangeHistory(BaseModel):
    looked_up: list[str]  # the resource names asked about
    start: datetime
    end: datetime | None
    changes: list[Change]  # oldest first
    unseen: str | None = None  # why the trail could not be read, if it could not

    @computed_field  # type: ignore[prop-decorator]
    @property
    def told(self) -> list[str]:
        """Each change in a line, as a report and a diagnosis quote it."""
        return [c.line() for c in self.changes]

    def by_others(self) -> list[Change]:
        """Changes that took effect, made by anyone but the fleet."""
        return [c for c in self.changes if not c.by_fleet and c.error is None]

    def who_changed(self, limit: int = 5) -> str:
        """One line for a report: the latest changes by others, and the fleet's count."""
        if self.unseen:
            return f"not visible: {self.unseen}"
        others = self.by_others()
        if not others:
            until = self.end.strftime("%H:%M:%SZ") if self.end else "now"
            return (
                f"nobody in CloudTrail's event history for {', '.join(self.looked_up)} from "
                f"{self.start.strftime('%Y-%m-%dT%H:%M:%SZ')} to {until} (events appear "
                "minutes after a call: look again later)"
            )
        shown = "; ".join(c.line() for c in others[-limit:])
        more = f" (and {len(others) - limit} earlier)" if len(others) > limit else ""
        fleet = sum(1 for c in self.changes if c.by_fleet and c.error is None)
        own = f"; the fleet's own changes: {fleet}" if fleet else ""
        return f"{shown}{more}{own}"


def names_in(config: Mapping[str, Any]) -> list[str]:
    """The names a function's changes are filed under, from its configuration: the function,
    its execution role and its security groups."""
    names = [str(config["FunctionName"]), str(config["Role"]).rsplit("/", 1)[-1]]
    names += list(config.get("VpcConfig", {}).get("SecurityGroupIds", []))
    return names


def resources_of(lam: Any, function_name: str) -> list[str]:
    """:func:`names_in` of a function (just its name if it cannot be read)."""
    try:
        return names_in(lam.get_function_configuration(FunctionName=function_name))
    except ClientError:
        return [function_name]


def _who(identity: dict[str, Any]) -> tuple[str, str | None, bool]:
    kind = str(identity.get("type", "Unknown"))
    if kind == "AWSService":
        return f"AWSService {identity.get('invokedBy', '')}", None, False
    if kind == "AssumedRole":
        issuer = identity.get("sessionContext", {}).get("sessionIssuer", {})
        session = str(identity.get("arn", "")).rsplit("/", 1)[-1]
        return f"AssumedRole {issuer.get('userName', '?')}/{session}", identity.get("arn"), False
    user = str(identity.get("userName", identity.get("arn", "?")))
    return f"{kind} {user}", identity.get("arn"), user in FLEET_USERS


def changes_to(
    trail: Any, names: list[str], start: datetime, end: datetime | None = None
) -> ChangeHistory:
    """Every write to the named resources between `start` and `end` (None: now).

    LookupEvents takes one attribute: asking for the account's writes (ReadOnly=false) and
    keeping those that name one of the resources costs one lookup a page, where asking by
    each resource would page through every read of it too (the fleet reads a function it
    watches many times a minute)."""
    wanted = set(names)
    found: dict[str, Change] = {}
    history = ChangeHistory(looked_up=names, start=start, end=end, changes=[])
    token: dict[str, str] = {}
    try:
        for _ in range(MAX_PAGES):
            window = {"StartTime": start, **({"EndTime": end} if end else {})}
            page = trail.lookup_events(
                LookupAttributes=[{"AttributeKey": "ReadOnly", "AttributeValue": "false"}],
                MaxResults=50,
                **window,
                **token,
            )
            for event in page.get("Events", []):
                named = [r.get("ResourceName") for r in event.get("Resources", [])]
                resource = next((n for n in named if n in wanted), None)
                if resource is None or event["EventId"] in found:
                    continue
                record = json.loads(event.get("CloudTrailEvent") or "{}")
                who, arn, by_fleet = _who(record.get("userIdentity", {}))
                found[event["EventId"]] = Change(
                    at=event["EventTime"],
                    event=event["EventName"],
                    source=event.get("EventSource", ""),
                    resource=str(resource),
                    who=who,
                    who_arn=arn,
                    by_fleet=by_fleet,
                    error=record.get("errorCode"),
                )
            if "NextToken" not in page:
                break
            token = {"NextToken": page["NextToken"]}
    except ClientError as exc:
        history.unseen = f"CloudTrail's LookupEvents refused ({error_code(exc)})"
    history.changes = sorted(found.values(), key=lambda c: c.at)
    return history
