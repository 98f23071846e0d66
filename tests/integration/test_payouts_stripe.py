"""Payouts reconciled through the connected account's balance transactions over real HTTP (the Stripe-compatible test
server, its test clock and daily automatic payouts): exactly which charges a payout carries (PAY-2, PAY-4); a payout
that fails — at the bank, or after it was paid — is shown, notified, its charges not Paid Out, and the payout that
carries its returned funds (`payout_failure`) pays them out; held funds of an agency whose account was not enabled
are transferred (`source_transaction`) once it is, and paid out (ONB-2)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django_tenants.utils import schema_context, tenant_context

from agencybilling import seed
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.models import Charge, FundsTransfer
from billing.payment_methods import payment_method_attach
from billing.payouts import funds_summary, payout_carried
from billing.platform.models import Payout
from billing.providers import get_provider
from billing.providers.stripe import StripeProvider
from billing.settlement import provider_event_dispatch
from billing.statuses import ChargeStatus
from clients.services import client_create
from notifications.models import Notice
from tests.billing_helpers import with_plan
from tests.harness.stripe_server import StripeTestServer
from tests.payout_helpers import stripe_product

pytestmark = pytest.mark.django_db

MONDAY = date(2027, 3, 1)


@pytest.fixture(scope="module")
def stripe_server():
    with StripeTestServer(
        max_lifetime=900, payout_schedule={"interval": "daily", "delay_days": 2}, payout_transit_days=1
    ) as server:
        yield server


@pytest.fixture
def server(stripe_server, settings):
    stripe_server.reset(keep_webhooks=False)
    with stripe_product(settings, stripe_server):
        stripe_server.set_clock(datetime(2027, 2, 26, 12, tzinfo=UTC))
        yield stripe_server


class Events:
    """The server's events applied in order, as the webhook task applies them (each once)."""

    def __init__(self, server) -> None:
        self.server = server
        self.seen: set[str] = set()

    def apply(self) -> list[str]:
        outcomes = []
        for event in sorted(self.server.events(), key=lambda e: (e["created"], e["id"])):
            if event["id"] in self.seen:
                continue
            self.seen.add(event["id"])
            normalised = StripeProvider.event_from_webhook(event)
            if normalised is not None:
                outcomes.append(provider_event_dispatch(normalised))
        return outcomes


def _agency_with_card_clients(agency_a, *, names=("Card One", "Card Two"), connected=True):
    agency = with_plan(agency_a)
    agency.email = "owner@alpha.example"
    agency.save(update_fields=["email"])
    if connected:
        seed.payouts_connected(agency, provider=get_provider())  # the test server (stripe_product)
    with schema_context(agency.schema_name):
        for n, name in enumerate(names):
            client = client_create(
                name=name, email=f"c{n}@example.com", activated_on=date(2027, 1, 15), license_price_minor=5000 + n
            )
            payment_method_attach(client=client, token=["pm_card_visa", "pm_card_mastercard"][n])
    return agency


def _collect(agency, day: date) -> None:
    billing_run(agency=agency, today=day)
    with tenant_context(agency):
        collect_due(today=day)


def _clock(server, day: date, hour: int = 12) -> None:
    server.set_clock(datetime(day.year, day.month, day.day, hour, tzinfo=UTC))


