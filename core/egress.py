"""Security-group rules: whether a function's groups let it reach the AWS APIs (HTTPS
out), and rules one peer at a time, in EC2's own shape, so rule sets compare exactly.

EC2 knows a rule by its protocol, ports and one peer (an IPv4 or IPv6 CIDR, a prefix list
or another group); its description is not part of that identity (authorizing the same
rule with another description is a duplicate), but it is part of the rule a person sees,
so an exact restore puts it back too.
"""

from __future__ import annotations

from typing import Any

# The peer lists of an IpPermission and the key that names the peer in each.
PEERS = (
    ("IpRanges", "CidrIp"),
    ("Ipv6Ranges", "CidrIpv6"),
    ("PrefixListIds", "PrefixListId"),
    ("UserIdGroupPairs", "GroupId"),
)

Rule = dict[str, Any]
RuleKey = tuple[Any, ...]


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


def single_rules(permissions: list[dict[str, Any]]) -> list[Rule]:
    """One rule per peer, each an IpPermission EC2 takes back as it is (Authorize, Revoke,
    UpdateSecurityGroupRuleDescriptions*), with the peer's description when it has one.
    Ports are left out where EC2 gives none (all traffic)."""
    out = []
    for p in permissions:
        ports = {k: p[k] for k in ("FromPort", "ToPort") if p.get(k) is not None}
        for kind, key in PEERS:
            for peer in p.get(kind, []):
                entry = {key: peer[key]}
                if peer.get("Description"):
                    entry["Description"] = peer["Description"]
                out.append({"IpProtocol": p.get("IpProtocol"), **ports, kind: [entry]})
    return out


def rule_key(rule: Rule) -> RuleKey:
    """What EC2 knows a single rule by: protocol, ports and peer (not its description)."""
    kind, key = next((k, n) for k, n in PEERS if rule.get(k))
    return (rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort"), rule[kind][0][key])


def description(rule: Rule) -> str | None:
    kind = next(k for k, _ in PEERS if rule.get(k))
    return rule[kind][0].get("Description") or None


def exact_rules(permissions: list[dict[str, Any]]) -> set[tuple[RuleKey, str | None]]:
    """Rules as comparable (identity, description) pairs: equal only if a person comparing
    the two groups would see the same rules."""
    return {(rule_key(r), description(r)) for r in single_rules(permissions)}
