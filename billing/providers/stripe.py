"""Stripe, through the official SDK: the only module that imports `stripe`.

- Client charges are **destination charges** (`transfer_data.destination` = the agency's connected
  account), so all revenue goes to the agency (PAY-1); the agency invoice is a plain platform charge.
- Every PaymentIntent is created off-session and confirmed at once, with the local attempt's
  idempotency key, and carries the attempt key in its metadata so it can be found again.
- Errors are mapped to outcomes: a card error is a decline; rate limits, connection failures and 5xx
  are raised, and the caller records the attempt as unknown until it is looked up.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import requests
import requests.adapters
import stripe
from stripe.params import (
    AccountCreateParams,
    AccountLinkCreateParams,
    BalanceTransactionListParams,
    CustomerCreateParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentRetrieveParams,
    PaymentMethodAttachParams,
    RefundCreateParams,
    SetupIntentCreateParams,
    TransferCreateParams,
    TransferReversalCreateParams,
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
from billing.providers.ratelimit import RateLimiter
from core.parsing import whole_number

API_VERSION = "2026-10-28.endive"  # pinned: responses are parsed for this version only
PAYOUT_EVENTS = ("payout.created", "payout.updated", "payout.paid", "payout.failed", "payout.canceled")


class TransientProviderError(Exception):
    """Rate limited or unreachable: the call may be retried later with the same idempotency key."""


def _plain(obj: Any) -> dict:
    """SDK objects are not dicts; the adapter reads plain dicts."""
    if obj is None:
        return {}
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _outcome_of(intent: Any) -> ChargeResult:
    intent = _plain(intent)
    status = intent.get("status")
    if status == "succeeded":
        return ChargeResult(Outcome.SUCCEEDED, intent["id"])
    if status == "processing":
        return ChargeResult(Outcome.PENDING, intent["id"])
    if status == "requires_action":
        # On-session (COL-7): the cardholder authenticates on the bank's page, then comes back to return_url.
        action = intent.get("next_action") or {}
        url = (action.get("redirect_to_url") or {}).get("url") or (action.get("use_stripe_sdk") or {}).get(
            "stripe_js", ""
        )
        return ChargeResult(Outcome.REQUIRES_ACTION, intent["id"], action_url=url or "")
    if status in ("requires_payment_method", "canceled", "requires_confirmation"):
        error = intent.get("last_payment_error") or {}
        code = error.get("decline_code") or error.get("code") or status
        return ChargeResult(Outcome.DECLINED, intent["id"], code, error.get("message") or "")
    return ChargeResult(Outcome.UNKNOWN, intent.get("id", ""), message=f"unexpected status {status!r}")


# Stripe's dispute statuses in the product's words (billing.statuses.DisputeStatus); an inquiry closed without a
# chargeback is as good as won. `charge_refunded` (closed by a refund made outside the product) is not mapped.
DISPUTE_STATUS = {
    "warning_needs_response": "NEEDS_RESPONSE",
    "needs_response": "NEEDS_RESPONSE",
    "warning_under_review": "UNDER_REVIEW",
    "under_review": "UNDER_REVIEW",
    "warning_closed": "WON",
    "won": "WON",
    "prevented": "WON",
    "lost": "LOST",
}


def _refund_result(refund: Any) -> RefundResult:
    refund = _plain(refund)
    outcome = {
        "succeeded": RefundOutcome.SUCCEEDED,
        "pending": RefundOutcome.PENDING,
        "requires_action": RefundOutcome.PENDING,
    }.get(refund.get("status") or "", RefundOutcome.FAILED)
    return RefundResult(outcome, refund.get("id", ""), refund.get("failure_reason") or "")


def _day(timestamp: Any, default: date) -> date:
    return datetime.fromtimestamp(timestamp, tz=UTC).date() if timestamp else default


def _signed_at(header: str) -> int:
    """The `t=` timestamp of a Stripe-Signature header (already verified to be present and signed)."""
    for part in header.split(","):
        key, _, value = part.partition("=")
        timestamp = whole_number(value.strip(), max_digits=12)
        if key.strip() == "t" and timestamp is not None:
            return timestamp
    return 0


class _PacedAdapter(requests.adapters.HTTPAdapter):
    """Waits for the rate limiter's slot just before the request goes on the wire, after the SDK and requests
    have built it: a request building its parameters after its slot reached the server late by however long
    its thread waited for the GIL, and requests held back together arrived together, more of them in one
    second than the account allows (docs/performance.md, P2).

    A limiter that cannot be reached (Redis down) fails the request before it is sent; the SDK reports that as a
    connection error naming the cause, and the attempt is recorded as unknown and looked up later, like any
    connection failure."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.limiter.acquire()
        return super().send(request, *args, **kwargs)


