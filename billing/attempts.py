"""Collection attempts (COL-2..4, RET-1..4): starting them, calling the provider, recording their outcomes,
recording the payments they bring, and resolving attempts whose outcome is not known.

Everything here works on a batch of charges; one charge is a batch of one. `charge_attempt` (one charge:
manual retries, "pay now", the agency's own invoice) and the day's collection (`billing/collection.py`, many
batches with provider calls in flight at once) go through the same three steps — `attempts_start`,
`attempt_call`, `attempts_finish` — so every status move, payment application, overdue refresh, notice and
outbound event of a collection is written by one piece of code whatever the path. A provider's later report
(`billing/settlement.py`: a bank debit settled or failed) records its payment through `charge_mark_paid`, the
same code again.

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
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.base_models import AbstractAttempt, AbstractCharge
from billing.charges import (
    IllegalTransition,
    TransitionEffects,
    charge_history_model,
    charge_locked,
    charge_transition,
    charges_paid,
)
from billing.dunning import clients_overdue_refresh
from billing.holds import charge_over_ceiling
from billing.ledger import agency_payment_apply, payments_apply
from billing.models import Charge, ChargeAttempt, PaymentMethod
from billing.payouts import charge_paid_out, client_destination, payout_for, payouts_lock, payouts_paid_exist
from billing.platform.models import AgencyCharge, AgencyChargeAttempt, AgencyPaymentMethod
from billing.providers import get_provider
from billing.providers.base import ChargeRequest, ChargeResult, Outcome, PaymentProvider
from billing.selectors import billing_settings
from billing.statuses import (
    COLLECTED,
    COLLECTIBLE,
    FAILED_OUTCOMES,
    LATEST_ATTEMPT_UNKNOWN,
    UNRESOLVED_OUTCOMES,
    AttemptKind,
    AttemptOutcome,
    ChargeStatus,
)
from core.calendar import add_weekdays, retry_dates
from core.categories import DEFAULT_CATEGORY_ORDER
from core.errors import ApplicationError
from core.links import absolute_url

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
    schema_name: str


@dataclass(frozen=True)
class AttemptRun:
    """What the attempts of one run share, read once: the day, who asked, and the account's settings."""

    charge_model: type[Charge] | type[AgencyCharge]
    today: date
    kind: str = AttemptKind.AUTOMATIC
    actor: str = ""
    retries_enabled: bool = True  # RET-5
    category_order: tuple[str, ...] = tuple(DEFAULT_CATEGORY_ORDER)  # COL-6
    destination: str | None = None  # PAY-1
    # One charge asked for by one request (a Pay now form, POR-1): the request's key is the attempt's idempotency
    # key, unique in the database, so the same request sent twice cannot make a second attempt.
    request_key: str = ""


def attempt_run(
    charge_model: type[Charge] | type[AgencyCharge],
    *,
    today: date,
    kind: str = AttemptKind.AUTOMATIC,
    actor: str = "",
    request_key: str = "",
) -> AttemptRun:
    """Client charges follow the agency's settings and go to its connected account; agency charges are the
    platform's own, always retried, in the default category order."""
    if charge_model is Charge:
        settings_row = billing_settings()
        return AttemptRun(
            Charge,
            today,
            kind,
            actor,
            settings_row.retries_enabled,
            tuple(settings_row.category_order),
            client_destination(),
            request_key,
        )
    return AttemptRun(AgencyCharge, today, kind, actor, request_key=request_key)


@dataclass
class StartedAttempt:
    """An attempt committed before its provider call, with what the call needs."""

    charge: AbstractCharge
    attempt: AbstractAttempt
    payer: Payer


def _owner(charge_model: type[AbstractCharge]) -> str:
    return "client" if charge_model is Charge else "agency"


