"""An agent run's tool calls, kept with the incident: the transcript and an audit entry each."""

from __future__ import annotations

from typing import Any

from incidents.context_items import transcript
from incidents.store import IncidentStore
from workers.agents.runner import AgentRun


def record_transcript(
    store: IncidentStore, incident_id: str, actor: str, stage: str, run: AgentRun[Any]
) -> None:
    """The agent's tool calls: the whole transcript in the context (with what the run cost
    and how long it waited for the model quota) and one audit entry each, in one write."""
    store.append_audits(
        incident_id,
        actor,
        [
            ("tool_call", {"call_id": c.call_id, "tool": c.name, "args": c.args, "ok": c.ok})
            for c in run.calls
        ],
        context=(
            transcript(stage),
            {
                "calls": [c.summary() for c in run.calls],
                "prompt_tokens": run.prompt_tokens,
                "completion_tokens": run.completion_tokens,
                "cost_usd": run.cost_usd,
                "quota_wait_s": run.quota_wait_s,
                "throttled": run.throttled,
                "stopped": run.stopped,
            },
        ),
    )