def test_PAY_2_PAY_4_a_payout_that_fails_at_the_bank_then_its_returned_funds_are_paid_out(server, agency_a):
    agency = _agency_with_card_clients(agency_a)
    account = agency.connected_account_id
    server.onboard(account, "complete", bank_account="000111111116")  # Stripe's test number: payouts fail
    events = Events(server)
    _clock(server, MONDAY)
    _collect(agency, MONDAY)
    _clock(server, date(2027, 3, 4))  # created Wed 00:00, due to arrive Thu 00:00: fails
    events.apply()
    [failed] = Payout.objects.filter(agency=agency)
    assert failed.status == "failed" and failed.failure_code
    with schema_context(agency.schema_name):
        charges = list(Charge.objects.filter(status__in=(ChargeStatus.PAID, ChargeStatus.PAID_OUT)))
        assert len(charges) == 2 and all(c.status == ChargeStatus.PAID for c in charges)
        assert payout_carried(failed) == {c.paid_reference for c in charges}  # exactly, from balance transactions
        assert Notice.objects.filter(kind="PAYOUT_FAILED").count() == 1

    server.onboard(account, "complete", bank_account="000123456789")  # a working bank account
    _clock(server, date(2027, 3, 9))
    events.apply()
    paid = Payout.objects.get(agency=agency, status="paid")
    assert paid.returned_payouts == [failed.reference] and paid.charge_references == []
    assert paid.amount_minor == sum(c.amount_minor for c in charges)
    with schema_context(agency.schema_name):
        for charge in charges:
            charge.refresh_from_db()
            assert charge.status == ChargeStatus.PAID_OUT and charge.payout_reference == paid.reference
        assert Notice.objects.filter(kind="PAYOUT_FAILED").count() == 1


def test_PAY_4_a_payout_failed_after_it_was_paid_takes_its_charges_back_from_paid_out(server, agency_a):
    agency = _agency_with_card_clients(agency_a)
    events = Events(server)
    _clock(server, MONDAY)
    _collect(agency, MONDAY)
    _clock(server, date(2027, 3, 4))
    events.apply()
    [first] = Payout.objects.filter(agency=agency, status="paid")
    with schema_context(agency.schema_name):
        assert set(Charge.objects.values_list("status", flat=True)) == {ChargeStatus.PAID_OUT}
    server.fail_payout(first.reference, "account_closed")  # the bank sends it back days later
    events.apply()
    first.refresh_from_db()
    assert first.status == "failed"
    with schema_context(agency.schema_name):
        charges = list(Charge.objects.all())
        assert {c.status for c in charges} == {ChargeStatus.PAID} and {c.payout_reference for c in charges} == {""}
        history = list(charges[0].events.values_list("to_status", flat=True))
        assert history[-2:] == [ChargeStatus.PAID_OUT, ChargeStatus.PAID]
        assert Notice.objects.filter(kind="PAYOUT_FAILED").count() == 1


def test_ONB_2_held_funds_of_an_account_not_enabled_are_transferred_then_paid_out(server, agency_a, settings):
    server.configure(connect_onboarding=True)
    try:
        agency = _agency_with_card_clients(agency_a, connected=False)
        with tenant_context(agency):
            from billing.payout_accounts import payout_account_create

            account = payout_account_create(agency=agency, actor="test").account_id
        events = Events(server)
        _clock(server, MONDAY)
        _collect(agency, MONDAY)
        intents = server.payment_intents()
        assert intents and all(not i.get("transfer_data") for i in intents)  # platform charges: held
        with tenant_context(agency):
            funds = funds_summary(currency="USD")
            assert funds.held == funds.collected == 10001 and funds.paid_out == 0
        assert server.balances().get(account, {}).get("usd", 0) == 0

        _clock(server, date(2027, 3, 2))
        server.onboard(account, "complete")
        events.apply()  # account.updated: enabled → the held funds are transferred
        with tenant_context(agency):
            assert FundsTransfer.objects.filter(transferred_on__isnull=False).count() == 2
            assert funds_summary(currency="USD").held == 0
        transfers = [r for r in server.request_log if r["path"] == "/v1/transfers" and r["method"] == "POST"]
        assert len(transfers) == 2 and all(t["params"]["source_transaction"].startswith("ch_") for t in transfers)
        _clock(server, date(2027, 3, 8))
        events.apply()
        with tenant_context(agency):
            assert set(Charge.objects.values_list("status", flat=True)) == {ChargeStatus.PAID_OUT}
            funds = funds_summary(currency="USD")
            assert funds.paid_out == funds.collected == 10001
    finally:
        server.restore_settings()