def _payment_methods(
    charge_model: type[AbstractCharge], owner_ids: set[int]
) -> dict[int, PaymentMethod | AgencyPaymentMethod]:
    """The active payment method of each owner (one at most: a partial unique constraint)."""
    model = PaymentMethod if charge_model is Charge else AgencyPaymentMethod
    owner = _owner(charge_model)
    methods = model.objects.filter(**{f"{owner}_id__in": owner_ids}, removed_at__isnull=True)
    return {getattr(method, f"{owner}_id"): method for method in methods}


def _payer(charge: AbstractCharge, method, destination: str | None) -> Payer:
    if isinstance(charge, Charge):
        schema = connection.schema_name  # type: ignore[attr-defined]
        return Payer("client", charge.client.provider_customer_id, method, destination, schema)
    assert isinstance(charge, AgencyCharge)
    return Payer("agency", charge.agency.platform_customer_id, method, None, "public")


def payer_of(charge: AbstractCharge) -> Payer:
    owner_id = getattr(charge, f"{_owner(type(charge))}_id")
    method = _payment_methods(type(charge), {owner_id}).get(owner_id)
    destination = client_destination() if isinstance(charge, Charge) else None
    return _payer(charge, method, destination)


def charge_request(charge: AbstractCharge, attempt: AbstractAttempt, payer: Payer) -> ChargeRequest:
    """The provider request of an attempt. A client's own attempt (Pay now) is made on-session: it may ask for
    the cardholder's authentication (3-D Secure), which comes back to the charge's page in the portal (COL-7)."""
    on_session = attempt.kind == AttemptKind.CLIENT
    return_url = (
        absolute_url(f"/portal/charges/{charge.public_id}/pay/return", agency=payer.schema_name) if on_session else ""
    )
    return ChargeRequest(
        amount_minor=attempt.amount_minor,
        currency=charge.currency,
        customer=payer.customer,
        payment_method=attempt.payment_method_reference,
        idempotency_key=attempt.idempotency_key,
        business_date=attempt.attempted_on,
        # The attempt's own: a resolved or resent attempt is the same request as when it was made.
        destination=attempt.destination or None,
        description=f"Invoice {charge.invoice.number}",  # type: ignore[attr-defined]
        metadata={
            "schema": payer.schema_name,
            "kind": payer.kind,
            "charge": str(charge.public_id),
            "attempt": attempt.idempotency_key,
            "invoice": charge.invoice.number,  # type: ignore[attr-defined]
        },
        on_session=on_session,
        return_url=return_url,
    )


def _charges_locked(charge_model: type[AbstractCharge], charge_ids: list[int]) -> list[AbstractCharge]:
    """Lock the charges, in id order (two runs over overlapping charges never deadlock)."""
    return list(
        charge_model.objects.select_for_update(of=("self",))  # type: ignore[attr-defined]
        .select_related("invoice", _owner(charge_model))
        .filter(pk__in=charge_ids)
        .order_by("id")
    )


def _blocked(charge: AbstractCharge, previous: list[tuple[int, str]]) -> ApplicationError | None:
    """Why no attempt can be made on this locked charge now, if so."""
    if charge.status not in COLLECTIBLE:
        return IllegalTransition(f"A charge that is {ChargeStatus(charge.status).label} cannot be collected.")
    if any(outcome in UNRESOLVED_OUTCOMES for _, outcome in previous):
        # Checked under the lock: another process may have started an attempt since it was last looked at.
        return AttemptUnresolved("An earlier attempt's outcome is still unknown; it must be resolved first.")
    return None