class _PacedRequestsClient(stripe.RequestsClient):
    """The SDK's requests client, with one session per thread (as the SDK keeps them) that sends through a
    `_PacedAdapter`."""

    def __init__(self, *, timeout: float, limiter: RateLimiter) -> None:
        super().__init__(timeout=timeout)
        self.limiter = limiter

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> Any:
        if getattr(self._thread_local, "session", None) is None:
            session = requests.Session()
            adapter = _PacedAdapter(self.limiter)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._thread_local.session = session
        return super().request(method, url, headers, post_data)


class StripeProvider:
    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None = None,
        timeout: float = 20.0,
        rate_limit_retries: int = 5,
        limiter: RateLimiter | None = None,
        concurrency: int = 1,
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            stripe_version=API_VERSION,
            max_network_retries=0,  # retries are ours: only with the same idempotency key
            http_client=(
                _PacedRequestsClient(timeout=timeout, limiter=limiter)
                if limiter is not None
                else stripe.RequestsClient(timeout=timeout)
            ),
        )
        self.rate_limit_retries = rate_limit_retries
        # Every request waits for the limiter (the account's requests per second, shared by every worker) in the
        # transport, as it is sent; `concurrency` is how many charges collect_due keeps in flight at once.
        self.concurrency = concurrency
        self.rate_limited = 0  # 429s answered, for monitoring and the benchmarks

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Call Stripe; answer 429 with exponential backoff and jitter (same request, same idempotency key)."""
        delay = 0.25
        for attempt in range(self.rate_limit_retries + 1):
            try:
                return func(*args, **kwargs)
            except stripe.RateLimitError:
                self.rate_limited += 1
                if attempt == self.rate_limit_retries:
                    raise TransientProviderError("Stripe rate limit") from None
                # Jitter spreads the retries of many threads instead of sending them back together.
                time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - not for security
                delay = min(delay * 2, 4.0)
            except stripe.APIConnectionError as exc:
                raise TransientProviderError(f"Stripe unreachable: {exc.user_message or exc}") from None
        raise AssertionError("unreachable")

    # --- customers and accounts ------------------------------------------------------------------

    def customer_create(self, *, email: str, name: str, idempotency_key: str) -> str:
        params: CustomerCreateParams = {"email": email, "name": name}
        customer = self._call(
            self.client.v1.customers.create, params=params, options={"idempotency_key": idempotency_key}
        )
        return customer.id

    def connected_account_create(self, *, name: str, email: str, idempotency_key: str) -> str:
        # Express: Stripe hosts onboarding and the agency's dashboard (ONB-2). Destination charges need `transfers`.
        params: AccountCreateParams = {
            "type": "express",
            "email": email,
            "business_profile": {"name": name},
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        }
        account = self._call(
            self.client.v1.accounts.create, params=params, options={"idempotency_key": idempotency_key}
        )
        return account.id

    def connected_account_retrieve(self, *, account: str) -> ConnectedAccount:
        try:
            found = _plain(self._call(self.client.v1.accounts.retrieve, account))
        except stripe.InvalidRequestError as exc:
            raise ProviderError(exc.user_message or "Unknown account.", code=exc.code or "invalid_request") from None
        requirements = found.get("requirements") or {}
        capabilities = found.get("capabilities") or {}
        deadline = requirements.get("current_deadline")
        banks = (found.get("external_accounts") or {}).get("data") or []
        return ConnectedAccount(
            reference=found["id"],
            details_submitted=bool(found.get("details_submitted")),
            transfers_enabled=capabilities.get("transfers") == "active",
            payouts_enabled=bool(found.get("payouts_enabled")),
            currently_due=tuple(requirements.get("currently_due") or ()),
            past_due=tuple(requirements.get("past_due") or ()),
            pending_verification=tuple(requirements.get("pending_verification") or ()),
            errors=tuple(e.get("reason") or e.get("code") or "" for e in requirements.get("errors") or ()),
            disabled_reason=requirements.get("disabled_reason") or "",
            current_deadline=datetime.fromtimestamp(deadline, tz=UTC).date() if deadline else None,
            bank_last4=(banks[0].get("last4") or "") if banks else "",
        )

    def account_link_create(self, *, account: str, refresh_url: str, return_url: str) -> AccountLink:
        params: AccountLinkCreateParams = {
            "account": account,
            "type": "account_onboarding",
            "refresh_url": refresh_url,
            "return_url": return_url,
        }
        try:
            link = _plain(self._call(self.client.v1.account_links.create, params=params))
        except stripe.InvalidRequestError as exc:
            raise ProviderError(exc.user_message or "Stripe refused the link.", code=exc.code or "invalid") from None
        return AccountLink(link["url"], datetime.fromtimestamp(link["expires_at"], tz=UTC))

    def transfer_create(self, request: TransferRequest) -> str:
        """Separate charges and transfers: the funds of a charge collected on the platform, to the connected account,
        tied to that charge (`source_transaction`), so they follow its availability."""
        try:
            intent = _plain(self._call(self.client.v1.payment_intents.retrieve, request.charge_reference))
            charge = intent.get("latest_charge")
            charge_id = charge.get("id") if isinstance(charge, dict) else charge
            if not charge_id:
                raise ProviderError(f"{request.charge_reference} has no charge to transfer from.", code="no_charge")
            params: TransferCreateParams = {
                "amount": request.amount_minor,
                "currency": request.currency.lower(),
                "destination": request.destination,
                "source_transaction": charge_id,
                "metadata": dict(request.metadata),
            }
            transfer = self._call(
                self.client.v1.transfers.create, params=params, options={"idempotency_key": request.idempotency_key}
            )
        except stripe.InvalidRequestError as exc:
            raise ProviderError(
                exc.user_message or "Stripe refused the transfer.", code=exc.code or "invalid"
            ) from None
        return transfer.id

    def payout_retrieve(self, *, account: str, payout: str) -> ProviderPayout:
        """The payout, and exactly what it carries: the connected account's balance transactions of that payout —
        each `payment` is a transfer from a platform charge (`source.source_transfer.source_transaction`, whose
        PaymentIntent is the attempt's reference); a `payout_failure` is an earlier failed payout's money back."""
        options: Any = {"stripe_account": account}
        try:
            found = _plain(self._call(self.client.v1.payouts.retrieve, payout, options=options))
        except stripe.InvalidRequestError as exc:
            raise ProviderError(exc.user_message or "Unknown payout.", code=exc.code or "invalid_request") from None
        charges: list[str] = []
        returned: list[str] = []
        if found.get("automatic", True):  # Stripe lists the transactions of automatic payouts only
            params: BalanceTransactionListParams = {
                "payout": payout,
                "limit": 100,
                "expand": ["data.source.source_transfer.source_transaction"],
            }
            page = self._call(self.client.v1.balance_transactions.list, params=params, options=options)
            for item in page.auto_paging_iter():
                txn = _plain(item)
                source = txn.get("source") or {}
                if txn.get("type") == "payment" and isinstance(source, dict):
                    transfer = source.get("source_transfer") or {}
                    origin = transfer.get("source_transaction") if isinstance(transfer, dict) else None
                    intent = origin.get("payment_intent") if isinstance(origin, dict) else None
                    if intent:
                        charges.append(intent if isinstance(intent, str) else intent.get("id", ""))
                elif txn.get("type") == "payout_failure":
                    returned.append(source.get("id", "") if isinstance(source, dict) else str(source))
        arrival = found.get("arrival_date")
        return ProviderPayout(
            reference=found["id"],
            account=account,
            status=found.get("status") or "pending",
            amount_minor=int(found.get("amount") or 0),
            currency=(found.get("currency") or "").upper(),
            arrival_on=datetime.fromtimestamp(arrival, tz=UTC).date() if arrival else date.today(),
            failure_code=found.get("failure_code") or "",
            failure_message=found.get("failure_message") or "",
            charge_references=tuple(charges),
            returned_payouts=tuple(r for r in returned if r),
        )

    def payment_method_setup(self, *, customer: str, token: str) -> SavedPaymentMethod:
        """A SetupIntent, confirmed at once, saves the method for later off-session charges (PAY-3): the card is
        checked (and may need authentication) or the bank-debit mandate is recorded."""
        try:
            method = _plain(self._call(self.client.v1.payment_methods.retrieve, token))
            params: SetupIntentCreateParams = {
                "customer": customer,
                "payment_method": token,
                "confirm": True,
                "usage": "off_session",
            }
            if method.get("type") in ("sepa_debit", "us_bank_account"):
                params["mandate_data"] = {"customer_acceptance": {"type": "offline"}}
            intent = _plain(
                self._call(
                    self.client.v1.setup_intents.create, params=params, options={"idempotency_key": f"si-{token}"}
                )
            )
        except stripe.CardError as exc:
            raise ProviderError(exc.user_message or "The card was refused.", code=exc.code or "card_error") from None
        except stripe.InvalidRequestError as exc:
            raise ProviderError(
                exc.user_message or "Unknown payment method.", code=exc.code or "invalid_request"
            ) from None
        if intent.get("status") != "succeeded":
            raise ProviderError(
                "The payment method needs the holder's authentication before it can be saved.",
                code="authentication_required",
            )
        kind = method.get("type", "card")
        details = method.get(kind) or {}
        return SavedPaymentMethod(
            reference=method["id"],
            kind=kind,
            fingerprint=details.get("fingerprint") or "",
            brand=details.get("brand") or details.get("bank_name") or "",
            last4=details.get("last4") or "",
        )

    def payment_method_save(self, *, customer: str, token: str) -> SavedPaymentMethod:
        params: PaymentMethodAttachParams = {"customer": customer}
        try:
            method = self._call(self.client.v1.payment_methods.attach, token, params=params)
        except stripe.CardError as exc:
            raise ProviderError(exc.user_message or "The card was refused.", code=exc.code or "card_error") from None
        except stripe.InvalidRequestError as exc:
            raise ProviderError(
                exc.user_message or "Unknown payment method.", code=exc.code or "invalid_request"
            ) from None
        method = _plain(method)
        kind = method.get("type", "card")
        details = method.get(kind) or {}
        return SavedPaymentMethod(
            reference=method["id"],
            kind=kind,
            fingerprint=details.get("fingerprint") or "",
            brand=details.get("brand") or details.get("bank_name") or "",
            last4=details.get("last4") or "",
        )

    # --- charges -----------------------------------------------------------------------------------

    def _params(self, request: ChargeRequest) -> PaymentIntentCreateParams:
        params: PaymentIntentCreateParams = {
            "amount": request.amount_minor,
            "currency": request.currency.lower(),
            "customer": request.customer,
            "payment_method": request.payment_method,
            "confirm": True,
            "description": request.description,
            "metadata": dict(request.metadata),
        }
        if request.on_session:
            params["return_url"] = request.return_url  # 3-D Secure comes back here (COL-7)
        else:
            params["off_session"] = True
        if request.destination:
            params["transfer_data"] = {"destination": request.destination}
        return params

    def charge_create(self, request: ChargeRequest) -> ChargeResult:
        try:
            intent = self._call(
                self.client.v1.payment_intents.create,
                params=self._params(request),
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as exc:
            error = _plain(exc.error)
            reference = _plain(error.get("payment_intent")).get("id", "")
            decline = error.get("decline_code") or exc.code or "card_declined"
            return ChargeResult(Outcome.DECLINED, reference, decline, exc.user_message or "")
        except stripe.IdempotencyError:
            raise
        except stripe.InvalidRequestError as exc:
            # The request itself was refused: no money moved.
            return ChargeResult(Outcome.DECLINED, "", exc.code or "invalid_request", exc.user_message or "")
        return _outcome_of(intent)

    def _intent_of(self, request: ChargeRequest) -> dict | None:
        params: PaymentIntentListParams = {"customer": request.customer, "limit": 100}
        page = self._call(self.client.v1.payment_intents.list, params=params)
        for item in page.auto_paging_iter():
            intent = _plain(item)
            if (intent.get("metadata") or {}).get("attempt") == request.idempotency_key:
                return intent
        return None

    def charge_lookup(self, request: ChargeRequest) -> ChargeResult | None:
        intent = self._intent_of(request)
        return None if intent is None else _outcome_of(intent)

    def charge_cancel(self, request: ChargeRequest) -> ChargeResult | None:
        intent = self._intent_of(request)
        if intent is None:
            return None
        if intent.get("status") == "requires_action":
            try:
                intent = _plain(self._call(self.client.v1.payment_intents.cancel, intent["id"]))
            except stripe.InvalidRequestError:
                # Finished meanwhile (authenticated and paid, or failed): its state now is the answer.
                return self.charge_lookup(request)
        result = _outcome_of(intent)
        if intent.get("status") == "canceled":
            return ChargeResult(
                Outcome.DECLINED, intent["id"], "authentication_required", "The cardholder did not authenticate."
            )
        return result

    def advance(self, *, today: date) -> list[ProviderEvent]:
        return []  # Stripe reports settlement and payouts by webhook

    # --- refunds and disputes ----------------------------------------------------------------------------

    def refund_create(self, request: RefundRequest) -> RefundResult:
        params: RefundCreateParams = {
            "payment_intent": request.payment_reference,
            "amount": request.amount_minor,
            "metadata": dict(request.metadata),
        }
        if request.reverse_transfer:
            params["reverse_transfer"] = True  # the agency returns its share of a destination charge (PAY-1)
        try:
            refund = self._call(
                self.client.v1.refunds.create, params=params, options={"idempotency_key": request.idempotency_key}
            )
        except stripe.IdempotencyError:
            raise
        except stripe.InvalidRequestError as exc:
            # Refused (nothing left to refund, disputed, not a successful payment): no money moved.
            return RefundResult(RefundOutcome.FAILED, "", exc.code or "invalid_request", exc.user_message or "")
        return _refund_result(refund)

    def transfer_reverse(self, *, payment_reference: str, amount_minor: int, idempotency_key: str) -> str:
        params: PaymentIntentRetrieveParams = {"expand": ["latest_charge"]}
        intent = _plain(self._call(self.client.v1.payment_intents.retrieve, payment_reference, params=params))
        transfer = (intent.get("latest_charge") or {}).get("transfer")
        if isinstance(transfer, dict):
            transfer = transfer.get("id")
        if not transfer:
            raise ProviderError("The payment has no transfer to a connected account.", code="no_transfer")
        reversal_params: TransferReversalCreateParams = {"amount": amount_minor}
        reversal = self._call(
            self.client.v1.transfers.reversals.create,
            transfer,
            params=reversal_params,
            options={"idempotency_key": idempotency_key},
        )
        return reversal.id

    def payment_metadata(self, reference: str) -> dict[str, str]:
        intent = _plain(self._call(self.client.v1.payment_intents.retrieve, reference))
        return dict(intent.get("metadata") or {})

    # --- webhooks ----------------------------------------------------------------------------------

    @staticmethod
    def webhook_verify(*, payload: bytes, signature: str, secret: str, tolerance: int = 300) -> dict:
        """The event, if its signature is valid and recent; ProviderError otherwise."""
        try:
            event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            raise ProviderError("Invalid or stale webhook signature.", code="invalid_signature") from None
        except ValueError:
            raise ProviderError("Malformed webhook payload.", code="invalid_payload") from None
        # The SDK refuses timestamps older than the tolerance but not ones in the future: a delivery signed
        # far ahead would stay replayable for that long. Fresh means within the tolerance either way.
        if _signed_at(signature) > time.time() + tolerance:
            raise ProviderError("Invalid or stale webhook signature.", code="invalid_signature")
        return event.to_dict()

    @staticmethod
    def event_from_webhook(event: dict) -> ProviderEvent | None:
        """Normalise a Stripe event; None for types the product does not act on."""
        kind = event.get("type", "")
        obj = (event.get("data") or {}).get("object") or {}
        created = datetime.fromtimestamp(event.get("created") or time.time(), tz=UTC).date()
        if kind == "payment_intent.succeeded":
            return ProviderEvent("charge.succeeded", obj.get("id", ""), created, metadata=obj.get("metadata") or {})
        if kind == "payment_intent.payment_failed":
            error = obj.get("last_payment_error") or {}
            return ProviderEvent(
                "charge.failed",
                obj.get("id", ""),
                created,
                decline_code=error.get("decline_code") or error.get("code") or "failed",
                metadata=obj.get("metadata") or {},
            )
        if kind in ("refund.updated", "refund.failed"):
            status = obj.get("status")
            if status not in ("succeeded", "failed", "canceled"):
                return None  # still pending: the refund's creation recorded that already
            return ProviderEvent(
                "refund.succeeded" if status == "succeeded" else "refund.failed",
                obj.get("id", ""),
                created,
                decline_code=obj.get("failure_reason") or ("" if status == "succeeded" else status),
                metadata=obj.get("metadata") or {},
            )
        if kind in ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"):
            status = DISPUTE_STATUS.get(obj.get("status") or "")
            payment = obj.get("payment_intent") or obj.get("charge") or ""
            if status is None or not payment:
                return None
            return ProviderEvent(
                "dispute",
                obj.get("id", ""),
                _day(obj.get("created"), created) if kind == "charge.dispute.created" else created,
                charge_references=(payment,),
                status=status,
                amount_minor=int(obj.get("amount") or 0),
                currency=(obj.get("currency") or "").upper(),
                reason=obj.get("reason") or "",
                due_on=_day((obj.get("evidence_details") or {}).get("due_by"), created) or None,
                account=event.get("account") or "",
            )
        if kind in PAYOUT_EVENTS:
            arrival = obj.get("arrival_date")
            day = datetime.fromtimestamp(arrival, tz=UTC).date() if arrival else created
            return ProviderEvent(kind, obj.get("id", ""), day, account=event.get("account") or "")
        if kind in ("account.updated", "account.external_account.updated"):  # e.g. a bank account errored
            reference = obj.get("id", "")
            account = event.get("account") or reference
            return ProviderEvent("account.updated", account, created, account=account)
        return None
