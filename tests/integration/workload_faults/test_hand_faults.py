"""The faults a random game day makes by hand (chaos/hand_faults.py), for real in the
emulator: each breaks the workload's next run the way it would on AWS, the account
snapshot the judge reads names what changed (and grants nothing wider), and once put back
the account reads exactly as before."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from chaos import hand_faults
from chaos.account_snapshot import differences, read_function, wider_grants
from core.aws import Clients
from core.principals import Principal
from tests.integration.conftest import RunningWorld
from workload.baseline import restore_function_code
from workload.deploy import SAMPLE_BATCH, handler_zip
from workload.spec import FunctionSpec, spec_for

FUNCTION = "data-processor"
Fault = Callable[[Clients, FunctionSpec], str]


@pytest.fixture
def healthy(world: RunningWorld) -> Iterator[RunningWorld]:
    world.wait_healthy(FUNCTION)
    yield world
    # What `fleet chaos restore` does not put back: the code of $LATEST, the input data.
    admin = world.clients(Principal.ADMIN)
    spec = spec_for(FUNCTION, world.settings)
    restore_function_code(admin("lambda"), FUNCTION, handler_zip())
    admin("s3").put_object(
        Bucket=spec.bucket, Key=spec.input_key, Body=json.dumps(SAMPLE_BATCH).encode()
    )
    world.fleet("chaos", "restore", "--function", FUNCTION)


FAULTS = [
    pytest.param(
        lambda c, s: hand_faults.deny_policy(c, s, "s3-lockdown", "s3"),
        "failing",
        "GetObject operation: Access Denied",
        "inline policy s3-lockdown added",
        id="deny-policy",
    ),
    pytest.param(
        lambda c, s: hand_faults.environment_typo(c, s, "DATA_BUCKET", 5),
        "failing",
        "Access Denied",
        "environment DATA_BUCKET='data-rpocessor",
        id="env-typo",
    ),
    # Logs go with the policies: the failure shows in the metrics only.
    pytest.param(
        hand_faults.delete_inline_policies,
        "failing",
        None,
        "inline policy data-processor-baseline missing",
        id="delete-policies",
    ),
    pytest.param(
        lambda c, s: hand_faults.drop_egress(c, s, only_https=True),
        "failing",
        "Task timed out after 10.00 seconds",
        "rule missing: egress tcp 443-443 0.0.0.0/0 'AWS APIs over HTTPS'",
        id="egress-https",
    ),
    pytest.param(
        hand_faults.zero_concurrency, "throttled", None, "reserved concurrency 0", id="concurrency"
    ),
    pytest.param(
        hand_faults.bad_deploy,
        "failing",
        "KeyError: 'batch_date'",
        "code of $LATEST",
        id="bad-deploy",
    ),
    pytest.param(
        lambda c, s: hand_faults.corrupt_input(c, s, "no-records"),
        "failing",
        "KeyError: 'records'",
        "input/batch.json rewritten",
        id="input-no-records",
    ),
    pytest.param(
        lambda c, s: hand_faults.corrupt_input(c, s, "not-numbers"),
        "failing",
        "TypeError",
        "input/batch.json rewritten",
        id="input-not-numbers",
    ),
    pytest.param(
        hand_faults.delete_input, "failing", None, "input/batch.json deleted", id="input-missing"
    ),
]


@pytest.mark.parametrize(("fault", "health", "error", "seen"), FAULTS)
def test_a_hand_made_fault_breaks_the_workload_and_the_judge_sees_it(
    healthy: RunningWorld, fault: Fault, health: str, error: str | None, seen: str
) -> None:
    admin = healthy.clients(Principal.ADMIN)
    spec = spec_for(FUNCTION, healthy.settings)
    before = read_function(admin, spec)

    said = fault(admin, spec)

    healthy.wait_status(
        FUNCTION,
        f"{health} with {error!r} after: {said}",
        lambda s: s.health == health and (error is None or error in (s.runs.last_error or "")),
    )
    broken = read_function(admin, spec)
    changed = differences(before, broken)
    assert any(seen in line for line in changed), changed
    assert wider_grants(before, broken) == []

    restore_function_code(admin("lambda"), FUNCTION, handler_zip())
    admin("s3").put_object(
        Bucket=spec.bucket, Key=spec.input_key, Body=json.dumps(SAMPLE_BATCH).encode()
    )
    assert healthy.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0
    healthy.wait_healthy(FUNCTION)
    # Put back, the account reads exactly as before (the input's ETag is its content's).
    assert differences(before, read_function(admin, spec)) == []