def attempts_start(
    charge_ids: list[int], run: AttemptRun, *, strict: bool = False
) -> tuple[list[StartedAttempt], list[AbstractCharge]]:
    """Lock the charges and, for each, in one transaction: settle it at once when there is nothing to collect
    (Paid) or no payment method (Uncollectable, COL-4), else commit an attempt (the idempotency key is the
    attempt's). A charge that moved on or has an unresolved attempt is skipped, or raises when `strict` (one
    charge asked for by name). Returns the started attempts and the charges settled without a call."""
    # Any: one code for the two concrete attempt models (client and agency), chosen by the run.
    attempt_model: Any = ChargeAttempt if run.charge_model is Charge else AgencyChargeAttempt
    owner = _owner(run.charge_model)
    started: list[StartedAttempt] = []
    settled: list[AbstractCharge] = []
    moves = TransitionEffects()
    with transaction.atomic():
        charges = _charges_locked(run.charge_model, charge_ids)
        methods = _payment_methods(run.charge_model, {getattr(c, f"{owner}_id") for c in charges})
        attempts: dict[int, list[tuple[int, str]]] = {}
        last_failed: dict[int, tuple[str, str]] = {}  # charge id -> (decline code, payment method) of its last failure
        for charge_id, number, outcome, code, used in (
            attempt_model.objects.filter(charge_id__in=[c.pk for c in charges])
            .order_by("number")
            .values_list("charge_id", "number", "outcome", "decline_code", "payment_method_reference")
        ):
            attempts.setdefault(charge_id, []).append((number, outcome))
            if outcome in FAILED_OUTCOMES:
                last_failed[charge_id] = (code, used)
        for charge in charges:
            previous = attempts.get(charge.pk, [])
            blocked = _blocked(charge, previous)
            if blocked is not None:
                if strict:
                    raise blocked
                logger.info("charge %s skipped: %s", charge.public_id, charge.status)
                continue
            # Without an earlier attempt the notices need not look for one.
            latest = LATEST_ATTEMPT_UNKNOWN if previous else None
            if charge.amount_minor == 0:
                charge_transition(
                    charge,
                    ChargeStatus.PAID,
                    reason="Nothing to collect",
                    today=run.today,
                    actor=run.actor,
                    attempt=latest,
                    moves=moves,
                    paid_on=run.today,
                    next_retry_on=None,
                )
                settled.append(charge)
                continue
            held = charge_over_ceiling(charge.amount_minor, charge.currency)
            if held is not None:
                # MON-1: never sent to the processor; held as Uncollectable with the reason, for billing support.
                if charge.status != ChargeStatus.UNCOLLECTABLE:
                    charge_transition(
                        charge,
                        ChargeStatus.UNCOLLECTABLE,
                        reason=held,
                        today=run.today,
                        actor=run.actor,
                        attempt=latest,
                        moves=moves,
                        next_retry_on=None,
                    )
                settled.append(charge)
                continue
            method = methods.get(getattr(charge, f"{owner}_id"))
            if method is None:
                # COL-4: no payment method → Uncollectable at once, no retries.
                if charge.status != ChargeStatus.UNCOLLECTABLE:
                    charge_transition(
                        charge,
                        ChargeStatus.UNCOLLECTABLE,
                        reason="No payment method on file",
                        today=run.today,
                        actor=run.actor,
                        attempt=latest,
                        moves=moves,
                        next_retry_on=None,
                    )
                settled.append(charge)
                continue
            if run.kind == AttemptKind.AUTOMATIC and last_failed.get(charge.pk) == (
                AUTHENTICATION_REQUIRED,
                method.reference,
            ):
                # COL-7: this card asked for the cardholder's authentication; off-session it would ask again.
                charge_retry_deferred(charge, previous, run, moves)
                settled.append(charge)
                continue
            payer = _payer(charge, method, run.destination)
            number = max((n for n, _ in previous), default=0) + 1
            attempt = attempt_model(
                charge=charge,
                number=number,
                kind=run.kind,
                attempted_on=run.today,
                amount_minor=charge.amount_minor,
                idempotency_key=f"{payer.kind[:2]}-{charge.public_id.hex}-{run.request_key or number}",
                payment_method_reference=method.reference,
                destination=payer.destination or "",
            )
            started.append(StartedAttempt(charge, attempt, payer))
        attempt_model.objects.bulk_create([item.attempt for item in started])
        moves.flush()
    return started, settled


