"""Refunds on the Stripe test server: partial and full, card and bank debit (pending until settled), with
`reverse_transfer` on destination charges, Stripe's events and its errors (COR-1)."""

from __future__ import annotations

import pytest
import stripe

from tests.harness.helpers import SECRET, ach_payment_method, card_customer, make_customer, off_session, sepa_method
from tests.harness.stripe_server import StripeTestServer


def agency(client: stripe.StripeClient) -> str:
    return client.v1.accounts.create(params={"type": "express"}).id


def connected_txns(client: stripe.StripeClient, account: str) -> list[tuple[str, int]]:
    rows = client.v1.balance_transactions.list(options={"stripe_account": account}).data
    return [(t.type, t.amount) for t in reversed(rows)]


def test_COR_1_partial_then_full_refund_reverses_the_transfer_proportionally(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    account = agency(client)
    customer, pm = card_customer(client)
    pi = off_session(client, customer, pm, amount=10_000, transfer_data={"destination": account})
    charge = client.v1.charges.retrieve(pi.latest_charge)
    partial = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2_500, "reverse_transfer": True})
    assert (partial.status, partial.amount, partial.charge, partial.payment_intent) == (
        "succeeded",
        2_500,
        charge.id,
        pi.id,
    )
    reversal = client.v1.transfers.retrieve(charge.transfer).reversals.data[0]
    assert partial.transfer_reversal == reversal.id and reversal.amount == 2_500
    assert reversal.source_refund == partial.id
    assert server.balances() == {"platform": {"usd": 0}, account: {"usd": 7_500}}
    rest = client.v1.refunds.create(params={"charge": charge.id, "reverse_transfer": True})
    assert rest.amount == 7_500
    transfer = client.v1.transfers.retrieve(charge.transfer)
    assert transfer.amount_reversed == 10_000 and transfer.reversed is True
    after = client.v1.charges.retrieve(charge.id)
    assert after.amount_refunded == 10_000 and after.refunded is True
    assert [r.id for r in after.refunds.data] == [rest.id, partial.id]
    assert server.balances() == {"platform": {"usd": 0}, account: {"usd": 0}}
    assert connected_txns(client, account) == [
        ("payment", 10_000),
        ("payment_refund", -2_500),
        ("payment_refund", -7_500),
    ]
    platform = {t.type for t in client.v1.balance_transactions.list().data}
    assert platform == {"charge", "transfer", "refund", "transfer_refund"}
    events = recorder.wait_for(lambda evs: sum(e["type"] == "charge.refunded" for e in evs) == 2)
    refund_events = [e["type"] for e in events if e["type"].startswith(("refund.", "charge.refund"))]
    assert refund_events == ["refund.created", "charge.refunded", "refund.created", "charge.refunded"]
    refunded = [e for e in events if e["type"] == "charge.refunded"]
    assert [e["data"]["object"]["amount_refunded"] for e in refunded] == [2_500, 10_000]
    listed = client.v1.refunds.list(params={"payment_intent": pi.id})
    assert [r.id for r in listed.data] == [rest.id, partial.id]


def test_COR_1_refund_without_reverse_transfer_leaves_the_connected_account_alone(client, server):
    account = agency(client)
    customer, pm = card_customer(client)
    pi = off_session(client, customer, pm, amount=3_000, transfer_data={"destination": account})
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1_000})
    assert server.balances() == {"platform": {"usd": -1_000}, account: {"usd": 3_000}}


def test_COR_1_refunds_more_than_remains_and_of_unpaid_charges_are_refused(client, server):
    customer, pm = card_customer(client)
    pi = off_session(client, customer, pm, amount=5_000)
    with pytest.raises(stripe.InvalidRequestError) as too_large:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 5_001})
    assert too_large.value.code == "amount_too_large" and too_large.value.param == "amount"
    assert too_large.value.user_message == "Refund amount ($50.01) is greater than charge amount ($50.00)"
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 3_000})
    with pytest.raises(stripe.InvalidRequestError) as rest:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2_001})
    assert rest.value.user_message == "Refund amount ($20.01) is greater than unrefunded amount on charge ($20.00)"
    client.v1.refunds.create(params={"payment_intent": pi.id})
    with pytest.raises(stripe.InvalidRequestError) as done:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1})
    assert done.value.code == "charge_already_refunded"
    with pytest.raises(stripe.InvalidRequestError) as zero:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 0})
    assert zero.value.param == "amount"
    # a declined charge and a bank debit still processing have nothing to refund
    declining, bad = card_customer(client, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError) as declined:
        off_session(client, declining, bad)
    failed_pi = declined.value.error.payment_intent["id"]
    for params in ({"payment_intent": failed_pi}, {"charge": declined.value.error.charge}):
        with pytest.raises(stripe.InvalidRequestError) as unpaid:
            client.v1.refunds.create(params=params)
        assert unpaid.value.code == "charge_not_refundable"
    bank_customer = make_customer(client)
    ach = ach_payment_method(client, bank_customer)
    processing = client.v1.payment_intents.create(
        params={
            "amount": 2_000,
            "currency": "usd",
            "customer": bank_customer.id,
            "payment_method": ach.id,
            "confirm": True,
        }
    )
    with pytest.raises(stripe.InvalidRequestError) as pending:
        client.v1.refunds.create(params={"payment_intent": processing.id})
    assert pending.value.code == "charge_not_refundable"
    assert "does not have a successful charge to refund" in pending.value.user_message
    refunds = [r for i in server.payment_intents() for c in i["charges"] for r in [c["amount_refunded"]]]
    assert sum(refunds) == 5_000  # nothing else moved


