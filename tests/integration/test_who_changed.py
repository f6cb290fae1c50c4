"""Who changed what, named by the reports a person reads: `fleet incidents show` and the
postmortem read CloudTrail's event history for the function of an incident with drift.

The change is made as a person makes it (the administrator's keys, over HTTP); the incident
is recorded through the store as the stages record one. The trail's delivery delay is
passed by moving the world's clock on.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator

import pytest

from core.aws import Clients
from emulation import world_clock
from incidents.store import IncidentStore
from tests.incident_records import record_two_rounds_then_escalated
from tests.integration.conftest import RunningWorld
from tests.integration.test_worker_identities import TRUST


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", "def handler(event, context):\n    return 'ok'\n")
    return buf.getvalue()


@pytest.fixture
def function(admin: Clients) -> Iterator[str]:
    """A function of the test's own (and its role); its name. Deleted after."""
    iam, lam = admin("iam"), admin("lambda")
    name = f"who-changed-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(TRUST))[
        "Role"
    ]
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Arn"],
        Handler="index.handler",
        Code={"ZipFile": _zip()},
    )
    yield name
    lam.delete_function(FunctionName=name)
    iam.delete_role(RoleName=f"{name}-role")


def test_the_report_and_the_postmortem_name_who_renamed_the_handler(
    world: RunningWorld, admin: Clients, function: str
) -> None:
    """A renamed handler is a person's change: the report names the call, the function,
    the person and the time, from CloudTrail's event history (userIdentity, eventName,
    eventTime), and the postmortem says the same.
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
    """
    admin("lambda").update_function_configuration(FunctionName=function, Handler="index.renamed")
    incident_id = record_two_rounds_then_escalated(IncidentStore(admin("dynamodb")), function)
    world_clock.of_state_dir(world.settings.state_dir).advance(
        world.settings.trail_delivery_delay_s + 1
    )

    shown = world.fleet("incidents", "show", incident_id, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    who = report["handover"]["who_changed"]
    renamed = f"UpdateFunctionConfiguration20150331v2 on {function} by IAMUser fleet-admin at "
    assert renamed in who, who
    changes = report["change_history"]["changes"]
    assert [c["event"] for c in changes] == [
        "CreateFunction20150331",
        "UpdateFunctionConfiguration20150331v2",
    ]
    assert all(not c["by_fleet"] for c in changes)

    text = world.fleet("incidents", "show", incident_id)
    assert f"  who made the change: {who}" in text.stdout.splitlines()
    postmortem = world.fleet("incidents", "postmortem", incident_id)
    assert postmortem.returncode == 0, postmortem.stderr
    assert renamed in postmortem.stdout
    assert "not looked up here" not in postmortem.stdout