def attempt_call(item: StartedAttempt, provider: PaymentProvider) -> ChargeResult:
    """The provider call of a started attempt. Touches no database: collection makes these on threads."""
    try:
        return provider.charge_create(charge_request(item.charge, item.attempt, item.payer))
    except Exception as exc:  # noqa: BLE001 - a timeout or 5xx: the money may or may not have moved
        logger.warning("charge attempt %s outcome unknown: %s", item.attempt.idempotency_key, exc)
        return ChargeResult(Outcome.UNKNOWN, message=str(exc)[:240])


def attempts_finish(
    answers: list[tuple[StartedAttempt, ChargeResult]], run: AttemptRun
) -> list[tuple[AbstractCharge, AbstractAttempt]]:
    """Record a batch of provider answers in one transaction (`attempts_outcome_record`); every move's history
    row, notices and outbound events are written together at the end, in the same transaction."""
    moves = TransitionEffects()
    with transaction.atomic():
        locked = {c.pk: c for c in _charges_locked(run.charge_model, [item.charge.pk for item, _ in answers])}
        items = [(locked[item.charge.pk], item.attempt, result) for item, result in answers]
        attempts_outcome_record(
            items,
            today=run.today,
            actor=run.actor,
            moves=moves,
            retries_enabled=run.retries_enabled,
            category_order=run.category_order,
        )
        moves.flush()
    return [(charge, attempt) for charge, attempt, _ in items]


_OUTCOMES = {
    Outcome.SUCCEEDED: AttemptOutcome.SUCCEEDED,
    Outcome.PENDING: AttemptOutcome.PENDING,
    Outcome.DECLINED: AttemptOutcome.DECLINED,
    Outcome.UNKNOWN: AttemptOutcome.UNKNOWN,
    Outcome.REQUIRES_ACTION: AttemptOutcome.REQUIRES_ACTION,
}
# The decline code of an off-session payment that needs the cardholder (Stripe's, COL-7).
AUTHENTICATION_REQUIRED = "authentication_required"


def charge_retry_deferred(
    charge: AbstractCharge, previous: list[tuple[int, str]], run: AttemptRun, moves: TransitionEffects
) -> None:
    """COL-7: an automatic retry of a charge whose card asked for the cardholder's authentication, with that same
    card still on file, is not made — off-session it can only fail the same way, and would spend one of RET-3's
    three attempts. The charge stays Retrying until its next retry date (the client confirms it in the portal
    meanwhile, or saves another card, which the next retry charges); after the last retry date it is
    Uncollectable, as after three failures."""
    failed = sum(1 for _, outcome in previous if outcome in FAILED_OUTCOMES)
    # Only the schedule's own dates: a skipped retry spends its date, so the wait ends with the schedule.
    next_on = _scheduled_retry(charge, failed, run.today)
    why = "Automatic retry not made: the card needs the cardholder's authentication (3-D Secure)"
    if next_on is None:
        charge_transition(
            charge,
            ChargeStatus.UNCOLLECTABLE,
            reason=why + "; no retry date left",
            today=run.today,
            actor=run.actor,
            moves=moves,
            next_retry_on=None,
        )
        return
    charge_transition(
        charge, ChargeStatus.RETRYING, reason=why, today=run.today, actor=run.actor, moves=moves, next_retry_on=next_on
    )


