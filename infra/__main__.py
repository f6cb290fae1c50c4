"""`pulumi up`: the incident-response fleet on AWS (see infra/fleet_stack.py and README)."""

import json
import sys
from pathlib import Path

# Pulumi runs this file with infra/ first on sys.path; our modules must be imported as
# infra.*, never as top-level names (infra/state.py is not "state").
_here = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

import pulumi  # noqa: E402
import pulumi_aws as aws  # noqa: E402

from infra.config import PROJECT, StackConfig, camel, stack_config  # noqa: E402
from infra.fleet_stack import build_fleet  # noqa: E402

SET_BY_THE_STACK = {"stack", "region", "account_id"}


def read_config() -> dict[str, object]:
    """Every `incident-fleet:<key>` the stack sets (strings, or YAML objects as JSON)."""
    raw = pulumi.Config(PROJECT)
    values: dict[str, object] = {}
    for field in StackConfig.model_fields.keys() - SET_BY_THE_STACK:
        text = raw.get(camel(field))
        if text is None:
            continue
        try:
            values[field] = json.loads(text)
        except ValueError:  # a plain string: an image URI, an e-mail address
            values[field] = text
    return values


config = stack_config(
    read_config(),
    pulumi.get_stack(),
    pulumi.Config("aws").require("region"),
    aws.get_caller_identity().account_id,
)
for name, value in build_fleet(config).items():
    pulumi.export(name, value)
