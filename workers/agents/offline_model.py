"""The offline model: a deterministic runbook behind LangChain's chat-model interface.

It is the embedded default and a real fallback when Bedrock is unreachable: the same
graphs run on it, with the same tools, budgets and structured outputs. At each turn it
reads the conversation so far (the task, the tool calls made, what each returned) and
chooses the next tool call or the final answer from a runbook an SRE would follow. It
decides only from what the tools returned: nothing in it knows what broke the function.

Which runbook runs follows from the structured answer the graph asks for (the name of
its response tool): a diagnosis, a proposal or a review.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

# Bedrock's tokenizers are not public; ~4 characters per token is the usual estimate
# for English and JSON, and it is what the budgets and `fleet bench` report.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)


@dataclass
class ToolResult:
    call_id: str
    name: str
    args: dict[str, Any]
    text: str
    ok: bool

    def data(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None


@dataclass
class Transcript:
    """The conversation as a runbook sees it: the task and the tool results, in order."""

    task: str
    results: list[ToolResult] = field(default_factory=list)

    @classmethod
    def of(cls, messages: Sequence[BaseMessage]) -> Transcript:
        task = next((text_of(m) for m in messages if isinstance(m, HumanMessage)), "")
        calls: dict[str, tuple[str, dict[str, Any]]] = {}
        results = []
        for m in messages:
            if isinstance(m, AIMessage):
                for tc in m.tool_calls:
                    calls[str(tc["id"])] = (tc["name"], dict(tc["args"]))
            elif isinstance(m, ToolMessage) and m.tool_call_id in calls:
                name, args = calls[m.tool_call_id]
                results.append(
                    ToolResult(m.tool_call_id, name, args, text_of(m), m.status != "error")
                )
        return cls(task, results)

    def task_data(self) -> dict[str, Any]:
        """The JSON object the task carries (the alert, the diagnosis, the proposal)."""
        match = re.search(r"```json\s*(\{.*?\})\s*```", self.task, re.S)
        return dict(json.loads(match.group(1))) if match else {}

    def last(self, name: str, **args: Any) -> ToolResult | None:
        for r in reversed(self.results):
            if r.name == name and all(r.args.get(k) == v for k, v in args.items()):
                return r
        return None

    def called(self, name: str, **args: Any) -> bool:
        return self.last(name, **args) is not None


@dataclass
class Step:
    """One turn of a runbook: a tool call, or the final answer (the response tool's args)."""

    thought: str
    tool: str
    args: dict[str, Any]


Runbook = Callable[[Transcript], Step]


def _runbooks() -> dict[str, Runbook]:
    from workers.agents.runbook_diagnosis import diagnose
    from workers.agents.runbook_remediation import propose
    from workers.agents.runbook_review import review

    return {"DiagnosisDraft": diagnose, "ProposalDraft": propose, "ReviewDraft": review}


class OfflineRunbookModel(BaseChatModel):
    """A deterministic chat model that follows the fleet's runbooks (see module doc)."""

    latency_s: float = 0.0  # per turn, like a hosted model's

    @property
    def _llm_type(self) -> str:
        return "fleet-offline-runbook"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        names = {t["function"]["name"] for t in kwargs.get("tools", [])}
        runbooks = _runbooks()
        answer = next((n for n in runbooks if n in names), None)
        if answer is None:
            raise ValueError(
                "the offline model answers diagnoses, proposals and reviews; this graph asks "
                f"for none of them (tools: {sorted(names)})"
            )
        if self.latency_s:
            time.sleep(self.latency_s)
        step = runbooks[answer](Transcript.of(messages))
        if step.tool != answer and step.tool not in names:
            raise ValueError(f"runbook chose {step.tool!r}, which this graph does not offer")
        prompt = sum(estimate_tokens(text_of(m)) for m in messages)
        completion = estimate_tokens(step.thought + json.dumps(step.args))
        message = AIMessage(
            content=step.thought,
            tool_calls=[
                {"name": step.tool, "args": step.args, "id": f"call_{uuid.uuid4().hex[:12]}"}
            ],
            usage_metadata={
                "input_tokens": prompt,
                "output_tokens": completion,
                "total_tokens": prompt + completion,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
