"""The fleet's DynamoDB tables on AWS (the incident store's, the runtime's, the shared model
quota's), from the same specs the embedded world uses."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from core.dynamodb import TableSpec
from core.shared_bucket import RATE_LIMITS
from incidents.tables import TABLES


def table_args(spec: TableSpec, production: bool) -> dict[str, Any]:
    """The table's keys and indexes exactly as provisioning creates them, plus what only a
    real account has: point-in-time recovery, encryption with a KMS key, deletion
    protection on production stacks."""
    created = spec.create_arguments()
    keys = {k["KeyType"]: k["AttributeName"] for k in created["KeySchema"]}
    indexes = []
    for gsi in created.get("GlobalSecondaryIndexes", []):
        indexes.append(
            aws.dynamodb.TableGlobalSecondaryIndexArgs(
                name=gsi["IndexName"],
                key_schemas=[
                    aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                        attribute_name=k["AttributeName"], key_type=k["KeyType"]
                    )
                    for k in gsi["KeySchema"]
                ],
                projection_type=gsi["Projection"]["ProjectionType"],
            )
        )
    return {
        "name": created["TableName"],
        "billing_mode": created["BillingMode"],
        "hash_key": keys["HASH"],
        "range_key": keys.get("RANGE"),
        "attributes": [
            aws.dynamodb.TableAttributeArgs(name=a["AttributeName"], type=a["AttributeType"])
            for a in created["AttributeDefinitions"]
        ],
        "global_secondary_indexes": indexes or None,
        "point_in_time_recovery": aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
        "server_side_encryption": aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
        "deletion_protection_enabled": production,
    }


class State(pulumi.ComponentResource):
    tables: dict[str, aws.dynamodb.Table]

    def __init__(self, name: str, production: bool, opts: pulumi.ResourceOptions | None = None):
        super().__init__("incident-fleet:state:State", name, None, opts)
        self.tables = {
            spec.name: aws.dynamodb.Table(
                spec.name,
                **table_args(spec, production),
                opts=pulumi.ResourceOptions(parent=self, protect=production),
            )
            for spec in (*TABLES, RATE_LIMITS)
        }
        self.register_outputs({"table_names": {n: t.name for n, t in self.tables.items()}})
