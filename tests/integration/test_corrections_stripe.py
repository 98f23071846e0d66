"""Credit notes, refunds and disputes over real HTTP against the Stripe-compatible test server (tests/harness):
refunds with `reverse_transfer` of destination charges, Paid and Paid Out; disputes opened, won and lost, reported
by Stripe's signed webhooks at the platform endpoint (COR-1, COR-2, PAY-1)."""

from __future__ import annotations

import datetime
import json
from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from agencybilling import seed
from billing.base_models import EntryType
from billing.collection import collect_due
from billing.corrections import credit_note_issue
from billing.invoicing import billing_run
from billing.models import Charge, Dispute, Invoice, LedgerEntry, Refund
from billing.payment_methods import payment_method_attach
from billing.platform.models import AgencyLedgerEntry
from billing.providers import get_provider
from billing.providers.stripe import StripeProvider
from billing.selectors import client_balance
from billing.settlement import provider_event_dispatch
from billing.statuses import ChargeStatus, CreditOutcome, DisputeStatus, RefundStatus
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tests.billing_helpers import client_create, with_plan
from tests.conftest import host_client, make_user
from tests.harness.stripe_server import StripeTestServer
from tests.integration.test_webhooks import sign

pytestmark = pytest.mark.django_db

SECRET = "whsec_corrections_tests"
JAN1 = date(2027, 1, 1)


@pytest.fixture(scope="module")
def stripe_server():
    with StripeTestServer(max_lifetime=900) as server:
        yield server


@pytest.fixture
def server(stripe_server):
    stripe_server.reset(keep_webhooks=False)
    stripe_server.set_clock(datetime.datetime(2027, 1, 1, 9, 0, tzinfo=datetime.UTC))
    yield stripe_server


@pytest.fixture
def provider(server, settings):
    """The product's provider is Stripe, pointed at the test server (webhook processing asks it too)."""
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_corrections"
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_RATE_LIMIT = -1
    get_provider.cache_clear()
    yield get_provider()
    get_provider.cache_clear()


@pytest.fixture
def agency(agency_a, provider):
    agency = with_plan(agency_a)
    agency.email = "billing@alpha.example"
    agency.save(update_fields=["email"])
    seed.payouts_connected(agency, provider=provider)
    return agency


@pytest.fixture
def admin(agency):
    return make_user(agency, "admin@alpha.example", Role.ADMINISTRATOR)


def paid_client(agency, provider, token="pm_card_visa", name="Acme", price=10_000):
    with schema_context(agency.schema_name):
        client = client_create(
            name=name, email=f"{name.lower()}@example.com", activated_on=date(2026, 12, 1), license_price_minor=price
        )
        payment_method_attach(client=client, token=token, provider=provider)
    billing_run(agency=agency, today=JAN1)
    with tenant_context(agency):
        collect_due(today=JAN1, provider=provider)
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID
    return client


def deliver(server, django_capture_on_commit_callbacks, event_type: str, count: int = 1) -> None:
    """Post the server's events of `event_type`, signed as Stripe signs them, to the platform's endpoint; the
    processing task runs after commit, as in production (eagerly here)."""
    events = server.events(event_type)
    assert len(events) >= count, f"expected {count} {event_type} events, got {len(events)}"
    for event in events[:count]:
        body = json.dumps(event).encode()
        with django_capture_on_commit_callbacks(execute=True):
            response = host_client(None).post(
                "/webhooks/stripe", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body, SECRET)
            )
        assert response.status_code == 200, response.content


def test_COR_1_partial_refund_of_a_paid_charge_reverses_the_agencys_transfer(agency, admin, provider, server):
    client = paid_client(agency, provider)
    with tenant_context(agency):
        invoice = Invoice.objects.get(client=client)
        note = credit_note_issue(
            invoice=invoice,
            user=admin,
            reason="Two weeks of service were not delivered",
            outcome=CreditOutcome.REFUND,
            amount_minor=2_500,
            today=date(2027, 1, 4),
            provider=provider,
        )
        refund = Refund.objects.get(credit_note=note)
        assert refund.status == RefundStatus.SUCCEEDED and refund.reference.startswith("re_")
        charge = Charge.objects.get(client=client)
        assert charge.status == ChargeStatus.PAID
        assert client_balance(client) == 0
    [intent] = server.payment_intents()
    assert intent["amount_refunded"] == 2_500
    stripe_refund = server.client().v1.refunds.retrieve(refund.reference)
    assert stripe_refund.amount == 2_500 and stripe_refund.transfer_reversal  # PAY-1: the agency returns its share
    assert stripe_refund.metadata["refund"] == refund.idempotency_key
    assert server.balances()[agency.connected_account_id]["usd"] == 7_500


def test_COR_1_full_refund_of_a_paid_out_charge(agency, admin, provider, server):
    client = paid_client(agency, provider)
    server.advance_clock(days=3)
    [payout] = server.pay_out(agency.connected_account_id)
    [paid] = [e for e in server.events("payout.paid") if e["data"]["object"]["id"] == payout["id"]]
    provider_event_dispatch(StripeProvider.event_from_webhook(paid))
    with tenant_context(agency):
        charge = Charge.objects.get(client=client)
        assert charge.status == ChargeStatus.PAID_OUT and charge.payout_reference == payout["id"]
        invoice = Invoice.objects.get(client=client)
        note = credit_note_issue(
            invoice=invoice,
            user=admin,
            reason="Client cancelled before the period started",
            outcome=CreditOutcome.REFUND,
            line_positions=list(invoice.lines.values_list("position", flat=True)),
            today=date(2027, 1, 6),
            provider=provider,
        )
        assert note.amount_minor == 10_000
        assert Refund.objects.get(credit_note=note).status == RefundStatus.SUCCEEDED
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID_OUT
    [intent] = server.payment_intents()
    assert intent["amount_refunded"] == 10_000
    # The money was already paid out: reversing the transfer leaves the agency's balance 10,000 below zero.
    assert server.balances()[agency.connected_account_id]["usd"] == -10_000


