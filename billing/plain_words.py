"""What a client reads about their charges (POR-1): each charge's state in plain words, decline codes as reasons a
person understands, and how a paid charge was paid. A client never reads *Paid Out*: that is the agency's payout,
not the client's payment, so it reads as Paid.

Pure: the caller passes the charge, its attempts and the labels of the payment methods they used; nothing here
reads the database or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from billing.statuses import FAILED_OUTCOMES, AttemptKind, AttemptOutcome, ChargeStatus

# Stripe's documented decline codes, said to the cardholder. Codes that would accuse the client (fraudulent,
# stolen_card) read as a plain refusal by the bank, as Stripe advises.
CLIENT_DECLINE_REASONS = {
    "card_declined": "Your card was declined",
    "generic_decline": "Your card was declined",
    "do_not_honor": "Your bank declined the payment",
    "fraudulent": "Your bank declined the payment",
    "stolen_card": "Your bank declined the payment",
    "lost_card": "Your bank declined the payment",
    "pickup_card": "Your bank declined the payment",
    "insufficient_funds": "Your card has insufficient funds",
    "expired_card": "Your card has expired",
    "incorrect_cvc": "Your card's security code was wrong",
    "incorrect_number": "Your card number was wrong",
    "card_velocity_exceeded": "Your card's spending limit was reached",
    "processing_error": "The payment could not be processed; trying again may work",
    "authentication_required": "Your bank asks you to confirm this payment",
    "payment_intent_authentication_failure": "The payment was not confirmed with your bank",
    "account_closed": "Your bank account is closed",
    "debit_not_authorized": "Your bank says the debit was not authorised",
    "payment_method_missing": "The payment method on file is no longer available",
    "amount_too_large": "The amount is too large to be charged to a card; your agency will arrange payment",
}

# The same codes for the agency's staff (its notices and pages): what happened, in the processor's terms.
STAFF_DECLINE_REASONS = {
    "card_declined": "The card was declined by the bank.",
    "generic_decline": "The card was declined by the bank.",
    "insufficient_funds": "Not enough funds on the card.",
    "lost_card": "The card was reported lost.",
    "stolen_card": "The card was reported stolen.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code was wrong.",
    "processing_error": "The processor had an error; trying again may work.",
    "do_not_honor": "The bank refused the payment without a reason.",
    "fraudulent": "The bank suspected fraud.",
    "authentication_required": "The bank asks the cardholder to confirm the payment (3-D Secure).",
    "payment_intent_authentication_failure": "The cardholder did not complete the bank's confirmation (3-D Secure).",
    "card_velocity_exceeded": "The card's spending limit was reached.",
    "account_closed": "The bank account is closed.",
    "insufficient_funds_bank": "Not enough funds in the bank account.",
    "debit_not_authorized": "The account holder did not authorise the debit.",
    "no_payment_method": "No payment method on file.",
    "payment_method_missing": "The payment method on file is no longer available.",
    "amount_too_large": "The amount is above what one charge may carry; it was not sent to the processor.",
}


def client_decline_reason(code: str) -> str:
    """A decline code as the client reads it; unknown codes read as a plain decline."""
    return CLIENT_DECLINE_REASONS.get(code or "", "Your payment was declined")


def staff_decline_reason(code: str) -> str:
    """A decline code as the agency's staff read it; unknown codes are named, never hidden."""
    if not code:
        return "Declined."
    return STAFF_DECLINE_REASONS.get(code, f"Declined ({code.replace('_', ' ')}).")


def short_date(day: date, today: date) -> str:
    """ "14 Dec", with the year when it is not this year's ("8 Jan 2028")."""
    text = f"{day.day} {day:%b}"
    return text if day.year == today.year else f"{text} {day.year}"


HOW_PAID = {
    AttemptKind.AUTOMATIC: "by autopay",
    AttemptKind.MANUAL: "by a retry",
    AttemptKind.CLIENT: "online (Pay now)",
}


def how_paid(kind: str, attempt_number: int) -> str:
    """How a charge was paid, from its successful attempt: autopay on the billing date, a later automatic retry, a
    retry run by billing support, or the client's own Pay now."""
    if kind == AttemptKind.AUTOMATIC and attempt_number > 1:
        return "by an automatic retry"
    return HOW_PAID.get(kind, "")


