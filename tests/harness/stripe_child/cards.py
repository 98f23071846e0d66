"""Stripe's test cards, test bank accounts and their documented outcomes (pure data: no localstripe import)."""

from __future__ import annotations

import re
from typing import Any

# ------------------------------------------------------------------------------------------------ test card tables
CARD_TEST_PAYMENT_METHODS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_us": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_mastercard_debit": "5200828282828210",
    "pm_card_amex": "378282246310005",
    "pm_card_discover": "6011111111111117",
    "pm_card_bypassPending": "4000000000000077",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_visa_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_radarBlock": "4100000000000019",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_authenticationRequiredSetupForOffSession": "4000002500003155",
    "pm_card_threeDSecure2Required": "4000000000003220",
    "pm_card_threeDSecureRequired": "4000000000003063",
    "pm_card_threeDSecureOptional": "4000000000003055",
    "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds": "4000008260003178",
    "pm_card_createDispute": "4000000000000259",
    "pm_card_createDisputeProductNotReceived": "4000000000002685",
    "pm_card_createDisputeInquiry": "4000000000001976",
    "pm_card_refundFail": "4000000000005126",
}
# Charge succeeds, then a dispute opens: number -> (reason, inquiry). An inquiry withdraws no funds.
DISPUTE_CARDS = {
    "4000000000000259": ("fraudulent", False),
    "4000000000002685": ("product_not_received", False),
    "4000000000001976": ("fraudulent", True),
}
# Charge succeeds; a refund of it succeeds, then fails when refunds are settled (POST /_test/refunds/settle).
REFUND_FAILS_CARDS = {"4000000000005126"}

GENERIC_DECLINE = ("card_declined", "generic_decline", "Your card was declined.")
CARD_DECLINES = {  # number -> (code, decline_code, message); attaching these fails too, except 0341
    "4000000000000002": GENERIC_DECLINE,
    "4000000000009995": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000000000009987": ("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": ("card_declined", "stolen_card", "Your card was declined."),
    "4000000000000069": ("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "4242424242424241": ("incorrect_number", "incorrect_number", "Your card number is incorrect."),
    "4100000000000019": ("card_declined", "fraudulent", "Your card was declined."),
    "4000000000000341": GENERIC_DECLINE,
    "4000008260003178": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000008400001629": GENERIC_DECLINE,
}
CHARGE_ONLY_DECLINES = {"4000000000000341", "4000008260003178", "4000008400001629"}
AUTH_REQUIRED = {
    "4000002500003155",
    "4000002760003184",
    "4000008260003178",
    "4000000000003220",
    "4000000000003063",
    "4000008400001629",
}
AUTH_REQUIRED_DECLINE = (
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)

# ACH (us_bank_account) test account numbers, routing 110000000: failure code on settlement.
ACH_FAILURES = {
    "000111111113": "account_closed",
    "000111111116": "no_account",
    "000222222227": "insufficient_funds",
    "000333333335": "debit_not_authorized",
    "000444444440": "invalid_currency",
}
ACH_TEST_PAYMENT_METHODS = {
    "pm_usBankAccount_success": "000123456789",
    "pm_usBankAccount_accountClosed": "000111111113",
    "pm_usBankAccount_noAccount": "000111111116",
    "pm_usBankAccount_insufficientFunds": "000222222227",
    "pm_usBankAccount_debitNotAuthorized": "000333333335",
    "pm_usBankAccount_invalidCurrency": "000444444440",
}
SEPA_FAILURES = {"DE62370400440532013001": "insufficient_funds", "DE78370400440532013004": "insufficient_funds"}
DEBIT_FAILURE_MESSAGES = {
    "account_closed": "The customer's bank account has been closed.",
    "no_account": "The customer's bank account could not be located.",
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "debit_not_authorized": "The customer has notified their bank that this payment was unauthorized.",
    "invalid_currency": "The customer's bank account does not support this currency.",
}
PAYOUT_FAILURES = {
    "111111116": "no_account",
    "111111113": "account_closed",
    "222222227": "insufficient_funds",
    "333333335": "debit_not_authorized",
    "444444440": "invalid_currency",
}
PAYOUT_FAILURE_MESSAGES = {
    "no_account": "The bank account details on file are probably incorrect. No bank account could be located.",
    "account_closed": "The bank account has been closed.",
    "insufficient_funds": "Your Stripe account has insufficient funds to cover the payout.",
    "debit_not_authorized": "Debit transactions are not approved on the bank account.",
    "invalid_currency": "The bank was unable to process this payout because of its currency.",
    "could_not_process": "The bank could not process this payout.",
}
MIN_AMOUNTS = {"usd": 50, "eur": 50, "cad": 50, "aud": 50, "chf": 50, "gbp": 30}
# Stripe takes at most eight digits of the smallest currency unit (99,999,999: $999,999.99), `amount_too_large`.
MAX_AMOUNT = 99_999_999
COUNTRY_CURRENCY = {"US": "usd", "CA": "cad", "GB": "gbp", "AU": "aud", "JP": "jpy", "CH": "chf", "NZ": "nzd"}
EURO_COUNTRIES = {
    "AT",
    "BE",
    "CY",
    "DE",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PT",
    "SI",
    "SK",
}
STATEMENT_DESCRIPTOR_FORBIDDEN = set("<>\\'\"*")


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _aba_ok(routing: str) -> bool:
    weights = (3, 7, 1) * 3
    return len(routing) == 9 and routing.isdigit() and sum(int(c) * w for c, w in zip(routing, weights)) % 10 == 0


def _card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if re.match(r"^(5[1-5]|2[2-7])", number):
        return "mastercard"
    if re.match(r"^3[47]", number):
        return "amex"
    if re.match(r"^(6011|65|64[4-9])", number):
        return "discover"
    return "unknown"


def _decline_info(pm: Any) -> tuple[str, str, str]:
    if getattr(pm, "type", None) == "card":
        return CARD_DECLINES.get(pm._card_number, GENERIC_DECLINE)
    return GENERIC_DECLINE


def _bank_failure(pm: Any) -> str | None:
    if pm.type == "us_bank_account":
        return ACH_FAILURES.get(pm._account_number)
    if pm.type == "sepa_debit":
        return SEPA_FAILURES.get(pm._sepa_debit_iban)
    return None
