"""Reading who changed what from CloudTrail's event history (core/change_history.py),
against LookupEvents' documented answer shape.
https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from core.change_history import changes_to

START = datetime(2026, 12, 8, 5, 0, tzinfo=UTC)


def event(
    i: int, name: str, on: str, identity: dict[str, Any], read_only: bool = False, **more: Any
) -> dict[str, Any]:
    return {
        "Resources": [{"ResourceType": "AWS::Lambda::Function", "ResourceName": on}],
        "EventId": f"e{i}",
        "EventName": name,
        "ReadOnly": "true" if read_only else "false",
        "EventTime": START + timedelta(minutes=i),
        "EventSource": "lambda.amazonaws.com",
        "CloudTrailEvent": json.dumps({"userIdentity": identity, **more}),
    }


PERSON = {"type": "IAMUser", "userName": "ops-alice", "arn": "arn:aws:iam::1:user/ops-alice"}
FLEET = {"type": "IAMUser", "userName": "fleet-mcp-resolver", "arn": "arn:aws:iam::1:user/x"}
SESSION = {
    "type": "AssumedRole",
    "arn": "arn:aws:sts::1:assumed-role/deployer/ci-42",
    "sessionContext": {"sessionIssuer": {"userName": "deployer"}},
}


class Trail:
    """LookupEvents' answers to ReadOnly=false, newest first, two to a page."""

    def __init__(self, events: list[dict[str, Any]], refuse: bool = False):
        self.events, self.refuse, self.asked = events, refuse, []

    def lookup_events(
        self, LookupAttributes: list[dict[str, str]], **params: Any
    ) -> dict[str, Any]:
        if self.refuse:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "LookupEvents")
        assert LookupAttributes == [{"AttributeKey": "ReadOnly", "AttributeValue": "false"}]
        self.asked.append(params.get("NextToken"))
        found = sorted(
            (e for e in self.events if e["ReadOnly"] == "false"),
            key=lambda e: e["EventTime"],
            reverse=True,
        )
        at = int(params.get("NextToken", 0))
        page: dict[str, Any] = {"Events": found[at : at + 2]}
        if at + 2 < len(found):
            page["NextToken"] = str(at + 2)
        return page


def test_writes_by_others_are_named_and_the_fleets_own_counted() -> None:
    trail = Trail(
        [
            event(1, "UpdateFunctionConfiguration20150331v2", "fn", PERSON),
            event(2, "GetFunction20150331v2", "fn", PERSON, read_only=True),
            event(3, "PutRolePolicy", "fn-role", SESSION),
            event(4, "UpdateFunctionConfiguration20150331v2", "fn", FLEET),
            event(5, "DeleteRolePolicy", "fn-role", PERSON, errorCode="AccessDenied"),
            event(6, "UpdateFunctionConfiguration20150331v2", "another-fn", PERSON),
        ]
    )
    history = changes_to(trail, ["fn", "fn-role"], START)
    assert [c.event for c in history.changes] == [
        "UpdateFunctionConfiguration20150331v2",
        "PutRolePolicy",
        "UpdateFunctionConfiguration20150331v2",
        "DeleteRolePolicy",
    ]  # oldest first; the read and another function's change left out
    assert trail.asked == [None, "2", "4"]  # paged
    text = history.who_changed()
    assert text.startswith(
        "UpdateFunctionConfiguration20150331v2 on fn by IAMUser ops-alice at 2026-12-08T05:01:00Z; "
        "PutRolePolicy on fn-role by AssumedRole deployer/ci-42 at 2026-12-08T05:03:00Z"
    )
    assert "DeleteRolePolicy" not in text  # refused: it changed nothing
    assert text.endswith("; the fleet's own changes: 1")


def test_nothing_found_and_a_refused_lookup_say_so() -> None:
    empty = changes_to(Trail([]), ["fn"], START, START + timedelta(hours=1))
    assert empty.who_changed().startswith(
        "nobody in CloudTrail's event history for fn from 2026-12-08T05:00:00Z to 06:00:00Z"
    )
    refused = changes_to(Trail([], refuse=True), ["fn"], START)
    assert refused.who_changed() == "not visible: CloudTrail's LookupEvents refused (AccessDenied)"
