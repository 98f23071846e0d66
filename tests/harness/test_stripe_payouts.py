"""Balances and payouts of connected accounts on the Stripe test server, driven by its test clock: destination
charges arrive as `payment`s pending until `available_on`, automatic payouts carry exactly the balance
transactions `GET /v1/balance_transactions?payout=` lists, payouts go pending → in_transit → paid or failed."""

from __future__ import annotations

import datetime

import pytest
import stripe

from tests.harness.helpers import SECRET, ach_payment_method, card_customer, make_customer, off_session
from tests.harness.stripe_server import StripeTestServer

MONDAY = datetime.datetime(2027, 1, 4, 10, 0, tzinfo=datetime.UTC)  # 2027-01-04 is a Monday
DAY = 86_400


def ts(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime.datetime(year, month, day, hour, tzinfo=datetime.UTC).timestamp())


@pytest.fixture
def daily(server: StripeTestServer) -> StripeTestServer:
    """Stripe's US default for new Express accounts: daily automatic payouts, 2 business days' delay."""
    server.configure(payout_schedule={"interval": "daily", "delay_days": 2}, platform_delay_days=2)
    server.set_clock(MONDAY)
    return server


def agency(client: stripe.StripeClient, bank: str = "000123456789") -> stripe.Account:
    return client.v1.accounts.create(
        params={
            "type": "express",
            "external_account": {"object": "bank_account", "country": "US", "currency": "usd", "account_number": bank},
        }
    )


def destination_charge(client, account, amount, **metadata) -> stripe.PaymentIntent:
    customer, pm = card_customer(client)
    return off_session(client, customer, pm, amount=amount, transfer_data={"destination": account}, metadata=metadata)


def as_account(account: str) -> dict:
    return {"stripe_account": account}


def test_PAY_2_destination_charge_is_a_pending_payment_on_the_connected_account(client, daily):
    account = agency(client)
    pi = destination_charge(client, account.id, 10_000, invoice="INV-1")
    charge = client.v1.charges.retrieve(pi.latest_charge, params={"expand": ["balance_transaction"]})
    assert charge.balance_transaction.type == "charge" and charge.balance_transaction.amount == 10_000
    assert charge.balance_transaction.status == "pending"
    transfer = client.v1.transfers.retrieve(charge.transfer)
    assert transfer.destination == account.id and transfer.source_transaction == charge.id
    connected = client.v1.balance.retrieve(options=as_account(account.id))
    assert (connected.available[0].amount, connected.pending[0].amount) == (0, 10_000)
    [txn] = client.v1.balance_transactions.list(options=as_account(account.id)).data
    assert (txn.type, txn.amount, txn.net, txn.fee, txn.status) == ("payment", 10_000, 10_000, 0, "pending")
    assert txn.source == transfer.destination_payment and txn.source.startswith("py_")
    assert txn.available_on == ts(2027, 1, 6)  # Monday + 2 business days, midnight UTC
    assert txn.reporting_category == "charge" and txn.created == int(MONDAY.timestamp())
    # the payment is a charge of the connected account that points back to the transfer, and so to the charge
    payment = client.v1.charges.retrieve(
        txn.source, params={"expand": ["source_transfer.source_transaction"]}, options=as_account(account.id)
    )
    assert payment.amount == 10_000 and payment.source_transfer.source_transaction.id == charge.id
    assert payment.source_transfer.source_transaction.metadata["invoice"] == "INV-1"
    with pytest.raises(stripe.InvalidRequestError):  # not the platform's
        client.v1.charges.retrieve(txn.source)
    platform = {t.type: t.amount for t in client.v1.balance_transactions.list().data}
    assert platform == {"charge": 10_000, "transfer": -10_000}
    daily.advance_clock(days=2)  # Wednesday 10:00
    assert client.v1.balance_transactions.retrieve(txn.id, options=as_account(account.id)).status == "available"


