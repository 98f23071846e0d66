"""Disputes on the Stripe test server: Stripe's dispute test cards, funds withdrawn from the platform for
destination charges, evidence, closing, won/lost with funds reinstated, and the test controls (COR-2)."""

from __future__ import annotations

import datetime

import pytest
import stripe

from tests.harness.helpers import SECRET, card_customer, make_customer, off_session

MONDAY = datetime.datetime(2027, 1, 4, 10, 0, tzinfo=datetime.UTC)


def disputed_destination_charge(client, amount=10_000):
    account = client.v1.accounts.create(params={"type": "express"}).id
    customer, pm = card_customer(client, "pm_card_createDispute")
    pi = off_session(client, customer, pm, amount=amount, transfer_data={"destination": account})
    return account, pi


def test_COR_2_dispute_card_opens_a_dispute_and_withdraws_from_the_platform(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    server.set_clock(MONDAY)
    account, pi = disputed_destination_charge(client)
    assert pi.status == "succeeded"  # the charge succeeds first
    [dispute] = client.v1.disputes.list(params={"payment_intent": pi.id}).data
    assert (dispute.status, dispute.reason, dispute.amount, dispute.currency) == (
        "needs_response",
        "fraudulent",
        10_000,
        "usd",
    )
    assert dispute.charge == pi.latest_charge and dispute.payment_intent == pi.id
    assert dispute.evidence_details.due_by == int(
        datetime.datetime(2027, 1, 11, 23, 59, 59, tzinfo=datetime.UTC).timestamp()
    )
    assert dispute.evidence_details.has_evidence is False and dispute.evidence_details.submission_count == 0
    assert dispute.is_charge_refundable is False and dispute.evidence.uncategorized_text is None
    [withdrawal] = dispute.balance_transactions
    assert (withdrawal.type, withdrawal.amount, withdrawal.fee, withdrawal.net) == (
        "adjustment",
        -10_000,
        1_500,
        -11_500,
    )
    assert withdrawal.reporting_category == "dispute" and withdrawal.source == dispute.id
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True
    # Stripe debits the platform for a destination charge; the connected account keeps its transfer
    assert server.balances() == {"platform": {"usd": -11_500}, account: {"usd": 10_000}}
    events = recorder.wait_for(lambda evs: any(e["type"] == "charge.dispute.funds_withdrawn" for e in evs))
    assert [e["type"] for e in events if e["type"].startswith(("charge.", "payment_intent.succeeded"))] == [
        "charge.succeeded",
        "payment_intent.succeeded",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ]
    assert all("account" not in e for e in events)  # platform events
    # a chargeback cannot be refunded; the platform recovers from the agency by reversing the transfer
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert refused.value.code == "charge_disputed"
    transfer = client.v1.charges.retrieve(pi.latest_charge).transfer
    client.v1.transfers.reversals.create(transfer, params={"amount": 10_000})
    assert server.balances() == {"platform": {"usd": -1_500}, account: {"usd": 0}}


def test_COR_2_evidence_then_won_reinstates_funds(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    account, pi = disputed_destination_charge(client, amount=4_000)
    dispute = client.v1.disputes.list(params={"charge": pi.latest_charge}).data[0]
    staged = client.v1.disputes.update(
        dispute.id, params={"evidence": {"customer_name": "Jenny Rosen"}, "submit": False, "metadata": {"case": "7"}}
    )
    assert staged.status == "needs_response" and staged.evidence_details.has_evidence is True
    assert staged.evidence.customer_name == "Jenny Rosen" and staged.metadata["case"] == "7"
    submitted = client.v1.disputes.update(dispute.id, params={"evidence": {"product_description": "Retainer"}})
    assert submitted.status == "under_review" and submitted.evidence_details.submission_count == 1
    won = server.decide_dispute(dispute.id, "won")
    assert won["status"] == "won" and len(won["balance_transactions"]) == 2
    reinstated = won["balance_transactions"][1]
    assert (reinstated["amount"], reinstated["fee"], reinstated["net"]) == (4_000, -1_500, 5_500)
    assert reinstated["reporting_category"] == "dispute_reversal"
    assert server.balances()["platform"] == {"usd": 0}
    events = recorder.wait_for(lambda evs: any(e["type"] == "charge.dispute.funds_reinstated" for e in evs))
    flow = [(e["type"], e["data"]["object"]["status"]) for e in events if e["type"].startswith("charge.dispute")]
    assert flow == [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.funds_withdrawn", "needs_response"),
        ("charge.dispute.updated", "needs_response"),
        ("charge.dispute.updated", "under_review"),
        ("charge.dispute.closed", "won"),
        ("charge.dispute.funds_reinstated", "won"),
    ]
    with pytest.raises(stripe.InvalidRequestError):  # closed for good
        client.v1.disputes.update(dispute.id, params={"evidence": {"receipt": "x"}})


@pytest.mark.parametrize(("text", "status"), [("winning_evidence", "won"), ("losing_evidence", "lost")])
def test_COR_2_stripes_test_evidence_decides_the_dispute(client, server, text, status):
    _, pi = disputed_destination_charge(client, amount=2_000)
    dispute = client.v1.disputes.list(params={"payment_intent": pi.id}).data[0]
    decided = client.v1.disputes.update(dispute.id, params={"evidence": {"uncategorized_text": text}})
    assert decided.status == status
    assert server.balances()["platform"]["usd"] == (0 if status == "won" else -3_500)


def test_COR_2_closing_accepts_the_loss(client, server):
    _, pi = disputed_destination_charge(client, amount=2_000)
    dispute = client.v1.disputes.list().data[0]
    closed = client.v1.disputes.close(dispute.id)
    assert closed.status == "lost" and len(closed.balance_transactions) == 1
    assert [e["data"]["object"]["status"] for e in server.events("charge.dispute.closed")] == ["lost"]
    assert client.v1.disputes.retrieve(dispute.id).status == "lost"


def test_COR_2_dispute_on_any_charge_and_inquiries(client, server):
    customer, pm = card_customer(client)
    pi = off_session(client, customer, pm, amount=9_000)
    dispute = server.open_dispute(pi.latest_charge, reason="product_not_received", amount=5_000)
    assert (dispute["amount"], dispute["reason"], dispute["status"]) == (
        5_000,
        "product_not_received",
        "needs_response",
    )
    assert server.balances()["platform"] == {"usd": 9_000 - 5_000 - 1_500}
    lost = server.decide_dispute(dispute["id"], "lost")
    assert lost["status"] == "lost"
    inquiry_customer, inquiry_pm = card_customer(client, "pm_card_createDisputeInquiry")
    inquiry_pi = off_session(client, inquiry_customer, inquiry_pm, amount=1_000)
    [inquiry] = client.v1.disputes.list(params={"payment_intent": inquiry_pi.id}).data
    assert inquiry.status == "warning_needs_response" and inquiry.balance_transactions == []
    assert inquiry.is_charge_refundable is True
    client.v1.refunds.create(params={"payment_intent": inquiry_pi.id})  # an inquiry's charge can be refunded
    assert client.v1.disputes.close(inquiry.id).status == "warning_closed"
    with pytest.raises(RuntimeError):
        server.decide_dispute(inquiry.id, "won")  # already closed


def test_COR_2_raw_dispute_card_number(client):
    customer = make_customer(client)
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1_200,
            "currency": "usd",
            "customer": customer.id,
            "confirm": True,
            "payment_method_data": {
                "type": "card",
                "card": {"number": "4000000000000259", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
            },
        }
    )
    assert pi.status == "succeeded"
    assert [d.reason for d in client.v1.disputes.list(params={"payment_intent": pi.id}).data] == ["fraudulent"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.retrieve("dp_doesnotexist0000")
