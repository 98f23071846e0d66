"""DUN-1 with COR-1: credit kept on the account that covers what was past due clears the overdue flag at once, in the
transaction that allocates it — a credit note kept as credit, a refund that failed and was kept as credit — as a
payment does (test_overdue_cleared_by_payment.py); so does switching the account to Agency Invoiced (COL-1). The
day's overdue evaluation is never run after the change: these tests prove the change itself clears the flag."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from billing.collection import collect_due
from billing.corrections import credit_note_issue
from billing.dunning import overdue_evaluate
from billing.invoicing import billing_run
from billing.models import BillingSettings, Charge, Invoice, Refund
from billing.payment_methods import payment_method_attach
from billing.providers.sandbox import SandboxProvider
from billing.settlement import provider_event_dispatch
from billing.statuses import ChargeStatus, CreditOutcome, RefundStatus
from billing.support import agency_invoiced_set
from clients.models import Client
from tests.billing_helpers import client_create, ready_to_collect
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

JAN1, FEB1 = date(2027, 1, 1), date(2027, 2, 1)
PRICE = 10_000


@pytest.fixture
def agency(agency_a):
    return ready_to_collect(agency_a)


@pytest.fixture
def admin(agency):
    return make_user(agency, "admin@alpha.example", Role.ADMINISTRATOR)


def _client(agency, token: str, threshold: int = 0) -> Client:
    with schema_context(agency.schema_name):
        BillingSettings.objects.update(grace_period_days=0, overdue_threshold_minor=threshold)
        client = client_create(
            name="Late", email="late@example.com", activated_on=date(2026, 12, 1), license_price_minor=PRICE
        )
        payment_method_attach(client=client, token=token)
    return client


def _bill_and_flag(agency, client, billing_date: date) -> date:
    """The invoice of `billing_date`, its charge declined, and the account flagged overdue the next day (DUN-1)."""
    billing_run(agency=agency, today=billing_date)
    flagged = date.fromordinal(billing_date.toordinal() + 1)
    with tenant_context(agency):
        collect_due(today=billing_date)
        assert Charge.objects.get(client=client, due_on=billing_date).status == ChargeStatus.RETRYING
        overdue_evaluate(agency=agency, today=flagged)
    assert _flag(agency, client) == flagged
    return flagged


def _flag(agency, client) -> date | None:
    with schema_context(agency.schema_name):
        return Client.objects.get(pk=client.pk).overdue_since


def _credit(agency, admin, client, today, amount_minor, outcome=CreditOutcome.CREDIT, period_start=JAN1):
    with tenant_context(agency):
        return credit_note_issue(
            invoice=Invoice.objects.get(client=client, period_start=period_start),
            user=admin,
            reason="Service was down for a week",
            outcome=outcome,
            amount_minor=amount_minor,
            today=today,
        )


def test_DUN_1_COR_1_a_credit_note_kept_as_credit_covering_the_past_due_clears_the_flag_at_once(agency, admin):
    client = _client(agency, "pm_card_visa_chargeDeclined")
    _bill_and_flag(agency, client, JAN1)
    _credit(agency, admin, client, date(2027, 1, 4), PRICE)
    assert _flag(agency, client) is None
    with schema_context(agency.schema_name):
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID  # settled by the credit


def test_DUN_1_COR_1_a_credit_that_leaves_the_past_due_at_the_threshold_keeps_the_flag(agency, admin):
    """Only below the threshold: 10,000 past due, threshold 5,000 — a 5,000 credit leaves 5,000 (still overdue),
    a further 1 clears it."""
    client = _client(agency, "pm_card_visa_chargeDeclined", threshold=5_000)
    flagged = _bill_and_flag(agency, client, JAN1)
    _credit(agency, admin, client, date(2027, 1, 4), 5_000)
    assert _flag(agency, client) == flagged
    _credit(agency, admin, client, date(2027, 1, 5), 1)
    assert _flag(agency, client) is None


def test_DUN_1_COR_1_a_failed_refund_kept_as_credit_clears_the_flag_when_it_fails(agency, admin):
    """January paid with a card refunds cannot go back to; February declined on another card and overdue. A refund of
    January fails: its amount is kept as credit, allocated to February's open charge, and the flag goes with it."""
    client = _client(agency, "pm_card_refundFail")
    billing_run(agency=agency, today=JAN1)
    with tenant_context(agency):
        collect_due(today=JAN1)
    with schema_context(agency.schema_name):
        assert Charge.objects.get(client=client, due_on=JAN1).status == ChargeStatus.PAID
        payment_method_attach(client=client, token="pm_card_visa_chargeDeclined")
    flagged = _bill_and_flag(agency, client, FEB1)
    note = _credit(agency, admin, client, date(2027, 2, 3), PRICE, outcome=CreditOutcome.REFUND)
    assert _flag(agency, client) == flagged  # a refund is not a credit to February: still overdue
    for day in (date(2027, 2, 4), date(2027, 2, 5)):
        for event in SandboxProvider().advance(today=day):
            provider_event_dispatch(event)
    with schema_context(agency.schema_name):
        assert Refund.objects.get(credit_note=note).status == RefundStatus.FAILED
    assert _flag(agency, client) is None


def test_DUN_1_COL_1_switching_to_agency_invoiced_clears_the_flag_at_once(agency):
    client = _client(agency, "pm_card_visa_chargeDeclined")
    _bill_and_flag(agency, client, JAN1)
    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    with tenant_context(agency):
        locked = Client.objects.get(pk=client.pk)
        agency_invoiced_set(client=locked, user=support, reason="Pays by bank transfer", today=date(2027, 1, 4))
    assert _flag(agency, client) is None
