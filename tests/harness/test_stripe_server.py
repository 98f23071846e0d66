"""Tests of the Stripe test server itself, through the official `stripe` library over HTTP (no Django, no database):
lifecycle, cards, bank debits, Connect charges, idempotency, faults, webhooks. Fixtures: tests/harness/conftest.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from tests.harness.helpers import (
    ACH_CLOSED,
    SECRET,
    ach_payment_method,
    card_customer,
    make_customer,
    off_session,
    sepa_method,
)
from tests.harness.stripe_server import StripeTestServer, WebhookRecorder

pytestmark: list = []


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------------------------------------ lifecycle
def test_instances_are_isolated_bind_loopback_and_stop():
    pickle_path = "/tmp/localstripe.pickle"
    before = os.stat(pickle_path).st_mtime if os.path.exists(pickle_path) else None
    with StripeTestServer() as a, StripeTestServer() as b:
        assert a.url.startswith("http://127.0.0.1:") and a.port != b.port
        customer = make_customer(a.client())
        with pytest.raises(stripe.InvalidRequestError) as missing:
            b.client().v1.customers.retrieve(customer.id)
        assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
        port = a.port
    after = os.stat(pickle_path).st_mtime if os.path.exists(pickle_path) else None
    assert before == after, "the store must not be pickled to /tmp"
    assert not a.running and not port_open(port)


def test_server_exits_when_its_parent_dies():
    code = (
        f"import sys, time; sys.path.insert(0, {os.getcwd()!r})\n"
        "from tests.harness.stripe_server import StripeTestServer\n"
        "s = StripeTestServer().start(); print(s.port, s._proc.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port, child_pid = map(int, parent.stdout.readline().split())
        assert port_open(port)
        parent.kill()
        parent.wait(timeout=5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and port_open(port):
            time.sleep(0.1)
        assert not port_open(port)

        def gone() -> bool:
            try:
                with open(f"/proc/{child_pid}/status") as status:
                    return "zombie" in status.read()
            except FileNotFoundError:
                return True

        while time.monotonic() < deadline and not gone():  # it closes its socket first, then exits
            time.sleep(0.1)
        assert gone()
    finally:
        if parent.poll() is None:
            parent.kill()


# ------------------------------------------------------------------------------------------------ cards
def test_customer_attach_and_off_session_success(client, server):
    customer, pm = card_customer(client)
    pi = off_session(
        client,
        customer,
        pm,
        description="Invoice INV-1",
        metadata={"invoice": "INV-1"},
        statement_descriptor_suffix="INV 1",
        setup_future_usage="off_session",
        payment_method_types=["card"],
        receipt_email="payer@example.com",
    )
    assert pi.status == "succeeded" and pi.amount_received == 2500
    assert pi.description == "Invoice INV-1" and pi.metadata["invoice"] == "INV-1"
    assert pi.statement_descriptor_suffix == "INV 1" and pi.setup_future_usage == "off_session"
    assert pi.payment_method_types == ["card"]
    assert isinstance(pi.latest_charge, str) and pi.latest_charge.startswith("ch_")
    again = client.v1.payment_intents.retrieve(pi.id)
    assert again.status == "succeeded" and again.latest_charge == pi.latest_charge
    expanded = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})
    assert expanded.latest_charge.id == pi.latest_charge and expanded.latest_charge.paid is True
    assert expanded.latest_charge.metadata["invoice"] == "INV-1"
    listed = client.v1.payment_intents.list(params={"customer": customer.id})
    assert [p.id for p in listed.data] == [pi.id]


def test_attach_of_a_declining_card_fails(client):
    customer = make_customer(client)
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_methods.attach("pm_card_visa_chargeDeclined", params={"customer": customer.id})
    assert err.value.code == "card_declined" and err.value.error.decline_code == "generic_decline"
    # 4000000000000341 attaches fine, and fails when charged
    assert (
        client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id}).customer
        == customer.id
    )


def test_off_session_decline(client, server):
    customer, pm = card_customer(client, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError) as err:
        off_session(client, customer, pm, metadata={"invoice": "INV-2"})
    assert err.value.http_status == 402 and err.value.code == "card_declined"
    pi_id = err.value.error.payment_intent["id"]
    pi = client.v1.payment_intents.retrieve(pi_id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "card_declined" and pi.last_payment_error.type == "card_error"
    # retry the same PaymentIntent with another card
    _, good = card_customer(client)
    client.v1.payment_methods.detach(good)
    client.v1.payment_methods.attach(good, params={"customer": customer.id})
    retried = client.v1.payment_intents.confirm(pi_id, params={"payment_method": good, "off_session": True})
    assert retried.status == "succeeded"
    charges = server.charges_for(pi_id)
    assert [c["status"] for c in charges] == ["failed", "succeeded"]
    assert [c["status"] for c in server.charges_for("invoice")] == ["failed", "succeeded"]


def test_unattached_declined_card_and_authentication_required(client):
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "confirm": True,
                "payment_method": "pm_card_visa_chargeDeclinedInsufficientFunds",
            }
        )
    assert err.value.error.decline_code == "insufficient_funds"
    customer, pm = card_customer(client, "pm_card_authenticationRequired")
    with pytest.raises(stripe.CardError) as auth:
        off_session(client, customer, pm)
    assert auth.value.code == "authentication_required"


def test_refunds(client, server):
    customer, pm = card_customer(client)
    pi = off_session(client, customer, pm, amount=5000)
    partial = client.v1.refunds.create(
        params={"payment_intent": pi.id, "amount": 2000, "reason": "requested_by_customer"}
    )
    assert partial.status == "succeeded" and partial.amount == 2000 and partial.payment_intent == pi.id
    rest = client.v1.refunds.create(params={"charge": pi.latest_charge})
    assert rest.amount == 3000
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 5000 and charge.refunded is True
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert err.value.code == "charge_already_refunded"
    assert server.payment_intents()[0]["amount_refunded"] == 5000


def test_setup_intent_attaches_payment_method(client):
    customer = make_customer(client)
    si = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "usage": "off_session",
            "description": "card on file",
        }
    )
    assert si.status == "succeeded"
    assert client.v1.payment_methods.retrieve(si.payment_method).customer == customer.id
    methods = client.v1.customers.payment_methods.list(customer.id)
    assert [m.id for m in methods.data] == [si.payment_method]
    with pytest.raises(stripe.CardError):
        client.v1.setup_intents.create(
            params={"customer": customer.id, "payment_method": "pm_card_visa_chargeDeclined", "confirm": True}
        )


def test_unknown_parameters_are_refused_like_stripe(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "bogus_param": "x"})
    assert err.value.code == "parameter_unknown" and err.value.param == "bogus_param"


# ------------------------------------------------------------------------------------------------ fingerprints
def test_fingerprints_are_stable(client):
    first = client.v1.payment_methods.retrieve("pm_card_visa")
    second = client.v1.payment_methods.retrieve("pm_card_visa")
    other = client.v1.payment_methods.retrieve("pm_card_mastercard")
    assert first.id != second.id and first.card.fingerprint == second.card.fingerprint
    assert other.card.fingerprint != first.card.fingerprint and other.card.brand == "mastercard"
    customer = make_customer(client)
    bank_a = ach_payment_method(client, customer)
    bank_b = ach_payment_method(client, make_customer(client))
    bank_c = ach_payment_method(client, customer, ACH_CLOSED)
    assert bank_a.us_bank_account.fingerprint == bank_b.us_bank_account.fingerprint
    assert bank_a.us_bank_account.fingerprint != bank_c.us_bank_account.fingerprint
    assert bank_a.us_bank_account.last4 == "6789" and bank_a.us_bank_account.routing_number == "110000000"
    sepa = sepa_method(client)
    assert len(sepa.sepa_debit.fingerprint) == 16 and sepa.sepa_debit.last4 == "3000"


# ------------------------------------------------------------------------------------------------ bank debits
def test_ach_processing_then_settled(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    customer = make_customer(client)
    ok = ach_payment_method(client, customer)
    closed = ach_payment_method(client, customer, ACH_CLOSED)
    params = {
        "amount": 10000,
        "currency": "usd",
        "customer": customer.id,
        "confirm": True,
        "off_session": True,
        "payment_method_types": ["us_bank_account"],
    }
    good = client.v1.payment_intents.create(params={**params, "payment_method": ok.id})
    bad = client.v1.payment_intents.create(params={**params, "payment_method": closed.id})
    assert good.status == bad.status == "processing"
    time.sleep(0.1)
    assert client.v1.payment_intents.retrieve(good.id).status == "processing"  # nothing settles by itself
    settled = server.settle()
    assert {row["payment_intent"]: row["status"] for row in settled} == {good.id: "succeeded", bad.id: "failed"}
    assert client.v1.payment_intents.retrieve(good.id).status == "succeeded"
    failed = client.v1.payment_intents.retrieve(bad.id)
    assert failed.status == "requires_payment_method" and failed.last_payment_error.code == "account_closed"
    events = recorder.wait_for(
        lambda evs: {"payment_intent.succeeded", "payment_intent.payment_failed"} <= {e["type"] for e in evs}
    )
    assert [
        e["type"] for e in events if e["data"]["object"]["id"] == good.id and e["type"].startswith("payment_intent.")
    ] == ["payment_intent.created", "payment_intent.processing", "payment_intent.succeeded"]


def test_ach_requires_usd_and_allowed_type(client):
    customer = make_customer(client)
    ok = ach_payment_method(client, customer)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "eur",
                "customer": customer.id,
                "payment_method": ok.id,
                "confirm": True,
            }
        )
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": ok.id,
                "confirm": True,
                "payment_method_types": ["card"],
            }
        )


def test_sepa_processing_then_success_or_failure(client, server):
    customer = make_customer(client)
    results = {}
    for iban in ("DE89370400440532013000", "DE62370400440532013001"):
        pm = client.v1.payment_methods.attach(sepa_method(client, iban).id, params={"customer": customer.id})
        pi = client.v1.payment_intents.create(
            params={
                "amount": 3000,
                "currency": "eur",
                "customer": customer.id,
                "payment_method": pm.id,
                "confirm": True,
                "payment_method_types": ["sepa_debit"],
            }
        )
        assert pi.status == "processing"
        results[iban] = pi.id
    server.settle()
    assert client.v1.payment_intents.retrieve(results["DE89370400440532013000"]).status == "succeeded"
    failed = client.v1.payment_intents.retrieve(results["DE62370400440532013001"])
    assert failed.status == "requires_payment_method" and failed.last_payment_error.code == "insufficient_funds"


def test_bank_settle_delay_settles_by_itself():
    with StripeTestServer(bank_settle_delay=0.2) as srv:
        client = srv.client()
        customer = make_customer(client)
        pm = ach_payment_method(client, customer)
        pi = client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm.id,
                "confirm": True,
            }
        )
        assert pi.status == "processing"
        deadline = time.monotonic() + 5
        while client.v1.payment_intents.retrieve(pi.id).status == "processing" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


# ------------------------------------------------------------------------------------------------ Connect
def test_destination_charge_with_transfer_data(client, server):
    account = client.v1.accounts.create(
        params={
            "type": "express",
            "country": "US",
            "email": "agency@example.com",
            "capabilities": {"transfers": {"requested": True}},
        }
    )
    assert account.id.startswith("acct_") and account.capabilities["transfers"] == "active"
    assert client.v1.accounts.retrieve(account.id).email == "agency@example.com"
    customer, pm = card_customer(client)
    pi = off_session(
        client,
        customer,
        pm,
        amount=10000,
        transfer_data={"destination": account.id},
        application_fee_amount=300,
        on_behalf_of=account.id,
        transfer_group="INV-9",
    )
    assert pi.transfer_data.destination == account.id and pi.application_fee_amount == 300
    assert pi.on_behalf_of == account.id
    charge = client.v1.charges.retrieve(pi.latest_charge)
    transfer = client.v1.transfers.retrieve(charge.transfer)
    assert transfer.destination == account.id and transfer.amount == 9700
    connected = client.v1.balance.retrieve(options={"stripe_account": account.id})
    assert connected.available[0].amount == 9700 and connected.available[0].currency == "usd"
    assert server.balances() == {"platform": {"usd": 300}, account.id: {"usd": 9700}}
    # refund with reverse_transfer pulls the money back from the connected account
    client.v1.refunds.create(params={"payment_intent": pi.id, "reverse_transfer": True})
    assert server.balances() == {"platform": {"usd": 300 - 10000 + 9700}, account.id: {"usd": 0}}


def test_transfer_data_to_unknown_account_is_400(client, server):
    customer, pm = card_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as err:
        off_session(client, customer, pm, transfer_data={"destination": "acct_doesnotexist1"})
    assert err.value.http_status == 400 and err.value.code == "resource_missing"
    assert err.value.param == "transfer_data[destination]"
    with pytest.raises(stripe.InvalidRequestError) as fee:
        off_session(client, customer, pm, application_fee_amount=100)  # no destination, no Stripe-Account
    assert fee.value.param == "application_fee_amount"
    assert server.payment_intents() == []


def test_stripe_account_header_scopes_balance_and_payouts(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    account = client.v1.accounts.create(
        params={
            "type": "custom",
            "country": "US",
            "external_account": {
                "object": "bank_account",
                "country": "US",
                "currency": "usd",
                "routing_number": "110000000",
                "account_number": "000123456789",
            },
        }
    )
    customer, pm = card_customer(client)
    off_session(client, customer, pm, amount=4000, transfer_data={"destination": account.id})
    payouts = server.pay_out(account.id)
    assert [(p["amount"], p["status"], p["account"]) for p in payouts] == [(4000, "paid", account.id)]
    assert client.v1.balance.retrieve(options={"stripe_account": account.id}).available[0].amount == 0
    listed = client.v1.payouts.list(options={"stripe_account": account.id})
    assert [p.id for p in listed.data] == [payouts[0]["id"]]
    assert client.v1.payouts.list().data == []  # the platform's own payouts
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payouts.retrieve(payouts[0]["id"])  # not visible without the header
    paid = recorder.wait_for_type("payout.paid")
    assert paid["account"] == account.id and paid["data"]["object"]["amount"] == 4000
    with pytest.raises(stripe.PermissionError):
        client.v1.balance.retrieve(options={"stripe_account": "acct_unknown000000"})


def test_payout_failure_follows_the_external_account(client, server):
    account = client.v1.accounts.create(
        params={
            "type": "custom",
            "country": "US",
            "external_account": {
                "object": "bank_account",
                "country": "US",
                "currency": "usd",
                "routing_number": "110000000",
                "account_number": "000111111113",
            },
        }
    )
    customer, pm = card_customer(client)
    off_session(client, customer, pm, amount=4000, transfer_data={"destination": account.id})
    (payout,) = server.pay_out(account.id)
    assert payout["status"] == "failed" and payout["failure_code"] == "account_closed"
    assert server.balances()[account.id] == {"usd": 4000}  # the money came back


def test_direct_charge_with_stripe_account_header(client, server):
    account = client.v1.accounts.create(params={"type": "standard"})
    connected = server.client(stripe_account=account.id)
    customer = make_customer(connected)
    pm = connected.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    pi = off_session(connected, customer, pm.id, amount=2000, application_fee_amount=150)
    assert pi.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.retrieve(pi.id)  # lives on the connected account
    assert server.balances() == {account.id: {"usd": 1850}, "platform": {"usd": 150}}
    assert [r["path"] for r in server.request_log if r["stripe_account"] == account.id][:1] == ["/v1/customers"]


# ------------------------------------------------------------------------------------------------ idempotency
def test_idempotent_replay_returns_the_same_payment_intent(client, server):
    customer, pm = card_customer(client)
    params = {
        "amount": 1500,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": pm,
        "confirm": True,
        "off_session": True,
        "metadata": {"invoice": "INV-7"},
    }
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "invoice-INV-7"})
    second = client.v1.payment_intents.create(params=params, options={"idempotency_key": "invoice-INV-7"})
    assert first.id == second.id and first.latest_charge == second.latest_charge
    truth = server.payment_intents(invoice="INV-7")
    assert len(truth) == 1 and truth[0]["idempotency_key"] == "invoice-INV-7"
    assert len(server.charges_for(first.id)) == 1
    replays = [r for r in server.request_log if r["idempotency_key"] == "invoice-INV-7"]
    assert [r["replayed"] for r in replays] == [False, True]
    # keys are scoped per API key
    other = server.client("sk_test_other_tenant").v1.payment_intents.create(
        params=params, options={"idempotency_key": "invoice-INV-7"}
    )
    assert other.id != first.id


def test_idempotent_replay_of_a_decline_is_the_same_402(client, server):
    customer, pm = card_customer(client, "pm_card_chargeCustomerFail")
    params = {
        "amount": 1500,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": pm,
        "confirm": True,
        "off_session": True,
    }
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as err:
            client.v1.payment_intents.create(params=params, options={"idempotency_key": "decline-1"})
        errors.append(err.value)
    assert errors[0].http_body == errors[1].http_body
    assert len(server.payment_intents()) == 1


def test_concurrent_requests_with_one_key_create_one_payment(client, server):
    customer, pm = card_customer(client)
    server.set_latency(0.2)
    params = {
        "amount": 1500,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": pm,
        "confirm": True,
        "off_session": True,
    }
    with ThreadPoolExecutor(4) as pool:
        ids = set(
            pool.map(
                lambda _: (
                    client.v1.payment_intents.create(params=params, options={"idempotency_key": "double-click"}).id
                ),
                range(4),
            )
        )
    assert len(ids) == 1 and len(server.payment_intents()) == 1


def test_idempotency_key_reused_with_other_parameters(client):
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k-1"})
    with pytest.raises(stripe.IdempotencyError) as err:
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k-1"})
    assert err.value.http_status == 400 and err.value.error.type == "idempotency_error"


def test_lost_response_is_recovered_by_the_library_retry(server):
    client = server.client(max_network_retries=2)
    customer, pm = card_customer(client)
    server.inject_errors(1, status=500, path_prefix="/v1/payment_intents", after=True)
    pi = off_session(client, customer, pm)
    assert pi.status == "succeeded"
    assert len(server.payment_intents()) == 1
    statuses = [r["status"] for r in server.request_log if r["path"] == "/v1/payment_intents"]
    assert statuses == [500, 200]


# ------------------------------------------------------------------------------------------------ faults
def test_latency(client, server):
    customer = make_customer(client)
    server.set_latency(0.3)
    started = time.monotonic()
    client.v1.customers.retrieve(customer.id)
    assert time.monotonic() - started >= 0.3
    with ThreadPoolExecutor(4) as pool:  # latency is per request, not a global lock
        started = time.monotonic()
        list(pool.map(lambda _: client.v1.customers.retrieve(customer.id), range(4)))
        assert time.monotonic() - started < 1.0
    server.set_latency(0)
    started = time.monotonic()
    client.v1.customers.retrieve(customer.id)
    assert time.monotonic() - started < 0.2


def test_rate_limit(client, server):
    server.set_rate_limit(5)
    outcomes = []
    for _ in range(12):
        try:
            client.v1.customers.list()
            outcomes.append(200)
        except stripe.RateLimitError as err:
            assert err.http_status == 429 and err.error.code == "rate_limit"
            outcomes.append(429)
    assert outcomes.count(200) == 5 and outcomes.count(429) == 7
    assert server.request_count("GET", "/v1/customers", status=429) == 7
    assert server.request_count("GET", "/v1/customers") == 12
    server.set_rate_limit(None)
    client.v1.customers.list()


# ------------------------------------------------------------------------------------------------ webhooks
def test_signed_webhooks_verify(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    customer, pm = card_customer(client)
    ok = off_session(client, customer, pm)
    declining, bad_pm = card_customer(client, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        off_session(client, declining, bad_pm)
    recorder.wait_for(
        lambda evs: (
            {"payment_intent.succeeded", "payment_intent.payment_failed", "charge.succeeded", "charge.failed"}
            <= {e["type"] for e in evs}
        )
    )
    verified = [
        stripe.Webhook.construct_event(r["body"], r["headers"]["Stripe-Signature"], SECRET) for r in recorder.received
    ]
    succeeded = next(e for e in verified if e.type == "payment_intent.succeeded")
    assert succeeded.data.object.id == ok.id and succeeded.data.object.status == "succeeded"
    assert "account" not in succeeded  # platform event
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            recorder.received[0]["body"], recorder.received[0]["headers"]["Stripe-Signature"], "whsec_wrong"
        )
    assert server.wait_for_webhooks(5)
    assert all(d["status"] == 200 for d in server.webhook_deliveries())
    server.resend_event(succeeded.id)  # Stripe may deliver an event twice: handlers must be idempotent
    recorder.wait_for(lambda evs: [e["id"] for e in evs].count(succeeded.id) == 2)


def test_failed_webhook_deliveries_are_retried(client, server):
    with WebhookRecorder(status=lambda n: 500 if n == 1 else 200) as flaky:
        server.add_webhook(flaky.url, SECRET, events=["customer.created"])
        make_customer(client)
        assert server.wait_for_webhooks(5)
        attempts = [(d["attempt"], d["status"]) for d in server.webhook_deliveries()]
        assert attempts == [(1, 500), (2, 200)]
        assert len(flaky.received) == 2 and flaky.received[0]["body"] == flaky.received[1]["body"]


def test_connect_only_endpoint(client, server, recorder):
    server.add_webhook(recorder.url, SECRET, connect=True)
    account = client.v1.accounts.create(params={"type": "express"})
    customer, pm = card_customer(client)
    off_session(client, customer, pm, amount=1000, transfer_data={"destination": account.id})
    server.pay_out(account.id)
    assert server.wait_for_webhooks(5)
    assert [e["type"] for e in recorder.payloads()] == [
        "payout.created",
        "payout.updated",
        "payout.paid",
        "payout.reconciliation_completed",
    ]
    assert {e["account"] for e in recorder.payloads()} == {account.id}


# ------------------------------------------------------------------------------------------------ truth
def test_truth_listing_and_search(client, server):
    customer, pm = card_customer(client)
    for n in range(3):
        off_session(client, customer, pm, amount=1000 + n, metadata={"invoice": f"INV-{n}", "agency": "alpha"})
    rows = server.payment_intents(agency="alpha")
    assert [r["amount"] for r in rows] == [1000, 1001, 1002]
    assert all(r["status"] == "succeeded" and r["idempotency_key"] for r in rows)
    found = client.v1.payment_intents.search(params={"query": "metadata['invoice']:'INV-1' AND status:'succeeded'"})
    assert [p.amount for p in found.data] == [1001]
    server.reset()
    assert server.payment_intents() == [] and server.request_log == []
