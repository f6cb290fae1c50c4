"""What a stage does when its MCP server is away, or the model quota refused a call on
every try: try again later while the message has receives left, and on its last one end
the incident as ESCALATED (people are paged) rather than let the step die in a DLQ with
the incident stuck behind it."""

from __future__ import annotations

from collections.abc import Callable

from queues.outcomes import RetryLater
from workers.agents.mcp_tools import ToolsUnavailable
from workers.agents.model_quota import ModelQuotaExhausted
from workers.stage import StageContext


def tools_away(
    ctx: StageContext,
    exc: ToolsUnavailable | ModelQuotaExhausted,
    escalate: Callable[[str], object],
) -> None:
    if ctx.last_attempt:
        escalate(f"{exc} (gave up after {ctx.receive_count} attempts)")
        return
    raise RetryLater(str(exc), ctx.settings.dependency_retry_s) from exc
