"""An agent's budget, checked in one place: tool calls, tokens and a deadline.

After each model turn, if the calls it asks for would exceed the tool-call budget, or the
conversation has used its tokens or its time, the run ends there: the pending calls are
answered with a refusal (the history stays valid) and no structured answer is produced,
which the caller turns into an inconclusive result that escalates rather than guesses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState, hook_config
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime

# How a call refused by the budget is answered (it is not a call made).
NOT_RUN = "not run: "
# Malformed answers the model may retry before the run ends without one.
ANSWER_RETRIES = 3


@dataclass(frozen=True)
class Budget:
    max_tool_calls: int
    max_tokens: int
    deadline_s: float


def tokens_used(messages: list[Any]) -> tuple[int, int]:
    """(prompt, completion) tokens the model reported for this conversation."""
    prompt = completion = 0
    for m in messages:
        usage = getattr(m, "usage_metadata", None) if isinstance(m, AIMessage) else None
        if usage:
            prompt += int(usage.get("input_tokens", 0))
            completion += int(usage.get("output_tokens", 0))
    return prompt, completion


class BudgetMiddleware(AgentMiddleware):
    def __init__(self, budget: Budget, answer_tool: str):
        super().__init__()
        self.budget = budget
        self.answer_tool = answer_tool  # the structured answer is not a tool call to count
        self.deadline = time.monotonic() + budget.deadline_s
        self.exhausted: str | None = None

    def pause(self, seconds: float) -> None:
        """Time that does not count against the deadline: waiting for the fleet's model
        quota, or backing off a throttled call, is not the agent's own work."""
        self.deadline += seconds

    def _overrun(self, messages: list[Any], pending: list[dict[str, Any]]) -> str | None:
        made = sum(1 for m in messages if isinstance(m, ToolMessage))
        asked = sum(1 for c in pending if c["name"] != self.answer_tool)
        if made + asked > self.budget.max_tool_calls:
            return f"tool-call budget of {self.budget.max_tool_calls} exhausted"
        prompt, completion = tokens_used(messages)
        if prompt + completion > self.budget.max_tokens:
            return f"token budget of {self.budget.max_tokens} exhausted"
        if time.monotonic() > self.deadline:
            return f"deadline of {self.budget.deadline_s:g}s passed"
        return None

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages = list(state.get("messages", []))
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage):
            return None
        turns = sum(1 for m in messages if isinstance(m, AIMessage))
        if (
            any(c["name"] == self.answer_tool for c in last.tool_calls)
            and turns <= self.budget.max_tool_calls + ANSWER_RETRIES
        ):
            return None  # an answer is accepted (a malformed one is retried, a few times)
        reason = self._overrun(messages, [dict(c) for c in last.tool_calls])
        if reason is None and turns > self.budget.max_tool_calls + ANSWER_RETRIES:
            reason = f"{turns} model turns without a valid answer"
        if reason is None:
            return None
        self.exhausted = reason
        refusals: list[Any] = [
            ToolMessage(
                content=f"{NOT_RUN}{reason}",
                tool_call_id=c["id"],
                name=c["name"],
                status="error",
            )
            for c in last.tool_calls
        ]
        return {"jump_to": "end", "messages": [*refusals, AIMessage(content=f"Stopped: {reason}.")]}

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.after_model(state, runtime)