def test_PAY_2_PAY_4_automatic_payouts_carry_exactly_their_balance_transactions(client, daily, recorder):
    daily.add_webhook(recorder.url, SECRET, connect=True)
    account = agency(client)
    monday = [destination_charge(client, account.id, amount, invoice=f"M{amount}") for amount in (10_000, 2_500)]
    daily.advance_clock(days=1)  # Tuesday 10:00
    tuesday = destination_charge(client, account.id, 4_000, invoice="T1")
    assert client.v1.payouts.list(options=as_account(account.id)).data == []
    daily.set_clock(ts(2027, 1, 6, 0))  # Wednesday 00:00: Monday's funds are available, the daily payout runs
    [payout] = client.v1.payouts.list(options=as_account(account.id)).data
    assert (payout.amount, payout.status, payout.automatic) == (12_500, "pending", True)
    assert payout.arrival_date == ts(2027, 1, 7) and payout.created == ts(2027, 1, 6)
    listed = client.v1.balance_transactions.list(
        params={"payout": payout.id, "expand": ["data.source.source_transfer.source_transaction"]},
        options=as_account(account.id),
    )
    payments = [t for t in listed.data if t.type == "payment"]
    assert sorted(t.source.source_transfer.source_transaction.payment_intent for t in payments) == sorted(
        pi.id for pi in monday
    )
    assert [t.type for t in listed.data if t.type != "payment"] == ["payout"]
    assert sum(t.net for t in listed.data) == 0  # the payout nets out what it carries
    daily.advance_clock(hours=1)
    assert client.v1.payouts.retrieve(payout.id, options=as_account(account.id)).status == "in_transit"
    daily.set_clock(ts(2027, 1, 7, 0))  # Thursday: Monday's payout arrives, Tuesday's funds are paid out
    assert client.v1.payouts.retrieve(payout.id, options=as_account(account.id)).status == "paid"
    second = [p for p in client.v1.payouts.list(options=as_account(account.id)).data if p.id != payout.id]
    assert [p.amount for p in second] == [4_000]
    carried = client.v1.balance_transactions.list(
        params={"payout": second[0].id, "type": "payment", "expand": ["data.source.source_transfer"]},
        options=as_account(account.id),
    )
    assert [t.source.source_transfer.source_transaction for t in carried.data] == [tuesday.latest_charge]
    events = recorder.wait_for(lambda evs: any(e["type"] == "payout.reconciliation_completed" for e in evs))
    first = [(e["type"], e["data"]["object"]["status"]) for e in events if e["data"]["object"]["id"] == payout.id]
    assert first == [
        ("payout.created", "pending"),
        ("payout.updated", "in_transit"),
        ("payout.updated", "paid"),
        ("payout.paid", "paid"),
        ("payout.reconciliation_completed", "paid"),
    ]
    assert {e["account"] for e in events} == {account.id}
    balance = client.v1.balance.retrieve(options=as_account(account.id))
    assert (balance.available[0].amount, balance.pending[0].amount) == (0, 0)


def test_PAY_2_no_payouts_on_weekends_and_weekly_schedules(client, daily):
    account = agency(client)
    client.v1.accounts.update(
        account.id, params={"settings": {"payouts": {"schedule": {"interval": "weekly", "weekly_anchor": "monday"}}}}
    )
    daily.set_clock(ts(2027, 1, 7, 12))  # Thursday
    destination_charge(client, account.id, 1_000)  # available Monday 11th (2 business days after Thursday)
    daily.set_clock(ts(2027, 1, 10, 23))  # Sunday night: nothing yet
    assert client.v1.payouts.list(options=as_account(account.id)).data == []
    daily.set_clock(ts(2027, 1, 11, 0))
    [payout] = client.v1.payouts.list(options=as_account(account.id)).data
    assert payout.amount == 1_000 and payout.arrival_date == ts(2027, 1, 12)


