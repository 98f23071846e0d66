"""The Stripe adapter over real HTTP against the Stripe-compatible test server (tests/harness):
Connect destination charges, idempotency, cards, ACH and SEPA, faults, webhooks (PAY-1, COL-2..5, RET-1)."""

from __future__ import annotations

import time
from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from agencybilling import seed
from billing.attempts import charge_attempt
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.models import Charge, ChargeAttempt
from billing.payment_methods import PaymentMethodInUse, payment_method_attach
from billing.providers.base import ChargeRequest, Outcome
from billing.providers.stripe import StripeProvider
from billing.statuses import AttemptOutcome, ChargeStatus
from tests.billing_helpers import client_create, with_plan
from tests.harness.stripe_server import StripeTestServer

WEBHOOK_SECRET = "whsec_adapter_tests"


@pytest.fixture(scope="module")
def stripe_server():
    with StripeTestServer(max_lifetime=900) as server:
        yield server


@pytest.fixture
def server(stripe_server):
    stripe_server.reset(keep_webhooks=False)
    stripe_server.clear_faults()
    yield stripe_server
    stripe_server.clear_faults()


@pytest.fixture
def provider(server):
    return StripeProvider(api_key="sk_test_adapter", api_base=server.url, timeout=5)


def _request(provider, customer, pm, key, amount=1234, destination=None):
    return ChargeRequest(
        amount_minor=amount,
        currency="USD",
        customer=customer,
        payment_method=pm,
        idempotency_key=key,
        business_date=date(2027, 1, 1),
        destination=destination,
        description="Invoice T-1",
        metadata={"attempt": key, "schema": "alpha", "kind": "client"},
    )


def _customer_with(provider, token, key="c1"):
    customer = provider.customer_create(email=f"{key}@example.com", name=key, idempotency_key=f"cust-{key}")
    return customer, provider.payment_method_save(customer=customer, token=token)


def test_PAY_1_destination_charge_to_the_connected_account(provider, server):
    account = provider.connected_account_create(name="Alpha Agency", email="a@example.com", idempotency_key="acct-a")
    customer, method = _customer_with(provider, "pm_card_visa")
    result = provider.charge_create(_request(provider, customer, method.reference, "k-dest", 5000, account))
    assert result.outcome == Outcome.SUCCEEDED and result.reference.startswith("pi_")
    [intent] = server.payment_intents()
    assert intent["transfer_data"]["destination"] == account
    assert server.balances()[account]["usd"] == 5000  # all revenue to the agency (no application fee)


def test_COL_2_decline_is_mapped_with_its_code(provider):
    # 4000 0000 0000 0341: attaches, then every charge is declined (Stripe's off-session failure card).
    customer, method = _customer_with(provider, "pm_card_chargeCustomerFail")
    result = provider.charge_create(_request(provider, customer, method.reference, "k-decline"))
    assert result.outcome == Outcome.DECLINED and result.decline_code
    assert result.reference.startswith("pi_")


def test_card_refused_at_attach_is_a_clear_provider_error(provider):
    from billing.providers.base import ProviderError

    customer = provider.customer_create(email="x@example.com", name="x", idempotency_key="cust-x")
    with pytest.raises(ProviderError) as excinfo:
        provider.payment_method_save(customer=customer, token="pm_card_visa_chargeDeclinedInsufficientFunds")
    assert "insufficient funds" in str(excinfo.value)


def test_idempotency_key_replay_creates_nothing_new(provider, server):
    customer, method = _customer_with(provider, "pm_card_visa")
    first = provider.charge_create(_request(provider, customer, method.reference, "k-same"))
    second = provider.charge_create(_request(provider, customer, method.reference, "k-same"))
    assert first.reference == second.reference
    assert len(server.payment_intents()) == 1
    assert server.request_log[-1]["idempotency_key"] == "k-same"


def test_COL_3_ach_debit_processing_then_settles(provider, server):
    client = server.client()
    ach = client.v1.payment_methods.create(
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
    customer, method = _customer_with(provider, ach.id, key="ach")
    assert method.kind == "us_bank_account" and method.fingerprint
    request = _request(provider, customer, method.reference, "k-ach")
    assert provider.charge_create(request).outcome == Outcome.PENDING
    server.settle()
    assert provider.charge_lookup(request).outcome == Outcome.SUCCEEDED


def test_COL_3_sepa_debit_is_pending(provider, server):
    sepa = server.client().v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "billing_details": {"name": "Sepa Payer", "email": "s@example.com"},
            "sepa_debit": {"iban": "DE89370400440532013000"},
        }
    )
    customer, method = _customer_with(provider, sepa.id, key="sepa")
    assert method.kind == "sepa_debit"
    request = ChargeRequest(
        amount_minor=990,
        currency="EUR",
        customer=customer,
        payment_method=method.reference,
        idempotency_key="k-sepa",
        business_date=date(2027, 1, 1),
        metadata={"attempt": "k-sepa"},
    )
    assert provider.charge_create(request).outcome == Outcome.PENDING


def test_COL_5_fingerprint_is_stable_for_the_same_card(provider):
    _, first = _customer_with(provider, "pm_card_visa", key="f1")
    _, second = _customer_with(provider, "pm_card_visa", key="f2")
    _, other = _customer_with(provider, "pm_card_mastercard", key="f3")
    assert first.fingerprint == second.fingerprint != other.fingerprint


