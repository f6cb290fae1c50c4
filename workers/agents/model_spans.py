"""Every model call an agent makes is a span (OpenTelemetry's GenAI conventions): which
model, and the tokens it reported. Innermost agent middleware, so a fallback's call to the
offline runbooks is a span of its own beside the failed call it replaced. What was said is
not recorded: a prompt holds the tools' outputs, log text among them."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from core.tracing import span_in


def model_name(model: BaseChatModel) -> str:
    """The model's id as its provider names it (Bedrock's model id), else its type."""
    for attribute in ("model_id", "model_name", "model"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type


def provider_name(model: BaseChatModel) -> str:
    return "aws.bedrock" if "bedrock" in model._llm_type else model._llm_type


def reported_usage(response: Any) -> tuple[int, int] | None:
    """(input, output) tokens the model reported for one call, if it did."""
    response = getattr(response, "model_response", response)  # an ExtendedModelResponse's
    for message in getattr(response, "result", [response]):
        usage = message.usage_metadata if isinstance(message, AIMessage) else None
        if usage:
            return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return None


def _record_usage(span: trace.Span, response: Any) -> None:
    usage = reported_usage(response)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage[0])
        span.set_attribute("gen_ai.usage.output_tokens", usage[1])


class ModelSpans(AgentMiddleware):
    @staticmethod
    def _span(request: ModelRequest) -> contextlib.AbstractContextManager[trace.Span]:
        name = model_name(request.model)
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider_name(request.model),
            "gen_ai.request.model": name,
        }
        return span_in(f"chat {name}", kind=SpanKind.CLIENT, attributes=attributes)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        with self._span(request) as span:
            response = handler(request)
            _record_usage(span, response)
            return response

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        with self._span(request) as span:
            response = await handler(request)
            _record_usage(span, response)
            return response
