"""The product in a real Chromium (Playwright) against the live server: INV-1..3, ROLE-1, TEN-2, COL-1, RET-4,
PLAN-1, PLAN-2. Each main page is photographed at desktop and phone widths (artifacts/screenshots/)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from accounts.models import Role
from billing.models import BillingSettings, Charge, Invoice
from billing.statuses import ChargeStatus
from clients.models import Client, ClientUser
from core.money import format_minor
from tests.browser.conftest import screenshot, sign_in
from tests.conftest import make_user
from tests.ui_helpers import billed_agency, pdf_text


@pytest.fixture
def scenario(agency_a, live_server):
    return billed_agency(agency_a)


def _download(page, click) -> bytes:
    with page.expect_download() as info:
        click()
    return Path(info.value.path()).read_bytes()


def test_INV_2_administrator_pages_through_months_and_downloads_a_client_pdf(page, site, scenario):
    sign_in(page, site("alpha", "/login/?next=/billing/%3Fmonth%3D2027-02"), scenario.admin.email)
    expect(page.get_by_role("heading", name="Billing Overview")).to_be_visible()
    expect(page.locator(".pager .current")).to_have_text("February 2027")
    screenshot(page, "agency-billing-overview")
    page.get_by_role("link", name="< Prev").click()
    expect(page.locator(".pager .current")).to_have_text("January 2027")
    expect(page).to_have_url(re.compile(r"month=2027-01"))
    page.get_by_role("link", name="Next >").click()
    expect(page.locator(".pager .current")).to_have_text("February 2027")
    page.get_by_role("link", name="< Prev").click()
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.paying, period_start=date(2027, 1, 1))
        lines = list(invoice.lines.all())
    data = _download(page, lambda: page.get_by_role("link", name=scenario.paying.name).click())
    text = pdf_text(data)
    assert invoice.number in text
    assert f"{format_minor(invoice.total_minor, 'USD')} USD" in text
    assert f"{format_minor(invoice.subtotal_minor, 'USD')} USD" in text
    for line in lines:
        assert format_minor(line.amount_minor, "USD") in text
    # The status filter updates the table in place (htmx) and keeps the URL shareable.
    page.locator("#charges .filters").get_by_role("link", name=re.compile("^Retrying")).click()
    expect(page).to_have_url(re.compile(r"status=RETRYING"))
    expect(page.locator("#charges tbody tr")).to_have_count(1)
    expect(page.locator("#charges tbody")).to_contain_text(scenario.declining.name)


def test_main_agency_pages_render_for_an_administrator(page, site, scenario):
    sign_in(page, site("alpha", "/login/"), scenario.admin.email)
    for name, path, heading in [
        ("agency-clients", "/clients/", "Clients"),
        ("agency-client-configuration", f"/clients/{scenario.paying.public_id}/", scenario.paying.name),
        ("agency-billing-setup", "/setup/", "Billing Setup"),
        ("agency-email-templates", "/email-templates/", "Email Templates"),
        ("agency-email-template-edit", "/email-templates/UPCOMING_STATEMENT/", "Upcoming Statement"),
        ("agency-plan-summary", "/plan/", "Billing Plan Summary"),
        ("agency-users", "/users/", "Users"),
    ]:
        page.goto(site("alpha", path))
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        screenshot(page, name)
    # Keyboard: the skip link is the first stop and lands on the content.
    page.goto(site("alpha", "/billing/?month=2027-01"))
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()


def test_ROLE_1_jr_salesperson_sees_only_own_clients_statuses_and_no_amounts(page, site, scenario):
    sign_in(page, site("alpha", "/login/?next=/billing/%3Fmonth%3D2027-01"), scenario.junior.email)
    table = page.locator("#charges table")
    expect(table).to_contain_text(scenario.junior_client.name)
    expect(table).not_to_contain_text(scenario.paying.name)
    expect(table).not_to_contain_text(scenario.declining.name)
    expect(table.locator("thead")).not_to_contain_text("Amount")
    expect(table.locator(".badge")).to_have_text(["Uncollectable"])
    expect(page.locator("main")).not_to_contain_text("49.00")
    expect(page.locator("a[href$='/pdf']")).to_have_count(0)
    expect(page.locator("svg")).to_have_count(0)
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Billing Setup")
    screenshot(page, "agency-billing-overview-jr-salesperson")


def test_INV_3_client_exports_a_previous_months_invoice(page, site, scenario):
    user = make_user(scenario.agency, "owner@paying.example", Role.CLIENT)
    with schema_context("alpha"):
        ClientUser.objects.create(user=user, client=Client.objects.get(pk=scenario.paying.pk))
        jan = Invoice.objects.get(client=scenario.paying, period_start=date(2027, 1, 1))
    sign_in(page, site("alpha", "/login/?next=/portal/%3Fmonth%3D2027-02"), "owner@paying.example")
    expect(page.get_by_role("heading", name="Monthly Service Overview")).to_be_visible()
    screenshot(page, "portal-monthly-service-overview")
    page.get_by_role("link", name="< Prev").click()
    expect(page.get_by_role("heading", name=f"Invoice {jan.number}")).to_be_visible()
    data = _download(page, lambda: page.get_by_role("link", name="Export (PDF)").click())
    text = pdf_text(data)
    assert jan.number in text and f"{format_minor(jan.total_minor, 'USD')} USD" in text
    assert "2027-01-01 – 2027-01-31" in text
    page.get_by_role("link", name="Payment method").first.click()
    expect(page.get_by_role("heading", name="Payment method", level=1)).to_be_visible()
    page.get_by_label("Mastercard ···· 4444 — pays").check()
    page.get_by_role("button", name="Save payment method").click()
    expect(page.get_by_test_id("current-method")).to_have_text("Mastercard ···· 4444")
    screenshot(page, "portal-payment-method")


def test_COL_1_support_sets_agency_invoiced_and_the_agency_sees_the_new_status(page, browser, site, scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    sign_in(page, site(None, "/login/"), "support@platform.test")
    expect(page.get_by_role("heading", name="Billing support")).to_be_visible()
    screenshot(page, "console-home")
    page.get_by_label("Client name or email").fill("declining")
    page.get_by_role("button", name="Search").click()
    screenshot(page, "console-search")
    page.get_by_role("link", name=scenario.declining.name).click()
    page.get_by_role("button", name="Set Agency Invoiced").click()
    expect(page.locator("#id_reason_error")).to_have_text(re.compile("required"))  # a reason is required
    page.get_by_label("Reason").fill("Client pays by bank transfer")
    page.get_by_role("button", name="Set Agency Invoiced").click()
    expect(page.locator(".messages")).to_contain_text("is now Agency Invoiced")
    screenshot(page, "console-client")
    page.get_by_role("link", name="Invoices").click()
    screenshot(page, "console-invoices")
    page.get_by_role("link", name="Audit trail").click()
    expect(page.locator("main")).to_contain_text("Set Agency Invoiced")
    expect(page.locator("main")).to_contain_text("Client pays by bank transfer")
    screenshot(page, "console-audit-trail")
    # The agency, in its own browser session, sees the new status.
    agency_page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(agency_page, site("alpha", "/login/?next=/billing/%3Fmonth%3D2027-02"), scenario.admin.email)
    row = agency_page.locator("#charges tbody tr", has_text=scenario.declining.name)
    expect(row.locator(".badge")).to_have_text("Agency Invoiced")
    with schema_context("alpha"):
        assert (
            Charge.objects.get(client=scenario.declining, due_on=date(2027, 2, 1)).status
            == ChargeStatus.AGENCY_INVOICED
        )


def test_TEN_2_agency_a_user_cannot_open_pages_or_pdfs_of_agency_b(page, site, scenario, agency_b):
    other = billed_agency(agency_b, months=(date(2027, 1, 1),))
    with schema_context("beta"):
        b_invoice = Invoice.objects.filter(client=other.paying).first()
    sign_in(page, site("alpha", "/login/"), scenario.admin.email)
    for path in (f"/invoices/{b_invoice.public_id}/pdf", f"/clients/{other.paying.public_id}/"):
        response = page.goto(site("alpha", path))
        assert response.status == 404, path
        expect(page.locator("main")).not_to_contain_text(other.paying.name)
    # On B's own host, A's login is nobody: the sign-in page, and B's PDF is not served.
    response = page.goto(site("beta", f"/invoices/{b_invoice.public_id}/pdf"))
    assert response.status == 200 and "/login/" in page.url
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "agency-sign-in")


def test_forms_reject_bad_input_next_to_the_field_and_keep_it(page, site, scenario):
    sign_in(page, site("alpha", "/login/"), scenario.admin.email)
    # Negative license price (PLAN-2).
    page.goto(site("alpha", f"/clients/{scenario.declining.public_id}/"))
    page.get_by_label("Monthly license price (USD)").fill("-25.00")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.locator("#id_license_price_error")).to_have_text("The amount cannot be negative.")
    expect(page.get_by_label("Monthly license price (USD)")).to_have_value("-25.00")
    expect(page.get_by_label("Monthly license price (USD)")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "form-error-negative-price")
    # A negative Agency Services amount, added in place (htmx).
    page.get_by_label("Description").fill("Ads management")
    page.get_by_label("Amount (USD)").fill("-10")
    page.get_by_role("button", name="Add line").click()
    expect(page.locator("#id_amount_error")).to_have_text("The amount cannot be negative.")
    expect(page.get_by_label("Description")).to_have_value("Ads management")
    page.get_by_label("Amount (USD)").fill("300.00")
    page.get_by_role("button", name="Add line").click()
    expect(page.locator("#service-lines tbody")).to_contain_text("Ads management")
    # Overdue threshold that is not a number.
    page.goto(site("alpha", "/setup/"))
    page.get_by_label("Overdue threshold (USD)").fill("lots")
    page.get_by_role("button", name="Save Billing Setup").click()
    expect(page.locator("#id_overdue_threshold_error")).to_have_text("Enter an amount such as 199.00.")
    expect(page.get_by_label("Overdue threshold (USD)")).to_have_value("lots")
    screenshot(page, "form-error-threshold")
    with schema_context("alpha"):
        assert BillingSettings.objects.get().overdue_threshold_minor == 0
        assert Client.objects.get(pk=scenario.declining.pk).license_price_minor == 9900
    # Template syntax error, with its line number; the live preview shows the same error as you type.
    page.goto(site("alpha", "/email-templates/PAYMENT_FAILED/"))
    body = "Hello {{ client_name }},\n{% if next_retry_on %}\nWe retry on {{ next_retry_on }}.\n"
    page.get_by_label("Body").fill(body)
    expect(page.locator("#preview")).to_contain_text("Line 3: Unexpected end of template")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator("#id_body_error")).to_contain_text("Line 3: Unexpected end of template")
    expect(page.get_by_label("Body")).to_have_value(body)
    screenshot(page, "form-error-template-syntax")


def test_email_template_live_preview_shows_a_real_clients_data(page, site, scenario):
    sign_in(page, site("alpha", "/login/"), scenario.admin.email)
    page.goto(site("alpha", "/email-templates/PAYMENT_RECEIVED/"))
    page.get_by_label("Preview with client").select_option(label=scenario.paying.name)
    page.get_by_label("Subject").fill("Thanks, {{ client_name }}!")
    expect(page.get_by_test_id("preview-subject")).to_have_text(f"Thanks, {scenario.paying.name}!")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator(".messages")).to_contain_text("Template saved.")


def test_R7_api_reference_pages_render_under_their_content_security_policy(page, site, scenario):
    """Swagger UI and Redoc load only this site's scripts (the page fixture fails on any CSP violation)."""
    sign_in(page, site("alpha", "/login/"), scenario.admin.email)
    page.goto(site("alpha", "/api/v1/docs/"))
    expect(page.locator(".swagger-ui .title").first).to_contain_text("agencybilling API", timeout=15_000)
    page.goto(site("alpha", "/api/v1/redoc/"))
    expect(page.locator("redoc h1, #redoc-container h1, h1").first).to_contain_text("agencybilling API", timeout=15_000)
