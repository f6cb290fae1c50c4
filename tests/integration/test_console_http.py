"""The console over HTTP, every route: the token (401 without it), the CSRF token on every
state-changing request a browser makes (403 without it), escaping, and the actions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.principals import Principal
from emulation.world import terminate, wait_for
from incidents.store import IncidentStore
from tests.incident_records import ROUND_2_BECAUSE, record_two_rounds_then_escalated
from tests.integration.conftest import RunningWorld, Workers

HTML = {"Accept": "text/html"}
PAGES = [
    "/queues",
    "/api/queues",
    "/dlq/critic-dlq",
    "/api/dlq/critic-dlq",
    "/dlq/critic-dlq/peek",
    "/dlq/critic-dlq/plan",
    "/dlq/critic-dlq/export.json",
    "/dlq-audit",
    "/dlq-audit/critic-dlq/x",
    "/jobs/x",
    "/api/jobs/x",
    "/incidents",
    "/incidents/inc-x",
    "/incidents/inc-x/postmortem.md",
    "/approvals",
]
ACTIONS = [
    "/logout",
    "/dlq/critic-dlq/redrive",
    "/dlq/critic-dlq/delete",
    "/dlq/critic-dlq/purge",
    "/jobs/x/cancel",
    "/approvals/inc-x/approve",
    "/approvals/inc-x/reject",
]


@pytest.fixture(scope="module")
def base(world: RunningWorld) -> str:
    return f"http://{world.settings.console_host}:{world.settings.console_port}"


@pytest.fixture(scope="module")
def token(world: RunningWorld) -> str:
    return world.settings.console_token_file.read_text().strip()


@pytest.fixture
def browser(base: str, token: str) -> Iterator[httpx.Client]:
    """A logged-in browser session (the cookie), as a person gets from the login form."""
    with httpx.Client(base_url=base, headers=HTML) as client:
        answer = client.post("/login", data={"token": token, "next": "/queues"})
        assert answer.status_code == 303 and answer.headers["location"] == "/queues"
        yield client


def _csrf(client: httpx.Client, path: str = "/queues") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _sqs(world: RunningWorld) -> Any:
    return world.clients(Principal.ADMIN)("sqs")


def _dead_letter(world: RunningWorld, body: str, dlq: str = "critic-dlq") -> str:
    sqs = _sqs(world)
    url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    return str(sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"])


def _drain(world: RunningWorld, name: str) -> list[str]:
    sqs = _sqs(world)
    url, bodies = sqs.get_queue_url(QueueName=name)["QueueUrl"], []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_the_token(base: str, token: str, path: str) -> None:
    assert httpx.get(base + path).status_code == 401
    assert httpx.get(base + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    page = httpx.get(base + path, headers=HTML)
    assert page.status_code == 401
    if path.startswith("/api/"):
        assert page.json() == {"error": "the console token is needed"}
    else:
        assert 'name="token"' in page.text  # a person gets the login form
    with_token = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"})
    assert with_token.status_code in (200, 404)  # 404: no such job or incident


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_needs_the_token_then_the_csrf_token(
    base: str, browser: httpx.Client, path: str
) -> None:
    assert httpx.post(base + path, data={"confirm": "yes"}).status_code == 401
    assert browser.post(path, data={"confirm": "yes"}).status_code == 403
    assert browser.post(path, data={"csrf_token": "forged", "confirm": "yes"}).status_code == 403


def test_a_wrong_token_is_refused_and_login_never_redirects_off_site(base: str, token: str) -> None:
    with httpx.Client(base_url=base) as client:
        wrong = client.post("/login", data={"token": "nope", "next": "/queues"})
        assert wrong.status_code == 401 and "not the console token" in wrong.text
        off_site = client.post("/login", data={"token": token, "next": "//evil.example/x"})
        assert off_site.status_code == 303 and off_site.headers["location"] == "/"
        cookie = off_site.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie


def test_pages_escape_payloads_and_show_no_secret(
    world: RunningWorld, browser: httpx.Client, token: str
) -> None:
    _drain(world, "critic-dlq")
    _dead_letter(world, '<script>alert("owned")</script>')
    # Sent to the DLQ by hand, it has no failure record: Peek shows it, as SQS holds it.
    page = browser.get("/dlq/critic-dlq/peek").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;owned&#34;)" in page
    mcp_key = world.settings.resolved_mcp_api_key()
    for path in ("/queues", "/dlq/critic-dlq", "/dlq-audit", "/incidents", "/approvals"):
        text = browser.get(path).text
        assert token not in text and mcp_key not in text
    _drain(world, "critic-dlq")


def test_redrive_from_the_page_runs_in_the_background_and_reports(
    world: RunningWorld, browser: httpx.Client
) -> None:
    _drain(world, "critic-dlq")
    _drain(world, "critic")
    chosen = _dead_letter(world, '{"n": 1}')
    _dead_letter(world, '{"n": 2}')
    csrf = _csrf(browser, "/dlq/critic-dlq")
    started = browser.post(
        "/dlq/critic-dlq/redrive",
        data={
            "csrf_token": csrf,
            "scope": "selected",
            "ids": [chosen],
            "to": "critic",
            "rate": "5",
        },
    )
    assert started.status_code == 303 and started.headers["location"].startswith("/jobs/")
    job_api = "/api" + started.headers["location"]
    wait_for(lambda: browser.get(job_api).json()["done"], 30, "the redrive to finish")
    job = browser.get(job_api).json()
    assert (job["result"]["moved"], job["result"]["method"]) == (1, "mover")
    assert "moved" in browser.get(started.headers["location"]).text
    assert _drain(world, "critic") == ['{"n": 1}']

    nothing = browser.post(
        "/dlq/critic-dlq/redrive", data={"csrf_token": csrf, "scope": "selected"}
    )
    assert nothing.status_code == 400


def test_delete_and_purge_need_their_confirmation(
    world: RunningWorld, browser: httpx.Client
) -> None:
    _drain(world, "watchdog-dlq")
    one = _dead_letter(world, '{"n": 3}', "watchdog-dlq")
    _dead_letter(world, '{"n": 4}', "watchdog-dlq")
    csrf = _csrf(browser, "/dlq/watchdog-dlq")
    unconfirmed = browser.post("/dlq/watchdog-dlq/delete", data={"csrf_token": csrf, "ids": [one]})
    assert unconfirmed.status_code == 400
    deleted = browser.post(
        "/dlq/watchdog-dlq/delete", data={"csrf_token": csrf, "ids": [one], "confirm": "yes"}
    )
    assert deleted.status_code == 200 and "1 message(s) deleted" in deleted.text
    wrong_name = browser.post(
        "/dlq/watchdog-dlq/purge", data={"csrf_token": csrf, "confirm": "yes"}
    )
    assert wrong_name.status_code == 400
    purged = browser.post(
        "/dlq/watchdog-dlq/purge", data={"csrf_token": csrf, "confirm": "watchdog-dlq"}
    )
    assert purged.status_code == 200 and "deleted for good" in purged.text
    wait_for(lambda: not _drain(world, "watchdog-dlq"), 30, "the DLQ to be empty")
    # SQS allows one purge a minute: the second is refused with a reason, not a crash.
    again = browser.post(
        "/dlq/watchdog-dlq/purge", data={"csrf_token": csrf, "confirm": "watchdog-dlq"}
    )
    assert again.status_code == 409 and "PurgeQueueInProgress" in again.text, again.text


def test_incident_pages_postmortem_and_decisions(
    world: RunningWorld, browser: httpx.Client, base: str, token: str
) -> None:
    store = IncidentStore(world.clients(Principal.SUPERVISOR)("dynamodb"))
    opened = store.open_or_dedupe(
        "data-processor", "console", datetime.now(UTC), 1800, "test", {}, lambda _: [], "c-1"
    )
    listed = browser.get("/incidents?status=RECEIVED").text
    assert opened.incident_id in listed
    assert browser.get("/incidents?status=NOPE").status_code == 400
    detail = browser.get(f"/incidents/{opened.incident_id}").text
    assert "RECEIVED" in detail and "incident.opened" in detail
    download = httpx.get(
        f"{base}/incidents/{opened.incident_id}/postmortem.md",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert download.status_code == 200 and download.text.startswith("# Postmortem")
    assert "attachment" in download.headers["content-disposition"]
    assert "No fix is waiting" in browser.get("/approvals").text

    csrf = _csrf(browser, "/approvals")
    not_waiting = browser.post(
        f"/approvals/{opened.incident_id}/approve",
        data={"csrf_token": csrf, "approver": "carol", "calls_digest": "x"},
    )
    assert not_waiting.status_code == 409 and "no approval request" in not_waiting.text
    nameless = browser.post(
        f"/approvals/{opened.incident_id}/approve", data={"csrf_token": csrf, "calls_digest": "x"}
    )
    assert nameless.status_code == 400


def test_an_escalated_incident_says_what_a_person_needs_in_its_rounds(
    world: RunningWorld, browser: httpx.Client, base: str, token: str
) -> None:
    store = IncidentStore(world.clients(Principal.ADMIN)("dynamodb"))
    incident_id = record_two_rounds_then_escalated(store, "report-http")
    page = browser.get(f"/incidents/{incident_id}")
    assert page.status_code == 200
    handover = page.text[page.text.index('id="handover"') : page.text.index('class="round"')]
    for shown in (
        "What a person needs",
        "Why the fleet stopped:</b> confidence 0.45 &lt; 0.6",
        "(round 2, code_bug, config_drift, confidence 0.45)",
        "Read the failing batch in s3://data/input/batch.json",
        "iam: at baseline (restored in round 1)",
        "logs before 10:02: the log group has none",
        "Who made the change:</b> not looked up here: `fleet incidents show`",
    ):
        assert shown in handover, shown
    # The log line quoted in the evidence is text on the page, never markup.
    assert "<script>window.__owned" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__owned = 1&lt;/script&gt;" in handover
    assert '<span id="symptoms">errors, throttles</span>' in page.text
    assert '<span id="round">round 2</span>' in page.text
    assert f'another round because <span class="ended-because">{ROUND_2_BECAUSE}' in page.text

    listed = browser.get("/incidents?status=ESCALATED").text
    row = listed[listed.index(f'data-incident="{incident_id}"') :].split("</tr>")[0]
    assert '<td class="symptoms">errors, throttles</td>' in row
    assert '<td class="n round">2</td>' in row
    assert 'href="/incidents?status=RECOVERED"' in listed
    assert browser.get("/incidents?status=RECOVERED").status_code == 200

    postmortem = httpx.get(
        f"{base}/incidents/{incident_id}/postmortem.md",
        headers={"Authorization": f"Bearer {token}"},
    ).text
    assert postmortem.index("## Escalation: what a person needs") < postmortem.index("## Round 1")
    assert postmortem.index("## Round 1") < postmortem.index("## Round 2")


def test_a_script_with_the_bearer_token_needs_no_csrf_token(
    world: RunningWorld, base: str, token: str
) -> None:
    answer = httpx.post(
        f"{base}/dlq/resolver-dlq/purge",
        data={"confirm": "resolver-dlq"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200


def test_logout_ends_the_session(browser: httpx.Client) -> None:
    csrf = _csrf(browser)
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert browser.get("/queues").status_code == 401


def test_a_thousand_dead_letters_are_paged_without_receiving_one(
    world: RunningWorld, workers: Workers, browser: httpx.Client
) -> None:
    _drain(world, "watchdog")
    _drain(world, "watchdog-dlq")
    sqs = _sqs(world)
    url = sqs.get_queue_url(QueueName="watchdog")["QueueUrl"]
    worker = workers.start("watchdog", "noop")
    for start in range(0, 1000, 10):  # unreadable: each dead-lettered at once, with its record
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"bad {start + i} {{"} for i in range(10)],
        )
    dlq_url = sqs.get_queue_url(QueueName="watchdog-dlq")["QueueUrl"]

    def depth() -> int:
        attrs = sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    wait_for(lambda: depth() == 1000, 180, "a thousand dead letters", 0.5)
    terminate([worker], 30)

    seen: list[str] = []
    path = "/dlq/watchdog-dlq"
    for _ in range(3):  # three pages, newest first, each its own fifty
        page = browser.get(path).text
        rows = re.findall(r'<tr class="letter" data-message-id="([^"]+)"', page)
        assert len(rows) == 50
        seen += rows
        found = re.search(r'id="next-page" href="([^"]+)"', page)
        assert found, "no next page"
        path = found.group(1).replace("&amp;", "&")
    assert len(set(seen)) == 150
    data = browser.get("/api/dlq/watchdog-dlq").json()
    assert len(data["letters"]) == 50 and data["cursor"]
    # No page load received a dead letter: the first receive of each is this one.
    counts = []
    while got := sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    ).get("Messages", []):
        counts += [m["Attributes"]["ApproximateReceiveCount"] for m in got]
        sqs.delete_message_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
    assert len(counts) == 1000 and set(counts) == {"1"}
