"""DUN-1: "paying clears the flag" — at once, on every road a payment takes (autopay batches, a single or manual
attempt, a bank debit settled later by the processor), with the sandbox and with the Stripe adapter. The day's
overdue evaluation would also clear it later that day; these tests never run it after the payment, so they
prove the payment itself clears the flag."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from agencybilling import seed
from billing.attempts import charge_attempt, charge_retry_manual
from billing.collection import collect_due
from billing.dunning import overdue_evaluate
from billing.invoicing import billing_run
from billing.models import BillingSettings, Charge
from billing.payment_methods import payment_method_attach
from billing.providers.sandbox import SandboxProvider
from billing.providers.stripe import StripeProvider
from billing.settlement import provider_event_dispatch
from billing.statuses import ChargeStatus
from clients.models import Client
from tests.billing_helpers import client_create, ready_to_collect, with_plan
from tests.conftest import host_client
from tests.harness.stripe_server import StripeTestServer

pytestmark = pytest.mark.django_db

BILLED = date(2027, 1, 1)
FLAGGED = date(2027, 1, 2)  # grace period 0: the unpaid charge of the 1st is past due the next day
WEBHOOK_SECRET = "whsec_overdue_clears"


def _overdue_client(agency, *, declining: str, provider=None) -> Client:
    """A client whose first charge was declined on the 1st and whose account the day's evaluation flagged
    overdue on the 2nd (DUN-1)."""
    with schema_context(agency.schema_name):
        BillingSettings.objects.update(grace_period_days=0, overdue_threshold_minor=0)
        client = client_create(
            name="Late", email="late@example.com", activated_on=date(2026, 12, 1), license_price_minor=10000
        )
        payment_method_attach(client=client, token=declining, provider=provider)
    billing_run(agency=agency, today=BILLED)
    with tenant_context(agency):
        collect_due(today=BILLED, provider=provider)
        assert Charge.objects.get(client=client).status == ChargeStatus.RETRYING
        overdue_evaluate(agency=agency, today=FLAGGED)
        client.refresh_from_db()
    assert client.overdue_since == FLAGGED
    return client


def _flag(agency, client) -> date | None:
    with schema_context(agency.schema_name):
        return Client.objects.get(pk=client.pk).overdue_since


def _charge(agency, client) -> Charge:
    with schema_context(agency.schema_name):
        return Charge.objects.get(client=client)


@pytest.fixture
def agency(agency_a):
    return ready_to_collect(agency_a)


def test_DUN_1_RET_2_an_automatic_retry_in_the_day_batch_clears_the_overdue_flag(agency):
    client = _overdue_client(agency, declining="pm_card_visa_chargeDeclined")
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_visa")
    with tenant_context(agency):
        summary = collect_due(today=date(2027, 1, 8))  # the 5th weekday: the automatic retry
    assert summary.paid == 1 and _charge(agency, client).status == ChargeStatus.PAID
    assert _flag(agency, client) is None


def test_DUN_1_RET_4_a_manual_retry_clears_the_overdue_flag(agency):
    client = _overdue_client(agency, declining="pm_card_visa_chargeDeclined")
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_visa")
    with tenant_context(agency):
        charge_retry_manual(_charge(agency, client), today=date(2027, 1, 4), actor="support@example.com")
    assert _charge(agency, client).status == ChargeStatus.PAID
    assert _flag(agency, client) is None


def test_DUN_1_COL_2_a_single_attempt_clears_the_overdue_flag(agency):
    client = _overdue_client(agency, declining="pm_card_visa_chargeDeclined")
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_visa")
    with tenant_context(agency):
        charge_attempt(_charge(agency, client), today=date(2027, 1, 4))
    assert _charge(agency, client).status == ChargeStatus.PAID
    assert _flag(agency, client) is None


def test_DUN_1_COL_3_a_bank_debit_clears_the_overdue_flag_when_it_settles_not_before(agency):
    client = _overdue_client(agency, declining="pm_card_visa_chargeDeclined")
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="sepa:DE89370400440532013000")
    with tenant_context(agency):
        charge_retry_manual(_charge(agency, client), today=date(2027, 1, 4), actor="support@example.com")
    assert _charge(agency, client).status == ChargeStatus.PENDING
    assert _flag(agency, client) == FLAGGED  # submitted, not paid: still overdue
    events = SandboxProvider().advance(today=date(2027, 1, 6))
    assert [event.kind for event in events] == ["charge.succeeded"]
    for event in events:
        provider_event_dispatch(event)  # what the webhook task and the day's settlement step run
    assert _charge(agency, client).status == ChargeStatus.PAID
    assert _flag(agency, client) is None


def test_DUN_1_a_payment_that_leaves_the_account_past_due_keeps_the_flag(agency):
    """Only a payment that brings the account below DUN-1's threshold clears it: an older unpaid charge keeps it."""
    client = _overdue_client(agency, declining="pm_card_visa_chargeDeclined")
    billing_run(agency=agency, today=date(2027, 2, 1))
    with tenant_context(agency):
        collect_due(today=date(2027, 2, 1), retries=False)  # February's charge is declined too
        february = Charge.objects.get(client=client, due_on=date(2027, 2, 1))
        payment_method_attach(client=client, token="pm_card_visa")
        charge_attempt(february, today=date(2027, 2, 2))
    assert _flag(agency, client) == FLAGGED  # January's charge is still open and past due


