"""The MCP API key in Secrets Manager: tasks receive it as an ECS secret (resolved by the
agent at start), never as a plain environment variable, and it never appears in logs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

KEY_LENGTH = 48


class SecretStore(pulumi.ComponentResource):
    mcp_api_key: aws.secretsmanager.Secret

    def __init__(self, name: str, production: bool, opts: pulumi.ResourceOptions | None = None):
        super().__init__("incident-fleet:secrets:SecretStore", name, None, opts)
        self.mcp_api_key = aws.secretsmanager.Secret(
            "mcp-api-key",
            name_prefix="incident-fleet/mcp-api-key-",
            description="The key every request to the fleet's MCP tool servers carries",
            # A production key can be restored for a week after a mistaken delete.
            recovery_window_in_days=7 if production else 0,
            opts=pulumi.ResourceOptions(parent=self),
        )
        generated = aws.secretsmanager.get_random_password_output(
            password_length=KEY_LENGTH, exclude_punctuation=True
        ).random_password
        aws.secretsmanager.SecretVersion(
            "mcp-api-key",
            secret_id=self.mcp_api_key.id,
            secret_string=pulumi.Output.secret(generated),
            # Generated once: a later `pulumi up` must not rotate the key under running tasks.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["secretString"]),
        )
        self.register_outputs({"mcp_api_key_arn": self.mcp_api_key.arn})
