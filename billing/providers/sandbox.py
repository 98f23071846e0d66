"""The sandbox processor: behaves like Stripe test mode for Stripe's documented test cards and test bank
accounts, with its books in the public schema so web, worker and beat share them.

3-D Secure (COL-7), as Stripe's authentication test cards: off-session a charge fails with
`authentication_required`; on-session (Pay now) it waits in `requires_action` for the cardholder, whom the portal
sends to a local page standing in for the bank's (`/portal/sandbox/authenticate/<payment intent>/`), which
completes or fails it (`authenticate`) and returns to the charge's page.

Time is the caller's business date, so `simulate` can walk months in seconds:
- cards succeed or decline at once;
- bank debits (SEPA, ACH) are `processing` and settle, or fail, 2 business days later (COL-3);
- connected accounts are onboarded on a local page (`sandbox_onboarding_submit`, Stripe's hosted onboarding with
  the same outcomes: complete, pending verification — verified the next business day —, restricted, or left half
  done); destination charges and transfers are refused to an account whose payouts are not enabled, as Stripe's;
- collected funds are paid out to the agency's connected account 3 business days after they are
  collected (cards: 3 after the charge; bank debits: 5 after it; held funds: 3 after their transfer), in one
  payout per account and day (PAY-2), while the account's payouts are enabled and its bank account works: a
  payout to one of Stripe's failing test bank accounts fails, and payouts stop until a new bank account is given;
- refunds (COR-1) of cards succeed at once, of bank debits 2 business days later; the card
  `pm_card_refundFail` (4000000000005126) takes refunds, which fail 2 business days later, as Stripe's does;
  a refund made before the payout is not paid out;
- Stripe's dispute cards (`pm_card_createDispute`, `pm_card_createDisputeProductNotReceived`) succeed, then a
  dispute opens (COR-2), reported by the provider's day: needs response, evidence due 7 days later; it is lost
  when that day passes without a decision, or decided by `dispute_decide` (tests, the demo).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.urls import reverse

from billing.platform.models import (
    SandboxAccountLink,
    SandboxConnectedAccount,
    SandboxDispute,
    SandboxPaymentIntent,
    SandboxPaymentMethod,
    SandboxPayout,
    SandboxRefund,
)
from billing.providers.base import (
    AccountLink,
    ChargeRequest,
    ChargeResult,
    ConnectedAccount,
    Outcome,
    ProviderError,
    ProviderEvent,
    ProviderPayout,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    SavedPaymentMethod,
    TransferRequest,
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

# Connected accounts: Stripe's requirement list for a new US company account, and its test bank accounts for
# payouts (the first pays out, the others fail with that code).
ONBOARDING_DUE = (
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "representative.first_name",
    "representative.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
)
VERIFICATION_PENDING = ("company.tax_id", "representative.id_number", "representative.verification.document")
VERIFICATION_DOCUMENT = "representative.verification.document"
PAYOUT_BANK_ACCOUNTS = {
    "000123456789": "",
    "000111111116": "no_account",
    "000111111113": "account_closed",
    "000222222227": "insufficient_funds",
    "000333333335": "debit_not_authorized",
    "000444444440": "invalid_currency",
}
DEFAULT_PAYOUT_BANK_ACCOUNT = "000123456789"
LINK_LIFETIME = timedelta(minutes=5)  # Stripe's Account Links expire after a few minutes and work once
ONBOARDING_ACTIONS = ("complete", "pending_verification", "restricted", "leave")


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
        reference = "acct_sbx_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        SandboxConnectedAccount.objects.get_or_create(reference=reference, defaults={"name": name, "email": email})
        return reference

    def connected_account_retrieve(self, *, account: str) -> ConnectedAccount:
        found = SandboxConnectedAccount.objects.filter(reference=account).first()
        if found is None:
            raise ProviderError(f"No such account: '{account}'", code="resource_missing")
        return _account_view(found)

    def account_link_create(self, *, account: str, refresh_url: str, return_url: str) -> AccountLink:
        if not SandboxConnectedAccount.objects.filter(reference=account).exists():
            raise ProviderError(f"No such account: '{account}'", code="resource_missing")
        link = SandboxAccountLink.objects.create(
            token=secrets.token_urlsafe(24),
            account=account,
            return_url=return_url,
            refresh_url=refresh_url,
            expires_at=datetime.now().astimezone() + LINK_LIFETIME,
        )
        # The page is served on the host the agency came from (its return URL's).
        parts = urlsplit(return_url)
        page = reverse("sandbox-onboarding", urlconf="agencybilling.urls_agency", args=[link.token])
        return AccountLink(f"{parts.scheme}://{parts.netloc}{page}", link.expires_at)

    def transfer_create(self, request: TransferRequest) -> str:
        with transaction.atomic():
            intent = SandboxPaymentIntent.objects.select_for_update().filter(reference=request.charge_reference).first()
            if intent is None or intent.status != "succeeded":
                raise ProviderError(f"{request.charge_reference} has no succeeded charge.", code="no_charge")
            if intent.destination:
                if intent.destination != request.destination:
                    raise ProviderError("The charge's funds went to another account.", code="already_transferred")
                return _transfer_reference(intent)  # the same transfer again (idempotent)
            _require_transfers(request.destination)
            intent.destination = request.destination
            intent.transferred_on = request.business_date
            intent.save(update_fields=["destination", "transferred_on"])
        return _transfer_reference(intent)

    def payout_retrieve(self, *, account: str, payout: str) -> ProviderPayout:
        found = SandboxPayout.objects.filter(reference=payout, destination=account).first()
        if found is None:
            raise ProviderError(f"No such payout: '{payout}'", code="resource_missing")
        return ProviderPayout(
            reference=found.reference,
            account=found.destination,
            status=found.status,
            amount_minor=found.amount_minor,
            currency=found.currency.upper(),
            arrival_on=found.arrival_on,
            failure_code=found.failure_code,
            failure_message=PAYOUT_FAILURE_MESSAGES.get(found.failure_code, ""),
            charge_references=tuple(found.intents),
        )

    def payment_method_setup(self, *, customer: str, token: str) -> SavedPaymentMethod:
        return self.payment_method_save(customer=customer, token=token)

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
        if request.destination and not _transfers_enabled(request.destination):
            # Stripe refuses a destination charge to an account whose transfers capability is not active.
            return ChargeResult(
                Outcome.DECLINED,
                "",
                "insufficient_capabilities_for_transfer",
                "The destination account cannot receive transfers.",
            )
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
            events += _accounts_verified(today)
            events += _payouts_made(today)
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


PAYOUT_FAILURE_MESSAGES = {
    "no_account": "The bank account details on file do not match an account.",
    "account_closed": "The bank account has been closed.",
    "insufficient_funds": "The bank account has insufficient funds.",
    "debit_not_authorized": "Debit transactions are not approved on the bank account.",
    "invalid_currency": "The bank was unable to process this payout because of its currency.",
}


def _transfer_reference(intent: SandboxPaymentIntent) -> str:
    return "tr_sbx_" + hashlib.sha256(intent.reference.encode()).hexdigest()[:20]


def _enabled(account: SandboxConnectedAccount) -> bool:
    return account.state == "complete"


def _transfers_enabled(reference: str) -> bool:
    account = SandboxConnectedAccount.objects.filter(reference=reference).first()
    return account is not None and _enabled(account)


def _require_transfers(reference: str) -> None:
    if not _transfers_enabled(reference):
        raise ProviderError(
            "Your destination account needs to have at least one of the following capabilities enabled: transfers",
            code="insufficient_capabilities_for_transfer",
        )


def _account_view(account: SandboxConnectedAccount) -> ConnectedAccount:
    state = account.state
    bank = account.bank_account
    if state == "not_started":
        return ConnectedAccount(
            account.reference,
            details_submitted=False,
            transfers_enabled=False,
            payouts_enabled=False,
            currently_due=ONBOARDING_DUE,
            past_due=ONBOARDING_DUE,
            disabled_reason="requirements.past_due",
        )
    if state == "pending_verification":
        return ConnectedAccount(
            account.reference,
            details_submitted=True,
            transfers_enabled=False,
            payouts_enabled=False,
            pending_verification=VERIFICATION_PENDING,
            disabled_reason="requirements.pending_verification",
            bank_last4=bank[-4:],
        )
    if state == "restricted":
        return ConnectedAccount(
            account.reference,
            details_submitted=True,
            transfers_enabled=False,
            payouts_enabled=False,
            currently_due=(VERIFICATION_DOCUMENT,),
            past_due=(VERIFICATION_DOCUMENT,),
            errors=("The document could not be verified. Upload another document.",),
            disabled_reason="requirements.past_due",
            bank_last4=bank[-4:],
        )
    errored = account.bank_status == "errored"
    return ConnectedAccount(
        account.reference,
        details_submitted=True,
        transfers_enabled=True,
        payouts_enabled=True,
        currently_due=("external_account",) if errored else (),
        errors=("The bank account could not receive a payout. Give another bank account.",) if errored else (),
        bank_last4=bank[-4:],
    )


class LinkUnusable(ProviderError):
    """An onboarding link opened a second time or after it expired: the agency is sent to its refresh URL."""


@dataclass(frozen=True)
class OnboardingPage:
    link: SandboxAccountLink
    account: SandboxConnectedAccount
    view: ConnectedAccount


def sandbox_link_open(*, token: str, now: datetime) -> OnboardingPage:
    """The hosted onboarding page behind a link (Stripe's: it works once, for a few minutes)."""
    link = SandboxAccountLink.objects.filter(token=token).first()
    if link is None:
        raise ProviderError("This onboarding link does not exist.", code="resource_missing")
    if link.used_at is not None or link.expires_at <= now:
        raise LinkUnusable("This onboarding link has expired or was already used.", code="link_expired")
    account = SandboxConnectedAccount.objects.get(reference=link.account)
    return OnboardingPage(link, account, _account_view(account))


def sandbox_onboarding_submit(*, token: str, action: str, bank_account: str, now: datetime, today: date) -> str:
    """What the agency chose on the page; the link is used up. Returns where to send the browser (the return URL,
    as Stripe does whatever the outcome: the platform reads the account's state, it never assumes it)."""
    if action not in ONBOARDING_ACTIONS:
        raise ProviderError("Choose one of the page's buttons.", code="parameter_invalid")
    bank_account = (bank_account or DEFAULT_PAYOUT_BANK_ACCOUNT).strip()
    if action != "leave" and bank_account not in PAYOUT_BANK_ACCOUNTS:
        raise ProviderError(
            "Use one of the test bank account numbers, e.g. 000123456789 (000111111116 makes payouts fail).",
            code="parameter_invalid",
        )
    with transaction.atomic():
        link = SandboxAccountLink.objects.select_for_update().filter(token=token).first()
        if link is None:
            raise ProviderError("This onboarding link does not exist.", code="resource_missing")
        if link.used_at is not None or link.expires_at <= now:
            raise LinkUnusable("This onboarding link has expired or was already used.", code="link_expired")
        link.used_at = now
        link.save(update_fields=["used_at"])
        if action != "leave":
            SandboxConnectedAccount.objects.filter(reference=link.account).update(
                state=action, state_since=today, bank_account=bank_account, bank_status="new"
            )
    return link.return_url


def _accounts_verified(today: date) -> list[ProviderEvent]:
    """Verification of submitted details takes a business day in the sandbox."""
    events = []
    due = SandboxConnectedAccount.objects.select_for_update().filter(state="pending_verification")
    for account in due:
        if account.state_since is None or add_weekdays(account.state_since, 1) <= today:
            SandboxConnectedAccount.objects.filter(pk=account.pk).update(state="complete", state_since=today)
            events.append(ProviderEvent("account.updated", account.reference, today, account=account.reference))
    return events


def _payouts_made(today: date) -> list[ProviderEvent]:
    """One payout per account, arrival date and currency, of funds available PAYOUT_BUSINESS_DAYS before it; a
    payout to a failing test bank account fails, its funds stay in the balance and payouts stop until the account
    gives a working bank account."""
    accounts = {
        a.reference: a
        for a in SandboxConnectedAccount.objects.select_for_update().filter(state="complete", bank_status="new")
    }
    ready = (
        SandboxPaymentIntent.objects.select_for_update()
        .filter(status="succeeded", payout="", destination__in=list(accounts))
        .order_by("id")
    )
    batches: dict[tuple[str, date, str], list[SandboxPaymentIntent]] = {}
    for intent in ready:
        assert intent.available_on is not None
        funds_on = max(intent.available_on, intent.transferred_on or intent.available_on)
        # No earlier than the business day after the account was (re)enabled: a new bank account is not paid
        # into the past.
        since = accounts[intent.destination].state_since or funds_on
        arrival = max(add_weekdays(funds_on, PAYOUT_BUSINESS_DAYS), add_weekdays(since, 1))
        if arrival <= today:
            batches.setdefault((intent.destination, arrival, intent.currency), []).append(intent)
    refunded = dict(
        SandboxRefund.objects.filter(reverse_transfer=True, payment_intent__in=[i.reference for i in ready])
        .exclude(status="failed")
        .values_list("payment_intent")
        .annotate(total=Sum("amount_minor"))
        .order_by()
    )
    events = []
    for (destination, arrival, currency), intents in sorted(batches.items()):
        account = accounts[destination]
        failure = PAYOUT_BANK_ACCOUNTS.get(account.bank_account, "")
        if account.bank_status == "errored":
            continue  # an earlier batch of this run failed: nothing more until a new bank account
        payout = SandboxPayout.objects.create(
            reference=_ref("po"),
            destination=destination,
            # What a refund with reverse_transfer took back before the payout is not paid out.
            amount_minor=sum(i.amount_minor - refunded.get(i.reference, 0) for i in intents),
            currency=currency,
            arrival_on=arrival,
            status="failed" if failure else "paid",
            failure_code=failure,
            intents=[i.reference for i in intents],
        )
        if failure:
            # The money comes back to the balance on the day the payout fails.
            account.bank_status = "errored"
            SandboxConnectedAccount.objects.filter(pk=account.pk).update(bank_status="errored")
            SandboxPaymentIntent.objects.filter(pk__in=[i.pk for i in intents]).update(available_on=arrival)
            # The account now needs a new bank account (Stripe reports it on the account).
            events.append(ProviderEvent("account.updated", destination, arrival, account=destination))
        else:
            SandboxPaymentIntent.objects.filter(pk__in=[i.pk for i in intents]).update(payout=payout.reference)
        events.append(
            ProviderEvent(
                "payout.failed" if failure else "payout.paid",
                payout.reference,
                arrival,
                account=destination,
                charge_references=tuple(i.reference for i in intents),
            )
        )
    return events
