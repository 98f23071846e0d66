"""The payment-provider interface. Providers return normalised results; vendor SDKs stay inside their
own module (`stripe.py` is the only module importing `stripe`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # bank debit submitted, settlement awaited (COL-3)
    DECLINED = "declined"  # a definite failure: the money did not move
    UNKNOWN = "unknown"  # timeout, 5xx, connection lost: must be looked up before any new attempt
    # On-session only (COL-7): the cardholder must authenticate (3-D Secure) at `action_url`; the payment is
    # neither made nor failed until they do, or give up.
    REQUIRES_ACTION = "requires_action"


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: Outcome
    reference: str = ""
    decline_code: str = ""
    message: str = ""
    action_url: str = ""  # REQUIRES_ACTION: where the cardholder authenticates


@dataclass(frozen=True, slots=True)
class SavedPaymentMethod:
    reference: str
    kind: str  # card | sepa_debit | us_bank_account
    fingerprint: str
    brand: str = ""
    last4: str = ""

    @property
    def is_bank_debit(self) -> bool:
        return self.kind in {"sepa_debit", "us_bank_account"}


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    amount_minor: int
    currency: str
    customer: str
    payment_method: str
    idempotency_key: str
    business_date: date
    destination: str | None = None  # connected account for a destination charge (PAY-1)
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # The customer is present (the portal's Pay now): the payment may ask for authentication (3-D Secure) and
    # comes back to `return_url` afterwards. Off-session otherwise (autopay, retries), where it cannot (COL-7).
    on_session: bool = False
    return_url: str = ""


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """Something that happened at the provider after the call returned (settlement, payout, refund, dispute)."""

    # charge.succeeded | charge.failed | payout.<status> | account.updated | refund.succeeded | refund.failed |
    # dispute
    kind: str
    reference: str
    occurred_on: date
    decline_code: str = ""  # charge.failed: the decline code; refund.failed: the failure reason
    account: str = ""
    charge_references: tuple[str, ...] = ()  # payout: the charges it carried; dispute: the disputed payment
    metadata: dict[str, str] = field(default_factory=dict)
    # dispute: its state (a DisputeStatus value), amount, currency, reason and the day evidence is due by
    status: str = ""
    amount_minor: int = 0
    currency: str = ""
    reason: str = ""
    due_on: date | None = None


class RefundOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # bank-debit refund: settles (or fails) later, reported by webhook or the provider's day
    FAILED = "failed"  # refused or failed: the money did not go back


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Money back to the payment method that paid `payment_reference` (COR-1). `reverse_transfer`: for a
    destination charge, the transfer to the connected account is reversed by the same amount (PAY-1)."""

    payment_reference: str
    amount_minor: int
    currency: str
    idempotency_key: str
    business_date: date
    reverse_transfer: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundResult:
    outcome: RefundOutcome
    reference: str = ""
    failure_reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class ConnectedAccount:
    """A connected account as the processor reports it (ONB-2): what it may do and what it still needs."""

    reference: str
    details_submitted: bool
    transfers_enabled: bool  # destination charges and transfers may reach it
    payouts_enabled: bool
    currently_due: tuple[str, ...] = ()
    past_due: tuple[str, ...] = ()
    pending_verification: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # why a submitted requirement was refused, in the processor's words
    disabled_reason: str = ""
    current_deadline: date | None = None
    bank_last4: str = ""


@dataclass(frozen=True, slots=True)
class AccountLink:
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Held funds of one collected charge sent to the connected account (separate charges and transfers)."""

    amount_minor: int
    currency: str
    destination: str
    charge_reference: str  # the PaymentIntent the funds came from
    idempotency_key: str
    business_date: date
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderPayout:
    """A payout of a connected account and exactly what it carries: the PaymentIntents whose funds are in it, and
    earlier failed payouts whose returned funds it pays out again."""

    reference: str
    account: str
    status: str  # pending | in_transit | paid | failed | canceled
    amount_minor: int
    currency: str
    arrival_on: date
    failure_code: str = ""
    failure_message: str = ""
    charge_references: tuple[str, ...] = ()
    returned_payouts: tuple[str, ...] = ()


class ProviderError(Exception):
    """The provider refused a request that is not a charge outcome (bad token, unknown account)."""

    def __init__(self, message: str, code: str = "provider_error") -> None:
        super().__init__(message)
        self.code = code


class PaymentProvider(Protocol):
    name: str

    def customer_create(self, *, email: str, name: str, idempotency_key: str) -> str: ...

    def connected_account_create(self, *, name: str, email: str, idempotency_key: str) -> str: ...

    def payment_method_save(self, *, customer: str, token: str) -> SavedPaymentMethod: ...

    def charge_create(self, request: ChargeRequest) -> ChargeResult: ...

    def charge_lookup(self, request: ChargeRequest) -> ChargeResult | None:
        """The provider's truth about an attempt; None when the provider never received it."""
        ...

    def charge_cancel(self, request: ChargeRequest) -> ChargeResult | None:
        """Give up an attempt still waiting for the cardholder's authentication (COL-7), so it can no longer
        succeed; returns the attempt's final state (it may have succeeded just before), None if unknown."""
        ...

    def payment_method_setup(self, *, customer: str, token: str) -> SavedPaymentMethod:
        """Save a payment method for later off-session charges (a SetupIntent with Stripe, PAY-3)."""
        ...

    def connected_account_retrieve(self, *, account: str) -> ConnectedAccount: ...

    def account_link_create(self, *, account: str, refresh_url: str, return_url: str) -> AccountLink: ...

    def transfer_create(self, request: TransferRequest) -> str: ...

    def payout_retrieve(self, *, account: str, payout: str) -> ProviderPayout:
        """The payout and what it carries (reconciled through the account's balance transactions)."""
        ...

    def advance(self, *, today: date) -> list[ProviderEvent]:
        """Let provider-side time pass up to `today` (sandbox); a real provider reports by webhook."""
        ...

    def refund_create(self, request: RefundRequest) -> RefundResult:
        """Refund (part of) a payment. Raises on a transient failure: the caller resends with the same key."""
        ...

    def transfer_reverse(self, *, payment_reference: str, amount_minor: int, idempotency_key: str) -> str:
        """Take `amount_minor` of a destination charge back from the connected account (a lost dispute, COR-2);
        returns the reversal's reference."""
        ...

    def payment_metadata(self, reference: str) -> dict[str, str]:
        """The metadata the product put on a payment (its schema, charge and attempt), to route its disputes."""
        ...
