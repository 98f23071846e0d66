"""Notices sent by charge outcomes: Payment Received / Payment Failed to the client, failure and
Uncollectable to the agency, nothing for Agency Invoiced, never twice (NOT-4, NOT-6, NOT-7, RET-1, COL-4)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context

from accounts.models import Role
from billing.support import agency_invoiced_set
from notifications.models import Notice
from tests.billing_helpers import ready_to_collect
from tests.conftest import make_user
from tests.integration.test_collection import _client, run_day

pytestmark = pytest.mark.django_db


@pytest.fixture
def agency(agency_a):
    return ready_to_collect(agency_a)


def _notices(agency_obj):
    with schema_context(agency_obj.schema_name):
        return list(Notice.objects.order_by("id").values_list("kind", "number", "to_email", "business_date"))


def test_NOT_4_COL_2_payment_received(agency):
    _client(agency, "Payer")
    run_day(agency, date(2027, 1, 1))
    assert _notices(agency) == [("PAYMENT_RECEIVED", 1, "payer@example.com", date(2027, 1, 1))]


def test_RET_1_NOT_6_failures_notify_client_and_agency_until_uncollectable(agency):
    make_user(agency, "owner@alpha.test", Role.ADMINISTRATOR)
    _client(agency, "Decliner", token="pm_card_visa_chargeDeclined")
    for day in range(1, 16):
        run_day(agency, date(2027, 1, day))
    run_day(agency, date(2027, 1, 15))  # a rerun of the same day sends nothing again (NOT-7)
    assert _notices(agency) == [
        ("PAYMENT_FAILED", 1, "decliner@example.com", date(2027, 1, 1)),
        ("AGENCY_CHARGE_FAILED", 1, "owner@alpha.test", date(2027, 1, 1)),
        ("PAYMENT_FAILED", 2, "decliner@example.com", date(2027, 1, 8)),
        ("AGENCY_CHARGE_FAILED", 2, "owner@alpha.test", date(2027, 1, 8)),
        ("PAYMENT_FAILED", 3, "decliner@example.com", date(2027, 1, 15)),
        ("AGENCY_CHARGE_FAILED", 3, "owner@alpha.test", date(2027, 1, 15)),
        ("AGENCY_CHARGE_UNCOLLECTABLE", 3, "owner@alpha.test", date(2027, 1, 15)),
    ]


def test_COL_4_no_payment_method_notifies_client_and_agency(agency):
    make_user(agency, "owner@alpha.test", Role.ADMINISTRATOR)
    _client(agency, "Nocard", token=None)
    run_day(agency, date(2027, 1, 1))
    kinds = [(kind, email) for kind, _n, email, _d in _notices(agency)]
    assert kinds == [
        ("PAYMENT_FAILED", "nocard@example.com"),
        ("AGENCY_CHARGE_FAILED", "owner@alpha.test"),
        ("AGENCY_CHARGE_UNCOLLECTABLE", "owner@alpha.test"),
    ]


def test_COL_1_agency_invoiced_client_gets_no_payment_email(agency):
    client = _client(agency, "Offline", token=None)
    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    with schema_context(agency.schema_name):
        agency_invoiced_set(client=client, user=support, reason="pays by bank transfer", today=date(2026, 12, 31))
    for day in range(1, 9):
        run_day(agency, date(2027, 1, day))
    assert _notices(agency) == []


def _mail(agency_obj, kind: str, to: str) -> Notice:
    with schema_context(agency_obj.schema_name):
        return Notice.objects.get(kind=kind, to_email=to)


def test_NOT_6_POR_1_notices_read_like_a_person_wrote_them_with_links(agency):
    """The client's Payment Failed says why in a cardholder's words and links to pay now; the agency's notice greets,
    names the client and the amount, gives the processor's reason and links to the charge."""
    make_user(agency, "owner@alpha.test", Role.ADMINISTRATOR)
    client = _client(agency, "Decliner", token="pm_card_visa_chargeDeclined")
    run_day(agency, date(2027, 1, 1))
    with schema_context("alpha"):
        charge = client.charges.select_related("invoice").get()
    failed = _mail(agency, "PAYMENT_FAILED", "decliner@example.com")
    assert "card_declined" not in failed.body and "Your card was declined." in failed.body
    assert "We will try again on 2027-01-08." in failed.body
    assert f"Pay now, or use another card: http://alpha.localhost/portal/charges/{charge.public_id}/pay/" in failed.body
    agency_mail = _mail(agency, "AGENCY_CHARGE_FAILED", "owner@alpha.test")
    assert agency_mail.subject.startswith("Charge failed: Decliner, ") and agency_mail.body.startswith("Hello,\n")
    assert (
        "from Decliner for invoice" in agency_mail.body
        and "(attempt 1): The card was declined by the bank." in agency_mail.body
    )
    assert f"The charge: http://alpha.localhost/invoices/{charge.invoice.public_id}/" in agency_mail.body


def test_COL_4_no_payment_method_is_said_so_never_attempt_0(agency):
    make_user(agency, "owner@alpha.test", Role.ADMINISTRATOR)
    _client(agency, "Nocard", token=None)
    run_day(agency, date(2027, 1, 1))
    to_client = _mail(agency, "PAYMENT_FAILED", "nocard@example.com")
    to_agency = _mail(agency, "AGENCY_CHARGE_FAILED", "owner@alpha.test")
    for mail in (to_client, to_agency):
        assert "Attempt 0" not in mail.body and "attempt 0" not in mail.body
    assert "there is no payment method on file" in to_client.body and "Add one and pay here: http://" in to_client.body
    assert to_agency.subject.startswith("No payment method: Nocard, ")
    assert "Nocard has no payment method on file" in to_agency.body
