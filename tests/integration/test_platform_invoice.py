"""The agency's own invoice (PAY-3): saved from Billing Setup (card or bank account, Administrators only), collected
by the agency's day with the same retries (RET-1..3) and notices as a client charge, listed in the console with the
same manual retry (RET-4); a card a client already holds is refused and nothing changes (COL-5)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context

from accounts.models import AuditEntry, Role
from agencybilling import seed
from billing.platform.models import AgencyCharge, AgencyChargeAttempt, AgencyPaymentMethod
from billing.statuses import ChargeStatus
from core.calendar import retry_dates
from notifications.models import Notice
from tests.api.conftest import api, token_for
from tests.billing_helpers import ONBOARDED_ON, with_plan
from tests.conftest import login_client, make_user

pytestmark = pytest.mark.django_db

BILLING_DATE = date(2027, 2, 1)  # a Monday


@pytest.fixture
def agency(agency_a):
    agency = with_plan(agency_a)
    agency.email = "owner@alpha.example"
    agency.save(update_fields=["email"])
    seed.payouts_ready(agency, today=ONBOARDED_ON)
    with schema_context(agency.schema_name):
        seed.client(
            name="Platform client",
            email="pc@example.com",
            activated_on=date(2026, 12, 1),
            license_price_minor=10000,
            outcome=seed.Outcome.PAYING,
            method_tag="pc",
        )
    make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    return agency


def _charge(agency) -> AgencyCharge:
    return AgencyCharge.objects.get(agency=agency, invoice__period_start=date(2027, 1, 1))


def _notices(agency) -> list[tuple[str, int]]:
    with schema_context(agency.schema_name):
        return sorted(Notice.objects.filter(kind__startswith="PLATFORM_").values_list("kind", "number"))


def test_PAY_3_RET_1_RET_2_a_declined_platform_invoice_is_retried_like_a_client_charge_then_paid(agency):
    http = login_client(agency, "admin@alpha.test")
    saved = http.post("/setup/payment-method", {"method": "pm_card_visa_chargeDeclined"})
    assert saved.status_code == 302
    assert "Visa ···· 0002" in http.get("/setup/").content.decode()
    seed.run_days(agency, [BILLING_DATE])
    charge = _charge(agency)
    fifth, tenth = retry_dates(charge.billing_date)
    assert charge.status == ChargeStatus.RETRYING and charge.next_retry_on == fifth
    assert _notices(agency) == [("PLATFORM_PAYMENT_FAILED", 1)]
    with schema_context(agency.schema_name):
        failed = Notice.objects.get(kind="PLATFORM_PAYMENT_FAILED")
        assert failed.to_email == "owner@alpha.example" and charge.invoice.number in failed.subject
        assert fifth.isoformat() in failed.body
    page = http.get("/setup/").content.decode()
    assert charge.invoice.number in page and "Retrying" in page

    # A working bank account (ACH) before the retry: the 5th weekday's attempt is Pending, then settles.
    http.post("/setup/payment-method", {"method": "ach:110000000:000123456789"})
    seed.run_days(agency, [fifth])
    charge.refresh_from_db()
    assert charge.status == ChargeStatus.PENDING
    seed.run_days(agency, [date(2027, 2, 9), date(2027, 2, 10)])
    charge.refresh_from_db()
    assert charge.status == ChargeStatus.PAID
    assert list(charge.attempts.order_by("number").values_list("number", "outcome")) == [
        (1, "DECLINED"),
        (2, "SUCCEEDED"),
    ]
    assert _notices(agency) == [("PLATFORM_PAYMENT_FAILED", 1), ("PLATFORM_PAYMENT_RECEIVED", 2)]
    assert AgencyChargeAttempt.objects.filter(charge=charge, destination="").count() == 2  # the platform's own


def test_PAY_3_RET_3_RET_4_no_payment_method_uncollectable_then_billing_support_retries_in_the_console(agency):
    seed.run_days(agency, [BILLING_DATE])
    charge = _charge(agency)
    assert charge.status == ChargeStatus.UNCOLLECTABLE
    assert _notices(agency) == [("PLATFORM_PAYMENT_UNCOLLECTABLE", 0)]  # no attempt was made: number 0
    http = login_client(agency, "admin@alpha.test")
    http.post("/setup/payment-method", {"method": "pm_card_mastercard"})

    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    console = login_client(None, support.email)
    listing = console.get(f"/invoices/?agency={agency.schema_name}").content.decode()
    assert charge.invoice.number in listing and "Uncollectable" in listing and "Retry now" in listing
    confirm = console.post(f"/agency-charges/{charge.public_id}/retry")
    assert confirm.status_code == 200 and b"Run retry" in confirm.content  # the confirmation step
    done = console.post(f"/agency-charges/{charge.public_id}/retry", {"confirm": "yes"}, follow=True)
    assert "Retry run: Succeeded" in done.content.decode()
    charge.refresh_from_db()
    assert charge.status == ChargeStatus.PAID
    assert charge.attempts.get().kind == "MANUAL"
    assert AuditEntry.objects.filter(action="agency_charge.retry").exists()
    assert _notices(agency) == [("PLATFORM_PAYMENT_RECEIVED", 1), ("PLATFORM_PAYMENT_UNCOLLECTABLE", 0)]
    # A Paid charge is not retried: a clear 409 over the platform API, nothing changes.
    platform = api(None, token_for(None, "ops@platform.test", Role.BILLING_SUPPORT))
    again = platform.post(f"/api/v1/agency-charges/{charge.public_id}/retry/", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "illegal_transition"
    listed = platform.get("/api/v1/agency-invoices/", {"agency": agency.schema_name}).json()["results"]
    assert [c["status"] for i in listed for c in i["charges"]] == ["PAID"]


def test_PAY_3_COL_5_an_agency_saving_a_card_a_client_holds_is_refused_and_nothing_changes(agency):
    with schema_context(agency.schema_name):
        seed.client(
            name="Card holder",
            email="holder@example.com",
            activated_on=date(2026, 12, 1),
            license_price_minor=5000,
            outcome=seed.Outcome.PAYING,
            method_tag="shared",
        )
    admin = api(agency, token_for(agency, "token-admin@alpha.test", Role.ADMINISTRATOR))
    first = admin.post("/api/v1/agency-payment-method/", {"token": "pm_card_mastercard:own"}, format="json")
    assert first.status_code == 201 and first.json()["label"] == "Mastercard ···· 4444"
    refused = admin.post("/api/v1/agency-payment-method/", {"token": "pm_card_visa:shared"}, format="json")
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "payment_method_in_use" and "already used" in body["message"] and body["fields"]
    assert [str(m) for m in AgencyPaymentMethod.objects.filter(agency=agency, removed_at__isnull=True)] == [
        "Mastercard ···· 4444"
    ]
    assert admin.get("/api/v1/agency-payment-method/").json()["label"] == "Mastercard ···· 4444"
    bad = admin.post("/api/v1/agency-payment-method/", {"token": "pm_card_nonsense"}, format="json")
    assert bad.status_code == 400 and bad.json()["fields"]["token"]
    # ROLE-1: Administrators only, in the UI and the API.
    manager = api(agency, token_for(agency, "manager@alpha.test", Role.COMPANY_MANAGER))
    assert manager.post("/api/v1/agency-payment-method/", {"token": "pm_card_amex"}, format="json").status_code == 403
    make_user(agency, "cm@alpha.test", Role.COMPANY_MANAGER)
    assert (
        login_client(agency, "cm@alpha.test").post("/setup/payment-method", {"method": "pm_card_amex"}).status_code
        == 403
    )
    assert AgencyPaymentMethod.objects.filter(agency=agency).count() == 1


def test_PAY_3_a_refused_save_shows_the_message_next_to_the_field(agency):
    http = login_client(agency, "admin@alpha.test")
    response = http.post("/setup/payment-method", {"method": "not-a-test-method"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'aria-invalid="true"' in page and "Select a valid choice" in page
    assert not AgencyPaymentMethod.objects.filter(agency=agency).exists()
