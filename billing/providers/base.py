"""The payment-provider interface. Providers return normalised results; vendor SDKs stay inside their
own module (`stripe.py` is the only module importing `stripe`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # bank debit submitted, settlement awaited (COL-3)
    DECLINED = "declined"  # a definite failure: the money did not move
    UNKNOWN = "unknown"  # timeout, 5xx, connection lost: must be looked up before any new attempt


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: Outcome
    reference: str = ""
    decline_code: str = ""
    message: str = ""


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


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """Something that happened at the provider after the call returned (settlement, payout)."""

    kind: str  # charge.succeeded | charge.failed | payout.paid | payout.failed
    reference: str
    occurred_on: date
    decline_code: str = ""
    account: str = ""
    charge_references: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


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

    def advance(self, *, today: date) -> list[ProviderEvent]:
        """Let provider-side time pass up to `today` (sandbox); a real provider reports by webhook."""
        ...
