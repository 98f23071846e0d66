"""Collecting charges: attempts, outcomes, retries and the charge state machine (COL-1..6, RET-1..5, PAY-2/3).

Never twice: an attempt row (unique per charge and number, carrying the idempotency key) is committed
*before* the provider is called, and the provider call uses that key. An attempt whose outcome is
unknown (timeout, 5xx, a crash mid-call) blocks every new attempt on the charge until it is resolved by
asking the provider, which, thanks to the key, can only ever report one payment for it.

The same code collects client charges (agency schema, destination charges to the agency's connected
account) and agency charges (public schema, the platform's own account).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing.base_models import (
    ALLOWED_TRANSITIONS,
    COLLECTIBLE,
    FAILED_OUTCOMES,
    UNRESOLVED_OUTCOMES,
    AbstractAttempt,
    AbstractCharge,
    AttemptKind,
    AttemptOutcome,
    ChargeStatus,
)
from billing.ledger import agency_payment_apply, payment_apply
from billing.models import Charge, ChargeEvent, PaymentMethod
from billing.platform.models import AgencyCharge, AgencyChargeEvent, AgencyPaymentMethod, Payout
from billing.providers import get_provider
from billing.providers.base import ChargeRequest, ChargeResult, Outcome, PaymentProvider, ProviderEvent
from billing.selectors import billing_settings
from core.calendar import retry_dates
from core.errors import ApplicationError
from tenants.selectors import current_agency

logger = logging.getLogger(__name__)

MAX_FAILED_ATTEMPTS = 3  # RET-3


class IllegalTransition(ApplicationError):
    code = "illegal_transition"
    status = 409


class AttemptUnresolved(ApplicationError):
    code = "attempt_unresolved"
    status = 409


@dataclass
class CollectionSummary:
    attempted: int = 0
    paid: int = 0
    pending: int = 0
    failed: int = 0
    uncollectable: int = 0
    unknown: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, charge: AbstractCharge, attempt: AbstractAttempt | None) -> None:
        self.statuses[charge.status] = self.statuses.get(charge.status, 0) + 1
        if attempt is None:
            if charge.status == ChargeStatus.UNCOLLECTABLE:
                self.uncollectable += 1
            return
        self.attempted += 1
        outcome = attempt.outcome
        if outcome == AttemptOutcome.SUCCEEDED:
            self.paid += 1
        elif outcome == AttemptOutcome.PENDING:
            self.pending += 1
        elif outcome in UNRESOLVED_OUTCOMES:
            self.unknown += 1
        else:
            self.failed += 1
            if charge.status == ChargeStatus.UNCOLLECTABLE:
                self.uncollectable += 1


# --- who pays, and where the money goes -------------------------------------------------------------


@dataclass(frozen=True)
class Payer:
    kind: str  # client | agency
    customer: str
    payment_method: PaymentMethod | AgencyPaymentMethod | None
    destination: str | None
    retries_enabled: bool
    schema_name: str


def _destination(charge: AbstractCharge) -> str | None:
    """Client charges go to the agency's connected account (PAY-1); agency charges stay on the platform."""
    if not isinstance(charge, Charge):
        return None
    agency = current_agency()
    return (agency.connected_account_id or None) if agency else None


def _retries_enabled(charge: AbstractCharge) -> bool:
    return billing_settings().retries_enabled if isinstance(charge, Charge) else True


def _payer(charge: AbstractCharge) -> Payer:
    if isinstance(charge, Charge):
        client = charge.client
        method = PaymentMethod.objects.filter(client=client, removed_at__isnull=True).first()
        return Payer("client", client.provider_customer_id, method, _destination(charge),
                     _retries_enabled(charge), connection.schema_name)  # type: ignore[attr-defined]
    assert isinstance(charge, AgencyCharge)
    method = AgencyPaymentMethod.objects.filter(agency=charge.agency, removed_at__isnull=True).first()
    return Payer("agency", charge.agency.platform_customer_id, method, None, True, "public")


