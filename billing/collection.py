"""Collecting charges: attempts, outcomes, retries and the charge state machine (COL-1..6, RET-1..5, PAY-2/3).

Never twice: an attempt row (unique per charge and number, carrying the idempotency key) is committed
*before* the provider is called, and the provider call uses that key. An attempt whose outcome is
unknown (timeout, 5xx, a crash mid-call) blocks every new attempt on the charge until it is resolved by
asking the provider, which, thanks to the key, can only ever report one payment for it.

The same code collects client charges (agency schema, destination charges to the agency's connected
account) and agency charges (public schema, the platform's own account).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from billing.base_models import (
    ALLOWED_TRANSITIONS,
    COLLECTIBLE,
    FAILED_OUTCOMES,
    LATEST_ATTEMPT_UNKNOWN,
    UNRESOLVED_OUTCOMES,
    AbstractAttempt,
    AbstractCharge,
    AttemptKind,
    AttemptOutcome,
    ChargeStatus,
)
from billing.ledger import agency_payment_apply, payment_apply
from billing.models import Charge, ChargeEvent, PaymentMethod
from billing.outbound import payout_paid
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
    return _client_destination() if isinstance(charge, Charge) else None


def _client_destination() -> str | None:
    agency = current_agency()
    return (agency.connected_account_id or None) if agency else None


def _retries_enabled(charge: AbstractCharge) -> bool:
    return billing_settings().retries_enabled if isinstance(charge, Charge) else True


def _payer(charge: AbstractCharge) -> Payer:
    if isinstance(charge, Charge):
        client = charge.client
        method = PaymentMethod.objects.filter(client=client, removed_at__isnull=True).first()
        return Payer(
            "client",
            client.provider_customer_id,
            method,
            _destination(charge),
            _retries_enabled(charge),
            connection.schema_name,
        )  # type: ignore[attr-defined]
    assert isinstance(charge, AgencyCharge)
    method = AgencyPaymentMethod.objects.filter(agency=charge.agency, removed_at__isnull=True).first()
    return Payer("agency", charge.agency.platform_customer_id, method, None, True, "public")


def _event_model(charge: AbstractCharge):
    return ChargeEvent if isinstance(charge, Charge) else AgencyChargeEvent


def _request(charge: AbstractCharge, attempt: AbstractAttempt, payer: Payer) -> ChargeRequest:
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


# --- the state machine ----------------------------------------------------------------------------


class _Moves:
    """What charge moves write besides the charge row: the history row, the notices (NOT-4, NOT-6) and the
    outbound-webhook events. Gathered while a transaction moves one or many charges, written by `flush` in
    one INSERT per table (and one send task for all the notices) before that transaction commits, so a move
    and its history are still committed together or not at all. Every "only once" rule stays the database's:
    the notices' unique key (NOT-7) and the events' unique key decide what a rerun adds.

    The agency, its notice recipients and its webhook endpoints are read once per batch, not once per move."""

    def __init__(self) -> None:
        self.history: list = []
        self.notices: list = []
        self.events: dict[str, list[tuple[str, dict]]] = {}

    @functools.cached_property
    def agency(self):
        return current_agency()

    @functools.cached_property
    def recipients(self) -> list[str]:
        from billing.notices import agency_recipients

        return agency_recipients(self.agency)

    @functools.cached_property
    def endpoints(self) -> list:
        from integrations.services import endpoints_active

        return endpoints_active()

    def moved(
        self,
        charge: AbstractCharge,
        *,
        from_status: str,
        to_status: str,
        reason: str,
        actor: str,
        today: date,
        attempt=LATEST_ATTEMPT_UNKNOWN,
    ) -> None:
        self.history.append(
            _event_model(charge)(
                charge=charge,
                from_status=from_status,
                to_status=to_status,
                reason=reason,
                actor=actor,
                business_date=today,
            )
        )
        if not isinstance(charge, Charge):
            return
        from billing.notices import charge_notice_drafts
        from billing.outbound import charge_events

        self.notices += charge_notice_drafts(
            charge,
            from_status=from_status,
            to_status=to_status,
            today=today,
            attempt=attempt,
            agency=self.agency,
            recipients=lambda: self.recipients,
        )
        events = charge_events(charge, from_status=from_status, to_status=to_status, attempt=attempt)
        if events and self.endpoints:
            # Payloads are built now: a later move of the same charge in this batch must not change them.
            for kind, items in events:
                if any(endpoint.wants(kind) for endpoint in self.endpoints):
                    self.events.setdefault(kind, []).extend(items())

    def flush(self) -> None:
        from integrations.services import events_publish
        from notifications.services import notices_enqueue

        by_model: dict[type, list] = {}
        for row in self.history:
            by_model.setdefault(type(row), []).append(row)
        for model, rows in by_model.items():
            model.objects.bulk_create(rows)
        notices_enqueue(drafts=self.notices)
        for kind, items in self.events.items():
            events_publish(kind=kind, items=items, endpoints=self.endpoints)
        self.history, self.notices, self.events = [], [], {}


def _check_transition(from_status: str, to_status: str) -> None:
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise IllegalTransition(
            f"A charge cannot go from {ChargeStatus(from_status).label} to {ChargeStatus(to_status).label}."
        )


def _transition(
    charge: AbstractCharge,
    to_status: str,
    *,
    reason: str,
    today: date,
    actor: str = "",
    attempt=LATEST_ATTEMPT_UNKNOWN,
    moves: _Moves | None = None,
    **fields,
) -> AbstractCharge:
    """Move a locked charge to `to_status`, writing its history row in the same transaction: at once, or with
    the batch's other moves when `moves` is given (the caller flushes it before its transaction commits)."""
    from_status = charge.status
    _check_transition(from_status, to_status)
    with transaction.atomic(savepoint=False):
        updated = type(charge).objects.filter(pk=charge.pk, status=from_status).update(status=to_status, **fields)
        if updated != 1:
            raise IllegalTransition("The charge changed while it was being updated; nothing was done.")
        charge.status = to_status
        for name, value in fields.items():
            setattr(charge, name, value)
        recorder = moves or _Moves()
        recorder.moved(
            charge,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            actor=actor,
            today=today,
            attempt=attempt,
        )
        if moves is None:
            recorder.flush()
    return charge


