"""Collecting what falls due in an agency's day (COL-2..4, RET-2): first attempts on their due date and
automatic retries on their retry date, for every client charge of the agency, in batches.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import date

from django.db import connection, transaction
from django.utils import timezone

from billing.attempts import Payer, attempt_outcome_record, attempts_resolve, charge_request
from billing.base_models import AbstractAttempt, AbstractCharge
from billing.charges import TransitionEffects, charge_transition, charges_paid
from billing.ledger import payments_apply
from billing.models import Charge, ChargeAttempt, PaymentMethod
from billing.payouts import charge_paid_out, client_destination, payout_for, payouts_lock
from billing.platform.models import Payout
from billing.providers import get_provider
from billing.providers.base import ChargeResult, Outcome, PaymentProvider
from billing.selectors import billing_settings
from billing.statuses import (
    COLLECTIBLE,
    LATEST_ATTEMPT_UNKNOWN,
    UNRESOLVED_OUTCOMES,
    AttemptKind,
    AttemptOutcome,
    ChargeStatus,
)

logger = logging.getLogger(__name__)


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
    started: list[_Started] = []
    settled: list[tuple[Charge, None]] = []
    moves = TransitionEffects()
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
                charge_transition(
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
                    charge_transition(
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
        return provider.charge_create(charge_request(item.charge, item.attempt, item.payer))
    except Exception as exc:  # noqa: BLE001 - a timeout or 5xx: the money may or may not have moved
        logger.warning("charge attempt %s outcome unknown: %s", item.attempt.idempotency_key, exc)
        return ChargeResult(Outcome.UNKNOWN, message=str(exc)[:240])


def _finish_batch(answers: list[tuple[_Started, ChargeResult]], ctx: _Context) -> list[tuple[Charge, AbstractAttempt]]:
    """Record a batch of provider answers in one transaction. Successes are written together (attempts, charges,
    payments); any other outcome goes through the one-charge state machine. Every move's history row, notices
    and outbound events are written together at the end (`TransitionEffects`), in the same transaction."""

    done: list[tuple[Charge, AbstractAttempt]] = []
    moves = TransitionEffects()
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
                attempt_outcome_record(
                    charge, item.attempt, result, ctx.today, moves=moves, retries_enabled=ctx.retries_enabled
                )
            done.append((charge, item.attempt))
        if paid:
            recorded = _attempts_succeeded(paid)
            paid = [entry for entry in paid if entry[1].pk in recorded]
        if paid:
            charges_paid(paid, ctx.today, moves)
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
            # lock, as one payment at a time (charge_mark_paid), so the carrier does not depend on timing.
            payouts_lock()
            if Payout.objects.filter(account=ctx.destination or "-", status="paid").exists():
                for charge, _, _ in paid:
                    payout = payout_for(charge)
                    if payout is not None:
                        charge_paid_out(charge, payout, moves=moves)
        moves.flush()
    return done


def _attempts_succeeded(paid: list[tuple[Charge, AbstractAttempt, ChargeResult]]) -> set[int]:
    """Mark the attempts succeeded in one statement, only those still unresolved (exactly once); their ids."""
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
        client_destination(),
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
