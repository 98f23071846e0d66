"""The client portal in a real Chromium (Playwright) at desktop (1440 px) and phone (390 px) widths, against the live
server, with notices delivered through a real SMTP server (aiosmtpd): a client whose card declined reads the state
in plain words, replaces the card and pays now → Paid and a Payment Received email (POR-1); a double click on Pay
now makes one attempt; a second client cannot see or pay the first one's charge (TEN-2); a 3-D Secure card is
confirmed in the portal (COL-7). Screenshots of the portal, the invoice PDF (as PNG) and sign-in go to
artifacts/screenshots/."""

from __future__ import annotations

import re
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from accounts.models import Role
from agencybilling import seed
from billing.models import Charge
from billing.payment_methods import payment_method_attach
from billing.statuses import AttemptKind, AttemptOutcome, ChargeStatus
from clients.models import Client, ClientUser
from tenants.models import Agency
from tests.billing_helpers import with_plan
from tests.browser.conftest import DESKTOP, PHONE, SCREENSHOTS, screenshot, sign_in
from tests.conftest import make_user
from tests.ui_helpers import billed_agency

FEB = date(2027, 2, 1)
OWNER = "owner@declining.example"


def _client_user(agency, client, email: str) -> None:
    user = make_user(agency, email, Role.CLIENT)
    with schema_context(agency.schema_name):
        ClientUser.objects.create(user=user, client=Client.objects.get(pk=client.pk))


@pytest.fixture
def live_site(live_server, settings):
    """Links that leave the site (emails, the sandbox's 3-D Secure page) point at the live server."""
    settings.SITE_URL = live_server.url
    return live_server


@pytest.fixture
def scenario(agency_a, live_site, smtp_server, eager_tasks):
    scenario = billed_agency(agency_a)
    Agency.objects.filter(pk=agency_a.pk).update(clock_date=FEB)
    _client_user(agency_a, scenario.declining, OWNER)
    _client_user(agency_a, scenario.paying, "owner@paying.example")
    return scenario


