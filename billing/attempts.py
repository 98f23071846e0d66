"""Collection attempts on one charge (COL-2..4, RET-1..4): making one, recording its outcome, and resolving
attempts whose outcome is not known.

Never twice: an attempt row (unique per charge and number, carrying the idempotency key) is committed
*before* the provider is called, and the provider call uses that key. An attempt whose outcome is
unknown (timeout, 5xx, a crash mid-call) blocks every new attempt on the charge until it is resolved by
asking the provider, which, thanks to the key, can only ever report one payment for it.

The same code collects client charges (agency schema, destination charges to the agency's connected
account) and agency charges (public schema, the platform's own account).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing.base_models import AbstractAttempt, AbstractCharge
from billing.charges import IllegalTransition, TransitionEffects, charge_locked, charge_transition
from billing.dunning import client_overdue_refresh
from billing.ledger import agency_payment_apply, payment_apply
from billing.models import Charge, PaymentMethod
from billing.payouts import charge_destination, charge_paid_out, payout_for, payouts_lock
from billing.platform.models import AgencyCharge, AgencyPaymentMethod
from billing.providers import get_provider
from billing.providers.base import ChargeRequest, ChargeResult, Outcome, PaymentProvider
from billing.selectors import billing_settings
from billing.statuses import (
    COLLECTIBLE,
    FAILED_OUTCOMES,
    LATEST_ATTEMPT_UNKNOWN,
    UNRESOLVED_OUTCOMES,
    AttemptKind,
    AttemptOutcome,
    ChargeStatus,
)
from core.calendar import retry_dates
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

MAX_FAILED_ATTEMPTS = 3  # RET-3


class AttemptUnresolved(ApplicationError):
    code = "attempt_unresolved"
    status = 409


@dataclass(frozen=True)
class Payer:
    kind: str  # client | agency
    customer: str
    payment_method: PaymentMethod | AgencyPaymentMethod | None
    destination: str | None
    retries_enabled: bool
    schema_name: str


def _retries_enabled(charge: AbstractCharge) -> bool:
    return billing_settings().retries_enabled if isinstance(charge, Charge) else True


def payer_of(charge: AbstractCharge) -> Payer:
    if isinstance(charge, Charge):
        client = charge.client
        method = PaymentMethod.objects.filter(client=client, removed_at__isnull=True).first()
        return Payer(
            "client",
            client.provider_customer_id,
            method,
            charge_destination(charge),
            _retries_enabled(charge),
            connection.schema_name,
        )  # type: ignore[attr-defined]
    assert isinstance(charge, AgencyCharge)
    method = AgencyPaymentMethod.objects.filter(agency=charge.agency, removed_at__isnull=True).first()
    return Payer("agency", charge.agency.platform_customer_id, method, None, True, "public")


def charge_request(charge: AbstractCharge, attempt: AbstractAttempt, payer: Payer) -> ChargeRequest:
    return ChargeRequest(
        amount_minor=attempt.amount_minor,
        currency=charge.currency,
        customer=payer.customer,
        payment_method=attempt.payment_method_reference,
        idempotency_key=attempt.idempotency_key,
        business_date=attempt.attempted_on,
        destination=payer.destination,
        description=f"Invoice {charge.invoice.number}",  # type: ignore[attr-defined]
        metadata={
            "schema": payer.schema_name,
            "kind": payer.kind,
            "charge": str(charge.public_id),
            "attempt": attempt.idempotency_key,
            "invoice": charge.invoice.number,
        },
    )  # type: ignore[attr-defined]


def _payment_record(charge: AbstractCharge, today: date, reference: str) -> None:
    if isinstance(charge, Charge):
        payment_apply(
            client=charge.client,
            amount_minor=charge.amount_minor,
            currency=charge.currency,
            occurred_on=today,
            reference=reference or f"charge {charge.public_id}",
        )
        # Paying clears the overdue flag once the account no longer meets DUN-1.
        client_overdue_refresh(client=charge.client, today=today)
    else:
        assert isinstance(charge, AgencyCharge)
        agency_payment_apply(
            agency=charge.agency,
            amount_minor=charge.amount_minor,
            currency=charge.currency,
            occurred_on=today,
            reference=reference or f"charge {charge.public_id}",
        )


def _failed_count(charge: AbstractCharge) -> int:
    return charge.attempts.filter(outcome__in=FAILED_OUTCOMES).count()  # type: ignore[attr-defined]


def _next_retry(charge: AbstractCharge, failed: int, today: date) -> date | None:
    """RET-2: the 5th weekday after the billing date for the 2nd attempt, the 10th for the 3rd."""
    candidates = [d for d in retry_dates(charge.billing_date)[failed - 1 :] if d > today]
    return candidates[0] if candidates else None


def attempt_outcome_record(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    result: ChargeResult,
    today: date,
    actor: str = "",
    moves: TransitionEffects | None = None,
    retries_enabled: bool | None = None,
) -> None:
    """Record a provider result on a locked charge and its attempt (conditional: only once). `attempt` is the
    charge's latest: a new attempt is never made while one is unresolved."""
    outcome = {
        Outcome.SUCCEEDED: AttemptOutcome.SUCCEEDED,
        Outcome.PENDING: AttemptOutcome.PENDING,
        Outcome.DECLINED: AttemptOutcome.DECLINED,
        Outcome.UNKNOWN: AttemptOutcome.UNKNOWN,
    }[result.outcome]
    updated = (
        type(attempt)
        .objects.filter(pk=attempt.pk, outcome__in=UNRESOLVED_OUTCOMES)
        .update(
            outcome=outcome,
            gateway_reference=result.reference or attempt.gateway_reference,
            decline_code=result.decline_code,
            message=result.message[:240],
            resolved_at=None if outcome == AttemptOutcome.UNKNOWN else timezone.now(),
        )
    )
    if not updated:
        return  # another process recorded this attempt's outcome first
    attempt.outcome = outcome
    attempt.gateway_reference = result.reference or attempt.gateway_reference
    attempt.decline_code = result.decline_code
    if outcome == AttemptOutcome.UNKNOWN:
        return
    if outcome == AttemptOutcome.SUCCEEDED:
        charge_mark_paid(charge, attempt, today, actor, moves=moves)
    elif outcome == AttemptOutcome.PENDING:
        if charge.status != ChargeStatus.PENDING:
            charge_transition(
                charge,
                ChargeStatus.PENDING,
                reason=f"Bank debit submitted (attempt {attempt.number})",
                today=today,
                actor=actor,
                attempt=attempt,
                moves=moves,
                next_retry_on=None,
            )
    else:
        charge_mark_failed(charge, attempt, today, actor, moves=moves, latest=attempt, retries_enabled=retries_enabled)