def test_rate_limit_429_answered_by_backoff(provider, server):
    customer, method = _customer_with(provider, "pm_card_visa")
    server.set_rate_limit(4)
    started = time.monotonic()
    results = [provider.charge_create(_request(provider, customer, method.reference, f"k-rl-{i}")) for i in range(10)]
    assert all(r.outcome == Outcome.SUCCEEDED for r in results)
    assert server.request_count(status=429) >= 1
    assert len(server.payment_intents()) == 10
    assert time.monotonic() - started < 30


def test_the_limiter_paces_each_request_as_it_is_sent_including_retries_after_429(server):
    """Every HTTP request waits for its own slot, taken when the request is already built (the adapter's
    transport): one slot per request the server received, 429'd ones and their retries included."""
    from billing.providers.ratelimit import LocalRateLimiter

    class Counting(LocalRateLimiter):
        slots = 0

        def acquire(self) -> float:
            Counting.slots += 1
            return super().acquire()

    paced = StripeProvider(api_key="sk_test_adapter", api_base=server.url, timeout=5, limiter=Counting(1000))
    customer, method = _customer_with(paced, "pm_card_visa", key="paced")
    server.set_rate_limit(3)
    server.clear_request_log()
    Counting.slots = 0
    results = [paced.charge_create(_request(paced, customer, method.reference, f"k-paced-{i}")) for i in range(6)]
    assert all(r.outcome == Outcome.SUCCEEDED for r in results)
    assert server.request_count(status=429) >= 1
    assert Counting.slots == len(server.request_log) == 6 + server.request_count(status=429)


@pytest.mark.django_db
def test_COL_2_response_lost_after_the_charge_then_rerun_charges_once(provider, server, agency_a):
    """A timeout/5xx after Stripe made the charge: the attempt is Unknown, the rerun looks it up, one charge."""
    agency = with_plan(agency_a)
    seed.payouts_connected(agency, provider=provider)
    with schema_context(agency.schema_name):
        client = client_create(
            name="Lost", email="l@example.com", activated_on=date(2026, 12, 1), license_price_minor=7700
        )
        payment_method_attach(client=client, token="pm_card_visa", provider=provider)
    billing_run(agency=agency, today=date(2027, 1, 1))
    server.inject_errors(count=1, status=500, path_prefix="/v1/payment_intents", method="POST", after=True)
    with tenant_context(agency):
        charge = Charge.objects.get(client=client)
        attempt = charge_attempt(charge, today=date(2027, 1, 1), provider=provider)
        assert attempt.outcome == AttemptOutcome.UNKNOWN
        collect_due(today=date(2027, 1, 1), provider=provider)
        collect_due(today=date(2027, 1, 1), provider=provider)
        charge.refresh_from_db()
        assert charge.status == ChargeStatus.PAID
        assert list(ChargeAttempt.objects.values_list("number", "outcome")) == [(1, AttemptOutcome.SUCCEEDED)]
    intents = server.payment_intents(attempt=attempt.idempotency_key)
    assert len(intents) == 1 and intents[0]["status"] == "succeeded"
    assert len(server.payment_intents()) == 1  # the processor's record equals the database's


@pytest.mark.django_db
def test_COL_5_same_card_refused_across_agencies_via_stripe(provider, agency_a, agency_b):
    with schema_context(agency_a.schema_name):
        first = client_create(name="One", email="1@example.com", activated_on=date(2026, 12, 1))
        payment_method_attach(client=first, token="pm_card_visa", provider=provider)
    with schema_context(agency_b.schema_name):
        second = client_create(name="Two", email="2@example.com", activated_on=date(2026, 12, 1))
        with pytest.raises(PaymentMethodInUse):
            payment_method_attach(client=second, token="pm_card_visa", provider=provider)
        assert not second.payment_methods.exists()


@pytest.mark.django_db(transaction=True)
def test_webhooks_from_the_server_settle_a_bank_debit(provider, server, agency_a, live_server, settings, eager_tasks):
    """Signed deliveries from the server reach /webhooks/stripe and move the charge Pending → Paid."""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    server.add_webhook(f"{live_server.url}/webhooks/stripe", WEBHOOK_SECRET, events=["payment_intent.succeeded"])
    agency = with_plan(agency_a)
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
            name="Bank", email="b@example.com", activated_on=date(2026, 12, 1), license_price_minor=3300
        )
        payment_method_attach(client=client, token=ach.id, provider=provider)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with tenant_context(agency):
        collect_due(today=date(2027, 1, 1), provider=provider)
        assert Charge.objects.get(client=client).status == ChargeStatus.PENDING
    server.settle()
    assert server.wait_for_webhooks(timeout=15)
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline:
        with schema_context(agency.schema_name):
            status = Charge.objects.get(client=client).status
        if status == ChargeStatus.PAID:
            break
        time.sleep(0.2)
    assert status == ChargeStatus.PAID


def test_MON_1_an_amount_above_stripe_s_eight_digits_is_refused_and_nothing_is_charged(provider, server):
    """Stripe takes at most 99,999,999 minor units in one charge (400 `amount_too_large`), and so does the test
    server: the adapter reports a decline with that code, no PaymentIntent exists."""
    customer, method = _customer_with(provider, "pm_card_visa")
    result = provider.charge_create(_request(provider, customer, method.reference, "k-huge", 100_000_000))
    assert result.outcome == Outcome.DECLINED and result.decline_code == "amount_too_large"
    assert server.payment_intents() == []
    assert provider.charge_create(_request(provider, customer, method.reference, "k-max", 99_999_999)).outcome == (
        Outcome.SUCCEEDED
    )