def _outcomes_write(items: list[tuple[AbstractCharge, AbstractAttempt, ChargeResult]]) -> set[int]:
    """Write the attempts' outcomes in one statement, only on those still unresolved (exactly once); returns
    the ids written. The attempt objects are updated to match."""
    if not items:
        return set()
    attempt_model = type(items[0][1])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {attempt_model._meta.db_table} AS a SET outcome = v.outcome, gateway_reference = v.reference, "
            "decline_code = v.decline_code, message = v.message, action_url = v.action_url, "
            "resolved_at = CASE WHEN v.outcome = ANY(%s) THEN NULL ELSE %s END "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
            "AS v(id, outcome, reference, decline_code, message, action_url) "
            "WHERE a.id = v.id AND a.outcome = ANY(%s) RETURNING a.id",
            [
                list(UNRESOLVED_OUTCOMES),
                timezone.now(),
                [a.pk for _, a, _ in items],
                [_OUTCOMES[r.outcome] for _, _, r in items],
                [r.reference or a.gateway_reference for _, a, r in items],
                [r.decline_code for _, _, r in items],
                [r.message[:240] for _, _, r in items],
                [r.action_url[:1000] for _, _, r in items],
                list(UNRESOLVED_OUTCOMES),
            ],
        )
        recorded = {row[0] for row in cursor.fetchall()}
    for _, attempt, result in items:
        if attempt.pk in recorded:
            attempt.outcome = _OUTCOMES[result.outcome]
            attempt.gateway_reference = result.reference or attempt.gateway_reference
            attempt.decline_code = result.decline_code
            attempt.message = result.message[:240]
            attempt.action_url = result.action_url[:1000]
    return recorded


def attempts_outcome_record(
    items: list[tuple[AbstractCharge, AbstractAttempt, ChargeResult]],
    *,
    today: date,
    moves: TransitionEffects,
    actor: str = "",
    retries_enabled: bool | None = None,
    category_order: tuple[str, ...] | None = None,
) -> None:
    """Record provider results on locked charges and their attempts — each outcome only once, whoever else is
    recording it — and move each charge on: Paid with its payment (`payments_record`), Pending while a bank
    debit settles (COL-3), Retrying or Uncollectable after a failure (RET-1..3). Each attempt is its charge's
    latest: a new attempt is never made while one is unresolved."""
    recorded = _outcomes_write(items)
    paid: list[tuple[AbstractCharge, AbstractAttempt]] = []
    for charge, attempt, _ in items:
        if attempt.pk not in recorded:
            continue  # another process recorded this attempt's outcome first
        if attempt.outcome in (AttemptOutcome.UNKNOWN, AttemptOutcome.REQUIRES_ACTION):
            continue  # nothing moves until the provider knows (or the cardholder has authenticated)
        if attempt.outcome == AttemptOutcome.SUCCEEDED:
            paid.append((charge, attempt))
        elif attempt.outcome == AttemptOutcome.PENDING:
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
            charge_mark_failed(
                charge, attempt, today, actor, moves=moves, latest=attempt, retries_enabled=retries_enabled
            )
    payments_record(paid, today=today, actor=actor, moves=moves, category_order=category_order)


def attempt_outcome_record(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    result: ChargeResult,
    today: date,
    actor: str = "",
    moves: TransitionEffects | None = None,
    retries_enabled: bool | None = None,
) -> None:
    """`attempts_outcome_record` for one locked charge and its latest attempt."""
    recorder = moves or TransitionEffects()
    attempts_outcome_record(
        [(charge, attempt, result)], today=today, actor=actor, moves=recorder, retries_enabled=retries_enabled
    )
    if moves is None:
        recorder.flush()


