"""Words for codes people should not have to read: processor decline codes, attempt outcomes.

`decline_reason` is the one place the staff pages turn a decline code into words; the client-facing wording (the
portal, the notices) may come from its own helper and this one can then defer to it.
"""

from __future__ import annotations

# Stripe's documented decline codes that the sandbox and real cards return most often.
DECLINE_REASONS = {
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
    "card_velocity_exceeded": "The card's spending limit was reached.",
    "account_closed": "The bank account is closed.",
    "insufficient_funds_bank": "Not enough funds in the bank account.",
    "debit_not_authorized": "The account holder did not authorise the debit.",
    "no_payment_method": "No payment method on file.",
    "amount_too_large": "The amount is above what one charge may carry; it was not sent to the processor.",
}


def decline_reason(code: str) -> str:
    """A decline code in words; unknown codes are named, never hidden."""
    if not code:
        return "Declined."
    return DECLINE_REASONS.get(code, f"Declined ({code.replace('_', ' ')}).")