@pytest.mark.parametrize("kind", ["ach", "sepa"])
def test_COR_1_bank_debit_refund_is_pending_until_settled(client, server, recorder, kind):
    server.add_webhook(recorder.url, SECRET)
    customer = make_customer(client)
    if kind == "ach":
        pm, currency = ach_payment_method(client, customer).id, "usd"
    else:
        pm = client.v1.payment_methods.attach(sepa_method(client).id, params={"customer": customer.id}).id
        currency = "eur"
    pi = client.v1.payment_intents.create(
        params={"amount": 6_000, "currency": currency, "customer": customer.id, "payment_method": pm, "confirm": True}
    )
    server.settle()
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1_500})
    assert refund.status == "pending"
    assert refund.destination_details.type == ("us_bank_account" if kind == "ach" else "sepa_debit")
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1_500  # pending counts
    assert server.balances()["platform"][currency] == 4_500
    [row] = server.settle_refunds()
    assert row == {"refund": refund.id, "charge": pi.latest_charge, "status": "succeeded", "amount": 1_500}
    assert client.v1.refunds.retrieve(refund.id).status == "succeeded"
    assert server.settle_refunds() == []  # nothing pending any more
    second = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1_000})
    [failed] = server.settle_refunds(second.id, outcome="failed", failure_reason="insufficient_funds")
    assert failed["status"] == "failed"
    failed_refund = client.v1.refunds.retrieve(second.id)
    assert failed_refund.failure_reason == "insufficient_funds" and failed_refund.failure_balance_transaction
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1_500  # the failed one gave it back
    assert server.balances()["platform"][currency] == 4_500
    events = recorder.wait_for(lambda evs: sum(e["type"] == "charge.refund.updated" for e in evs) == 2)
    ids = (refund.id, second.id)
    flow = [(e["type"], e["data"]["object"]["status"]) for e in events if e["data"]["object"]["id"] in ids]
    assert flow == [
        ("refund.created", "pending"),
        ("refund.updated", "succeeded"),
        ("charge.refund.updated", "succeeded"),
        ("refund.created", "pending"),
        ("refund.failed", "failed"),
        ("refund.updated", "failed"),
        ("charge.refund.updated", "failed"),
    ]
    updated = next(e for e in events if e["type"] == "refund.updated")
    assert updated["data"]["previous_attributes"] == {"status": "pending"}


def test_COR_1_card_refund_that_fails_later(client, server: StripeTestServer):
    customer, pm = card_customer(client, "pm_card_refundFail")
    pi = off_session(client, customer, pm, amount=2_000)
    refund = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert refund.status == "succeeded"
    [row] = server.settle_refunds()
    assert row["status"] == "failed"
    assert client.v1.refunds.retrieve(refund.id).failure_reason == "expired_or_canceled_card"
    assert client.v1.charges.retrieve(pi.latest_charge).refunded is False
    assert server.balances() == {"platform": {"usd": 2_000}}


def test_refunds_belong_to_the_charges_account(client, server):
    account = agency(client)
    connected = server.client(stripe_account=account)
    customer, pm = card_customer(connected)
    pi = off_session(connected, customer, pm, amount=4_000, application_fee_amount=400)
    refund = connected.v1.refunds.create(params={"payment_intent": pi.id, "refund_application_fee": True})
    assert refund.amount == 4_000
    assert server.balances() == {account: {"usd": 0}, "platform": {"usd": 0}}
    assert [r.id for r in connected.v1.refunds.list().data] == [refund.id]
    assert client.v1.refunds.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.retrieve(refund.id)
    with pytest.raises(stripe.InvalidRequestError):  # the platform cannot refund the account's charge
        client.v1.refunds.create(params={"payment_intent": pi.id})
