"""Collecting what falls due in an agency's day (COL-2..4, RET-2): first attempts on their due date and
automatic retries on their retry date, for every client charge of the agency, in batches.

A batch goes through the same steps as one charge (`billing/attempts.py`); what is here is only how many
are in flight at once.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import date

from django.db.models import Q

from billing.attempts import (
    AttemptRun,
    StartedAttempt,
    attempt_call,
    attempt_run,
    attempts_finish,
    attempts_resolve,
    attempts_start,
)
from billing.base_models import AbstractAttempt, AbstractCharge
from billing.models import Charge
from billing.platform.models import AgencyCharge
from billing.providers import get_provider
from billing.providers.base import ChargeResult, PaymentProvider
from billing.statuses import UNRESOLVED_OUTCOMES, AttemptOutcome, ChargeStatus
from core.metrics import CHARGES

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
                CHARGES.labels(outcome="no_payment_method").inc()
            return
        self.attempted += 1
        outcome = attempt.outcome
        CHARGES.labels(outcome=str(outcome).lower()).inc()
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


def retry_due(today: date) -> Q:
    """Retrying charges whose automatic retry is due: on or after its date (RET-2), or at once when it has none — a
    charge left Retrying without a date (before every failure got one, docs/decisions.md, "A retry date that has
    passed") is retried on the next day rather than never."""
    return Q(status=ChargeStatus.RETRYING) & (Q(next_retry_on__lte=today) | Q(next_retry_on__isnull=True))


def _due_charge_ids(today: date, *, first_attempts: bool, retries: bool) -> list[int]:
    due: list[int] = []
    if first_attempts:
        due += (
            Charge.objects.filter(status=ChargeStatus.SCHEDULED, due_on__lte=today)
            .order_by("id")
            .values_list("id", flat=True)
        )
    if retries:
        due += Charge.objects.filter(retry_due(today)).order_by("id").values_list("id", flat=True)
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
    run = attempt_run(Charge, today=today)
    workers = concurrency if concurrency is not None else getattr(provider, "concurrency", 1)
    batches = [due[start : start + batch_size] for start in range(0, len(due), batch_size)]
    if workers <= 1:
        for batch in batches:
            started, settled = attempts_start(batch, run)
            for unattempted in settled:
                summary.count(unattempted, None)
            if started:
                answers = [(item, attempt_call(item, provider)) for item in started]
                for finished, attempt in attempts_finish(answers, run):
                    summary.count(finished, attempt)
        return summary
    _collect_pipelined(batches, run, provider, workers, summary)
    return summary


def _collect_pipelined(
    batches: list[list[int]], run: AttemptRun, provider: PaymentProvider, workers: int, summary: CollectionSummary
) -> None:
    """Start batches while the callers have work, record answers as they come back; callers only do HTTP."""
    calls: queue.SimpleQueue[StartedAttempt | None] = queue.SimpleQueue()
    answers: queue.SimpleQueue[tuple[StartedAttempt, ChargeResult]] = queue.SimpleQueue()

    def caller() -> None:
        while (item := calls.get()) is not None:
            answers.put((item, attempt_call(item, provider)))

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
                started, settled = attempts_start(pending.pop(), run)
                for unattempted in settled:
                    summary.count(unattempted, None)
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
            for charge, attempt in attempts_finish(received, run):
                summary.count(charge, attempt)
    finally:
        for _ in threads:
            calls.put(None)
        for thread in threads:
            thread.join()
        gc.unfreeze()


# --- the agency's own invoice (PAY-3) ----------------------------------------------------------------------------


def agency_charges_collect(*, agency, today: date, provider: PaymentProvider | None = None) -> CollectionSummary:
    """The agency's charges for its platform invoices that are due today — first attempts on their due date,
    automatic retries on their retry date (RET-2) — charged to the agency's own payment method on the platform's
    account, through the same attempts as a client charge (PAY-3). Runs in the public schema, one agency at a time
    (its day)."""
    provider = provider or get_provider()
    summary = CollectionSummary()
    for unresolved in AgencyCharge.objects.filter(agency=agency, attempts__outcome__in=UNRESOLVED_OUTCOMES).distinct():
        attempts_resolve(unresolved, today=today, provider=provider)
    first = AgencyCharge.objects.filter(agency=agency, status=ChargeStatus.SCHEDULED, due_on__lte=today)
    retries = AgencyCharge.objects.filter(retry_due(today), agency=agency)
    due = [*first.order_by("id").values_list("id", flat=True), *retries.order_by("id").values_list("id", flat=True)]
    if not due:
        return summary
    run = attempt_run(AgencyCharge, today=today)
    started, settled = attempts_start(due, run)
    for charge in settled:
        summary.count(charge, None)
    if started:
        for charge, attempt in attempts_finish([(item, attempt_call(item, provider)) for item in started], run):
            summary.count(charge, attempt)
    return summary