def _event_model(charge: AbstractCharge):
    return ChargeEvent if isinstance(charge, Charge) else AgencyChargeEvent


def _request(charge: AbstractCharge, attempt: AbstractAttempt, payer: Payer) -> ChargeRequest:
    return ChargeRequest(
        amount_minor=attempt.amount_minor, currency=charge.currency, customer=payer.customer,
        payment_method=attempt.payment_method_reference, idempotency_key=attempt.idempotency_key,
        business_date=attempt.attempted_on, destination=payer.destination,
        description=f"Invoice {charge.invoice.number}",  # type: ignore[attr-defined]
        metadata={"schema": payer.schema_name, "kind": payer.kind, "charge": str(charge.public_id),
                  "attempt": attempt.idempotency_key, "invoice": charge.invoice.number})  # type: ignore[attr-defined]


# --- the state machine ----------------------------------------------------------------------------


def _transition(charge: AbstractCharge, to_status: str, *, reason: str, today: date, actor: str = "",
                **fields) -> AbstractCharge:
    """Move a locked charge to `to_status`, writing its history row in the same transaction."""
    from_status = charge.status
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise IllegalTransition(f"A charge cannot go from {ChargeStatus(from_status).label} to "
                                f"{ChargeStatus(to_status).label}.")
    updated = type(charge).objects.filter(pk=charge.pk, status=from_status).update(status=to_status, **fields)
    if updated != 1:
        raise IllegalTransition("The charge changed while it was being updated; nothing was done.")
    charge.status = to_status
    for name, value in fields.items():
        setattr(charge, name, value)
    _event_model(charge).objects.create(charge=charge, from_status=from_status, to_status=to_status, reason=reason,
                                        actor=actor, business_date=today)
    if isinstance(charge, Charge):
        from billing.notices import charge_notices

        charge_notices(charge, from_status=from_status, to_status=to_status, today=today)
    return charge


def _locked(charge: AbstractCharge) -> AbstractCharge:
    return type(charge).objects.select_for_update().select_related("invoice").get(pk=charge.pk)


def _post_payment(charge: AbstractCharge, today: date, reference: str) -> None:
    if isinstance(charge, Charge):
        payment_apply(client=charge.client, amount_minor=charge.amount_minor, currency=charge.currency,
                      occurred_on=today, reference=reference or f"charge {charge.public_id}")
    else:
        assert isinstance(charge, AgencyCharge)
        agency_payment_apply(agency=charge.agency, amount_minor=charge.amount_minor, currency=charge.currency,
                             occurred_on=today, reference=reference or f"charge {charge.public_id}")


def _failed_count(charge: AbstractCharge) -> int:
    return charge.attempts.filter(outcome__in=FAILED_OUTCOMES).count()  # type: ignore[attr-defined]


def _next_retry(charge: AbstractCharge, failed: int, today: date) -> date | None:
    """RET-2: the 5th weekday after the billing date for the 2nd attempt, the 10th for the 3rd."""
    candidates = [d for d in retry_dates(charge.billing_date)[failed - 1:] if d > today]
    return candidates[0] if candidates else None


def _apply_outcome(charge: AbstractCharge, attempt: AbstractAttempt, result: ChargeResult, today: date,
                   actor: str = "") -> None:
    """Record a provider result on a locked charge and its attempt (conditional: only once)."""
    outcome = {Outcome.SUCCEEDED: AttemptOutcome.SUCCEEDED, Outcome.PENDING: AttemptOutcome.PENDING,
               Outcome.DECLINED: AttemptOutcome.DECLINED, Outcome.UNKNOWN: AttemptOutcome.UNKNOWN}[result.outcome]
    updated = type(attempt).objects.filter(pk=attempt.pk, outcome__in=UNRESOLVED_OUTCOMES).update(
        outcome=outcome, gateway_reference=result.reference or attempt.gateway_reference,
        decline_code=result.decline_code, message=result.message[:240],
        resolved_at=None if outcome == AttemptOutcome.UNKNOWN else timezone.now())
    if not updated:
        return  # another process recorded this attempt's outcome first
    attempt.outcome = outcome
    attempt.gateway_reference = result.reference or attempt.gateway_reference
    attempt.decline_code = result.decline_code
    if outcome == AttemptOutcome.UNKNOWN:
        return
    if outcome == AttemptOutcome.SUCCEEDED:
        _mark_paid(charge, attempt, today, actor)
    elif outcome == AttemptOutcome.PENDING:
        if charge.status != ChargeStatus.PENDING:
            _transition(charge, ChargeStatus.PENDING, reason=f"Bank debit submitted (attempt {attempt.number})",
                        today=today, actor=actor, next_retry_on=None)
    else:
        _mark_failed(charge, attempt, today, actor)


