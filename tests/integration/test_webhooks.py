"""Stripe webhooks at the platform endpoint: signatures, duplicates, order (COL-3, PAY-2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from agencybilling import seed
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.models import Charge, ChargeAttempt, LedgerEntry
from billing.platform.models import SandboxPayout, WebhookEvent
from billing.statuses import ChargeStatus
from tests.billing_helpers import ONBOARDED_ON, client_create, with_plan
from tests.conftest import host_client

pytestmark = pytest.mark.django_db

SECRET = "whsec_test_secret_for_signatures"


def sign(payload: bytes, secret: str = SECRET, at: int | None = None) -> str:
    """Stripe's scheme: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<payload>")."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


_capture = None


@pytest.fixture(autouse=True)
def _run_on_commit(django_capture_on_commit_callbacks, eager_tasks):
    global _capture
    _capture = django_capture_on_commit_callbacks
    yield
    _capture = None


def post(event: dict, signature: str | None = None, payload: bytes | None = None):
    """POST to the platform endpoint; after-commit work (the processing task) runs as it would in production."""
    body = payload if payload is not None else json.dumps(event).encode()
    with _capture(execute=True):
        return host_client(None).post(
            "/webhooks/stripe",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature if signature is not None else sign(body),
        )


def event(event_id: str, kind: str, obj: dict, account: str = "", created: int | None = None) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "account": account or None,
        "created": created or int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "api_version": "2026-10-28.endive",
    }


@pytest.fixture
def pending_debit(agency_a, settings):
    """A client whose SEPA debit is processing: attempt 1 is PENDING."""
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    agency = with_plan(agency_a)
    seed.payouts_ready(agency, today=ONBOARDED_ON)
    from billing.payment_methods import payment_method_attach

    with schema_context(agency.schema_name):
        client = client_create(
            name="Debit", email="d@example.com", activated_on=date(2026, 12, 1), license_price_minor=4200
        )
        payment_method_attach(client=client, token="sepa:DE89370400440532013000")
    billing_run(agency=agency, today=date(2027, 1, 1))
    with tenant_context(agency):
        collect_due(today=date(2027, 1, 1))
        attempt = ChargeAttempt.objects.get()
    return agency, client, attempt


def _succeeded(attempt, event_id="evt_succeeded_1"):
    return event(
        event_id,
        "payment_intent.succeeded",
        {
            "id": attempt.gateway_reference,
            "object": "payment_intent",
            "status": "succeeded",
            "amount": 4200,
            "metadata": {"schema": "alpha", "kind": "client", "attempt": attempt.idempotency_key},
        },
        created=int(time.mktime(date(2027, 1, 5).timetuple())) + 43200,
    )


def _payout(agency, attempt, event_id="evt_payout_1"):
    """payout.paid for a payout that, in the processor's books, carries the attempt's PaymentIntent."""
    SandboxPayout.objects.get_or_create(
        reference="po_webhook_1",
        defaults={
            "destination": agency.connected_account_id,
            "amount_minor": 4200,
            "currency": "USD",
            "arrival_on": date(2027, 1, 8),
            "status": "paid",
            "intents": [attempt.gateway_reference],
        },
    )
    return event(
        event_id,
        "payout.paid",
        {
            "id": "po_webhook_1",
            "object": "payout",
            "status": "paid",
            "arrival_date": int(time.mktime(date(2027, 1, 8).timetuple())) + 43200,
        },
        account=agency.connected_account_id,
    )


def _state(agency, client):
    with schema_context(agency.schema_name):
        charge = Charge.objects.get(client=client)
        payments = LedgerEntry.objects.filter(client=client, entry_type="PAYMENT").count()
        return charge.status, payments


def test_COL_3_settlement_webhook_marks_paid(pending_debit):
    agency, client, attempt = pending_debit
    assert _state(agency, client) == (ChargeStatus.PENDING, 0)
    response = post(_succeeded(attempt))
    assert response.status_code == 200 and response.json() == {"status": "received"}
    assert _state(agency, client) == (ChargeStatus.PAID, 1)
    assert WebhookEvent.objects.get(event_id="evt_succeeded_1").status == "PROCESSED"


def test_PAY_2_same_webhook_five_times_and_in_reverse_order_equals_once(pending_debit):
    agency, client, attempt = pending_debit
    events = [_succeeded(attempt), _payout(agency, attempt)]
    for _ in range(5):
        for item in reversed(events):
            assert post(item).status_code == 200
    assert _state(agency, client) == (ChargeStatus.PAID_OUT, 1)
    assert WebhookEvent.objects.count() == 2
    with schema_context(agency.schema_name):
        charge = Charge.objects.get(client=client)
        assert charge.payout_reference == "po_webhook_1"
        assert list(charge.events.values_list("to_status", flat=True)) == ["PENDING", "PAID", "PAID_OUT"]


@pytest.mark.parametrize("forgery", ["wrong-secret", "stale", "garbage", "missing", "tampered"])
def test_forged_or_stale_signature_is_400_and_changes_nothing(pending_debit, forgery):
    agency, client, attempt = pending_debit
    item = _succeeded(attempt, event_id=f"evt_{forgery}")
    body = json.dumps(item).encode()
    signature = {
        "wrong-secret": sign(body, secret="whsec_attacker"),
        "stale": sign(body, at=int(time.time()) - 3600),
        "garbage": "t=abc,v1=zzz",
        "missing": "",
        "tampered": sign(body),
    }[forgery]
    if forgery == "tampered":
        body = body.replace(b"4200", b"9999")
    response = post(item, signature=signature, payload=body)
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "fields"}
    assert not WebhookEvent.objects.exists()
    assert _state(agency, client) == (ChargeStatus.PENDING, 0)


def test_unhandled_event_types_are_stored_and_ignored(pending_debit):
    response = post(event("evt_other", "customer.created", {"id": "cus_1", "object": "customer"}))
    assert response.status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_other").status == "IGNORED"


def test_failed_settlement_webhook_counts_as_a_failed_attempt(pending_debit):
    agency, client, attempt = pending_debit
    failed = event(
        "evt_failed",
        "payment_intent.payment_failed",
        {
            "id": attempt.gateway_reference,
            "object": "payment_intent",
            "status": "requires_payment_method",
            "last_payment_error": {"code": "payment_method_provider_decline", "decline_code": "insufficient_funds"},
            "metadata": {"schema": "alpha", "kind": "client", "attempt": attempt.idempotency_key},
        },
    )
    post(failed)
    post(failed)
    with schema_context(agency.schema_name):
        charge = Charge.objects.get(client=client)
        assert charge.status == ChargeStatus.RETRYING and charge.next_retry_on == date(2027, 1, 8)
        assert ChargeAttempt.objects.get().outcome == "SETTLEMENT_FAILED"
