"""The incident domain's DynamoDB tables: names, keys and indexes."""

from __future__ import annotations

from core.dynamodb import TableSpec
from queues.tables import RUNTIME_TABLES

INCIDENT_STATE = TableSpec(
    name="incident-state",
    hash_key="incident_id",
    indexes={
        # "incidents by status, newest first" for tail, the console and the watchdog.
        "by-status": ("status", "updated_at"),
        # open-or-dedupe: an alert finds the incident already open for its fingerprint.
        "by-fingerprint": ("fingerprint", None),
    },
)
INCIDENT_CONTEXT = TableSpec(name="incident-context", hash_key="incident_id", range_key="item")
# Append-only: a conditional put on (incident_id, seq); never updated, never deleted.
INCIDENT_AUDIT = TableSpec(
    name="incident-audit", hash_key="incident_id", range_key="seq", range_key_type="N"
)
# Known-good baselines of the protected functions, versioned (incidents/baselines.py).
BASELINES = TableSpec(
    name="baselines", hash_key="function", range_key="version", range_key_type="N"
)
# Who is remediating a resource now (incidents/leases.py): one item per resource.
RESOURCE_LEASES = TableSpec(name="resource-leases", hash_key="resource")
INCIDENT_TABLES = (
    INCIDENT_STATE,
    INCIDENT_CONTEXT,
    INCIDENT_AUDIT,
    BASELINES,
    RESOURCE_LEASES,
)
# Every table of the fleet: the runtime's and the domain's, for provisioning and policies.
TABLES = RUNTIME_TABLES + INCIDENT_TABLES
