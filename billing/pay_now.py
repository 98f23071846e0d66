"""Pay now (POR-1): the client pays an open charge from the portal. It is an attempt like any other (RET-4's
bookkeeping: numbered, recorded with its outcome and gateway reference, the charge moved by the state machine with
its notices), made by `billing.attempts.charge_attempt`.

Exactly once: the Pay now form carries a key of its own, which becomes the attempt's idempotency key (unique in the
database), so a double click or a resent form finds the attempt already made. A concurrent automatic retry of the
same charge waits for the charge's row lock and then finds the charge paid, or an attempt in flight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from django.db import transaction

from accounts.models import User, audit_record
from billing.attempts import charge_attempt
from billing.base_models import AbstractAttempt
from billing.models import Charge, ChargeAttempt, PaymentMethod
from billing.plain_words import PAYABLE
from billing.providers.base import PaymentProvider
from billing.statuses import AttemptKind, ChargeStatus
from clients.models import Client
from core.errors import ApplicationError

REQUEST_KEY = re.compile(r"^[0-9a-f]{32}$")


class ChargeNotPayable(ApplicationError):
    code = "charge_not_payable"
    status = 409


def open_charges(client: Client) -> list[Charge]:
    """The client's charges that Pay now can pay (failed ones: Retrying or Uncollectable), oldest first."""
    return list(
        Charge.objects.filter(client=client, status__in=PAYABLE).select_related("invoice").order_by("due_on", "id")
    )


def attempt_for_request(*, charge: Charge, request_key: str) -> ChargeAttempt | None:
    """The attempt a Pay now request already made, if it did (to answer a resent form with its outcome)."""
    if not REQUEST_KEY.match(request_key or ""):
        return None
    key = f"cl-{charge.public_id.hex}-{request_key}"
    return ChargeAttempt.objects.filter(charge=charge, idempotency_key=key).first()


@dataclass(frozen=True)
class PayNowResult:
    attempt: AbstractAttempt | None
    repeated: bool  # the same request was made before: its attempt, no new one


def charge_pay_now(
    *, charge: Charge, user: User, request_key: str, today: date, provider: PaymentProvider | None = None
) -> PayNowResult:
    """The client's own attempt on one of their open charges, with the payment method on file."""
    if not REQUEST_KEY.match(request_key or ""):
        raise ApplicationError("The form has expired; reload the page and try again.", code="request_key_invalid")
    earlier = attempt_for_request(charge=charge, request_key=request_key)
    if earlier is not None:
        return PayNowResult(earlier, repeated=True)
    if charge.status not in PAYABLE:
        words = "already paid" if charge.status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT) else "not open"
        raise ChargeNotPayable(f"This charge is {words}; there is nothing to pay now.")
    if not PaymentMethod.objects.filter(client=charge.client, removed_at__isnull=True).exists():
        raise ChargeNotPayable(
            "Add a payment method to pay this charge.", fields={"payment_method": ["No payment method on file."]}
        )
    attempt = charge_attempt(
        charge, today=today, kind=AttemptKind.CLIENT, actor=user.email, provider=provider, request_key=request_key
    )
    with transaction.atomic():
        audit_record(
            actor=user,
            action="charge.pay_now",
            obj=charge,
            after={
                "attempt": attempt.number if attempt else None,
                "outcome": attempt.outcome if attempt else "no attempt",
            },
        )
    return PayNowResult(attempt, repeated=False)