def payments_record(
    paid: list[tuple[AbstractCharge, AbstractAttempt]],
    *,
    today: date,
    moves: TransitionEffects,
    actor: str = "",
    category_order: tuple[str, ...] | None = None,
) -> None:
    """Locked charges paid by these attempts, all of one kind: moved to Paid, each payment applied to its
    account's open charges (COL-6), the overdue flag cleared where the account no longer meets DUN-1 ("paying
    clears the flag"), and a payout that already carried a charge applied (PAY-2). A charge already Paid or
    Paid Out stays as it is: outcomes only move forward. Every path that records a payment comes here."""
    paid = [(charge, attempt) for charge, attempt in paid if charge.status not in COLLECTED]
    if not paid:
        return
    if isinstance(paid[0][0], Charge):
        # Serialize "a charge becomes Paid" with "a payout arrives" (billing/payouts.py).
        payouts_lock()
    charges_paid(paid, today=today, moves=moves, actor=actor)
    charges = [charge for charge, _ in paid]
    if not isinstance(charges[0], Charge):
        for charge in charges:
            assert isinstance(charge, AgencyCharge)
            agency_payment_apply(
                agency=charge.agency,
                amount_minor=charge.amount_minor,
                currency=charge.currency,
                occurred_on=today,
                reference=charge.paid_reference or f"charge {charge.public_id}",
            )
        return
    client_charges: list[Charge] = [charge for charge in charges if isinstance(charge, Charge)]
    payments_apply(
        items=[
            (charge.client, charge.amount_minor, charge.currency, charge.paid_reference or f"charge {charge.public_id}")
            for charge in client_charges
        ],
        occurred_on=today,
        category_order=list(category_order if category_order is not None else billing_settings().category_order),
    )
    cleared = clients_overdue_refresh(client_ids={charge.client_id for charge in client_charges}, today=today)
    for charge in client_charges:
        if charge.client_id in cleared:
            charge.client.overdue_since = None
    # A payout reported before these payments (events out of order) still moves them to Paid Out.
    if payouts_paid_exist():
        for charge in client_charges:
            payout = payout_for(charge)
            if payout is not None:
                charge_paid_out(charge, payout, moves=moves)


def charge_mark_paid(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    today: date,
    actor: str = "",
    moves: TransitionEffects | None = None,
) -> None:
    """`payments_record` for one locked charge."""
    recorder = moves or TransitionEffects()
    payments_record([(charge, attempt)], today=today, actor=actor, moves=recorder)
    if moves is None:
        recorder.flush()


def _retries_enabled(charge: AbstractCharge) -> bool:
    return billing_settings().retries_enabled if isinstance(charge, Charge) else True


def _failed_count(charge: AbstractCharge) -> int:
    return charge.attempts.filter(outcome__in=FAILED_OUTCOMES).count()  # type: ignore[attr-defined]


def _scheduled_retry(charge: AbstractCharge, failed: int, today: date) -> date | None:
    """RET-2: the 5th weekday after the due date for the 2nd attempt, the 10th for the 3rd — an installment's own due
    date (CYC-4), not its invoice's billing date — the first of those still after `today`, or None when they have
    all passed."""
    candidates = [d for d in retry_dates(charge.due_on)[failed - 1 :] if d > today]
    return candidates[0] if candidates else None


def _next_retry(charge: AbstractCharge, failed: int, today: date) -> date:
    """The next automatic attempt after the `failed`-th failure: RET-2's date when it is still ahead; when the failure
    came after the schedule's dates had all passed (a manual retry run while the billing clock was down and caught up
    later, a first attempt made late, a bank debit whose failure was reported late), the next weekday after `today`.
    A Retrying charge always has its next attempt, and RET-3's three failures still end it (docs/decisions.md,
    "A retry date that has passed")."""
    return _scheduled_retry(charge, failed, today) or add_weekdays(today, 1)


def _status_when_attempted(charge: AbstractCharge) -> str:
    """The status a locked charge had when its latest attempt was made: its own, unless that attempt is a bank debit
    that was settling (Pending) — then the status the charge left for Pending, from its history."""
    if charge.status != ChargeStatus.PENDING:
        return charge.status
    before = (
        charge_history_model(charge)
        .objects.filter(charge=charge, to_status=ChargeStatus.PENDING)
        .order_by("-id")
        .values_list("from_status", flat=True)
        .first()
    )
    return before or charge.status