def test_PAY_4_failed_payout_returns_the_funds_and_stops_payouts_until_the_bank_is_replaced(client, daily, recorder):
    daily.add_webhook(recorder.url, SECRET, connect=True)
    account = agency(client, bank="000111111113")  # Stripe's test number: payouts fail, account_closed
    destination_charge(client, account.id, 7_000)
    daily.set_clock(ts(2027, 1, 7, 0))  # payout Wednesday, arrival Thursday: fails
    [failed] = client.v1.payouts.list(options=as_account(account.id)).data
    assert (failed.status, failed.failure_code) == ("failed", "account_closed")
    assert failed.failure_message and failed.failure_balance_transaction
    back = client.v1.balance_transactions.retrieve(failed.failure_balance_transaction, options=as_account(account.id))
    assert (back.type, back.amount, back.source, back.status) == ("payout_failure", 7_000, failed.id, "available")
    assert client.v1.balance.retrieve(options=as_account(account.id)).available[0].amount == 7_000
    bank = client.v1.accounts.retrieve(account.id).external_accounts.data[0]
    assert bank.status == "errored"
    daily.set_clock(ts(2027, 1, 9, 0))  # no automatic payout to an errored bank account
    assert len(client.v1.payouts.list(options=as_account(account.id)).data) == 1
    # the charges stay attributed to the failed payout
    kept = client.v1.balance_transactions.list(params={"payout": failed.id}, options=as_account(account.id))
    assert sorted(t.type for t in kept.data) == ["payment", "payout"]
    # a new bank account: the next payout carries the returned funds (the payout_failure of the failed payout)
    daily.onboard(account.id, "complete", bank_account="000123456789")
    daily.set_clock(ts(2027, 1, 11, 0))
    fixed = next(p for p in client.v1.payouts.list(options=as_account(account.id)).data if p.id != failed.id)
    assert fixed.amount == 7_000
    carried = client.v1.balance_transactions.list(params={"payout": fixed.id}, options=as_account(account.id))
    assert [(t.type, t.source) for t in carried.data if t.type != "payout"] == [("payout_failure", failed.id)]
    daily.set_clock(ts(2027, 1, 12, 0))
    assert client.v1.payouts.retrieve(fixed.id, options=as_account(account.id)).status == "paid"
    events = recorder.wait_for(lambda evs: any(e["type"] == "payout.failed" for e in evs))
    assert "account.external_account.updated" in [e["type"] for e in events]


def test_PAY_2_funds_stay_in_the_balance_while_payouts_are_disabled(client, daily):
    account = agency(client)
    destination_charge(client, account.id, 3_000)
    daily.onboard(account.id, "restricted")
    daily.set_clock(ts(2027, 1, 8, 0))
    assert client.v1.payouts.list(options=as_account(account.id)).data == []
    assert client.v1.balance.retrieve(options=as_account(account.id)).available[0].amount == 3_000
    assert daily.pay_out(account.id) == []  # the control respects payouts_enabled too
    daily.onboard(account.id, "complete")
    daily.set_clock(ts(2027, 1, 11, 0))
    [payout] = client.v1.payouts.list(options=as_account(account.id)).data
    assert payout.amount == 3_000


def test_PAY_2_held_on_the_platform_then_transferred_with_source_transaction(client, server):
    """An account that is not onboarded yet: charge on the platform, transfer once it is (separate charges and
    transfers); the transfer's funds become available with the charge's."""
    server.configure(connect_onboarding=True, platform_delay_days=2, payout_schedule={"interval": "daily"})
    server.set_clock(MONDAY)
    account = client.v1.accounts.create(params={"type": "express"})
    customer, pm = card_customer(client)
    charge = client.v1.charges.retrieve(off_session(client, customer, pm, amount=6_000).latest_charge)
    server.onboard(account.id, "complete")
    transfer = client.v1.transfers.create(
        params={"amount": 6_000, "currency": "usd", "destination": account.id, "source_transaction": charge.id}
    )
    [payment] = client.v1.balance_transactions.list(options=as_account(account.id)).data
    assert payment.type == "payment" and payment.source == transfer.destination_payment
    assert payment.available_on == ts(2027, 1, 6)  # with the charge, not before
    with pytest.raises(stripe.InvalidRequestError):  # no more than the charge
        client.v1.transfers.create(
            params={"amount": 1, "currency": "usd", "destination": account.id, "source_transaction": charge.id}
        )
    with pytest.raises(stripe.InvalidRequestError) as short:  # without source_transaction: available funds only
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": account.id})
    assert short.value.code == "balance_insufficient"


