"""The runtime's own DynamoDB tables: what it persists about messages, not incidents."""

from __future__ import annotations

from core.dynamodb import TableSpec

# One record per (stage, event) handled: a redelivered or duplicated event does nothing twice.
PROCESSED_EVENTS = TableSpec(name="processed-events", hash_key="event_key")
# Why a message failed, by SQS message id (kept when SQS moves it to the DLQ), for the
# console and `fleet failures` to show next to the dead letter.
MESSAGE_FAILURES = TableSpec(name="message-failures", hash_key="message_id")
RUNTIME_TABLES = (PROCESSED_EVENTS, MESSAGE_FAILURES)
