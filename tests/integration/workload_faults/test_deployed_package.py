"""The runtime runs what is deployed: the package the version behind the alias `live` holds,
fetched from GetFunction's Code.Location, with nothing of the project's source on its path."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.lambda_package import build_zip, code_sha256, download
from core.principals import Principal
from emulation.world import wait_for
from tests.integration.conftest import RunningWorld
from workload.deploy import handler_zip

FUNCTION = "data-processor-2"
# A handler unlike the source tree's: it says which package ran and whether the project's
# own packages were importable from it.
MARKED_HANDLER = """
def handler(event, context):
    try:
        import workload  # the project's source: never on a function's path
        source = "importable"
    except ImportError:
        source = "absent"
    print("{marker} project source {{}}".format(source))
    return {{"marker": "{marker}"}}
"""


def marked_package(marker: str) -> bytes:
    return build_zip({"data_processor.py": MARKED_HANDLER.format(marker=marker).encode()})


def log_lines(admin: Any, function: str, since_ms: int) -> list[str]:
    logs = admin("logs")
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"logGroupName": f"/aws/lambda/{function}", "startTime": since_ms}
    while True:
        page = logs.filter_log_events(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return [e["message"] for e in sorted(events, key=lambda e: (e["timestamp"], e["eventId"]))]


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@pytest.fixture
def deployed(world: RunningWorld) -> Iterator[RunningWorld]:
    """The function healthy on its deployed package before, and put back after."""
    world.wait_healthy(FUNCTION)
    yield world
    admin = world.clients(Principal.ADMIN)
    admin("lambda").update_function_code(FunctionName=FUNCTION, ZipFile=handler_zip())
    assert world.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0
    world.wait_healthy(FUNCTION)


def test_the_runtime_runs_the_deployed_package_not_the_source_tree(
    deployed: RunningWorld,
) -> None:
    admin = deployed.clients(Principal.ADMIN)
    marker = f"MARKER-{uuid.uuid4().hex[:8]}"
    since = now_ms()
    admin("lambda").update_function_code(FunctionName=FUNCTION, ZipFile=marked_package(marker))

    seen: list[str] = []

    def marker_logged() -> bool:
        seen[:] = log_lines(admin, FUNCTION, since)
        return any(marker in line for line in seen)

    wait_for(marker_logged, 60, f"{marker} in {FUNCTION}'s logs")
    assert f"{marker} project source absent" in seen, [line for line in seen if marker in line]
    # live points to $LATEST: the run that printed the marker says so.
    marked = next(i for i, line in enumerate(seen) if marker in line)
    start = next(line for line in reversed(seen[:marked]) if line.startswith("START "))
    assert start.endswith("Version: $LATEST"), start


def test_a_published_version_keeps_its_code_after_latest_changes(deployed: RunningWorld) -> None:
    lam = deployed.clients(Principal.ADMIN)("lambda")
    good = handler_zip()
    version = lam.publish_version(FunctionName=FUNCTION)["Version"]
    marked = marked_package("MARKER-latest-only")
    updated = lam.update_function_code(FunctionName=FUNCTION, ZipFile=marked)
    assert updated["CodeSha256"] == code_sha256(marked)

    pinned = lam.get_function(FunctionName=FUNCTION, Qualifier=version)
    assert pinned["Configuration"]["Version"] == version
    assert pinned["Configuration"]["CodeSha256"] == code_sha256(good)
    assert download(pinned["Code"]["Location"], code_sha256(good)) == good
    latest = lam.get_function(FunctionName=FUNCTION)
    assert latest["Configuration"]["CodeSha256"] == code_sha256(marked)
    assert download(latest["Code"]["Location"], code_sha256(marked)) == marked
    listed = {
        v["Version"]: v["CodeSha256"]
        for v in lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    }
    assert listed[version] == code_sha256(good) and listed["$LATEST"] == code_sha256(marked)
    # Nothing changed since the last version: publishing again publishes nothing new.
    again = lam.publish_version(FunctionName=FUNCTION)["Version"]
    assert lam.publish_version(FunctionName=FUNCTION)["Version"] == again
    # A CodeSha256 that is not $LATEST's refuses the publish, as on AWS.
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.publish_version(FunctionName=FUNCTION, CodeSha256=code_sha256(good))


def test_a_package_link_is_good_only_with_the_token_getfunction_issued(
    world: RunningWorld,
) -> None:
    location = world.clients(Principal.OPERATOR)("lambda").get_function(FunctionName=FUNCTION)[
        "Code"
    ]["Location"]
    with urllib.request.urlopen(location, timeout=10) as answer:
        assert code_sha256(answer.read()) == code_sha256(handler_zip())
    forged = location.rsplit("=", 1)[0] + "=" + "A" * 43
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 403
    # Who may not call GetFunction on the function gets no link at all.
    scheduler = world.clients(Principal.SCHEDULER)("lambda")
    with pytest.raises(scheduler.exceptions.ClientError) as denied:
        scheduler.get_function(FunctionName=FUNCTION)
    assert "AccessDenied" in str(denied.value)


def test_bad_deploy_runs_the_new_version_until_restore_points_live_back(
    deployed: RunningWorld,
) -> None:
    admin = deployed.clients(Principal.ADMIN)
    since = now_ms()
    done = deployed.fleet("chaos", "bad-deploy", "--function", FUNCTION)
    assert done.returncode == 0, done.stderr
    bad = admin("lambda").get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"]
    assert bad != "$LATEST" and f"alias live -> {bad}" in done.stdout

    broken = deployed.wait_status(
        FUNCTION,
        f"failing on version {bad}",
        lambda s: s.health == "failing" and s.runs.last_version == bad,
    )
    assert broken.live_target == bad
    assert "KeyError: 'BATCH_SCHEMA'" in (broken.runs.last_error or "")
    assert f"deploy: alias live -> {bad} (baseline: $LATEST)" in broken.drift
    assert any(line.startswith("deploy: live runs code") for line in broken.drift)
    # The version's runs fail: each START naming it is followed by the KeyError.
    lines = log_lines(admin, FUNCTION, since)
    starts = [line for line in lines if line.startswith("START ") and line.endswith(f" {bad}")]
    assert starts, lines[-10:]
    request_id = starts[-1].split()[2]
    errors = [json.loads(line) for line in lines if line.startswith('{"errorType"')]
    assert any(e["requestId"] == request_id and e["errorType"] == "KeyError" for e in errors)
    # $LATEST kept the good code.
    latest = admin("lambda").get_function_configuration(FunctionName=FUNCTION)
    assert latest["CodeSha256"] == code_sha256(handler_zip())

    restored = deployed.fleet("chaos", "restore", "--function", FUNCTION)
    assert restored.returncode == 0, restored.stderr
    assert f"alias live -> $LATEST (was {bad})" in restored.stdout
    healthy = deployed.wait_status(
        FUNCTION,
        "healthy on $LATEST at baseline",
        lambda s: s.health == "healthy" and s.at_baseline and s.runs.last_version == "$LATEST",
    )
    assert healthy.live_target == "$LATEST"


def test_metrics_carry_the_executed_version_and_the_aggregate_counts_each_run_once(
    world: RunningWorld,
) -> None:
    world.wait_healthy(FUNCTION)
    cw = world.clients(Principal.ADMIN)("cloudwatch")
    period_s = world.settings.alarm_period_s
    function: list[Any] = [{"Name": "FunctionName", "Value": FUNCTION}]

    def by_version(version: str) -> list[Any]:
        return [
            *function,
            {"Name": "Resource", "Value": f"{FUNCTION}:live"},
            {"Name": "ExecutedVersion", "Value": version},
        ]

    def invocations(dimensions: list[Any], end: datetime) -> float:
        points = cw.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            Dimensions=dimensions,
            StartTime=end - timedelta(minutes=5),
            EndTime=end,
            Period=300,
            Statistics=["Sum"],
        )["Datapoints"]
        return float(sum(p["Sum"] for p in points))

    def published_end() -> datetime:
        # The start of the period after the last one surely published (it ended more than
        # 5 s ago), so no datapoint lands in the window between the reads.
        settled = datetime.now(UTC).timestamp() - 5
        return datetime.fromtimestamp(settled - settled % period_s, UTC)

    wait_for(
        lambda: invocations(function, published_end()) > 0,
        3 * period_s + 30,
        f"runs of {FUNCTION} in the AWS/Lambda metrics",
    )
    end = published_end()
    per_function = invocations(function, end)
    versions = {
        d["Value"]
        for m in cw.list_metrics(
            Namespace="AWS/Lambda", MetricName="Invocations", Dimensions=function
        )["Metrics"]
        for d in m["Dimensions"]
        if d["Name"] == "ExecutedVersion"
    }
    assert "$LATEST" in versions
    # Every run is one invocation of the function and one of the alias's executed version
    # (other tests may have run other versions), and a query for the function alone does
    # not count the latter again.
    assert sum(invocations(by_version(v), end) for v in versions) == per_function
