"""The runtime's own DynamoDB tables: what it persists about messages, not incidents."""

from __future__ import annotations

from core.dynamodb import TableSpec

# One record per (stage, event) handled: a redelivered or duplicated event does nothing twice.
PROCESSED_EVENTS = TableSpec(name="processed-events", hash_key="event_key")
# Why a message failed, by SQS message id (kept when SQS moves it to the DLQ), for the
# console and `fleet failures` to show next to the dead letter. SQS can neither filter nor
# page a queue: a record carries its DLQ's name while its message waits there (a sparse
# index), and the dead letters are listed, filtered and paged from it, newest first.
MESSAGE_FAILURES = TableSpec(
    name="message-failures",
    hash_key="message_id",
    indexes={"by-dlq": ("dlq", "dead_lettered_at")},
)
# Every redrive, delete and purge of dead letters, who made it and what it moved:
# append-only (a conditional put on a new key; nobody may update or delete an entry).
DLQ_AUDIT = TableSpec(name="dlq-audit", hash_key="queue", range_key="entry")
RUNTIME_TABLES = (PROCESSED_EVENTS, MESSAGE_FAILURES, DLQ_AUDIT)
# Tables whose entries are only ever added to.
APPEND_ONLY_RUNTIME_TABLES = (DLQ_AUDIT,)
