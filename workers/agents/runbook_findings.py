"""What a runbook's investigation found, and the tool output each claim quotes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from incidents.diagnosis import FaultType
from workers.agents.offline_model import ToolResult


@dataclass
class Finding:
    fault: FaultType
    claim: str
    confidence: float
    evidence: list[dict[str, str]] = field(default_factory=list)
    concern: str | None = None  # the drift behind it, if any


@dataclass
class Account:
    """What the investigation saw, in the words a person reads."""

    symptoms: list[str] = field(default_factory=list)
    drifts: list[str] = field(default_factory=list)
    ruled_out: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    next_step: str = ""


def quote(result: ToolResult, pattern: str) -> str | None:
    """An exact excerpt of the tool's output matching `pattern`, to cite."""
    match = re.search(pattern, result.text, re.I)
    return match.group(0) if match else None


def cite(result: ToolResult, claim: str, pattern: str) -> list[dict[str, str]]:
    found = quote(result, pattern)
    return [{"claim": claim, "tool_call_id": result.call_id, "quote": found}] if found else []