def test_manual_payouts_are_not_itemised_and_refused_on_automatic_schedules(client, server):
    account = agency(client)
    destination_charge(client, account.id, 5_000)
    manual = client.v1.payouts.create(params={"amount": 2_000, "currency": "usd"}, options=as_account(account.id))
    assert manual.automatic is False and manual.status == "pending"
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.balance_transactions.list(params={"payout": manual.id}, options=as_account(account.id))
    assert "only be filtered on automatic" in err.value.user_message
    client.v1.accounts.update(account.id, params={"settings": {"payouts": {"schedule": {"interval": "daily"}}}})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payouts.create(params={"amount": 1_000, "currency": "usd"}, options=as_account(account.id))
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.accounts.update(account.id, params={"settings": {"payouts": {"schedule": {"interval": "manual"}}}})
        client.v1.payouts.create(params={"amount": 9_000, "currency": "usd"}, options=as_account(account.id))
    assert too_much.value.code == "balance_insufficient"


def test_pay_out_control_and_failing_a_paid_payout(client, server):
    account = agency(client)
    destination_charge(client, account.id, 4_000)
    [payout] = server.pay_out(account.id)
    assert payout["status"] == "paid" and payout["automatic"] is True
    carried = client.v1.balance_transactions.list(params={"payout": payout["id"]}, options=as_account(account.id))
    assert sorted(t.type for t in carried.data) == ["payment", "payout"]
    failed = server.fail_payout(payout["id"], "no_account")
    assert (failed["status"], failed["failure_code"]) == ("failed", "no_account")
    assert server.balances() == {"platform": {"usd": 0}, account.id: {"usd": 4_000}}


def test_test_clock_rules(client, server):
    assert server.clock() == pytest.approx(datetime.datetime.now(datetime.UTC).timestamp(), abs=5)
    server.set_clock(MONDAY)
    customer = make_customer(client)
    assert customer.created == int(MONDAY.timestamp())
    assert server.advance_clock(days=1, hours=2) == int(MONDAY.timestamp()) + DAY + 7200
    with pytest.raises(RuntimeError):
        server.set_clock(MONDAY)  # never back
    server.reset()
    assert server.clock() > int(MONDAY.timestamp()) - 10**8  # real time again


def test_bank_debit_funds_and_balance_detail(client, daily):
    account = agency(client)
    customer = make_customer(client)
    ach = ach_payment_method(client, customer)
    pi = client.v1.payment_intents.create(
        params={
            "amount": 8_000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": ach.id,
            "confirm": True,
            "off_session": True,
            "transfer_data": {"destination": account.id},
        }
    )
    assert pi.status == "processing"
    assert daily.balances(detail=True) == {}  # nothing moved before the debit settles
    daily.advance_clock(days=1)
    daily.settle()
    detail = daily.balances(detail=True)
    assert detail[account.id]["usd"] == {"available": 0, "pending": 8_000}
    [payment] = client.v1.balance_transactions.list(options=as_account(account.id)).data
    balance = client.v1.balance.retrieve(options=as_account(account.id))
    assert balance.pending[0].source_types["bank_account"] == 8_000
    assert payment.available_on == ts(2027, 1, 7)  # settled Tuesday + 2 business days
    rows = daily.balance_transactions(account.id)
    assert [(r["type"], r["amount"], r["payout"]) for r in rows] == [("payment", 8_000, None)]
