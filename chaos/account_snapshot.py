"""What a random game day's judge reads from the account: each function's whole state, as
a person comparing the account before and after an incident would read it.

Read with the world's admin keys, from the account alone (never from the fleet's baselines
or records): the role's trust policy, inline policies with their documents and attached
policies; reserved concurrency, environment, timeout, memory; the VPC attachment and every
rule of its security groups, descriptions included; where the alias `live` points, the
CodeSha256 it runs and the CodeSha256 of `$LATEST`; and the input object each run reads.

Two comparisons are made of snapshots: `differences` (exact: anything a person would see
changed) and `wider_grants` (only what widens permissions or network reach).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from core.aws import Clients
from core.lambda_concurrency import reserved_concurrency
from core.lambda_versions import LIVE_ALIAS, live_target
from workload.spec import FunctionSpec

Direction = Literal["egress", "ingress"]


class Rule(BaseModel, frozen=True):
    """One security-group rule for one peer (EC2 groups peers of one protocol and port
    range into one permission; a person reads, adds and removes them one by one)."""

    group_id: str
    direction: Direction
    protocol: str  # "tcp", "udp", "icmp", "-1" (all)
    from_port: int | None
    to_port: int | None
    peer: str  # "0.0.0.0/0", "::/0", "sg-…", "pl-…"
    description: str | None

    def reach(self) -> tuple[str, str, int | None, int | None, str]:
        """What the rule lets through, whatever it is called."""
        return (self.direction, self.protocol, self.from_port, self.to_port, self.peer)

    def __str__(self) -> str:
        ports = "all ports" if self.from_port is None else f"{self.from_port}-{self.to_port}"
        said = f" {self.description!r}" if self.description else " (no description)"
        return f"{self.direction} {self.protocol} {ports} {self.peer}{said} in {self.group_id}"


class FunctionState(BaseModel):
    function: str
    role_name: str
    trust_policy: dict[str, Any]
    inline_policies: dict[str, dict[str, Any]]
    attached_policy_arns: list[str]
    reserved_concurrency: int | None
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int
    subnet_ids: list[str]
    security_group_ids: list[str]
    rules: list[Rule]
    live_target: str | None  # "$LATEST", a version number, or None without the alias
    live_code_sha256: str  # what the scheduled runs execute
    latest_code_sha256: str  # what `$LATEST` holds (the next publish, the next deploy)
    input_key: str  # s3://bucket/key the runs read
    input_etag: str | None  # None: the object does not exist


class AccountSnapshot(BaseModel):
    taken_at: str
    functions: dict[str, FunctionState]


def _document(raw: Any) -> dict[str, Any]:
    return dict(json.loads(raw)) if isinstance(raw, str) else dict(raw)


def _rules(group: dict[str, Any]) -> list[Rule]:
    rules = []
    for direction, key in (("egress", "IpPermissionsEgress"), ("ingress", "IpPermissions")):
        for permission in group.get(key, []):
            protocol = str(permission.get("IpProtocol"))
            ports = (permission.get("FromPort"), permission.get("ToPort"))
            if protocol == "-1":
                ports = (None, None)
            peers = [
                *((r["CidrIp"], r.get("Description")) for r in permission.get("IpRanges", [])),
                *((r["CidrIpv6"], r.get("Description")) for r in permission.get("Ipv6Ranges", [])),
                *(
                    (p["PrefixListId"], p.get("Description"))
                    for p in permission.get("PrefixListIds", [])
                ),
                *(
                    (p["GroupId"], p.get("Description"))
                    for p in permission.get("UserIdGroupPairs", [])
                ),
            ]
            rules += [
                Rule(
                    group_id=group["GroupId"],
                    direction=direction,  # type: ignore[arg-type]
                    protocol=protocol,
                    from_port=ports[0],
                    to_port=ports[1],
                    peer=peer,
                    description=description or None,
                )
                for peer, description in peers
            ]
    return sorted(rules, key=lambda r: (r.reach(), r.group_id, r.description or ""))


def read_function(admin: Clients, spec: FunctionSpec) -> FunctionState:
    lam, iam, ec2, s3 = admin("lambda"), admin("iam"), admin("ec2"), admin("s3")
    config = lam.get_function_configuration(FunctionName=spec.name)
    target = live_target(lam, spec.name)
    running = (
        lam.get_function_configuration(FunctionName=spec.name, Qualifier=LIVE_ALIAS)
        if target is not None
        else config
    )
    role_name = config["Role"].rsplit("/", 1)[1]
    vpc = config.get("VpcConfig", {})
    group_ids = sorted(vpc.get("SecurityGroupIds", []))
    groups = ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"] if group_ids else []
    try:
        etag: str | None = s3.head_object(Bucket=spec.bucket, Key=spec.input_key)["ETag"]
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
            raise
        etag = None
    return FunctionState(
        function=spec.name,
        role_name=role_name,
        trust_policy=_document(
            iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
        ),
        inline_policies={
            name: _document(
                iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
            )
            for name in sorted(iam.list_role_policies(RoleName=role_name)["PolicyNames"])
        },
        attached_policy_arns=sorted(
            p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
        ),
        reserved_concurrency=reserved_concurrency(lam, spec.name),
        environment=dict(config.get("Environment", {}).get("Variables", {})),
        timeout_s=int(config["Timeout"]),
        memory_mb=int(config["MemorySize"]),
        subnet_ids=sorted(vpc.get("SubnetIds", [])),
        security_group_ids=group_ids,
        rules=[rule for g in groups for rule in _rules(dict(g))],
        live_target=target,
        live_code_sha256=running["CodeSha256"],
        latest_code_sha256=config["CodeSha256"],
        input_key=f"s3://{spec.bucket}/{spec.input_key}",
        input_etag=etag,
    )


def take_snapshot(admin: Clients, specs: list[FunctionSpec]) -> AccountSnapshot:
    return AccountSnapshot(
        taken_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        functions={spec.name: read_function(admin, spec) for spec in specs},
    )


# --- comparing ---------------------------------------------------------------------------


def _value(v: Any) -> str:
    return "none" if v is None else repr(v) if isinstance(v, str) else str(v)


def differences(want: FunctionState, got: FunctionState) -> list[str]:
    """Everything about `got` that is not exactly as in `want`, one line each."""
    found: list[str] = []
    if got.role_name != want.role_name:
        found.append(f"execution role {got.role_name} (was {want.role_name})")
    if got.trust_policy != want.trust_policy:
        found.append(f"trust policy of {got.role_name} differs")
    for name in sorted(set(want.inline_policies) | set(got.inline_policies)):
        if name not in got.inline_policies:
            found.append(f"inline policy {name} missing")
        elif name not in want.inline_policies:
            found.append(f"inline policy {name} added")
        elif got.inline_policies[name] != want.inline_policies[name]:
            found.append(
                f"inline policy {name} differs: "
                + _document_change(want.inline_policies[name], got.inline_policies[name])
            )
    for arn in sorted(set(want.attached_policy_arns) - set(got.attached_policy_arns)):
        found.append(f"managed policy {arn} detached")
    for arn in sorted(set(got.attached_policy_arns) - set(want.attached_policy_arns)):
        found.append(f"managed policy {arn} attached")
    scalars: tuple[tuple[str, str], ...] = (
        ("reserved concurrency", "reserved_concurrency"),
        ("timeout", "timeout_s"),
        ("memory", "memory_mb"),
        ("code live runs", "live_code_sha256"),
        ("subnets", "subnet_ids"),
        ("security groups", "security_group_ids"),
    )
    # What runs is judged by its code. Where `live` points and what `$LATEST` holds count
    # only while live runs other code: a bad deploy is rolled back by the alias alone (the
    # fleet never uploads code), so after a person overwrote $LATEST, live back on the
    # version that holds the code it ran is the function as it was, run for run.
    if got.live_code_sha256 != want.live_code_sha256:
        scalars += (("alias live", "live_target"), ("code of $LATEST", "latest_code_sha256"))
    for label, field in scalars:
        before, now = getattr(want, field), getattr(got, field)
        if before != now:
            found.append(f"{label} {_value(now)} (was {_value(before)})")
    for name in sorted(set(want.environment) | set(got.environment)):
        before_env, now_env = want.environment.get(name), got.environment.get(name)
        if before_env != now_env:
            found.append(f"environment {name}={_value(now_env)} (was {_value(before_env)})")
    want_rules, got_rules = set(want.rules), set(got.rules)
    found += [f"rule missing: {r}" for r in sorted(want_rules - got_rules, key=str)]
    found += [f"rule added: {r}" for r in sorted(got_rules - want_rules, key=str)]
    if got.input_etag != want.input_etag:
        if got.input_etag is None:
            found.append(f"input {got.input_key} deleted")
        elif want.input_etag is None:
            found.append(f"input {got.input_key} created")
        else:
            found.append(f"input {got.input_key} rewritten")
    return found


Grant = tuple[str, str, str, str]  # (effect, action or principal, resource, condition)


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def statement_grants(document: dict[str, Any]) -> set[Grant]:
    """A policy's statements as single grants: one effect, action, resource and condition
    each (NotAction and NotResource are kept as such: they grant everything but)."""
    grants: set[Grant] = set()
    statements = document.get("Statement", [])
    for s in statements if isinstance(statements, list) else [statements]:
        actions = [a.lower() for a in _listed(s.get("Action"))]
        actions += [f"not:{a.lower()}" for a in _listed(s.get("NotAction"))]
        resources = _listed(s.get("Resource")) + [f"not:{r}" for r in _listed(s.get("NotResource"))]
        if "Principal" in s or "NotPrincipal" in s:  # a trust policy: who, not on what
            resources = [json.dumps(s.get("Principal", s.get("NotPrincipal")), sort_keys=True)]
        condition = json.dumps(s.get("Condition", {}), sort_keys=True)
        for action in actions or ["(none)"]:
            for resource in resources or ["(none)"]:
                grants.add((str(s.get("Effect")), action, resource, condition))
    return grants


def _role_grants(state: FunctionState) -> set[Grant]:
    return {g for doc in state.inline_policies.values() for g in statement_grants(doc)}


def _describe(grant: Grant) -> str:
    effect, action, resource, condition = grant
    when = "" if condition == "{}" else f" when {condition}"
    return f"{effect} {action} on {resource}{when}"


def _document_change(want: dict[str, Any], got: dict[str, Any]) -> str:
    was, now = statement_grants(want), statement_grants(got)
    parts = [f"lost {_describe(g)}" for g in sorted(was - now)]
    parts += [f"gained {_describe(g)}" for g in sorted(now - was)]
    if not parts:
        return "the same grants, written differently"
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return ", ".join(parts[:3]) + more


def wider_grants(before: FunctionState, after: FunctionState) -> list[str]:
    """What `after` grants that `before` did not: permissions (an Allow not there before, a
    Deny that was there and is gone, a managed policy attached, a trust not there before) and
    network reach (a rule not there before, a function taken out of its VPC). Concurrency,
    timeout or memory are not permissions, and a rule's description is not reach."""
    found: list[str] = []
    role = after.role_name
    if after.role_name != before.role_name:
        found.append(f"runs as another role, {after.role_name} (was {before.role_name})")
    was, now = _role_grants(before), _role_grants(after)
    found += [
        f"role {role} grants {_describe(g)} (not before)"
        for g in sorted(now - was)
        if g[0] == "Allow"
    ]
    found += [
        f"role {role} no longer has {_describe(g)}" for g in sorted(was - now) if g[0] == "Deny"
    ]
    for arn in sorted(set(after.attached_policy_arns) - set(before.attached_policy_arns)):
        found.append(f"role {role} has managed policy {arn} attached (not before)")
    trust_was, trust_now = (
        statement_grants(before.trust_policy),
        statement_grants(after.trust_policy),
    )
    found += [
        f"role {role} trusts {_describe(g)} (not before)"
        for g in sorted(trust_now - trust_was)
        if g[0] == "Allow"
    ]
    reach_was = {r.reach() for r in before.rules}
    found += [f"network reach {r} (not before)" for r in after.rules if r.reach() not in reach_was]
    if before.security_group_ids and not after.security_group_ids:
        found.append(f"{after.function} taken out of its VPC (reaches anywhere)")
    return found