def _mark_paid(charge: AbstractCharge, attempt: AbstractAttempt, today: date, actor: str = "") -> None:
    if charge.status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT):
        return
    _transition(charge, ChargeStatus.PAID, reason=f"Payment received (attempt {attempt.number})", today=today,
                actor=actor, paid_on=today, paid_reference=attempt.gateway_reference, next_retry_on=None)
    _post_payment(charge, today, attempt.gateway_reference)
    if isinstance(charge, Charge):
        # A payout reported before this payment (events out of order) still moves it to Paid Out.
        for payout in Payout.objects.filter(account=_destination(charge) or "-", status="paid"):
            if _payout_covers(payout, charge):
                _paid_out(charge, payout)
                break


def _payout_covers(payout: Payout, charge: AbstractCharge) -> bool:
    """The sandbox names the charges of a payout; for Stripe, a payout carries what was available when it
    was made, so a charge paid before the payout's arrival date is in it."""
    if payout.charge_references:
        return charge.paid_reference in payout.charge_references
    return charge.paid_on is not None and charge.paid_on < payout.arrival_on


def _paid_out(charge: AbstractCharge, payout: Payout) -> int:
    if charge.status != ChargeStatus.PAID:
        return 0
    _transition(charge, ChargeStatus.PAID_OUT, reason=f"Payout {payout.reference} paid", today=payout.arrival_on,
                payout_reference=payout.reference, paid_out_on=payout.arrival_on)
    return 1


def _mark_failed(charge: AbstractCharge, attempt: AbstractAttempt, today: date, actor: str = "") -> None:
    retries_enabled = _retries_enabled(charge)
    failed = _failed_count(charge)
    why = f"Attempt {attempt.number} failed ({attempt.decline_code or 'declined'})"
    if failed >= MAX_FAILED_ATTEMPTS or not retries_enabled:
        _transition(charge, ChargeStatus.UNCOLLECTABLE, today=today, actor=actor, next_retry_on=None,
                    reason=why + (": retries are off" if not retries_enabled else f": {failed} failures"))
        return
    _transition(charge, ChargeStatus.RETRYING, reason=why, today=today, actor=actor,
                next_retry_on=_next_retry(charge, failed, today))


# --- attempts -------------------------------------------------------------------------------------


def attempts_resolve(charge: AbstractCharge, *, today: date, provider: PaymentProvider | None = None) -> bool:
    """Settle every attempt of the charge whose outcome is not known, by asking the provider.

    Returns True when nothing is left unresolved. An attempt the provider never received is sent again
    with its own idempotency key: that is the same attempt, not a new one.
    """
    unresolved = list(charge.attempts.filter(outcome__in=UNRESOLVED_OUTCOMES).order_by("number"))  # type: ignore[attr-defined]
    if not unresolved:
        return True  # the common case: no provider call, no payer lookup
    provider = provider or get_provider()
    payer = _payer(charge)
    for attempt in unresolved:
        request = _request(charge, attempt, payer)
        try:
            result = provider.charge_lookup(request)
            if result is None:
                result = provider.charge_create(request)
        except Exception as exc:  # noqa: BLE001 - any provider failure leaves the attempt unknown
            logger.warning("could not resolve attempt %s: %s", attempt.idempotency_key, exc)
            return False
        with transaction.atomic():
            locked = _locked(charge)
            _apply_outcome(locked, attempt, result, today)
        if result.outcome == Outcome.UNKNOWN:
            return False
    return True