def test_COR_2_dispute_opened_then_won_over_webhooks(
    agency, provider, server, django_capture_on_commit_callbacks, eager_tasks
):
    client = paid_client(agency, provider, token="pm_card_createDispute")
    deliver(server, django_capture_on_commit_callbacks, "charge.dispute.created")
    with tenant_context(agency):
        dispute = Dispute.objects.get()
        assert dispute.charge.client == client
        assert (dispute.status, dispute.reason, dispute.amount_minor) == (
            DisputeStatus.NEEDS_RESPONSE,
            "fraudulent",
            10_000,
        )
        assert dispute.due_by == date(2027, 1, 8)
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID  # beside the status, not instead
        notice = Notice.objects.get(kind=NoticeKind.AGENCY_DISPUTE_OPENED)
        assert notice.to_email == "billing@alpha.example" and "2027-01-08" in notice.body
    server.decide_dispute(dispute.reference, "won")
    deliver(server, django_capture_on_commit_callbacks, "charge.dispute.closed")
    with tenant_context(agency):
        dispute.refresh_from_db()
        assert dispute.status == DisputeStatus.WON and dispute.recovery_reference == ""
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID
        assert client_balance(client) == 0
        assert "won" in Notice.objects.get(kind=NoticeKind.AGENCY_DISPUTE_CLOSED).subject
    assert server.balances()[agency.connected_account_id]["usd"] == 10_000  # nothing taken from the agency


def test_COR_2_lost_dispute_reopens_the_balance_and_recovers_from_the_agency(
    agency, provider, server, django_capture_on_commit_callbacks, eager_tasks
):
    client = paid_client(agency, provider, token="pm_card_createDispute")
    deliver(server, django_capture_on_commit_callbacks, "charge.dispute.created")
    with tenant_context(agency):
        dispute = Dispute.objects.get()
    server.decide_dispute(dispute.reference, "lost")
    deliver(server, django_capture_on_commit_callbacks, "charge.dispute.closed")
    deliver(server, django_capture_on_commit_callbacks, "charge.dispute.closed")  # delivered twice: once applied
    with tenant_context(agency):
        dispute.refresh_from_db()
        assert dispute.status == DisputeStatus.LOST and dispute.recovery_reference.startswith("trr_")
        charge = Charge.objects.get(client=client)
        assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
        assert client_balance(client) == 10_000  # owed again
        assert LedgerEntry.objects.filter(entry_type=EntryType.CHARGEBACK).count() == 1
        closed = Notice.objects.get(kind=NoticeKind.AGENCY_DISPUTE_CLOSED)
        assert "lost" in closed.subject and "100.00 USD was taken back" in closed.body
    # Stripe debited the platform; the platform took the amount back from the agency's connected account.
    assert server.balances()[agency.connected_account_id]["usd"] == 0
    recovered = AgencyLedgerEntry.objects.filter(agency=agency, occurred_on=JAN1, invoice=None).order_by("id")
    assert [(e.entry_type, e.amount_minor) for e in recovered] == [
        (EntryType.CHARGEBACK, 10_000),
        (EntryType.PAYMENT, -10_000),
    ]


def test_COR_1_a_bank_debit_refund_is_pending_until_stripe_reports_it_settled(
    agency, admin, provider, server, django_capture_on_commit_callbacks, eager_tasks
):
    ach = server.client().v1.payment_methods.create(
        params={
            "type": "us_bank_account",
            "billing_details": {"name": "Ach Payer"},
            "us_bank_account": {
                "routing_number": "110000000",
                "account_number": "000123456789",
                "account_holder_type": "company",
            },
        }
    )
    with schema_context(agency.schema_name):
        client = client_create(
            name="Bank Co", email="bank@example.com", activated_on=date(2026, 12, 1), license_price_minor=8_000
        )
        payment_method_attach(client=client, token=ach.id, provider=provider)
    billing_run(agency=agency, today=JAN1)
    with tenant_context(agency):
        collect_due(today=JAN1, provider=provider)
    server.settle()
    deliver(server, django_capture_on_commit_callbacks, "payment_intent.succeeded")
    with tenant_context(agency):
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID
        note = credit_note_issue(
            invoice=Invoice.objects.get(client=client),
            user=admin,
            reason="Overbilled",
            outcome=CreditOutcome.REFUND,
            amount_minor=3_000,
            today=date(2027, 1, 5),
            provider=provider,
        )
        refund = Refund.objects.get(credit_note=note)
        assert refund.status == RefundStatus.PENDING and refund.reference.startswith("re_")
    server.settle_refunds()
    deliver(server, django_capture_on_commit_callbacks, "refund.updated")
    with tenant_context(agency):
        refund.refresh_from_db()
        assert refund.status == RefundStatus.SUCCEEDED
        assert client_balance(client) == 0
