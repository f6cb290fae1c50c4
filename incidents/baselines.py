"""Known-good baselines: what a protected function looked like when it was healthy.

A fix restores a baseline, so a baseline is a versioned record in the state store, read
from the live account (not from code): the role's inline and attached policies, reserved
concurrency, environment, timeout, memory, its security groups' rules (every field a
restore puts back: descriptions included), and what runs: the version the alias `live`
points to and the CodeSha256 of that version's package. Also, as records that no diff
compares (publishing a version is no drift): the newest published version and the
CodeSha256 of every version, which tell a rollback which version still runs a given
package.

The baseline moves only by an explicit capture (`fleet baseline capture`, and the first
one `fleet up` takes of the freshly deployed world): an intended deploy or change is
captured; everything else is drift. Nothing the fleet does (a resolved incident included)
captures one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from core.dynamodb import from_item, to_item
from core.lambda_concurrency import reserved_concurrency
from core.lambda_versions import (
    LIVE_ALIAS,
    FunctionVersions,
    code_by_version,
    live_target,
    newest_published,
)
from incidents.tables import BASELINES


class SecurityGroupRules(BaseModel):
    group_id: str
    group_name: str
    egress: list[dict[str, Any]]
    ingress: list[dict[str, Any]]


class Baseline(BaseModel):
    function: str
    version: int = 0
    captured_at: str = ""
    captured_by: str = ""
    role_name: str
    inline_policies: dict[str, dict[str, Any]]
    attached_policy_arns: list[str]
    reserved_concurrency: int | None
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int
    security_groups: list[SecurityGroupRules]
    # What the scheduled invocations run (defaults: baselines recorded before versions were).
    live_target: str | None = None  # the version `live` points to: "$LATEST" or a number
    code_sha256: str = ""  # CodeSha256 of the package `live` runs
    newest_published_version: str | None = None
    # CodeSha256 by version ("$LATEST" and each published number), as read.
    code_by_version: dict[str, str] = {}

    def versions(self) -> FunctionVersions:
        return FunctionVersions(live_target=self.live_target, code_by_version=self.code_by_version)


def _document(raw: Any) -> dict[str, Any]:
    return dict(json.loads(raw)) if isinstance(raw, str) else dict(raw)


def read_live(clients: Any, function: str, config: dict[str, Any] | None = None) -> Baseline:
    """The function as it is now, in the shape of a baseline. `config`: its configuration
    (GetFunctionConfiguration) if the caller has just read it."""
    lam, iam, ec2 = clients("lambda"), clients("iam"), clients("ec2")
    if config is None:
        config = lam.get_function_configuration(FunctionName=function)
    target = live_target(lam, function)
    role_name = config["Role"].rsplit("/", 1)[1]
    versions = code_by_version(lam, function)
    # The package `live` runs: the version list names each version's, $LATEST's included.
    if target is None:
        running_code = config["CodeSha256"]
    elif target in versions:
        running_code = versions[target]
    else:  # a version published since the list was read
        running_code = lam.get_function_configuration(FunctionName=function, Qualifier=LIVE_ALIAS)[
            "CodeSha256"
        ]
    inline = {
        name: _document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
        for name in sorted(iam.list_role_policies(RoleName=role_name)["PolicyNames"])
    }
    attached = sorted(
        p["PolicyArn"]
        for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    )
    return Baseline(
        function=function,
        role_name=role_name,
        inline_policies=inline,
        attached_policy_arns=attached,
        reserved_concurrency=reserved_concurrency(lam, function),
        environment=config.get("Environment", {}).get("Variables", {}),
        timeout_s=int(config["Timeout"]),
        memory_mb=int(config["MemorySize"]),
        security_groups=security_group_rules(
            ec2, config.get("VpcConfig", {}).get("SecurityGroupIds", [])
        ),
        live_target=target,
        code_sha256=running_code,
        newest_published_version=newest_published(versions),
        code_by_version=versions,
    )


def security_group_rules(ec2: Any, group_ids: list[str]) -> list[SecurityGroupRules]:
    """The rules of these security groups (none for a function outside a VPC)."""
    groups = ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"] if group_ids else []
    return [
        SecurityGroupRules(
            group_id=g["GroupId"],
            group_name=g["GroupName"],
            egress=g.get("IpPermissionsEgress", []),
            ingress=g.get("IpPermissions", []),
        )
        for g in groups
    ]


class BaselineStore:
    def __init__(self, dynamodb: Any):
        self.ddb = dynamodb

    def latest(self, function: str) -> Baseline | None:
        items = self.ddb.query(
            TableName=BASELINES.name,
            KeyConditionExpression="#f = :f",
            ExpressionAttributeNames={"#f": "function"},
            ExpressionAttributeValues=to_item({":f": function}),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )["Items"]
        if not items:
            return None
        item = from_item(items[0])
        return Baseline.model_validate_json(item["record"])

    def version(self, function: str, version: int) -> Baseline | None:
        item = self.ddb.get_item(
            TableName=BASELINES.name,
            Key=to_item({"function": function, "version": version}),
            ConsistentRead=True,
        ).get("Item")
        return Baseline.model_validate_json(from_item(item)["record"]) if item else None

    def put(self, baseline: Baseline, captured_by: str) -> Baseline:
        """Store as the next version; an unchanged baseline is not stored again."""
        current = self.latest(baseline.function)
        if current is not None and _content(current) == _content(baseline):
            return current
        record = baseline.model_copy(
            update={
                "version": (current.version if current else 0) + 1,
                "captured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "captured_by": captured_by,
            }
        )
        self.ddb.put_item(
            TableName=BASELINES.name,
            Item=to_item(
                {
                    "function": record.function,
                    "version": record.version,
                    "record": record.model_dump_json(),
                }
            ),
            ConditionExpression="attribute_not_exists(version)",
        )
        return record


def capture(clients: Any, functions: list[str], captured_by: str) -> list[Baseline]:
    store = BaselineStore(clients("dynamodb"))
    return [store.put(read_live(clients, f), captured_by) for f in functions]


def _content(b: Baseline) -> dict[str, Any]:
    return b.model_dump(exclude={"version", "captured_at", "captured_by"})
