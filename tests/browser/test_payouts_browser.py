"""From a new agency to its payouts in a real Chromium (ONB-1, ONB-2, PAY-3, PAY-4): billing support creates the agency
in the console; its Administrator walks payout onboarding on the sandbox's hosted page through every state (not
started, pending verification, restricted, payouts enabled), saves the agency's own payment method, and reads the
Payouts page and a payout. Each page is photographed at desktop and phone widths (artifacts/screenshots/)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from accounts.models import Role, User
from agencybilling import seed
from billing.platform.models import PayoutAccount
from tests.billing_helpers import standard_plan
from tests.browser.conftest import PASSWORD, screenshot, sign_in
from tests.conftest import make_user
from tests.onboarding_helpers import drop_agency

SLUG = "browserco"
BILLING_DATE = date(2027, 3, 1)


@pytest.fixture
def fresh(live_server, settings):
    drop_agency(SLUG)
    yield
    drop_agency(SLUG)


def _state(expected: str) -> None:
    account = PayoutAccount.objects.filter(agency__schema_name=SLUG).first()
    assert (account.state if account else "NOT_STARTED") == expected


def test_ONB_1_ONB_2_PAY_3_PAY_4_console_creates_an_agency_that_sets_up_payouts_and_sees_them(page, site, fresh):
    support = make_user(None, "support@browser.test", Role.BILLING_SUPPORT)
    plan = standard_plan()  # the platform's plan, before the form lists the plans
    sign_in(page, site(None, "/login/?next=/agencies/new/"), support.email)
    page.get_by_label("Agency name").fill("Browser Co Marketing")
    page.get_by_label("Slug").fill(SLUG)
    page.get_by_label("Partner plan").select_option(str(plan.pk))
    page.get_by_label("Administrator's email").fill("owner@browserco.example")
    screenshot(page, "console-agency-new")
    page.get_by_role("button", name="Create agency").click()
    page.wait_for_load_state("networkidle")
    expect(page.get_by_text("owner@browserco.example").first).to_be_visible()
    screenshot(page, "console-agency-created")

    # The Administrator (the invitation's password step is tested on its own: tests/integration/test_onboarding.py).
    with schema_context(SLUG):
        owner = User.objects.get(email="owner@browserco.example")
        owner.set_password(PASSWORD)
        owner.save(update_fields=["password"])
    sign_in(page, site(SLUG, "/login/?next=/setup/"), owner.email)
    card = page.get_by_test_id("payout-account")
    expect(card.get_by_test_id("payout-state")).to_have_text("Not started")
    screenshot(page, "agency-billing-setup-payouts-not-started")

    # Left half done: still not started, with what the processor needs.
    card.get_by_role("button", name="Set up payouts").click()
    expect(page.get_by_role("heading", name="Set up your payout account")).to_be_visible()
    screenshot(page, "agency-payout-onboarding-sandbox")
    page.get_by_role("button", name="Leave without finishing").click()
    expect(card.get_by_test_id("payout-requirements")).to_contain_text("Bank account for payouts")
    _state("NOT_STARTED")

    page.get_by_role("button", name="Continue payout set-up").click()
    page.get_by_role("button", name="Submit details, verification pending").click()
    expect(card.get_by_test_id("payout-state")).to_have_text("Pending verification")
    screenshot(page, "agency-billing-setup-payouts-pending-verification")

    page.get_by_role("button", name="Continue payout set-up").click()
    page.get_by_role("button", name="Submit details, verification fails (restricted)").click()
    expect(card.get_by_test_id("payout-state")).to_have_text("Restricted")
    expect(card).to_contain_text("could not be verified")
    screenshot(page, "agency-billing-setup-payouts-restricted")

    page.get_by_role("button", name="Continue payout set-up").click()
    page.get_by_label("Bank account number for payouts").fill("000123456789")
    page.get_by_role("button", name="Complete onboarding").click()
    expect(card.get_by_test_id("payout-state")).to_have_text("Payouts enabled")
    screenshot(page, "agency-billing-setup-payouts-enabled")

    # The agency's own payment method for its platform invoices (PAY-3).
    method = page.get_by_test_id("agency-payment-method")
    method.get_by_label("Mastercard ···· 4444 — pays").check()
    method.get_by_role("button", name="Save payment method").click()
    expect(page.get_by_test_id("agency-payment-method-current")).to_have_text("Mastercard ···· 4444")
    page.locator("#payment-method-h").scroll_into_view_if_needed()
    screenshot(page, "agency-payment-method")

    # Clients charged, then paid out (PAY-4).
    from tenants.models import Agency

    agency = Agency.objects.get(schema_name=SLUG)
    with schema_context(SLUG):
        for n, outcome in enumerate([seed.Outcome.PAYING, seed.Outcome.ACH_DEBIT, seed.Outcome.BANK_DEBIT]):
            seed.client(
                name=f"Browser client {n}",
                email=f"client{n}@browserco.example",
                activated_on=BILLING_DATE - timedelta(days=40),
                license_price_minor=15000 + n * 1000,
                outcome=outcome,
                method_tag=f"browser{n}",
            )
    seed.run_days(agency, [BILLING_DATE + timedelta(days=n) for n in range(10)])
    page.goto(site(SLUG, "/payouts/"))
    expect(page.get_by_test_id("payouts")).to_contain_text("Paid")
    screenshot(page, "agency-payouts")
    page.get_by_test_id("payouts").get_by_role("link").first.click()
    expect(page.get_by_test_id("payout-charges")).to_contain_text("Browser client")
    screenshot(page, "agency-payout")
