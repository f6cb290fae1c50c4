"""What an operator sees of the pipeline at one moment: each queue's depth and the incidents
by status. The console's queues page and `fleet tail` show the same snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from core.aws import Clients
from incidents.store import IncidentStore
from queues.depths import QueueDepth, queue_depths
from queues.topology import TopologySpec


class TailSnapshot(BaseModel):
    at: str
    queues: list[QueueDepth]
    incidents: dict[str, int]
    error: str | None = None


def snapshot(clients: Clients, topology: TopologySpec) -> TailSnapshot:
    return TailSnapshot(
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        queues=queue_depths(clients, topology),
        incidents=IncidentStore(clients("dynamodb")).count_by_status(),
    )


def safe_snapshot(
    clients: Clients, topology: TopologySpec, previous: TailSnapshot | None
) -> TailSnapshot:
    """A snapshot, or the last one marked with the error (the emulator may be away)."""
    try:
        return snapshot(clients, topology)
    except Exception as exc:
        message = f"{type(exc).__name__}: {str(exc)[:200]}"
        if previous is None:
            return TailSnapshot(
                at=datetime.now(UTC).isoformat(timespec="seconds"),
                queues=[],
                incidents={},
                error=message,
            )
        return previous.model_copy(update={"error": message})