# --- the same roads through the Stripe adapter and its test server ------------------------------------------


@pytest.fixture(scope="module")
def stripe_server():
    with StripeTestServer(max_lifetime=900) as server:
        yield server


@pytest.fixture
def stripe(stripe_server, agency_a):
    stripe_server.reset(keep_webhooks=False)
    stripe_server.clear_faults()
    provider = StripeProvider(api_key="sk_test_overdue", api_base=stripe_server.url, timeout=5)
    agency = with_plan(agency_a)
    seed.payouts_connected(agency, provider=provider)
    return stripe_server, provider, agency


def test_DUN_1_RET_2_stripe_an_automatic_retry_with_calls_in_flight_clears_the_overdue_flag(stripe):
    server, provider, agency = stripe
    client = _overdue_client(agency, declining="pm_card_chargeCustomerFail", provider=provider)
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_visa", provider=provider)
    with tenant_context(agency):
        summary = collect_due(today=date(2027, 1, 8), provider=provider, concurrency=4)  # the threaded path
    assert summary.paid == 1 and _charge(agency, client).status == ChargeStatus.PAID
    assert _flag(agency, client) is None


def _signed_post(event: dict, django_capture_on_commit_callbacks):
    body = json.dumps(event).encode()
    at = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    with django_capture_on_commit_callbacks(execute=True):
        return host_client(None).post(
            "/webhooks/stripe", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=f"t={at},v1={digest}"
        )


def test_DUN_1_COL_3_stripe_an_ach_debit_settled_by_webhook_clears_the_overdue_flag(
    stripe, settings, eager_tasks, django_capture_on_commit_callbacks
):
    server, provider, agency = stripe
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    client = _overdue_client(agency, declining="pm_card_chargeCustomerFail", provider=provider)
    ach = server.client().v1.payment_methods.create(
        params={
            "type": "us_bank_account",
            "billing_details": {"name": "Late Payer"},
            "us_bank_account": {
                "routing_number": "110000000",
                "account_number": "000123456789",
                "account_holder_type": "company",
            },
        }
    )
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token=ach.id, provider=provider)
    with tenant_context(agency):
        charge_retry_manual(
            _charge(agency, client), today=date(2027, 1, 4), actor="support@example.com", provider=provider
        )
    assert _charge(agency, client).status == ChargeStatus.PENDING and _flag(agency, client) == FLAGGED
    server.settle()
    [succeeded] = server.events(type="payment_intent.succeeded")
    assert _signed_post(succeeded, django_capture_on_commit_callbacks).status_code == 200
    assert _charge(agency, client).status == ChargeStatus.PAID
    assert _flag(agency, client) is None
