"""Every page of the agency dashboard and of the billing-support console, in Chromium at 1440 px and 390 px: no
horizontal overflow, no axe-core violation, no Content-Security-Policy violation (the `page` fixture), keyboard
focus kept after each htmx swap, a screenshot of each under artifacts/screenshots/. And a new client onboarded
entirely in the UI (two new taxes, Agency Services lines), billed by the day's run, its invoice page and
timeline opened, the overview exported as CSV and read back (PLAN-2, INV-2, RET-1)."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from pathlib import Path

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from accounts.models import Role
from billing.models import Invoice
from billing.payment_methods import payment_method_attach
from clients.models import Client, TaxRate
from tests.browser.conftest import SCREENSHOTS, keep_screenshot, screenshot, sign_in
from tests.conftest import make_user
from tests.ui_helpers import billed_agency, run_day


@pytest.fixture
def scenario(agency_a, live_server):
    return billed_agency(agency_a)


def _focused_id(page) -> str:
    return page.evaluate("() => document.activeElement ? document.activeElement.id : ''")


def _keyboard_activate(page, locator) -> None:
    locator.focus()
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")


def test_every_agency_page_fits_passes_axe_and_keeps_focus(page, site, scenario):
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, site("alpha", "/login/?next=/billing/%3Fmonth%3D2027-02"), scenario.admin.email)
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.declining, period_start=date(2027, 2, 1))
        tax = TaxRate.objects.get()
    screenshot(page, "agency-billing-overview")
    # htmx swaps keep keyboard focus where it was: a status chip, a sort header, the search box.
    _keyboard_activate(page, page.locator("#filter-retrying"))
    expect(page).to_have_url(re.compile(r"status=RETRYING"))
    expect(page.locator("#filter-retrying")).to_be_focused()
    _keyboard_activate(page, page.locator("#filter-all"))
    expect(page.locator("#filter-all")).to_be_focused()
    _keyboard_activate(page, page.locator("#sort-amount"))
    expect(page).to_have_url(re.compile(r"sort=amount"))
    expect(page.locator("#sort-amount")).to_be_focused()
    page.locator("#charges-q").fill("Declining")
    page.locator("#charges-q").press("Enter")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#charges tbody tr")).to_have_count(1)
    expect(page.locator("#charges-q")).to_be_focused()
    screenshot(page, "agency-billing-overview-searched")
    for name, path in [
        ("agency-invoice-page", f"/invoices/{invoice.public_id}/"),
        ("agency-clients", "/clients/"),
        ("agency-clients-needs-setup", "/clients/?show=setup"),
        ("agency-client-new", "/clients/new/"),
        ("agency-client-configuration", f"/clients/{scenario.paying.public_id}/"),
        ("agency-tax-rates", "/taxes/"),
        ("agency-tax-rate-edit", f"/taxes/{tax.public_id}/"),
        ("agency-export-range", "/billing/export/"),
        ("agency-billing-setup", "/setup/"),
        ("agency-email-templates", "/email-templates/"),
        ("agency-email-template-edit", "/email-templates/PAYMENT_FAILED/"),
        ("agency-plan-summary", "/plan/"),
        ("agency-users", "/users/"),
        ("agency-api-tokens", "/settings/api-tokens/"),
        ("agency-audit-log", "/audit/"),
        ("agency-webhooks", "/webhooks/"),
        ("agency-margins", "/margins/?month=2027-02"),
    ]:
        response = page.goto(site("alpha", path))
        assert response.status == 200, path
        screenshot(page, name)
    # The live template preview swaps under the editor: typing keeps the focus in the body.
    page.goto(site("alpha", "/email-templates/PAYMENT_FAILED/"))
    page.get_by_label("Body").focus()
    page.keyboard.type(" Thanks!")
    expect(page.locator("#preview")).to_contain_text("Thanks!")
    assert page.evaluate("() => document.activeElement.name") == "body"
    # Adding an Agency Services line in place keeps the focus on the form's button; removing one asks first.
    page.goto(site("alpha", f"/clients/{scenario.declining.public_id}/"))
    page.get_by_label("Description").fill("Ads " + "x" * 300)  # a long unbroken word must wrap, not widen the page
    page.get_by_label("Amount (USD)").fill("80.00")
    _keyboard_activate(page, page.locator("#add-line"))
    expect(page.locator("#service-lines tbody")).to_contain_text("Ads xxx")
    expect(page.locator("#add-line")).to_be_focused()
    screenshot(page, "agency-client-configuration-long-text")
    page.get_by_role("button", name=re.compile("^Remove Ads")).click()
    expect(page.locator("#service-lines tbody")).not_to_contain_text("Ads xxx")
    # htmx settles (and app.js moves the focus) a moment after the new rows are in: wait for it, bounded.
    page.wait_for_function("() => document.activeElement !== document.body", timeout=5000)
    # Bad input: a message next to the field, in the product's words.
    page.get_by_label("Monthly license price (USD)").fill("1e5")
    page.get_by_label("Autopay days").fill("5,5")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.locator("#id_license_price_error")).to_have_text("Enter an amount such as 199.00.")
    screenshot(page, "form-error-client-configuration")
    page.goto(site("alpha", "/setup/"))
    page.get_by_label("Upcoming Statement", exact=True).fill("0")
    page.get_by_role("button", name="Save Billing Setup").click()
    expect(page.locator("#id_statement_days_before_error")).to_have_text("Give at least 1 day.")
    screenshot(page, "form-error-billing-setup")
    # The phone menu button opens and closes the navigation.
    page.set_viewport_size({"width": 390, "height": 844})
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(nav).to_be_visible()
    expect(nav.get_by_role("link", name="Clients")).to_be_visible()
    keep_screenshot(page, SCREENSHOTS / "agency-menu-open-phone.png", full_page=False)
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()


def test_every_console_page_fits_and_passes_axe(page, site, scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    sign_in(page, site(None, "/login/"), "support@platform.test")
    for name, path in [
        ("console-home", "/"),
        ("console-search", "/clients/?q=a"),
        ("console-client", f"/agencies/alpha/clients/{scenario.declining.public_id}/"),
        ("console-invoices", "/invoices/"),
        ("console-agency", "/agencies/alpha/?month=2027-02"),
        ("console-audit-trail", "/audit/"),
    ]:
        response = page.goto(site(None, path))
        assert response.status == 200, path
        screenshot(page, name)
    # Run retry asks first, without JavaScript's help too: here the browser's dialog is dismissed.
    page.goto(site(None, f"/agencies/alpha/clients/{scenario.declining.public_id}/"))
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Run retry").first.click()
    expect(page.locator(".messages")).to_have_count(0)


def test_PLAN_2_INV_2_client_onboarded_in_the_ui_billed_and_exported(page, site, scenario):
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, site("alpha", "/login/?next=/taxes/"), scenario.admin.email)
    for name, rate in (("City tax", "2"), ("Digital services levy", "3.5")):
        page.get_by_label("Tax name").fill(name)
        page.get_by_label("Rate (%)").fill(rate)
        page.get_by_role("button", name="Add tax rate").click()
        expect(page.locator(".messages")).to_contain_text(f"{name} ({rate} %) added")
    page.get_by_role("link", name="Clients", exact=True).click()
    page.get_by_role("link", name="Add client").click()
    page.get_by_label("Client name").fill("Quokka Studio")
    page.get_by_label("Billing email").fill("ap@quokka.example")
    page.get_by_label("Monthly license price (USD)").fill("199.00")
    page.get_by_label("City tax (2 %)").check()
    page.get_by_label("Digital services levy (3.5 %)").check()
    page.get_by_role("button", name="Add client").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Quokka Studio")
    for description, amount, one_time in (("Setup fee", "150.00", True), ("SEO retainer", "300.00", False)):
        page.get_by_label("Description").fill(description)
        page.get_by_label("Amount (USD)").fill(amount)
        page.get_by_label("One-time (billed once, then removed)").set_checked(one_time)
        page.get_by_role("button", name="Add line").click()
        expect(page.locator("#service-lines tbody")).to_contain_text(description)
    with schema_context("alpha"):
        quokka = Client.objects.get(name="Quokka Studio")
        assert sorted(t.name for t in quokka.taxes.all()) == ["City tax", "Digital services levy"]
        payment_method_attach(client=quokka, token="pm_card_visa_chargeDeclined:quokka")
    run_day(scenario.agency, date(2027, 3, 1))
    page.goto(site("alpha", "/billing/?month=2027-03"))
    row = page.locator("#charges tbody tr", has_text="Quokka Studio")
    expect(row.locator(".badge")).to_have_text("Retrying")
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=quokka)
    assert invoice.total_minor == 68470  # 649.00 + 2 % (12.98) + 3.5 % (22.72)
    row.get_by_role("link", name=re.compile(invoice.number)).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Invoice {invoice.number}")
    lines = page.get_by_test_id("invoice-lines")
    for text in ("Setup fee", "150.00", "SEO retainer", "300.00", "City tax (2 %)", "12.98", "22.72", "684.70 USD"):
        expect(lines).to_contain_text(text)
    timeline = page.get_by_test_id("timeline-1")
    expect(timeline).to_contain_text(f"Invoice {invoice.number} built")
    expect(timeline).to_contain_text("Automatic attempt 1 of 684.70 USD was declined")
    expect(timeline).to_contain_text("The card was declined by the bank.")
    expect(timeline).to_contain_text("Scheduled → Retrying")
    expect(timeline).to_contain_text("Payment Failed email to ap@quokka.example")
    screenshot(page, "agency-invoice-timeline")
    page.locator("main").get_by_role("link", name="Billing Overview").click()
    with page.expect_download() as info:
        page.locator("#charges-csv").click()
    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    shown = page.locator("#charges tbody tr").count()
    assert len(rows) == shown == 4
    quokka_row = next(r for r in rows if r["Client"] == "Quokka Studio")
    assert (quokka_row["Invoice"], quokka_row["Amount"], quokka_row["Currency"]) == (invoice.number, "684.70", "USD")
    assert quokka_row["Status"] == "Retrying" and quokka_row["Attempts"] == "1"
