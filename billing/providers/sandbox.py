"""The sandbox processor: behaves like Stripe test mode for Stripe's documented test cards and test bank
accounts, with its books in the public schema so web, worker and beat share them.

3-D Secure (COL-7), as Stripe's authentication test cards: off-session a charge fails with
`authentication_required`; on-session (Pay now) it waits in `requires_action` for the cardholder, whom the portal
sends to a local page standing in for the bank's (`/portal/sandbox/authenticate/<payment intent>/`), which
completes or fails it (`authenticate`) and returns to the charge's page.

Time is the caller's business date, so `simulate` can walk months in seconds:
- cards succeed or decline at once;
- bank debits (SEPA, ACH) are `processing` and settle, or fail, 2 business days later (COL-3);
- collected funds are paid out to the agency's connected account 3 business days after they are
  collected (cards: 3 after the charge; bank debits: 5 after it), in one payout per account and day (PAY-2);
- refunds (COR-1) of cards succeed at once, of bank debits 2 business days later; the card
  `pm_card_refundFail` (4000000000005126) takes refunds, which fail 2 business days later, as Stripe's does;
  a refund made before the payout is not paid out;
- Stripe's dispute cards (`pm_card_createDispute`, `pm_card_createDisputeProductNotReceived`) succeed, then a
  dispute opens (COR-2), reported by the provider's day: needs response, evidence due 7 days later; it is lost
  when that day passes without a decision, or decided by `dispute_decide` (tests, the demo).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum

from billing.platform.models import (
    SandboxDispute,
    SandboxPaymentIntent,
    SandboxPaymentMethod,
    SandboxPayout,
    SandboxRefund,
)
from billing.providers.base import (
    ChargeRequest,
    ChargeResult,
    Outcome,
    ProviderError,
    ProviderEvent,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    SavedPaymentMethod,
)
from core.calendar import add_weekdays
from core.links import absolute_url
from core.money import charge_ceiling_minor, format_minor

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
    "pm_card_createDispute": ("4000000000000259", "visa", "", ""),
    "pm_card_createDisputeProductNotReceived": ("4000000000002685", "visa", "", ""),
    "pm_card_refundFail": ("4000000000005126", "visa", "", ""),
}
# Stripe's dispute test cards: a successful charge, then a dispute with this reason (COR-2).
DISPUTE_CARDS = {
    "pm_card_createDispute": "fraudulent",
    "pm_card_createDisputeProductNotReceived": "product_not_received",
}
REFUND_FAIL_CARD = "pm_card_refundFail"
DISPUTE_RESPONSE_DAYS = 7
# The sandbox keeps Stripe's dispute statuses; the product's words for them (billing.statuses.DisputeStatus).
DISPUTE_STATUS = {"needs_response": "NEEDS_RESPONSE", "under_review": "UNDER_REVIEW", "won": "WON", "lost": "LOST"}
# Stripe's test bank accounts: the first settles, the second fails at settlement.
TEST_BANK_ACCOUNTS: dict[str, tuple[str, str]] = {
    "sepa:DE89370400440532013000": ("sepa_debit", ""),
    "sepa:DE62370400440532013001": ("sepa_debit", "insufficient_funds"),
    "sepa:AT611904300234573201": ("sepa_debit", ""),
    "ach:110000000:000123456789": ("us_bank_account", ""),
    "ach:110000000:000111111113": ("us_bank_account", "account_closed"),
    "ach:110000000:000111111116": ("us_bank_account", "insufficient_funds"),
}
# Stripe's 3-D Secure test cards: every charge needs the cardholder's authentication (COL-7).
AUTHENTICATION_CARDS: dict[str, tuple[str, str]] = {
    "pm_card_authenticationRequired": ("4000002760003184", "visa"),
    "pm_card_threeDSecureRequired": ("4000000000003063", "visa"),
}
SANDBOX_TOKENS = tuple(TEST_CARDS) + tuple(AUTHENTICATION_CARDS) + tuple(TEST_BANK_ACCOUNTS)
REFUND_SETTLEMENT_BUSINESS_DAYS = 2


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(f"sandbox-fingerprint:{secret}".encode()).hexdigest()[:32]


def _ref(prefix: str) -> str:
    return f"{prefix}_sbx_{uuid.uuid4().hex[:20]}"


RETURN_URL = "_return_url"  # kept in the payment's metadata, as Stripe keeps a PaymentIntent's return_url


def authentication_url(intent: SandboxPaymentIntent) -> str:
    """The sandbox's stand-in for the bank's 3-D Secure page: on the agency's host, beside the charge's page."""
    return absolute_url(f"/portal/sandbox/authenticate/{intent.reference}/", agency=intent.metadata.get("schema"))


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
        if token not in SANDBOX_TOKENS and ":" in token:
            token, _, variant = token.rpartition(":")
        if token in AUTHENTICATION_CARDS:
            number, brand = AUTHENTICATION_CARDS[token]
            kind, secret, last4 = "card", number + variant, number[-4:]
        elif token in TEST_CARDS:
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
        if intent.status == "requires_action":
            return ChargeResult(Outcome.REQUIRES_ACTION, intent.reference, action_url=authentication_url(intent))
        return ChargeResult(Outcome.DECLINED, intent.reference, intent.decline_code, "The payment was declined.")

    def charge_create(self, request: ChargeRequest) -> ChargeResult:
        if request.amount_minor > charge_ceiling_minor():
            # As Stripe answers an amount above its limit: refused, nothing charged (`amount_too_large`).
            limit = format_minor(charge_ceiling_minor(), request.currency)
            message = f"Amount must be no more than {limit} {request.currency}."
            return ChargeResult(Outcome.DECLINED, "", "amount_too_large", message)
        try:
            method = SandboxPaymentMethod.objects.get(reference=request.payment_method)
        except SandboxPaymentMethod.DoesNotExist:
            return ChargeResult(Outcome.DECLINED, "", "payment_method_missing", "No such payment method.")
        settles_on: date | None = None
        available_on: date | None = None
        decline = ""
        metadata = dict(request.metadata)
        if method.kind == "card" and method.token in AUTHENTICATION_CARDS:
            if request.on_session:
                status = "requires_action"
                metadata[RETURN_URL] = request.return_url
            else:
                status, decline = "failed", "authentication_required"
        elif method.kind == "card":
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
                    metadata=metadata,
                )
        except IntegrityError:
            # Same idempotency key: the original outcome, nothing new (as Stripe does).
            intent = SandboxPaymentIntent.objects.get(idempotency_key=request.idempotency_key)
        else:
            reason = DISPUTE_CARDS.get(method.token)
            if reason and status == "succeeded":
                SandboxDispute.objects.create(
                    reference=_ref("dp"),
                    payment_intent=intent.reference,
                    amount_minor=intent.amount_minor,
                    currency=intent.currency,
                    reason=reason,
                    status="needs_response",
                    created_on=request.business_date,
                    due_by=request.business_date + timedelta(days=DISPUTE_RESPONSE_DAYS),
                )
        return self._result(intent)

    def charge_lookup(self, request: ChargeRequest) -> ChargeResult | None:
        intent = SandboxPaymentIntent.objects.filter(idempotency_key=request.idempotency_key).first()
        return None if intent is None else self._result(intent)

    def charge_cancel(self, request: ChargeRequest) -> ChargeResult | None:
        SandboxPaymentIntent.objects.filter(idempotency_key=request.idempotency_key, status="requires_action").update(
            status="canceled", decline_code="authentication_required"
        )
        return self.charge_lookup(request)

    @staticmethod
    def authenticate(reference: str, *, succeed: bool) -> str:
        """The cardholder completes (or fails) the 3-D Secure challenge of a payment waiting for it; the URL to
        return to. Raises ProviderError when there is nothing to authenticate (done already, or unknown)."""
        with transaction.atomic():
            intent = SandboxPaymentIntent.objects.select_for_update().filter(reference=reference).first()
            if intent is None or intent.status != "requires_action":
                raise ProviderError(
                    "There is no payment waiting for authentication.", code="payment_intent_unexpected_state"
                )
            if succeed:
                intent.status, intent.available_on = "succeeded", intent.created_on
            else:
                intent.status, intent.decline_code = "failed", "payment_intent_authentication_failure"
            intent.save(update_fields=["status", "available_on", "decline_code"])
        return str(intent.metadata.get(RETURN_URL, ""))

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
            refunded = dict(
                SandboxRefund.objects.filter(reverse_transfer=True)
                .exclude(status="failed")
                .values_list("payment_intent")
                .annotate(total=Sum("amount_minor"))
                .order_by()
            )
            for (destination, arrival, currency), intents in sorted(batches.items()):
                payout = SandboxPayout.objects.create(
                    reference=_ref("po"),
                    destination=destination,
                    # What a refund with reverse_transfer took back before the payout is not paid out.
                    amount_minor=sum(i.amount_minor - refunded.get(i.reference, 0) for i in intents),
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
            events += self._refunds_settle(today)
            events += self._disputes_report(today)
        return events

    # --- refunds (COR-1) and disputes (COR-2) ----------------------------------------------------------------

    @staticmethod
    def _refund_result(refund: SandboxRefund) -> RefundResult:
        outcome = {"succeeded": RefundOutcome.SUCCEEDED, "pending": RefundOutcome.PENDING}.get(
            refund.status, RefundOutcome.FAILED
        )
        return RefundResult(outcome, refund.reference, refund.failure_reason)

    def refund_create(self, request: RefundRequest) -> RefundResult:
        with transaction.atomic():
            earlier = SandboxRefund.objects.filter(idempotency_key=request.idempotency_key).first()
            if earlier is not None:
                return self._refund_result(earlier)  # same key: the original refund, nothing new
            intent = (
                SandboxPaymentIntent.objects.select_for_update().filter(reference=request.payment_reference).first()
            )
            if intent is None:
                return RefundResult(RefundOutcome.FAILED, "", "resource_missing", "No such payment.")
            if intent.status != "succeeded":
                return RefundResult(
                    RefundOutcome.FAILED,
                    "",
                    "charge_not_refundable",
                    "The payment has not succeeded: nothing to refund.",
                )
            if SandboxDispute.objects.filter(payment_intent=intent.reference).exclude(status="won").exists():
                return RefundResult(RefundOutcome.FAILED, "", "charge_disputed", "The payment is disputed.")
            refunded = (
                SandboxRefund.objects.filter(payment_intent=intent.reference)
                .exclude(status="failed")
                .aggregate(total=Sum("amount_minor"))["total"]
                or 0
            )
            if request.amount_minor <= 0 or request.amount_minor > intent.amount_minor - refunded:
                return RefundResult(
                    RefundOutcome.FAILED, "", "amount_too_large", "The refund is more than remains of the payment."
                )
            method = SandboxPaymentMethod.objects.get(reference=intent.payment_method)
            later = method.kind != "card" or method.token == REFUND_FAIL_CARD
            refund = SandboxRefund.objects.create(
                reference=_ref("re"),
                idempotency_key=request.idempotency_key,
                payment_intent=intent.reference,
                amount_minor=request.amount_minor,
                currency=request.currency,
                # Bank-debit refunds are pending until they settle; the refund-fail card's succeed, then fail.
                status="pending" if method.kind != "card" else "succeeded",
                reverse_transfer=request.reverse_transfer and bool(intent.destination),
                created_on=request.business_date,
                settles_on=add_weekdays(request.business_date, REFUND_SETTLEMENT_BUSINESS_DAYS) if later else None,
                metadata=request.metadata,
            )
        return self._refund_result(refund)

    def _refunds_settle(self, today: date) -> list[ProviderEvent]:
        events = []
        due = SandboxRefund.objects.select_for_update().filter(settles_on__lte=today).exclude(status="failed")
        for refund in due.order_by("id"):
            method = SandboxPaymentMethod.objects.filter(
                reference=SandboxPaymentIntent.objects.get(reference=refund.payment_intent).payment_method
            ).first()
            settled_on = refund.settles_on or today
            if method is not None and method.token == REFUND_FAIL_CARD:
                refund.status, refund.failure_reason = "failed", "expired_or_canceled_card"
                events.append(
                    ProviderEvent(
                        "refund.failed",
                        refund.reference,
                        settled_on,
                        decline_code=refund.failure_reason,
                        metadata=refund.metadata,
                    )
                )
            else:
                refund.status = "succeeded"
                events.append(ProviderEvent("refund.succeeded", refund.reference, settled_on, metadata=refund.metadata))
            refund.settles_on = None
            refund.save(update_fields=["status", "failure_reason", "settles_on"])
        return events

    def _disputes_report(self, today: date) -> list[ProviderEvent]:
        events = []
        changed = ~Q(reported=F("status")) | Q(status="needs_response", due_by__lt=today)
        for dispute in SandboxDispute.objects.select_for_update().filter(changed).order_by("id"):
            if dispute.status == "needs_response" and today > dispute.due_by:
                dispute.status = "lost"  # no response by the due date: lost, as at Stripe
            if dispute.reported == dispute.status:
                continue
            intent = SandboxPaymentIntent.objects.get(reference=dispute.payment_intent)
            events.append(
                ProviderEvent(
                    "dispute",
                    dispute.reference,
                    today if dispute.reported else dispute.created_on,
                    charge_references=(dispute.payment_intent,),
                    metadata=intent.metadata,
                    status=DISPUTE_STATUS[dispute.status],
                    amount_minor=dispute.amount_minor,
                    currency=dispute.currency,
                    reason=dispute.reason,
                    due_on=dispute.due_by,
                )
            )
            dispute.reported = dispute.status
            dispute.save(update_fields=["status", "reported"])
        return events

    @staticmethod
    def dispute_decide(payment_or_dispute: str, status: str) -> None:
        """The sandbox's control for a dispute's outcome (tests, the demo): `under_review`, `won` or `lost`;
        reported by the provider's next day. A closed dispute stays closed."""
        if status not in ("under_review", "won", "lost"):
            raise ProviderError(f"Unknown dispute status {status!r}.", code="parameter_invalid")
        dispute = SandboxDispute.objects.filter(reference=payment_or_dispute).first() or SandboxDispute.objects.get(
            payment_intent=payment_or_dispute
        )
        if dispute.status in ("won", "lost"):
            raise ProviderError("This dispute is closed.", code="dispute_closed")
        dispute.status = status
        dispute.save(update_fields=["status"])

    def transfer_reverse(self, *, payment_reference: str, amount_minor: int, idempotency_key: str) -> str:
        reference = "trr_sbx_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]  # same key, same reversal
        SandboxDispute.objects.filter(payment_intent=payment_reference, recovered="").update(recovered=reference)
        return reference

    def payment_metadata(self, reference: str) -> dict[str, str]:
        intent = SandboxPaymentIntent.objects.filter(reference=reference).first()
        return dict(intent.metadata) if intent else {}