def charge_attempt(charge: AbstractCharge, *, today: date, kind: str = AttemptKind.AUTOMATIC, actor: str = "",
                   provider: PaymentProvider | None = None) -> AbstractAttempt | None:
    """Make one collection attempt on a charge (COL-2/3/4, RET-1..4). Returns the attempt, or None when no
    call was made (no payment method → Uncollectable at once; nothing to collect)."""
    provider = provider or get_provider()
    if not attempts_resolve(charge, today=today, provider=provider):
        raise AttemptUnresolved("An earlier attempt's outcome is still unknown; it must be resolved first.")
    attempt_model = charge.attempts.model  # type: ignore[attr-defined]
    with transaction.atomic():
        charge = _locked(charge)
        if charge.status not in COLLECTIBLE:
            raise IllegalTransition(f"A charge that is {ChargeStatus(charge.status).label} cannot be collected.")
        payer = _payer(charge)
        if charge.amount_minor == 0:
            _transition(charge, ChargeStatus.PAID, reason="Nothing to collect", today=today, actor=actor,
                        paid_on=today, next_retry_on=None)
            return None
        if payer.payment_method is None:
            # COL-4: no payment method → Uncollectable at once, no retries.
            if charge.status != ChargeStatus.UNCOLLECTABLE:
                _transition(charge, ChargeStatus.UNCOLLECTABLE, reason="No payment method on file", today=today,
                            actor=actor, next_retry_on=None)
            return None
        number = (charge.attempts.aggregate(n=Max("number"))["n"] or 0) + 1  # type: ignore[attr-defined]
        attempt = attempt_model.objects.create(
            charge=charge, number=number, kind=kind, attempted_on=today, amount_minor=charge.amount_minor,
            idempotency_key=f"{payer.kind[:2]}-{charge.public_id.hex}-{number}",
            payment_method_reference=payer.payment_method.reference)
    request = _request(charge, attempt, payer)
    try:
        result = provider.charge_create(request)
    except Exception as exc:  # noqa: BLE001 - a timeout or 5xx: the money may or may not have moved
        logger.warning("charge attempt %s outcome unknown: %s", attempt.idempotency_key, exc)
        result = ChargeResult(Outcome.UNKNOWN, message=str(exc)[:240])
    with transaction.atomic():
        charge = _locked(charge)
        _apply_outcome(charge, attempt, result, today, actor)
    attempt.refresh_from_db()
    return attempt


def collect_due(*, today: date, provider: PaymentProvider | None = None) -> CollectionSummary:
    """Every client charge of the current agency that is due today: first attempts on their due date,
    automatic retries on their retry date (RET-2). Also resolves attempts left unknown."""
    provider = provider or get_provider()
    summary = CollectionSummary()
    for charge in Charge.objects.filter(attempts__outcome__in=UNRESOLVED_OUTCOMES).distinct():
        attempts_resolve(charge, today=today, provider=provider)
    due = list(Charge.objects.filter(status=ChargeStatus.SCHEDULED, due_on__lte=today).order_by("id")) + list(
        Charge.objects.filter(status=ChargeStatus.RETRYING, next_retry_on__lte=today).order_by("id"))
    for charge in due:
        try:
            attempt = charge_attempt(charge, today=today, provider=provider)
        except (AttemptUnresolved, IllegalTransition) as exc:
            logger.info("charge %s skipped: %s", charge.public_id, exc.message)
            continue
        charge.refresh_from_db()
        summary.count(charge, attempt)
    return summary