def charge_mark_paid(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    today: date,
    actor: str = "",
    moves: TransitionEffects | None = None,
) -> None:
    if charge.status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT):
        return
    if isinstance(charge, Charge):
        payouts_lock()
    charge_transition(
        charge,
        ChargeStatus.PAID,
        reason=f"Payment received (attempt {attempt.number})",
        today=today,
        actor=actor,
        moves=moves,
        paid_on=today,
        paid_reference=attempt.gateway_reference,
        next_retry_on=None,
    )
    _payment_record(charge, today, attempt.gateway_reference)
    if isinstance(charge, Charge):
        # A payout reported before this payment (events out of order) still moves it to Paid Out.
        payout = payout_for(charge)
        if payout is not None:
            charge_paid_out(charge, payout, moves=moves)


def charge_mark_failed(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    today: date,
    actor: str = "",
    moves: TransitionEffects | None = None,
    latest=LATEST_ATTEMPT_UNKNOWN,
    retries_enabled: bool | None = None,
) -> None:
    """`latest`: the charge's latest attempt when the caller knows it is `attempt` (saves a query per notice)."""
    retries_enabled = _retries_enabled(charge) if retries_enabled is None else retries_enabled
    failed = _failed_count(charge)
    why = f"Attempt {attempt.number} failed ({attempt.decline_code or 'declined'})"
    if failed >= MAX_FAILED_ATTEMPTS or not retries_enabled:
        charge_transition(
            charge,
            ChargeStatus.UNCOLLECTABLE,
            today=today,
            actor=actor,
            attempt=latest,
            moves=moves,
            next_retry_on=None,
            reason=why + (": retries are off" if not retries_enabled else f": {failed} failures"),
        )
        return
    charge_transition(
        charge,
        ChargeStatus.RETRYING,
        reason=why,
        today=today,
        actor=actor,
        attempt=latest,
        moves=moves,
        next_retry_on=_next_retry(charge, failed, today),
    )


def attempts_resolve(charge: AbstractCharge, *, today: date, provider: PaymentProvider | None = None) -> bool:
    """Settle every attempt of the charge whose outcome is not known, by asking the provider.

    Returns True when nothing is left unresolved. An attempt the provider never received is sent again
    with its own idempotency key: that is the same attempt, not a new one.
    """
    unresolved = list(charge.attempts.filter(outcome__in=UNRESOLVED_OUTCOMES).order_by("number"))  # type: ignore[attr-defined]
    if not unresolved:
        return True  # the common case: no provider call, no payer lookup
    provider = provider or get_provider()
    payer = payer_of(charge)
    for attempt in unresolved:
        request = charge_request(charge, attempt, payer)
        try:
            result = provider.charge_lookup(request)
            if result is None:
                result = provider.charge_create(request)
        except Exception as exc:  # noqa: BLE001 - any provider failure leaves the attempt unknown
            logger.warning("could not resolve attempt %s: %s", attempt.idempotency_key, exc)
            return False
        with transaction.atomic():
            locked = charge_locked(charge)
            attempt_outcome_record(locked, attempt, result, today)
        if result.outcome == Outcome.UNKNOWN:
            return False
    return True


