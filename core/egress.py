"""Whether a function's security groups let it reach the AWS APIs (HTTPS out)."""

from __future__ import annotations

from typing import Any


def egress_allowed(ec2: Any, group_ids: list[str]) -> bool:
    """HTTPS out to anywhere: what the handler needs to reach the AWS APIs."""
    if not group_ids:
        return True  # not in a VPC: Lambda's own network
    groups = ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]
    for group in groups:
        for rule in group.get("IpPermissionsEgress", []):
            protocol = str(rule.get("IpProtocol"))
            covers_https = protocol == "-1" or (
                protocol in ("tcp", "6")
                and rule.get("FromPort", 0) <= 443 <= rule.get("ToPort", 65535)
            )
            if covers_https and any(
                r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", [])
            ):
                return True
    return False


def egress_signature(permissions: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Rules as comparable (protocol, from port, to port, CIDR) tuples."""
    return {
        (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"), r["CidrIp"])
        for p in permissions
        for r in p.get("IpRanges", [])
    }
