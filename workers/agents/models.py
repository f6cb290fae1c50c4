"""The model factory: `offline` (the embedded default), `bedrock`, or any model string
LangChain's `init_chat_model` accepts (e.g. "anthropic:claude-sonnet-4-5")."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from core.settings import Settings
from workers.agents.offline_model import OfflineRunbookModel


def chat_model(settings: Settings, bedrock_client: Any = None) -> BaseChatModel:
    """The configured model. `bedrock_client`: a bedrock-runtime client to use instead of
    the default one (e.g. one with a botocore Stubber in the contract test)."""
    if settings.model == "offline":
        return OfflineRunbookModel(latency_s=settings.offline_model_latency_s)
    if settings.model == "bedrock":
        from langchain_aws import ChatBedrockConverse

        extra = {"client": bedrock_client} if bedrock_client is not None else {}
        return ChatBedrockConverse(
            model=settings.bedrock_model_id,
            region_name=settings.bedrock_region,
            **extra,
            temperature=0,
            max_tokens=settings.model_max_output_tokens,
        )
    from langchain.chat_models import init_chat_model

    return init_chat_model(settings.model, temperature=0)


def uses_fallback(settings: Settings) -> bool:
    """A hosted model falls back to the offline runbooks when it errors (unreachable,
    throttled, over quota), so an incident is still handled."""
    return settings.model != "offline" and settings.model_fallback_offline
