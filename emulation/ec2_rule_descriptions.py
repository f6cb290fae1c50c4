"""UpdateSecurityGroupRuleDescriptions{Egress,Ingress} set the description as sent, as EC2
does: a peer sent without a Description loses its description.

AWS: "You can remove a description for a security group rule by omitting the description
parameter in the request." moto 5.2.5 only ever sets one, so a rule could never lose its
description here, and a restore (or its rollback) to a rule without one would not take.
The patch removes the description of the matched peer when the request names none.

The patch checks the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import functools
from typing import Any

from moto.ec2.models.security_groups import SecurityGroupBackend

from emulation.moto_version import require_patched_moto

_applied = False


def _as_sent(method: Any) -> Any:
    @functools.wraps(method)
    def update_description(self: Any, sent: Any, rule: Any) -> None:
        method(self, sent, rule)  # sets a description the request carries
        for key in ("CidrIp", "CidrIpv6"):
            same_peer = key in rule.ip_range and rule.ip_range.get(key) == sent.ip_range.get(key)
            if same_peer and "Description" not in sent.ip_range:
                rule.ip_range.pop("Description", None)
        group = rule.source_group.get("GroupId")
        same_group = bool(group) and group == sent.source_group.get("GroupId")
        if same_group and "Description" not in sent.source_group:
            rule.source_group.pop("Description", None)

    return update_description


def apply() -> None:
    global _applied
    if _applied:
        return
    require_patched_moto(__name__, "re-check how rule descriptions are updated")
    SecurityGroupBackend._sg_update_description = _as_sent(  # type: ignore[method-assign]
        SecurityGroupBackend._sg_update_description
    )
    _applied = True