def _charges_paid(paid: list[tuple[Charge, AbstractAttempt, ChargeResult]], today: date, moves: _Moves) -> None:
    """Move a batch of locked charges to Paid in one statement, each only from the status it was locked in
    (the same conditional update as `_transition`, set-based); their moves go to `moves`."""
    for charge, _, _ in paid:
        _check_transition(charge.status, ChargeStatus.PAID)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Charge._meta.db_table} AS c SET status = %s, paid_on = %s, paid_reference = v.reference, "
            "next_retry_on = NULL FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, from_status, reference) "
            "WHERE c.id = v.id AND c.status = v.from_status",
            [
                ChargeStatus.PAID,
                today,
                [c.pk for c, _, _ in paid],
                [c.status for c, _, _ in paid],
                [a.gateway_reference for _, a, _ in paid],
            ],
        )
        if cursor.rowcount != len(paid):
            raise IllegalTransition("A charge changed while it was being updated; nothing was done.")
    for charge, attempt, _ in paid:
        from_status = charge.status
        charge.status, charge.paid_on, charge.paid_reference = ChargeStatus.PAID, today, attempt.gateway_reference
        charge.next_retry_on = None
        moves.moved(
            charge,
            from_status=from_status,
            to_status=ChargeStatus.PAID,
            actor="",
            today=today,
            reason=f"Payment received (attempt {attempt.number})",
            attempt=attempt,
        )


def _locked(charge: AbstractCharge) -> AbstractCharge:
    return type(charge).objects.select_for_update().select_related("invoice").get(pk=charge.pk)


def _post_payment(charge: AbstractCharge, today: date, reference: str) -> None:
    if isinstance(charge, Charge):
        payment_apply(
            client=charge.client,
            amount_minor=charge.amount_minor,
            currency=charge.currency,
            occurred_on=today,
            reference=reference or f"charge {charge.public_id}",
        )
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