def _plain(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def _feb_charge(client) -> Charge:
    with schema_context("alpha"):
        return Charge.objects.select_related("invoice").get(client=client, due_on=FEB)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_POR_1_declined_client_reads_the_state_replaces_the_card_and_pays_now(
    page, site, scenario, smtp_server, viewport
):
    page.set_viewport_size(viewport)
    sign_in(page, site("alpha", "/login/?next=/portal/"), OWNER)
    attention = page.get_by_role("region", name="Needs your attention")
    expect(attention).to_contain_text("Payment failed — we'll try again on 8 Feb.")
    expect(attention).to_contain_text("Your card was declined.")
    expect(page.get_by_test_id("balance-due")).to_have_text("198.00 USD")
    expect(page.get_by_text("Paid Out")).to_have_count(0)
    if viewport == DESKTOP:
        screenshot(page, "portal-payment-failed")
    feb = _feb_charge(scenario.declining)
    # Replace the declined card: the portal offers to pay the open charge at once.
    page.get_by_role("link", name="Replace").click()
    page.get_by_label("Visa ···· 4242 — pays").check()
    page.get_by_role("button", name="Save payment method").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Pay invoice "))).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("you can pay it now")
    expect(page.get_by_test_id("pay-method")).to_contain_text("Visa ···· 4242")
    if viewport == DESKTOP:
        screenshot(page, "portal-pay-now")
    page.get_by_role("button", name="Pay now 99.00 USD").click()
    expect(page.get_by_role("status")).to_contain_text("Thank you — 99.00 USD paid")
    expect(page.get_by_test_id("invoice-charge").first).to_contain_text("Paid on 1 Feb with Visa ···· 4242")
    # The other open charge is still offered; pay it too from the overview.
    page.get_by_role("region", name="Needs your attention").get_by_role("button", name="Pay now 99.00 USD").click()
    expect(page.get_by_role("status")).to_contain_text("Thank you — 99.00 USD paid")
    expect(page.get_by_role("region", name="Needs your attention")).to_have_count(0)
    expect(page.get_by_test_id("balance-due")).to_have_text("0.00 USD")
    if viewport == DESKTOP:
        screenshot(page, "portal-paid")
    with schema_context("alpha"):
        charges = Charge.objects.filter(client=scenario.declining)
        assert set(charges.values_list("status", flat=True)) == {ChargeStatus.PAID}
        assert ChargeAttemptKinds(charges) == {AttemptKind.CLIENT: 2}
    received = [m for m in smtp_server.messages if m["To"] == "decline@alpha.example" and "received" in m["Subject"]]
    assert len(received) == 2, [m["Subject"] for m in smtp_server.messages]
    assert f"for invoice {feb.invoice.number}" in "".join(_plain(m) for m in received)


def ChargeAttemptKinds(charges) -> dict[str, int]:  # noqa: N802 - reads like the count it returns
    kinds: dict[str, int] = {}
    for charge in charges:
        for attempt in charge.attempts.exclude(kind=AttemptKind.AUTOMATIC):
            kinds[attempt.kind] = kinds.get(attempt.kind, 0) + 1
    return kinds


def test_POR_1_double_clicking_pay_now_makes_one_attempt(page, site, scenario):
    with schema_context("alpha"):
        payment_method_attach(client=Client.objects.get(pk=scenario.declining.pk), token="pm_card_visa:double")
    feb = _feb_charge(scenario.declining)
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    sign_in(page, site("alpha", f"/login/?next=/portal/charges/{feb.public_id}/pay/"), OWNER)
    posts.clear()
    page.get_by_role("button", name="Pay now 99.00 USD").dblclick()
    expect(page.get_by_role("status")).to_contain_text("99.00 USD paid")
    with schema_context("alpha"):
        feb.refresh_from_db()
        assert feb.status == ChargeStatus.PAID
        assert feb.attempts.filter(kind=AttemptKind.CLIENT).count() == 1
        assert feb.attempts.filter(outcome=AttemptOutcome.SUCCEEDED).count() == 1
    assert 1 <= len([u for u in posts if u.endswith("/pay/")]) <= 2


def test_TEN_2_POR_1_a_second_client_cannot_see_or_pay_the_first_ones_charge(page, site, scenario):
    feb = _feb_charge(scenario.declining)
    sign_in(page, site("alpha", "/login/?next=/portal/"), "owner@paying.example")
    expect(page.get_by_text(scenario.declining.name)).to_have_count(0)
    url = site("alpha", f"/portal/charges/{feb.public_id}/pay/")
    assert page.goto(url).status == 404
    page.goto(site("alpha", "/portal/"))
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    # A forged Pay now from the browser itself (its session and CSRF token): the charge is not found.
    status = page.evaluate(
        """([url, token]) => fetch(url, {method: "POST", body: new URLSearchParams(
            {csrfmiddlewaretoken: token, request_key: "e".repeat(32)})}).then(r => r.status)""",
        [url, token],
    )
    assert status == 404
    pdf = page.evaluate(
        "url => fetch(url).then(r => r.status)", site("alpha", f"/portal/invoices/{feb.invoice.public_id}/pdf")
    )
    assert pdf == 404
    with schema_context("alpha"):
        assert feb.attempts.count() == 1


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_COL_7_a_3_d_secure_card_is_confirmed_in_the_portal(
    page, agency_a, live_site, smtp_server, eager_tasks, viewport
):
    with_plan(agency_a)
    make_user(agency_a, "admin@secure.test", Role.ADMINISTRATOR)
    with schema_context("alpha"):
        client = seed.client(
            name="Secure Salon",
            email="billing@secure.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=15000,
            outcome=seed.Outcome.AUTHENTICATION,
            method_tag="browser",
        )
    _client_user(agency_a, client, "owner@secure.example")
    seed.run_days(agency_a, [date(2027, 1, 1)])
    Agency.objects.filter(pk=agency_a.pk).update(clock_date=date(2027, 1, 4))
    # The Payment Failed email, from the real SMTP server, asks to confirm and links to the charge in the portal.
    [failed] = [m for m in smtp_server.messages if m["To"] == "billing@secure.example"]
    assert failed["Subject"] == "Please confirm your payment of 150.00 USD"
    link = re.search(r"Confirm it here: (\S+)", _plain(failed)).group(1)
    assert link.startswith(live_site.url.replace("//localhost", "//alpha.localhost") + "/portal/charges/")
    page.set_viewport_size(viewport)
    sign_in(page, link.replace("/portal/", "/login/?next=/portal/", 1), "owner@secure.example")
    expect(page.get_by_test_id("charge-state")).to_have_text("Payment failed — confirm it with your bank to pay.")
    page.get_by_role("button", name="Confirm and pay 150.00 USD").click()
    expect(page.get_by_role("heading", name="Confirm your payment")).to_be_visible()
    if viewport == PHONE:
        screenshot(page, "portal-3-d-secure")
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("status")).to_contain_text("Thank you — 150.00 USD paid")
    with schema_context("alpha"):
        charge = Charge.objects.get(client=client)
        assert charge.status == ChargeStatus.PAID
        attempts = list(charge.attempts.order_by("number").values_list("kind", "outcome", "decline_code"))
    assert attempts == [
        (AttemptKind.AUTOMATIC, AttemptOutcome.DECLINED, "authentication_required"),
        (AttemptKind.CLIENT, AttemptOutcome.SUCCEEDED, ""),
    ]
    assert any("received" in m["Subject"] for m in smtp_server.messages if m["To"] == "billing@secure.example")
    if viewport == DESKTOP:
        # The invoice PDF as the client downloads it, rendered to PNG (pdftoppm), and the sign-in page.
        with page.expect_download() as info:
            page.get_by_role("link", name="Export (PDF)").click()
        with tempfile.TemporaryDirectory() as tmp:
            pdf = Path(tmp) / "invoice.pdf"
            pdf.write_bytes(Path(info.value.path()).read_bytes())
            subprocess.run(
                ["pdftoppm", "-png", "-r", "70", "-singlefile", str(pdf), str(SCREENSHOTS / "portal-invoice-pdf")],
                check=True,
                timeout=60,
            )
        assert (SCREENSHOTS / "portal-invoice-pdf.png").stat().st_size > 10_000
        page.get_by_role("button", name="Sign out").click()
        page.goto(link.replace("/portal/", "/login/?next=/portal/", 1))
        screenshot(page, "portal-sign-in")
