"""What a provisioning run did, resource by resource, so a second run can say "no changes"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Action = Literal["created", "updated", "unchanged"]


def outcome(created: bool, changed: bool) -> Action:
    if created:
        return "created"
    return "updated" if changed else "unchanged"


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: Action


@dataclass
class ProvisionReport:
    changes: list[Change] = field(default_factory=list)

    def record(self, kind: str, name: str, action: Action) -> None:
        self.changes.append(Change(kind, name, action))

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]

    def summary(self) -> str:
        if not self.changed:
            return f"no changes ({len(self.changes)} resources already as specified)"
        counts: dict[str, int] = {}
        for c in self.changed:
            counts[c.action] = counts.get(c.action, 0) + 1
        parts = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
        return f"{parts}; {len(self.changes) - len(self.changed)} unchanged"

    def as_json(self) -> list[dict[str, str]]:
        return [{"kind": c.kind, "name": c.name, "action": c.action} for c in self.changes]