def charge_attempt(
    charge: AbstractCharge,
    *,
    today: date,
    kind: str = AttemptKind.AUTOMATIC,
    actor: str = "",
    provider: PaymentProvider | None = None,
) -> AbstractAttempt | None:
    """Make one collection attempt on a charge (COL-2/3/4, RET-1..4). Returns the attempt, or None when no
    call was made (no payment method → Uncollectable at once; nothing to collect)."""
    provider = provider or get_provider()
    if not attempts_resolve(charge, today=today, provider=provider):
        raise AttemptUnresolved("An earlier attempt's outcome is still unknown; it must be resolved first.")
    attempt_model = charge.attempts.model  # type: ignore[attr-defined]
    with transaction.atomic():
        charge = charge_locked(charge)
        if charge.status not in COLLECTIBLE:
            raise IllegalTransition(f"A charge that is {ChargeStatus(charge.status).label} cannot be collected.")
        # Checked again under the lock: another process may have started an attempt since the check above.
        if charge.attempts.filter(outcome__in=UNRESOLVED_OUTCOMES).exists():  # type: ignore[attr-defined]
            raise AttemptUnresolved("An earlier attempt's outcome is still unknown; it must be resolved first.")
        payer = payer_of(charge)
        if charge.amount_minor == 0:
            charge_transition(
                charge,
                ChargeStatus.PAID,
                reason="Nothing to collect",
                today=today,
                actor=actor,
                paid_on=today,
                next_retry_on=None,
            )
            return None
        if payer.payment_method is None:
            # COL-4: no payment method → Uncollectable at once, no retries.
            if charge.status != ChargeStatus.UNCOLLECTABLE:
                charge_transition(
                    charge,
                    ChargeStatus.UNCOLLECTABLE,
                    reason="No payment method on file",
                    today=today,
                    actor=actor,
                    next_retry_on=None,
                )
            return None
        number = (charge.attempts.aggregate(n=Max("number"))["n"] or 0) + 1  # type: ignore[attr-defined]
        attempt = attempt_model.objects.create(
            charge=charge,
            number=number,
            kind=kind,
            attempted_on=today,
            amount_minor=charge.amount_minor,
            idempotency_key=f"{payer.kind[:2]}-{charge.public_id.hex}-{number}",
            payment_method_reference=payer.payment_method.reference,
        )
    request = charge_request(charge, attempt, payer)
    try:
        result = provider.charge_create(request)
    except Exception as exc:  # noqa: BLE001 - a timeout or 5xx: the money may or may not have moved
        logger.warning("charge attempt %s outcome unknown: %s", attempt.idempotency_key, exc)
        result = ChargeResult(Outcome.UNKNOWN, message=str(exc)[:240])
    with transaction.atomic():
        charge = charge_locked(charge)
        attempt_outcome_record(charge, attempt, result, today, actor)
    attempt.refresh_from_db()
    return attempt


def attempts_sweep(*, today: date, started_before: datetime, provider: PaymentProvider | None = None) -> dict:
    """The resolver run by the sweeper: settle client-charge attempts of the current agency that were left
    Started or Unknown (a worker killed mid-call, a timeout) and are older than `started_before`, by asking
    the provider. The day's collection resolves them too; this covers the days in between."""
    provider = provider or get_provider()
    stuck = Charge.objects.filter(
        attempts__outcome__in=UNRESOLVED_OUTCOMES, attempts__created_at__lt=started_before
    ).distinct()
    found = resolved = 0
    for charge in stuck:
        found += 1
        resolved += attempts_resolve(charge, today=today, provider=provider)
    return {"unresolved": found, "resolved": resolved}


def charge_retry_manual(
    charge: AbstractCharge, *, today: date, actor: str, provider: PaymentProvider | None = None
) -> AbstractAttempt | None:
    """RET-4: a manual retry of a Retrying or Uncollectable charge, run by billing support."""
    if charge.status not in (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE):
        raise IllegalTransition(
            f"Only a Retrying or Uncollectable charge can be retried; this one is {ChargeStatus(charge.status).label}.",
            fields={"charge": ["This charge cannot be retried."]},
        )
    return charge_attempt(charge, today=today, kind=AttemptKind.MANUAL, actor=actor, provider=provider)