def charge_mark_failed(
    charge: AbstractCharge,
    attempt: AbstractAttempt,
    today: date,
    actor: str = "",
    moves: TransitionEffects | None = None,
    latest=LATEST_ATTEMPT_UNKNOWN,
    retries_enabled: bool | None = None,
) -> None:
    """A failed attempt (RET-1..3): Retrying with its next automatic attempt, or Uncollectable — after the third
    failure, with retries off (RET-5), or when the charge was already Uncollectable when the attempt was made (a
    manual retry, RET-4, or a Pay now, POR-1): an Uncollectable charge gets no automatic attempts, and a retry that
    fails does not give it new ones (recorded, it stays Uncollectable).

    `latest`: the charge's latest attempt when the caller knows it is `attempt` (saves a query per notice)."""
    retries_enabled = _retries_enabled(charge) if retries_enabled is None else retries_enabled
    failed = _failed_count(charge)
    why = f"Attempt {attempt.number} failed ({attempt.decline_code or 'declined'})"
    was_uncollectable = _status_when_attempted(charge) == ChargeStatus.UNCOLLECTABLE
    if failed >= MAX_FAILED_ATTEMPTS or not retries_enabled or was_uncollectable:
        if not retries_enabled:
            because = ": retries are off"
        elif failed >= MAX_FAILED_ATTEMPTS:
            because = f": {failed} failures"
        else:
            because = ": a retry of an Uncollectable charge; no automatic attempts follow"
        charge_transition(
            charge,
            ChargeStatus.UNCOLLECTABLE,
            today=today,
            actor=actor,
            attempt=latest,
            moves=moves,
            next_retry_on=None,
            reason=(why + because)[:240],
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
    # COL-7: a cardholder who left their bank's authentication page unfinished this long has given up on it.
    abandoned_before = timezone.now() - timedelta(seconds=settings.AUTHENTICATION_WAIT_SECONDS)
    for attempt in unresolved:
        request = charge_request(charge, attempt, payer)
        try:
            result = provider.charge_lookup(request)
            if result is None:
                result = provider.charge_create(request)
            if result.outcome == Outcome.REQUIRES_ACTION and attempt.created_at < abandoned_before:
                result = provider.charge_cancel(request) or result
        except Exception as exc:  # noqa: BLE001 - any provider failure leaves the attempt unknown
            logger.warning("could not resolve attempt %s: %s", attempt.idempotency_key, exc)
            return False
        with transaction.atomic():
            locked = charge_locked(charge)
            attempt_outcome_record(locked, attempt, result, today)
        if result.outcome in (Outcome.UNKNOWN, Outcome.REQUIRES_ACTION):
            return False
    return True


def charge_attempt(
    charge: AbstractCharge,
    *,
    today: date,
    kind: str = AttemptKind.AUTOMATIC,
    actor: str = "",
    provider: PaymentProvider | None = None,
    request_key: str = "",
) -> AbstractAttempt | None:
    """Make one collection attempt on a charge (COL-2/3/4, RET-1..4): a batch of one through the steps the day's
    collection takes. Returns the attempt, or None when no call was made (no payment method → Uncollectable at
    once; nothing to collect). Raises when the charge cannot be collected or an earlier attempt's outcome is
    still unknown after asking the provider.

    `request_key`: the caller's key for this one request (POR-1's Pay now form); the same key again returns the
    attempt the first request made, and makes none."""
    provider = provider or get_provider()
    if not attempts_resolve(charge, today=today, provider=provider):
        raise AttemptUnresolved("An earlier attempt's outcome is still unknown; it must be resolved first.")
    run = attempt_run(type(charge), today=today, kind=kind, actor=actor, request_key=request_key)  # type: ignore[arg-type]
    try:
        started, _ = attempts_start([charge.pk], run, strict=True)
    except IntegrityError:
        key = f"{_owner(type(charge))[:2]}-{charge.public_id.hex}-{request_key}"
        made = charge.attempts.filter(idempotency_key=key).first() if request_key else None  # type: ignore[attr-defined]
        if made is None:
            raise
        return made  # this request was already made: its attempt, and no new one
    if not started:
        return None
    [(_, attempt)] = attempts_finish([(started[0], attempt_call(started[0], provider))], run)
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
