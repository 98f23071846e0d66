"""The sandbox processor: behaves like Stripe test mode for Stripe's documented test cards and test bank
accounts, with its books in the public schema so web, worker and beat share them.

Time is the caller's business date, so `simulate` can walk months in seconds:
- cards succeed or decline at once;
- bank debits (SEPA, ACH) are `processing` and settle, or fail, 2 business days later (COL-3);
- collected funds are paid out to the agency's connected account 3 business days after they are
  collected (cards: 3 after the charge; bank debits: 5 after it), in one payout per account and day (PAY-2).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

from django.db import IntegrityError, transaction

from billing.platform.models import SandboxPaymentIntent, SandboxPaymentMethod, SandboxPayout
from billing.providers.base import (
    ChargeRequest,
    ChargeResult,
    Outcome,
    ProviderError,
    ProviderEvent,
    SavedPaymentMethod,
)
from core.calendar import add_weekdays

SETTLEMENT_BUSINESS_DAYS = 2
PAYOUT_BUSINESS_DAYS = 3

# Stripe's test payment methods: token → (card number, brand, attach error, charge decline code).
TEST_CARDS: dict[str, tuple[str, str, str, str]] = {
    "pm_card_visa": ("4242424242424242", "visa", "", ""),
    "pm_card_mastercard": ("5555555555554444", "mastercard", "", ""),
    "pm_card_amex": ("378282246310005", "amex", "", ""),
    "pm_card_visa_debit": ("4000056655665556", "visa", "", ""),
    "pm_card_visa_chargeDeclined": ("4000000000000002", "visa", "", "card_declined"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("4000000000009995", "visa", "", "insufficient_funds"),
    "pm_card_visa_chargeDeclinedExpiredCard": ("4000000000000069", "visa", "", "expired_card"),
    "pm_card_chargeCustomerFail": ("4000000000000341", "visa", "", "card_declined"),
    "pm_card_visa_chargeDeclinedLostCard": ("4000000000009987", "visa", "", "lost_card"),
}
# Stripe's test bank accounts: the first settles, the second fails at settlement.
TEST_BANK_ACCOUNTS: dict[str, tuple[str, str]] = {
    "sepa:DE89370400440532013000": ("sepa_debit", ""),
    "sepa:DE62370400440532013001": ("sepa_debit", "insufficient_funds"),
    "sepa:AT611904300234573201": ("sepa_debit", ""),
    "ach:110000000:000123456789": ("us_bank_account", ""),
    "ach:110000000:000111111113": ("us_bank_account", "account_closed"),
    "ach:110000000:000111111116": ("us_bank_account", "insufficient_funds"),
}
SANDBOX_TOKENS = tuple(TEST_CARDS) + tuple(TEST_BANK_ACCOUNTS)


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(f"sandbox-fingerprint:{secret}".encode()).hexdigest()[:32]


def _ref(prefix: str) -> str:
    return f"{prefix}_sbx_{uuid.uuid4().hex[:20]}"


class SandboxProvider:
    name = "sandbox"

    def customer_create(self, *, email: str, name: str, idempotency_key: str) -> str:
        return "cus_sbx_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]

    def connected_account_create(self, *, name: str, email: str, idempotency_key: str) -> str:
        return "acct_sbx_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]

    def payment_method_save(self, *, customer: str, token: str) -> SavedPaymentMethod:
        # "<test token>:<variant>" is another physical card or account with the same test behaviour, so
        # several accounts can each hold one (COL-5 forbids sharing one).
        given, variant = token, ""
        if token not in TEST_CARDS and token not in TEST_BANK_ACCOUNTS and ":" in token:
            token, _, variant = token.rpartition(":")
        if token in TEST_CARDS:
            number, brand, error, _ = TEST_CARDS[token]
            if error:
                raise ProviderError(f"The card was refused: {error}.", code=error)
            kind, secret, last4 = "card", number + variant, number[-4:]
        elif token in TEST_BANK_ACCOUNTS:
            kind, _ = TEST_BANK_ACCOUNTS[token]
            secret, brand, last4 = token.split(":", 1)[1] + variant, "", token[-4:]
        else:
            raise ProviderError(f"Unknown test payment method {given!r}.", code="resource_missing")
        reference = _ref("pm")
        fingerprint = _fingerprint(secret)
        SandboxPaymentMethod.objects.create(
            reference=reference,
            customer=customer,
            kind=kind,
            token=token,
            fingerprint=fingerprint,
            brand=brand,
            last4=last4,
        )
        return SavedPaymentMethod(reference, kind, fingerprint, brand, last4)

    @staticmethod
    def _result(intent: SandboxPaymentIntent) -> ChargeResult:
        if intent.status == "succeeded":
            return ChargeResult(Outcome.SUCCEEDED, intent.reference)
        if intent.status == "processing":
            return ChargeResult(Outcome.PENDING, intent.reference)
        return ChargeResult(Outcome.DECLINED, intent.reference, intent.decline_code, "The payment was declined.")

    def charge_create(self, request: ChargeRequest) -> ChargeResult:
        try:
            method = SandboxPaymentMethod.objects.get(reference=request.payment_method)
        except SandboxPaymentMethod.DoesNotExist:
            return ChargeResult(Outcome.DECLINED, "", "payment_method_missing", "No such payment method.")
        settles_on: date | None = None
        available_on: date | None = None
        decline = ""
        if method.kind == "card":
            decline = TEST_CARDS.get(method.token, ("", "", "", ""))[3]
            status = "failed" if decline else "succeeded"
            available_on = None if decline else request.business_date
        else:
            status = "processing"
            settles_on = add_weekdays(request.business_date, SETTLEMENT_BUSINESS_DAYS)
        try:
            with transaction.atomic():
                intent = SandboxPaymentIntent.objects.create(
                    reference=_ref("pi"),
                    idempotency_key=request.idempotency_key,
                    customer=request.customer,
                    payment_method=request.payment_method,
                    destination=request.destination or "",
                    amount_minor=request.amount_minor,
                    currency=request.currency,
                    status=status,
                    decline_code=decline,
                    created_on=request.business_date,
                    settles_on=settles_on,
                    available_on=available_on,
                    metadata=request.metadata,
                )
        except IntegrityError:
            # Same idempotency key: the original outcome, nothing new (as Stripe does).
            intent = SandboxPaymentIntent.objects.get(idempotency_key=request.idempotency_key)
        return self._result(intent)

    def charge_lookup(self, request: ChargeRequest) -> ChargeResult | None:
        intent = SandboxPaymentIntent.objects.filter(idempotency_key=request.idempotency_key).first()
        return None if intent is None else self._result(intent)

    def advance(self, *, today: date) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        with transaction.atomic():
            due = SandboxPaymentIntent.objects.select_for_update().filter(status="processing", settles_on__lte=today)
            for intent in due:
                settled_on = intent.settles_on or today
                method = SandboxPaymentMethod.objects.get(reference=intent.payment_method)
                failure = TEST_BANK_ACCOUNTS.get(method.token, ("", ""))[1]
                if failure:
                    intent.status, intent.decline_code = "failed", failure
                    events.append(
                        ProviderEvent(
                            "charge.failed",
                            intent.reference,
                            settled_on,
                            decline_code=failure,
                            metadata=intent.metadata,
                        )
                    )
                else:
                    intent.status, intent.available_on = "succeeded", settled_on
                    events.append(
                        ProviderEvent("charge.succeeded", intent.reference, settled_on, metadata=intent.metadata)
                    )
                intent.save(update_fields=["status", "decline_code", "available_on"])
            ready = (
                SandboxPaymentIntent.objects.select_for_update()
                .filter(status="succeeded", payout="")
                .exclude(destination="")
                .order_by("id")
            )
            batches: dict[tuple[str, date, str], list[SandboxPaymentIntent]] = {}
            for intent in ready:
                assert intent.available_on is not None
                arrival = add_weekdays(intent.available_on, PAYOUT_BUSINESS_DAYS)
                if arrival <= today:
                    batches.setdefault((intent.destination, arrival, intent.currency), []).append(intent)
            for (destination, arrival, currency), intents in sorted(batches.items()):
                payout = SandboxPayout.objects.create(
                    reference=_ref("po"),
                    destination=destination,
                    amount_minor=sum(i.amount_minor for i in intents),
                    currency=currency,
                    arrival_on=arrival,
                )
                SandboxPaymentIntent.objects.filter(pk__in=[i.pk for i in intents]).update(payout=payout.reference)
                events.append(
                    ProviderEvent(
                        "payout.paid",
                        payout.reference,
                        arrival,
                        account=destination,
                        charge_references=tuple(i.reference for i in intents),
                    )
                )
        return events
