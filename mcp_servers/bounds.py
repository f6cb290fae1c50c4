"""Keeping tool output small and structured: a huge log group cannot flood an agent."""

from __future__ import annotations

MAX_MESSAGE_CHARS = 1000
MAX_EVENTS = 100
MAX_TOTAL_CHARS = 24_000
MAX_WINDOW_MINUTES = 180


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + f" [... {len(text) - limit} more characters]", True


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
