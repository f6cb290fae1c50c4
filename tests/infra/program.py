"""The Pulumi program run under Pulumi's unit-test mocks: every resource it would create,
with the inputs it would send to AWS, recorded for the checks to read."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from infra.config import PROJECT, StackConfig
from infra.fleet_stack import build_fleet

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "111122223333"
REGION = "ca-central-1"
ZONES = ["ca-central-1a", "ca-central-1b", "ca-central-1d"]
# What the mocked Secrets Manager generates: it must appear nowhere but in the secret.
GENERATED_KEY = "mock-generated-mcp-key-7f3a9c"


@dataclass(frozen=True)
class Recorded:
    type: str
    name: str
    id: str
    inputs: dict[str, Any]

    def json(self, key: str) -> Any:
        """An input that AWS takes as a JSON document, parsed."""
        value = self.inputs.get(key)
        return json.loads(value) if isinstance(value, str) else value


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would (ARNs, URLs, names from the inputs) and records every resource."""

    def __init__(self, account: str, region: str):
        self.account = account
        self.region = region
        self.resources: list[Recorded] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        name = inputs.get("name") or args.name
        state = {**inputs, "name": name}
        a, r = self.account, self.region
        match args.typ:
            case "aws:sqs/queue:Queue":
                state["arn"] = f"arn:aws:sqs:{r}:{a}:{name}"
                state["url"] = f"https://sqs.{r}.amazonaws.com/{a}/{name}"
            case "aws:sns/topic:Topic":
                state["arn"] = f"arn:aws:sns:{r}:{a}:{name}"
            case "aws:iam/role:Role":
                state["arn"] = f"arn:aws:iam::{a}:role/{name}"
            case "aws:ecr/repository:Repository":
                state["repositoryUrl"] = f"{a}.dkr.ecr.{r}.amazonaws.com/{name}"
            case "aws:lambda/function:Function":
                state["arn"] = f"arn:aws:lambda:{r}:{a}:function:{name}"
            case "aws:lambda/alias:Alias":
                function = inputs["functionName"]
                state["arn"] = f"arn:aws:lambda:{r}:{a}:function:{function}:{name}"
            case "aws:dynamodb/table:Table":
                state["arn"] = f"arn:aws:dynamodb:{r}:{a}:table/{name}"
            case "aws:cloudwatch/dashboard:Dashboard":
                state["dashboardName"] = inputs.get("dashboardName")
            case _:
                state.setdefault("arn", f"arn:aws:mock:{r}:{a}:{args.typ}/{name}")
        resource_id = f"{args.name}.{args.typ.rsplit(':', 1)[-1]}"
        self.resources.append(Recorded(args.typ, args.name, resource_id, inputs))
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        self.calls.append(args.token)
        match args.token:
            case "aws:index/getAvailabilityZones:getAvailabilityZones":
                return {"names": ZONES}
            case "aws:secretsmanager/getRandomPassword:getRandomPassword":
                return {"randomPassword": GENERATED_KEY}
            case "aws:lambda/getFunction:getFunction":
                fn = args.args["functionName"]
                return {"role": f"arn:aws:iam::{self.account}:role/service-role/{fn}-role"}
        return {}


@dataclass
class Program:
    config: StackConfig
    resources: list[Recorded]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Recorded:
        (found,) = [r for r in self.of_type(type_) if r.name == name]
        return found

    def by_id(self, resource_id: str) -> Recorded:
        (found,) = [r for r in self.resources if r.id == resource_id]
        return found


def stack(**values: Any) -> StackConfig:
    return StackConfig(stack="test", region=REGION, account_id=ACCOUNT, **values)


def deploy(config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> Program:
    """Run the program to completion under the mocks; what it created and exported."""
    # Pulumi's runtime awaits on the current event loop; a test before may have closed it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = RecordingMocks(config.account_id, config.region)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=config.stack, preview=False)
    program = Program(config, mocks.resources)

    @pulumi.runtime.test
    def run() -> pulumi.Output[None]:
        exported = build_fleet(config, opts)
        return pulumi.Output.from_input(exported).apply(program.outputs.update)

    try:
        run()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return program
