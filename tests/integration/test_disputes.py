"""Disputes with the sandbox processor's dispute test card, through the day pipeline (COR-2): opened, won, lost,
and what a lost one does to the client's balance and the agency's ledger."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from agencybilling import seed
from billing.base_models import EntryType
from billing.models import Charge, ChargeEvent, Dispute
from billing.platform.models import AgencyLedgerEntry, SandboxDispute
from billing.providers.sandbox import SandboxProvider
from billing.selectors import client_balance
from billing.statuses import ChargeStatus, DisputeStatus
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tests.billing_helpers import ONBOARDED_ON, client_create, with_plan
from tests.integration.test_credit_notes import run_day

pytestmark = pytest.mark.django_db

JAN1 = date(2027, 1, 1)


@pytest.fixture
def agency(agency_a):
    agency = with_plan(agency_a)
    agency.email = "billing@alpha.example"
    agency.save(update_fields=["email"])
    # Payouts enabled through the product (ONB-2): charges are destination charges, so a lost one is recovered
    # from the agency by a transfer reversal.
    seed.payouts_ready(agency, today=ONBOARDED_ON)
    return agency


@pytest.fixture
def disputed(agency):
    from billing.payment_methods import payment_method_attach

    with schema_context(agency.schema_name):
        client = client_create(
            name="Chargeback Co", email="cb@example.com", activated_on=date(2026, 12, 1), license_price_minor=10_000
        )
        payment_method_attach(client=client, token="pm_card_createDispute")
    run_day(agency, JAN1)  # paid; the processor's day reports the dispute
    return client


def _dispute(agency):
    with tenant_context(agency):
        return Dispute.objects.select_related("charge").get()


def test_COR_2_the_dispute_card_opens_a_dispute_shown_beside_paid(agency, disputed):
    dispute = _dispute(agency)
    assert (dispute.status, dispute.reason, dispute.amount_minor) == (
        DisputeStatus.NEEDS_RESPONSE,
        "fraudulent",
        10_000,
    )
    assert (dispute.opened_on, dispute.due_by) == (JAN1, date(2027, 1, 8))
    with tenant_context(agency):
        assert Charge.objects.get(client=disputed).status == ChargeStatus.PAID
        notice = Notice.objects.get(kind=NoticeKind.AGENCY_DISPUTE_OPENED)
        assert notice.to_email == "billing@alpha.example" and "Chargeback Co" in notice.subject
        assert "fraudulent" in notice.body and "2027-01-08" in notice.body
    run_day(agency, date(2027, 1, 4))  # reported once: nothing new
    with tenant_context(agency):
        assert Notice.objects.filter(kind=NoticeKind.AGENCY_DISPUTE_OPENED).count() == 1


def test_COR_2_a_won_dispute_changes_nothing_but_its_state(agency, disputed):
    SandboxProvider.dispute_decide(_dispute(agency).reference, "won")
    run_day(agency, date(2027, 1, 4))
    dispute = _dispute(agency)
    assert dispute.status == DisputeStatus.WON and dispute.closed_on == date(2027, 1, 4)
    with tenant_context(agency):
        assert Charge.objects.get(client=disputed).status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT)
        assert client_balance(disputed) == 0
        assert "won" in Notice.objects.get(kind=NoticeKind.AGENCY_DISPUTE_CLOSED).subject
    assert not AgencyLedgerEntry.objects.filter(entry_type=EntryType.CHARGEBACK).exists()


def test_COR_2_a_lost_dispute_reopens_the_balance_and_recovers_it_from_the_agency(agency, disputed):
    # Not answered by the day evidence is due: lost, as at Stripe.
    for day in (date(2027, 1, 4), date(2027, 1, 5), date(2027, 1, 6), date(2027, 1, 7), date(2027, 1, 8)):
        run_day(agency, day)
    assert _dispute(agency).status == DisputeStatus.NEEDS_RESPONSE
    run_day(agency, date(2027, 1, 11))
    dispute = _dispute(agency)
    assert dispute.status == DisputeStatus.LOST and dispute.recovery_reference.startswith("trr_sbx_")
    with tenant_context(agency):
        charge = Charge.objects.get(client=disputed)
        # It was Paid Out on the 6th; the money went back to the card holder: open again, no automatic attempt.
        assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
        assert charge.payout_reference == "" and charge.paid_out_on is None
        moves = list(ChargeEvent.objects.filter(charge=charge).values_list("from_status", "to_status"))
        assert ("PAID_OUT", "UNCOLLECTABLE") in moves
        assert client_balance(disputed) == 10_000
        assert "lost" in Notice.objects.get(kind=NoticeKind.AGENCY_DISPUTE_CLOSED).subject
        assert not Notice.objects.filter(kind=NoticeKind.PAYMENT_FAILED).exists()  # not a failed payment
    assert SandboxDispute.objects.get().recovered == dispute.recovery_reference
    recovered = AgencyLedgerEntry.objects.filter(agency=agency, invoice=None).order_by("id")
    assert [(e.entry_type, e.amount_minor) for e in recovered] == [
        (EntryType.CHARGEBACK, 10_000),
        (EntryType.PAYMENT, -10_000),
    ]