@dataclass(frozen=True)
class ChargeWords:
    """A charge as the client reads it. `tone`: ok | info | warn | bad (the badge colour); `payable`: Pay now is
    offered; `needs_authentication`: the last failure asked for the cardholder's confirmation (COL-7)."""

    label: str
    sentence: str
    tone: str
    payable: bool = False
    reason: str = ""
    needs_authentication: bool = False


PAYABLE = frozenset({ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE})


CLIENT_STATUS = {
    # status: (the word a client sees, tone). Paid Out is the agency's payout: the client's charge reads Paid.
    ChargeStatus.SCHEDULED: ("Scheduled", "info"),
    ChargeStatus.AGENCY_INVOICED: ("Invoiced by your agency", "info"),
    ChargeStatus.PENDING: ("Processing", "info"),
    ChargeStatus.PAID: ("Paid", "ok"),
    ChargeStatus.PAID_OUT: ("Paid", "ok"),
    ChargeStatus.RETRYING: ("Unpaid", "warn"),
    ChargeStatus.UNCOLLECTABLE: ("Unpaid", "bad"),
}


def client_status_label(status: str) -> str:
    """The status word a client sees (never Paid Out)."""
    return CLIENT_STATUS.get(status, (ChargeStatus(status).label, "info"))[0]


def client_status_tone(status: str) -> str:
    return CLIENT_STATUS.get(status, ("", "info"))[1]


def charge_words(
    charge,
    *,
    attempts: Iterable,
    method_labels: Mapping[str, str],
    current_method: str,
    agency_name: str,
    today: date,
) -> ChargeWords:
    """The plain-words state of one charge. `attempts`: its attempts (any order); `method_labels`: payment method
    reference → "Visa ···· 4242" for the methods its attempts used; `current_method`: the label of the method on
    file now ("" when none)."""
    attempts = sorted(attempts, key=lambda a: a.number)
    status = charge.status
    label, tone = CLIENT_STATUS[status]
    last = attempts[-1] if attempts else None
    if status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT):
        paid = next((a for a in reversed(attempts) if a.outcome == AttemptOutcome.SUCCEEDED), None)
        if paid is None:
            return ChargeWords(label, "Nothing to pay", "ok")
        method = method_labels.get(paid.payment_method_reference, "")
        on = short_date(charge.paid_on or paid.attempted_on, today)
        return ChargeWords(label, f"Paid on {on}" + (f" with {method}" if method else ""), "ok")
    if status == ChargeStatus.AGENCY_INVOICED:
        return ChargeWords(label, f"{agency_name} invoices you for this directly", "info")
    if status == ChargeStatus.PENDING:
        method = method_labels.get(last.payment_method_reference, "") if last else ""
        since = short_date(last.attempted_on, today) if last else ""
        return ChargeWords(
            label,
            f"Bank debit{' from ' + method if method else ''} submitted on {since}; it takes a few business days",
            "info",
        )
    if status == ChargeStatus.SCHEDULED:
        due = short_date(charge.due_on, today)
        if current_method:
            return ChargeWords(label, f"Will be charged to {current_method} on {due}", "info")
        return ChargeWords(label, f"Due on {due}: add a payment method to pay it", "warn")
    # Retrying or Uncollectable: a failed charge the client can pay now.
    if last is not None and last.outcome == AttemptOutcome.REQUIRES_ACTION:
        return ChargeWords(
            label, "Waiting for you to confirm the payment with your bank", tone, True, "", needs_authentication=True
        )
    failed = next((a for a in reversed(attempts) if a.outcome in FAILED_OUTCOMES), None)
    if failed is None:
        reason = "No payment method on file"
    else:
        reason = client_decline_reason(failed.decline_code)
        used = method_labels.get(failed.payment_method_reference, "")
        if used and used != current_method:
            reason += f" ({used})"  # a card since replaced: say which one failed
    authentication = failed is not None and failed.decline_code == "authentication_required"
    if status == ChargeStatus.RETRYING and charge.next_retry_on:
        then = f"we'll try again on {short_date(charge.next_retry_on, today)}"
        if authentication:
            then = "confirm it with your bank to pay"
        return ChargeWords(label, f"Payment failed — {then}", tone, True, reason, authentication)
    sentence = "Payment failed — no further automatic attempts will be made"
    return ChargeWords(
        label,
        sentence if failed else "Not paid — no payment method on file",
        tone,
        True,
        reason,
        authentication,
    )
