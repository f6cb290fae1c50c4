"""A fix waiting for a person, approved from the console's page in a real headless browser
(Debian's Chromium, driven by Playwright), and the incident resolved: its page shows the
person's decision, the fix and its trace. Each test saves a screenshot of every page it
visits in its own output folder."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from core.principals import Principal
from emulation.world import wait_for
from incidents.incident_report import list_incidents
from incidents.store import IncidentStore
from tests.integration.browser import console_url, log_in
from tests.integration.conftest import RunningWorld


def test_a_pending_fix_is_approved_from_the_page_and_the_incident_resolves(
    fleet: RunningWorld, chromium: Browser, tmp_path: Path
) -> None:
    store = IncidentStore(fleet.clients(Principal.OPERATOR)("dynamodb"))
    fleet.wait_healthy("data-processor")
    assert fleet.fleet("chaos", "revoke", "--target", "s3").returncode == 0
    wait_for(
        lambda: bool(list_incidents(store, "AWAITING_APPROVAL")), 90, "a fix awaiting approval", 0.5
    )
    incident_id = list_incidents(store, "AWAITING_APPROVAL")[0]["incident_id"]

    page = log_in(chromium, fleet, tmp_path)
    page.click('a[href="/approvals"]')
    card = page.locator(f'.approval[data-incident="{incident_id}"]')
    expect(card).to_contain_text("iam")
    expect(card).to_contain_text("PutRolePolicy")
    # Beside the calls, how the live function has drifted from the baseline they restore.
    expect(card.locator("details pre")).to_contain_text('"at_baseline": false')
    page.screenshot(path=str(tmp_path / "approvals.png"), full_page=True)
    card.locator("input.approver").fill("dana")
    card.locator("button.approve").click()
    expect(page.locator(".result")).to_contain_text("approved by dana (console)")

    wait_for(
        lambda: getattr(store.get(incident_id), "status", None) == "RESOLVED", 150, "RESOLVED", 0.5
    )
    page.goto(console_url(fleet) + f"/incidents/{incident_id}")
    expect(page.locator("#status")).to_have_text("RESOLVED")
    expect(page.locator("#approval")).to_contain_text("approved by dana (console)")
    expect(page.locator("#actions")).to_contain_text("PutRolePolicy")
    expect(page.locator("#agent-cost")).to_contain_text("completion tokens")
    # Its trace: every stage, the person's decision at the console among them, and the fix.
    waterfall = page.locator("#trace table.waterfall")
    for stage in ("supervisor", "resolver", "critic"):
        expect(waterfall.locator(f'tr[data-name="process {stage}"]').first).to_be_visible()
    expect(waterfall.locator('tr[data-name="incident.decision"]')).to_contain_text("console")
    expect(waterfall.locator('tr[data-name="IAM.PutRolePolicy"]')).to_have_count(1)
    page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)
    page.click('a[href="/incidents"]')
    expect(page.locator(f'tr[data-incident="{incident_id}"] .status')).to_have_text("RESOLVED")
    page.screenshot(path=str(tmp_path / "incidents.png"))