def _apply_outcome(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    result: ChargeResult,
    today: date,
    actor: str = "",
    moves: _Moves | None = None,
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
        _mark_paid(charge, attempt, today, actor, moves=moves)
    elif outcome == AttemptOutcome.PENDING:
        if charge.status != ChargeStatus.PENDING:
            _transition(
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
        _mark_failed(charge, attempt, today, actor, moves=moves, latest=attempt, retries_enabled=retries_enabled)


def _payouts_lock() -> None:
    """Serialize, within one agency, "a charge becomes Paid" with "a payout arrives" (held to the end of the
    transaction). Without it the two can run concurrently and neither sees the other: the charge is then
    credited to a later payout, or to none (found by the webhook storm test, R3)."""
    key = int.from_bytes(
        hashlib.sha256(f"payouts:{connection.schema_name}".encode()).digest()[:8],  # type: ignore[attr-defined]
        "big",
        signed=True,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _mark_paid(
    charge: AbstractCharge, attempt: AbstractAttempt, today: date, actor: str = "", moves: _Moves | None = None
) -> None:
    if charge.status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT):
        return
    if isinstance(charge, Charge):
        _payouts_lock()
    _transition(
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
    _post_payment(charge, today, attempt.gateway_reference)
    if isinstance(charge, Charge):
        # A payout reported before this payment (events out of order) still moves it to Paid Out.
        payout = _payout_for(charge)
        if payout is not None:
            _paid_out(charge, payout, moves=moves)


def _payout_covers(payout: Payout, charge: AbstractCharge) -> bool:
    """The sandbox names the charges of a payout; for Stripe, a payout carries what was available when it
    was made, so a charge paid before the payout's arrival date is in it."""
    if payout.charge_references:
        return charge.paid_reference in payout.charge_references
    return charge.paid_on is not None and charge.paid_on < payout.arrival_on


def _payout_for(charge: AbstractCharge) -> Payout | None:
    """The payout that carried a paid charge: the one that names it (sandbox), else the earliest paid payout
    to its account arriving after it was paid (Stripe). "Earliest" makes the answer the same whatever order
    the payout events arrived in: a later payout seen first does not keep charges an earlier one carried."""
    payouts = Payout.objects.filter(account=_destination(charge) or "-", status="paid").order_by(
        "arrival_on", "reference"
    )
    return next((payout for payout in payouts if _payout_covers(payout, charge)), None)


def _payout_correct(charge: AbstractCharge, payout: Payout) -> int:
    """A Paid Out charge credited to a later payout because an earlier payout's event came late: credit it
    to the right one. The status stays Paid Out; the correction is in the charge's history."""
    previous = charge.payout_reference
    updated = (
        type(charge)
        .objects.filter(pk=charge.pk, status=ChargeStatus.PAID_OUT)
        .update(payout_reference=payout.reference, paid_out_on=payout.arrival_on)
    )
    if updated:
        _event_model(charge).objects.create(
            charge=charge,
            from_status=ChargeStatus.PAID_OUT,
            to_status=ChargeStatus.PAID_OUT,
            reason=f"Payout {payout.reference} paid (was credited to {previous}: events arrived out of order)",
            business_date=payout.arrival_on,
        )
    return updated


def _paid_out(charge: AbstractCharge, payout: Payout, moves: _Moves | None = None) -> int:
    if charge.status != ChargeStatus.PAID:
        return 0
    _transition(
        charge,
        ChargeStatus.PAID_OUT,
        reason=f"Payout {payout.reference} paid",
        today=payout.arrival_on,
        moves=moves,
        payout_reference=payout.reference,
        paid_out_on=payout.arrival_on,
    )
    return 1


def _mark_failed(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    today: date,
    actor: str = "",
    moves: _Moves | None = None,
    latest=LATEST_ATTEMPT_UNKNOWN,
    retries_enabled: bool | None = None,
) -> None:
    """`latest`: the charge's latest attempt when the caller knows it is `attempt` (saves a query per notice)."""
    retries_enabled = _retries_enabled(charge) if retries_enabled is None else retries_enabled
    failed = _failed_count(charge)
    why = f"Attempt {attempt.number} failed ({attempt.decline_code or 'declined'})"
    if failed >= MAX_FAILED_ATTEMPTS or not retries_enabled:
        _transition(
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
    _transition(
        charge,
        ChargeStatus.RETRYING,
        reason=why,
        today=today,
        actor=actor,
        attempt=latest,
        moves=moves,
        next_retry_on=_next_retry(charge, failed, today),
    )


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
        charge = _locked(charge)
        if charge.status not in COLLECTIBLE:
            raise IllegalTransition(f"A charge that is {ChargeStatus(charge.status).label} cannot be collected.")
        # Checked again under the lock: another process may have started an attempt since the check above.
        if charge.attempts.filter(outcome__in=UNRESOLVED_OUTCOMES).exists():  # type: ignore[attr-defined]
            raise AttemptUnresolved("An earlier attempt's outcome is still unknown; it must be resolved first.")
        payer = _payer(charge)
        if charge.amount_minor == 0:
            _transition(
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
                _transition(
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


# --- collecting what is due, in batches --------------------------------------------------------------
#
# collect_due works in batches: one transaction locks a batch of charges and commits an attempt row for each
# (the idempotency key is the attempt's), then the provider is called for each attempt — by `concurrency`
# threads that only make HTTP calls, paced by the provider's rate limiter — and one transaction per batch of
# answers records the outcomes. Database work stays on the calling thread (its connection, its schema), so the
# per-charge cost is a share of a few queries instead of ~30 round trips, and threads never touch the database.


@dataclass
class _Context:
    today: date
    provider: PaymentProvider
    retries_enabled: bool
    category_order: list[str]
    destination: str | None
    schema_name: str


@dataclass
class _Started:
    charge: Charge
    attempt: AbstractAttempt
    payer: Payer


def _start_batch(charge_ids: list[int], ctx: _Context) -> tuple[list[_Started], list[tuple[Charge, None]]]:
    """Lock the charges, then for each: skip it if it moved on or has an unresolved attempt, settle it at once
    when there is nothing to collect (Paid) or no payment method (Uncollectable, COL-4), else commit an attempt."""
    from billing.models import ChargeAttempt

    started: list[_Started] = []
    settled: list[tuple[Charge, None]] = []
    moves = _Moves()
    with transaction.atomic():
        charges = list(
            Charge.objects.select_for_update(of=("self",))
            .select_related("invoice", "client")
            .filter(pk__in=charge_ids)
            .order_by("id")
        )
        methods = {
            m.client_id: m
            for m in PaymentMethod.objects.filter(client_id__in={c.client_id for c in charges}, removed_at__isnull=True)
        }
        attempts: dict[int, list[tuple[int, str]]] = {}
        for charge_id, number, outcome in ChargeAttempt.objects.filter(
            charge_id__in=[c.pk for c in charges]
        ).values_list("charge_id", "number", "outcome"):
            attempts.setdefault(charge_id, []).append((number, outcome))
        new: list[tuple[Charge, Payer, ChargeAttempt]] = []
        for charge in charges:
            previous = attempts.get(charge.pk, [])
            if charge.status not in COLLECTIBLE or any(o in UNRESOLVED_OUTCOMES for _, o in previous):
                logger.info("charge %s skipped: %s", charge.public_id, charge.status)
                continue
            # Without an earlier attempt the notices need not look for one.
            latest = LATEST_ATTEMPT_UNKNOWN if previous else None
            if charge.amount_minor == 0:
                _transition(
                    charge,
                    ChargeStatus.PAID,
                    reason="Nothing to collect",
                    today=ctx.today,
                    attempt=latest,
                    moves=moves,
                    paid_on=ctx.today,
                    next_retry_on=None,
                )
                settled.append((charge, None))
                continue
            method = methods.get(charge.client_id)
            if method is None:
                # COL-4: no payment method → Uncollectable at once, no retries.
                if charge.status != ChargeStatus.UNCOLLECTABLE:
                    _transition(
                        charge,
                        ChargeStatus.UNCOLLECTABLE,
                        reason="No payment method on file",
                        today=ctx.today,
                        attempt=latest,
                        moves=moves,
                        next_retry_on=None,
                    )
                settled.append((charge, None))
                continue
            payer = Payer(
                "client",
                charge.client.provider_customer_id,
                method,
                ctx.destination,
                ctx.retries_enabled,
                ctx.schema_name,
            )
            number = max((n for n, _ in previous), default=0) + 1
            new.append(
                (
                    charge,
                    payer,
                    ChargeAttempt(
                        charge=charge,
                        number=number,
                        kind=AttemptKind.AUTOMATIC,
                        attempted_on=ctx.today,
                        amount_minor=charge.amount_minor,
                        idempotency_key=f"cl-{charge.public_id.hex}-{number}",
                        payment_method_reference=method.reference,
                    ),
                )
            )
        ChargeAttempt.objects.bulk_create([attempt for _, _, attempt in new])
        moves.flush()
    started = [_Started(charge, attempt, payer) for charge, payer, attempt in new]
    return started, settled


def _call(item: _Started, provider: PaymentProvider) -> ChargeResult:
    try:
        return provider.charge_create(_request(item.charge, item.attempt, item.payer))
    except Exception as exc:  # noqa: BLE001 - a timeout or 5xx: the money may or may not have moved
        logger.warning("charge attempt %s outcome unknown: %s", item.attempt.idempotency_key, exc)
        return ChargeResult(Outcome.UNKNOWN, message=str(exc)[:240])


def _finish_batch(answers: list[tuple[_Started, ChargeResult]], ctx: _Context) -> list[tuple[Charge, AbstractAttempt]]:
    """Record a batch of provider answers in one transaction. Successes are written together (attempts, charges,
    payments); any other outcome goes through the one-charge state machine. Every move's history row, notices
    and outbound events are written together at the end (`_Moves`), in the same transaction."""
    from billing.ledger import payments_apply

    done: list[tuple[Charge, AbstractAttempt]] = []
    moves = _Moves()
    with transaction.atomic():
        locked = {
            c.pk: c
            for c in Charge.objects.select_for_update(of=("self",))
            .select_related("invoice", "client")
            .filter(pk__in=[item.charge.pk for item, _ in answers])
        }
        paid: list[tuple[Charge, AbstractAttempt, ChargeResult]] = []
        for item, result in answers:
            charge = locked[item.charge.pk]
            if result.outcome == Outcome.SUCCEEDED and charge.status in COLLECTIBLE:
                paid.append((charge, item.attempt, result))
            else:
                _apply_outcome(
                    charge, item.attempt, result, ctx.today, moves=moves, retries_enabled=ctx.retries_enabled
                )
            done.append((charge, item.attempt))
        if paid:
            recorded = _attempts_succeeded(paid)
            paid = [entry for entry in paid if entry[1].pk in recorded]
        if paid:
            _charges_paid(paid, ctx.today, moves)
            payments_apply(
                items=[
                    (
                        charge.client,
                        charge.amount_minor,
                        charge.currency,
                        charge.paid_reference or f"charge {charge.public_id}",
                    )
                    for charge, _, _ in paid
                ],
                occurred_on=ctx.today,
                category_order=ctx.category_order,
            )
            # A payout reported before these payments (events out of order): the same rule, under the same
            # lock, as one payment at a time (_mark_paid), so the carrier does not depend on timing.
            _payouts_lock()
            if Payout.objects.filter(account=ctx.destination or "-", status="paid").exists():
                for charge, _, _ in paid:
                    payout = _payout_for(charge)
                    if payout is not None:
                        _paid_out(charge, payout, moves=moves)
        moves.flush()
    return done


def _attempts_succeeded(paid: list[tuple[Charge, AbstractAttempt, ChargeResult]]) -> set[int]:
    """Mark the attempts succeeded in one statement, only those still unresolved (exactly once); their ids."""
    from billing.models import ChargeAttempt

    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ChargeAttempt._meta.db_table} AS a SET outcome = %s, gateway_reference = v.reference, "
            "decline_code = '', message = '', resolved_at = %s "
            "FROM unnest(%s::bigint[], %s::text[]) AS v(id, reference) "
            "WHERE a.id = v.id AND a.outcome = ANY(%s) RETURNING a.id",
            [
                AttemptOutcome.SUCCEEDED,
                now,
                [a.pk for _, a, _ in paid],
                [r.reference or a.gateway_reference for _, a, r in paid],
                list(UNRESOLVED_OUTCOMES),
            ],
        )
        recorded = {row[0] for row in cursor.fetchall()}
    for _, attempt, result in paid:
        if attempt.pk in recorded:
            attempt.outcome = AttemptOutcome.SUCCEEDED
            attempt.gateway_reference = result.reference or attempt.gateway_reference
            attempt.decline_code = ""
    return recorded


def _due_charge_ids(today: date, *, first_attempts: bool, retries: bool) -> list[int]:
    due: list[int] = []
    if first_attempts:
        due += (
            Charge.objects.filter(status=ChargeStatus.SCHEDULED, due_on__lte=today)
            .order_by("id")
            .values_list("id", flat=True)
        )
    if retries:
        due += (
            Charge.objects.filter(status=ChargeStatus.RETRYING, next_retry_on__lte=today)
            .order_by("id")
            .values_list("id", flat=True)
        )
    return due


def collect_due(
    *,
    today: date,
    provider: PaymentProvider | None = None,
    concurrency: int | None = None,
    batch_size: int = 50,
    first_attempts: bool = True,
    retries: bool = True,
) -> CollectionSummary:
    """Every client charge of the current agency that is due today: first attempts on their due date,
    automatic retries on their retry date (RET-2) — either or both. Also resolves attempts left unknown.

    `concurrency` (default: the provider's own, 1 for the sandbox) provider calls are in flight at once, each
    paced by the provider's rate limiter (billing/providers/ratelimit.py). Exactly once holds whatever the
    concurrency: a charge is in one batch, its attempt row is committed under the charge's lock before the
    call, the attempt's key is the idempotency key, and an outcome is recorded only on an unresolved attempt."""
    provider = provider or get_provider()
    summary = CollectionSummary()
    for charge in Charge.objects.filter(attempts__outcome__in=UNRESOLVED_OUTCOMES).distinct():
        attempts_resolve(charge, today=today, provider=provider)
    due = _due_charge_ids(today, first_attempts=first_attempts, retries=retries)
    if not due:
        return summary
    settings_row = billing_settings()
    ctx = _Context(
        today,
        provider,
        settings_row.retries_enabled,
        list(settings_row.category_order),
        _client_destination(),
        connection.schema_name,
    )  # type: ignore[attr-defined]
    workers = concurrency if concurrency is not None else getattr(provider, "concurrency", 1)
    batches = [due[start : start + batch_size] for start in range(0, len(due), batch_size)]
    if workers <= 1:
        for batch in batches:
            started, settled = _start_batch(batch, ctx)
            for charge, none in settled:
                summary.count(charge, none)
            for charge, attempt in _finish_batch([(item, _call(item, provider)) for item in started], ctx):
                summary.count(charge, attempt)
        return summary
    _collect_pipelined(batches, ctx, workers, summary)
    return summary


def _collect_pipelined(batches: list[list[int]], ctx: _Context, workers: int, summary: CollectionSummary) -> None:
    """Start batches while the callers have work, record answers as they come back; callers only do HTTP."""
    calls: queue.SimpleQueue[_Started | None] = queue.SimpleQueue()
    answers: queue.SimpleQueue[tuple[_Started, ChargeResult]] = queue.SimpleQueue()

    def caller() -> None:
        while (item := calls.get()) is not None:
            answers.put((item, _call(item, ctx.provider)))

    threads = [threading.Thread(target=caller, name=f"collect-{n}", daemon=True) for n in range(workers)]
    # The objects that exist now (Django's, the modules', the process's caches) are left out of cyclic garbage
    # collection until the run ends: a full collection scanned them all and stopped every thread for ~100 ms
    # at a time, and the callers' sends, held back and then released together, reached the provider bunched
    # up, over its per-second limit (docs/performance.md, P2). The run's own garbage is still collected.
    gc.freeze()
    for thread in threads:
        thread.start()
    pending = list(reversed(batches))
    in_flight = 0
    try:
        while pending or in_flight:
            # Keep about two waves of calls queued ahead of the callers, so none of them waits on us.
            while pending and in_flight < 2 * workers:
                started, settled = _start_batch(pending.pop(), ctx)
                for charge, none in settled:
                    summary.count(charge, none)
                for item in started:
                    calls.put(item)
                in_flight += len(started)
            if not in_flight:
                continue
            received = [answers.get()]
            while len(received) < 50:
                try:
                    received.append(answers.get_nowait())
                except queue.Empty:
                    break
            in_flight -= len(received)
            for charge, attempt in _finish_batch(received, ctx):
                summary.count(charge, attempt)
    finally:
        for _ in threads:
            calls.put(None)
        for thread in threads:
            thread.join()
        gc.unfreeze()


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


def charge_mark_agency_invoiced(charge: AbstractCharge, *, today: date, actor: str, reason: str) -> None:
    with transaction.atomic():
        locked = _locked(charge)
        if locked.status in COLLECTIBLE:
            _transition(
                locked, ChargeStatus.AGENCY_INVOICED, reason=reason, today=today, actor=actor, next_retry_on=None
            )


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


def _payout_apply(event: ProviderEvent) -> str:
    payout, _ = Payout.objects.get_or_create(
        reference=event.reference,
        defaults={
            "account": event.account,
            "arrival_on": event.occurred_on,
            "status": event.kind.split(".")[1],
            "charge_references": list(event.charge_references),
        },
    )
    if payout.status != "paid":
        return "payout failed"
    moved = corrected = 0
    # Paid charges it may carry, and Paid Out ones credited to a later payout that it may carry instead.
    candidates = Charge.objects.filter(
        Q(status=ChargeStatus.PAID) | Q(status=ChargeStatus.PAID_OUT, paid_out_on__gt=payout.arrival_on)
    )
    for charge in candidates:
        if not _payout_covers(payout, charge):
            continue
        locked = _locked(charge)
        carrier = _payout_for(locked)
        if carrier is None:
            continue
        if locked.status == ChargeStatus.PAID:
            moved += _paid_out(locked, carrier)
        elif locked.payout_reference != carrier.reference:
            corrected += _payout_correct(locked, carrier)
    if moved:  # outbound webhooks: published once per payout, by the key
        payout_paid(payout, list(Charge.objects.filter(payout_reference=payout.reference)))
    return f"{moved} paid out" + (f", {corrected} corrected" if corrected else "")


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
                        outcome=AttemptOutcome.SUCCEEDED, gateway_reference=event.reference, resolved_at=timezone.now()
                    )
                    locked_attempt.outcome = AttemptOutcome.SUCCEEDED
                    locked_attempt.gateway_reference = event.reference
                    _mark_paid(charge, locked_attempt, event.occurred_on)
                return "paid"
            if locked_attempt.outcome in (*UNRESOLVED_OUTCOMES, AttemptOutcome.PENDING):
                outcome = (
                    AttemptOutcome.SETTLEMENT_FAILED
                    if locked_attempt.outcome == AttemptOutcome.PENDING
                    else AttemptOutcome.DECLINED
                )
                type(attempt).objects.filter(pk=attempt.pk).update(
                    outcome=outcome,
                    gateway_reference=event.reference,
                    decline_code=event.decline_code,
                    resolved_at=timezone.now(),
                )
                locked_attempt.outcome = outcome
                locked_attempt.decline_code = event.decline_code
                if charge.status in (ChargeStatus.PENDING, ChargeStatus.SCHEDULED, ChargeStatus.RETRYING):
                    _mark_failed(charge, locked_attempt, event.occurred_on)  # COL-3: counts as a failed attempt
            return "failed"
    if event.kind in ("payout.paid", "payout.failed"):
        with transaction.atomic():
            _payouts_lock()
            return _payout_apply(event)
    return "ignored"
