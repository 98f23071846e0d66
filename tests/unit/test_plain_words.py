"""POR-1: each charge in plain words, human decline reasons, and never Paid Out for a client (pure logic)."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from billing.plain_words import charge_words, client_decline_reason, client_status_label, how_paid, short_date
from billing.statuses import AttemptKind, AttemptOutcome, ChargeStatus

TODAY = date(2026, 12, 9)
VISA = {"pm_1": "Visa ···· 4242", "pm_0": "Visa ···· 0002"}


def _charge(status, **fields):
    defaults = {"due_on": date(2026, 12, 7), "next_retry_on": None, "paid_on": None, "status": status}
    return SimpleNamespace(**{**defaults, **fields})


def _attempt(number, outcome, code="", method="pm_0", kind=AttemptKind.AUTOMATIC, on=date(2026, 12, 7)):
    return SimpleNamespace(
        number=number,
        outcome=outcome,
        decline_code=code,
        payment_method_reference=method,
        kind=kind,
        attempted_on=on,
    )


def _words(charge, attempts, current="Visa ···· 0002"):
    return charge_words(
        charge, attempts=attempts, method_labels=VISA, current_method=current, agency_name="Acme", today=TODAY
    )


def test_POR_1_failed_charge_says_when_the_next_attempt_is_and_why():
    words = _words(
        _charge(ChargeStatus.RETRYING, next_retry_on=date(2026, 12, 14)),
        [_attempt(1, AttemptOutcome.DECLINED, "card_declined")],
    )
    assert words.sentence == "Payment failed — we'll try again on 14 Dec"
    assert words.reason == "Your card was declined" and words.payable and words.label == "Unpaid"


def test_POR_1_paid_and_paid_out_read_paid_with_the_card_that_paid():
    attempts = [
        _attempt(1, AttemptOutcome.DECLINED, "insufficient_funds"),
        _attempt(2, AttemptOutcome.SUCCEEDED, method="pm_1", kind=AttemptKind.CLIENT, on=date(2027, 1, 8)),
    ]
    for status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT):
        words = _words(_charge(status, paid_on=date(2027, 1, 8)), attempts)
        assert (words.label, words.sentence, words.payable) == ("Paid", "Paid on 8 Jan 2027 with Visa ···· 4242", False)
    assert client_status_label(ChargeStatus.PAID_OUT) == "Paid"
    assert all(client_status_label(s) != "Paid Out" for s in ChargeStatus.values)


def test_POR_1_uncollectable_without_a_method_and_three_failures():
    assert _words(_charge(ChargeStatus.UNCOLLECTABLE), []).sentence == "Not paid — no payment method on file"
    failed = [_attempt(n, AttemptOutcome.DECLINED, "expired_card") for n in (1, 2, 3)]
    words = _words(_charge(ChargeStatus.UNCOLLECTABLE), failed)
    assert words.sentence == "Payment failed — no further automatic attempts will be made"
    assert words.reason == "Your card has expired" and words.tone == "bad"


def test_POR_1_scheduled_pending_and_agency_invoiced():
    assert _words(_charge(ChargeStatus.SCHEDULED), []).sentence == "Will be charged to Visa ···· 0002 on 7 Dec"
    assert _words(_charge(ChargeStatus.SCHEDULED), [], current="").sentence.endswith("add a payment method to pay it")
    pending = _words(_charge(ChargeStatus.PENDING), [_attempt(1, AttemptOutcome.PENDING, method="pm_1")])
    assert pending.label == "Processing" and "Visa ···· 4242 submitted on 7 Dec" in pending.sentence
    assert _words(_charge(ChargeStatus.AGENCY_INVOICED), []).sentence == "Acme invoices you for this directly"


def test_COL_7_authentication_required_asks_the_client_to_confirm():
    words = _words(
        _charge(ChargeStatus.RETRYING, next_retry_on=date(2026, 12, 14)),
        [_attempt(1, AttemptOutcome.DECLINED, "authentication_required")],
    )
    assert words.needs_authentication and words.payable
    assert words.reason == "Your bank asks you to confirm this payment"


def test_POR_1_decline_codes_in_words_and_dates():
    assert client_decline_reason("card_declined") == "Your card was declined"
    assert client_decline_reason("fraudulent") == "Your bank declined the payment"  # never an accusation
    assert client_decline_reason("something_new") == "Your payment was declined"
    assert short_date(date(2026, 12, 14), TODAY) == "14 Dec" and short_date(date(2027, 1, 8), TODAY) == "8 Jan 2027"
    assert how_paid(AttemptKind.AUTOMATIC, 1) == "by autopay"
    assert how_paid(AttemptKind.AUTOMATIC, 3) == "by an automatic retry"
    assert how_paid(AttemptKind.CLIENT, 2) == "online (Pay now)"


def test_POR_1_a_replaced_card_is_named_in_the_reason():
    words = _words(
        _charge(ChargeStatus.RETRYING, next_retry_on=date(2026, 12, 14)),
        [_attempt(1, AttemptOutcome.DECLINED, "card_declined", method="pm_0")],
        current="Visa ···· 4242",
    )
    assert words.reason == "Your card was declined (Visa ···· 0002)"