def charge_retry_manual(charge: AbstractCharge, *, today: date, actor: str,
                        provider: PaymentProvider | None = None) -> AbstractAttempt | None:
    """RET-4: a manual retry of a Retrying or Uncollectable charge, run by billing support."""
    if charge.status not in (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE):
        raise IllegalTransition(f"Only a Retrying or Uncollectable charge can be retried; this one is "
                                f"{ChargeStatus(charge.status).label}.",
                                fields={"charge": ["This charge cannot be retried."]})
    return charge_attempt(charge, today=today, kind=AttemptKind.MANUAL, actor=actor, provider=provider)


def charge_mark_agency_invoiced(charge: AbstractCharge, *, today: date, actor: str, reason: str) -> None:
    with transaction.atomic():
        locked = _locked(charge)
        if locked.status in COLLECTIBLE:
            _transition(locked, ChargeStatus.AGENCY_INVOICED, reason=reason, today=today, actor=actor,
                        next_retry_on=None)


# --- provider events (webhooks, sandbox settlement and payouts) ----------------------------------


def _attempt_for(reference: str, metadata: dict[str, str]):
    from billing.models import ChargeAttempt
    from billing.platform.models import AgencyChargeAttempt

    model = AgencyChargeAttempt if metadata.get("kind") == "agency" else ChargeAttempt
    key = metadata.get("attempt")
    if key:
        found = model.objects.filter(idempotency_key=key).select_related("charge").first()
        if found:
            return found
    return model.objects.filter(gateway_reference=reference).select_related("charge").first() if reference else None


def provider_event_apply(event: ProviderEvent) -> str:
    """Apply a settlement or payout in the current schema. Harmless when repeated or out of order:
    outcomes only move forward, and a charge already Paid/Paid Out stays so."""
    if event.kind in ("charge.succeeded", "charge.failed"):
        attempt = _attempt_for(event.reference, event.metadata)
        if attempt is None:
            return "unknown attempt"
        with transaction.atomic():
            charge = _locked(attempt.charge)
            locked_attempt = type(attempt).objects.select_for_update().get(pk=attempt.pk)
            if event.kind == "charge.succeeded":
                if locked_attempt.outcome in (*UNRESOLVED_OUTCOMES, AttemptOutcome.PENDING):
                    type(attempt).objects.filter(pk=attempt.pk).update(
                        outcome=AttemptOutcome.SUCCEEDED, gateway_reference=event.reference,
                        resolved_at=timezone.now())
                    locked_attempt.outcome = AttemptOutcome.SUCCEEDED
                    locked_attempt.gateway_reference = event.reference
                    _mark_paid(charge, locked_attempt, event.occurred_on)
                return "paid"
            if locked_attempt.outcome in (*UNRESOLVED_OUTCOMES, AttemptOutcome.PENDING):
                outcome = (AttemptOutcome.SETTLEMENT_FAILED if locked_attempt.outcome == AttemptOutcome.PENDING
                           else AttemptOutcome.DECLINED)
                type(attempt).objects.filter(pk=attempt.pk).update(
                    outcome=outcome, gateway_reference=event.reference, decline_code=event.decline_code,
                    resolved_at=timezone.now())
                locked_attempt.outcome = outcome
                locked_attempt.decline_code = event.decline_code
                if charge.status in (ChargeStatus.PENDING, ChargeStatus.SCHEDULED, ChargeStatus.RETRYING):
                    _mark_failed(charge, locked_attempt, event.occurred_on)  # COL-3: counts as a failed attempt
            return "failed"
    if event.kind in ("payout.paid", "payout.failed"):
        payout, _ = Payout.objects.get_or_create(
            reference=event.reference, defaults={"account": event.account, "arrival_on": event.occurred_on,
                                                 "status": event.kind.split(".")[1],
                                                 "charge_references": list(event.charge_references)})
        if payout.status != "paid":
            return "payout failed"
        moved = 0
        for charge in Charge.objects.filter(status=ChargeStatus.PAID):
            if _payout_covers(payout, charge):
                with transaction.atomic():
                    moved += _paid_out(_locked(charge), payout)
        return f"{moved} paid out"
    return "ignored"
