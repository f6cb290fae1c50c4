"""Run one agent graph (LangGraph, via langchain's create_agent) to a typed answer, within
its budget, and keep the transcript: every tool call, what it returned, what it cost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware
from langchain.agents.structured_output import ToolStrategy
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import BaseTool
from pydantic import BaseModel

from core.errors import described
from core.settings import Settings
from core.shared_bucket import SharedTokenBucket
from workers.agents.budget import ANSWER_RETRIES, NOT_RUN, Budget, BudgetMiddleware, tokens_used
from workers.agents.model_quota import ModelQuota, ModelQuotaExhausted, ThrottleRetry, is_throttle
from workers.agents.model_spans import ModelSpans
from workers.agents.models import uses_fallback
from workers.agents.offline_model import OfflineRunbookModel, Transcript

T = TypeVar("T", bound=BaseModel)
# What the transcript keeps of each tool output (the full output went to the model).
KEPT_OUTPUT_CHARS = 4000


@dataclass
class ToolCallRecord:
    call_id: str
    name: str
    args: dict[str, Any]
    ok: bool
    output: str

    def summary(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "tool": self.name,
            "args": self.args,
            "ok": self.ok,
            "output": self.output[:KEPT_OUTPUT_CHARS],
        }


@dataclass
class AgentRun(Generic[T]):
    answer: T | None
    calls: list[ToolCallRecord] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stopped: str | None = None  # why no answer came: a budget, the deadline, an error
    cost_usd: float = 0.0  # the tokens at the configured prices (`estimated_cost_usd`)
    quota_wait_s: float = 0.0  # time waiting for the fleet's model quota
    throttled: int = 0  # tries of a model call that were throttled and tried again

    def outputs(self) -> dict[str, str]:
        """Successful tool calls' outputs by call id: what evidence may cite."""
        return {c.call_id: c.output for c in self.calls if c.ok}


def estimated_cost_usd(settings: Settings, prompt_tokens: int, completion_tokens: int) -> float:
    """What the tokens cost at the configured prices (per 1,000, input and output apart)."""
    cost = (
        prompt_tokens * settings.model_input_price_per_1k
        + completion_tokens * settings.model_output_price_per_1k
    ) / 1000
    return round(cost, 6)


def task_message(intro: str, data: dict[str, Any]) -> str:
    """The task an agent gets: what to do, and the facts as a JSON block."""
    return f"{intro}\n\n```json\n{json.dumps(data, indent=2, default=str)}\n```"


def transcript(messages: Sequence[BaseMessage], answer_tool: str) -> list[ToolCallRecord]:
    """Every tool call and its output; the final answer (a tool call too) and the calls the
    budget refused were not calls made."""
    return [
        ToolCallRecord(r.call_id, r.name, r.args, r.ok, r.text)
        for r in Transcript.of(messages).results
        if r.name != answer_tool and not (not r.ok and r.text.startswith(NOT_RUN))
    ]


async def run_agent(
    settings: Settings,
    model: BaseChatModel,
    tools: Sequence[BaseTool],
    system_prompt: str,
    task: str,
    answer: type[T],
    *,
    quota: SharedTokenBucket,
) -> AgentRun[T]:
    """Run the agent to its answer; every call of `model` takes its share of `quota` first.
    ModelQuotaExhausted if a call was throttled on every try and nothing fell back."""
    budget = BudgetMiddleware(
        Budget(
            settings.agent_max_tool_calls, settings.agent_token_budget, settings.agent_deadline_s
        ),
        answer.__name__,
    )
    fallback = OfflineRunbookModel() if uses_fallback(settings) else None
    retry = ThrottleRetry(settings)
    limit = ModelQuota(quota, settings, exempt=fallback)
    middleware: list[Any] = [budget]
    if fallback is not None:  # after the retries: a throttle is tried again before this
        middleware.append(ModelFallbackMiddleware(fallback))
    # The span innermost: each model actually called is one, from when it was called.
    middleware += [retry, limit, ModelSpans()]
    agent = create_agent(
        model,
        list(tools),
        system_prompt=system_prompt,
        response_format=ToolStrategy(answer),
        middleware=middleware,
    )
    # Each turn passes a few nodes (model, middleware, tools); the budget ends a run first.
    limit_steps = 4 * (settings.agent_max_tool_calls + ANSWER_RETRIES) + 10
    try:
        async with asyncio.timeout(settings.agent_hard_timeout_s) as hard:

            def waited(seconds: float) -> None:
                # Waiting for the quota moves both deadlines: it is not the agent's work.
                budget.pause(seconds)
                if (until := hard.when()) is not None:
                    hard.reschedule(until + seconds)

            retry.on_wait = limit.on_wait = waited
            result = await agent.ainvoke(
                {"messages": [HumanMessage(content=task)]}, {"recursion_limit": limit_steps}
            )
    except TimeoutError:
        return AgentRun(None, stopped=f"deadline of {settings.agent_deadline_s:g}s passed")
    except Exception as exc:
        if is_throttle(exc):
            raise ModelQuotaExhausted(
                f"the model was throttled on all {retry.tries} tries of a call: {described(exc)}"
            ) from exc
        raise
    finally:
        await limit.settled()
    messages = list(result.get("messages", []))
    prompt, completion = tokens_used(messages)
    structured = result.get("structured_response")
    return AgentRun(
        structured if isinstance(structured, answer) else None,
        transcript(messages, answer.__name__),
        prompt,
        completion,
        budget.exhausted if structured is None else None,
        estimated_cost_usd(settings, prompt, completion),
        round(limit.waited_s, 3),
        retry.retried,
    )
