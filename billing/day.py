"""One agency's day: the pipeline the billing clock (beat), `run_day` and `simulate` all run.

In order: notices due that day; on a billing date, build invoices and collect what falls due; retries due
that day; the agency's own invoice, collected and retried the same way (PAY-3); the processor's day (held funds
transferred, bank-debit settlement, payouts reconciliation); overdue evaluation; last, the day's notices seen out
(sent, for at most `DAY_NOTICES_WAIT_SECONDS`: the day is not finished while its notices wait behind other work,
nor held by a mail server that is down).

Every step is idempotent on its own (unique constraints on invoices, attempts and notices), and every step
is recorded (`AgencyDayStep`: started, then done with its counts or failed with its error). Rerunning a
day — after a crash, or by hand — skips the steps already done and resumes at the first one that is not.

A step that fails because the database or the broker is unavailable fails the day: the clock stops there and runs
it again on its next tick, however long that takes. A step that fails for any other reason (its own error, the same
each time) is run again up to `DAY_STEP_MAX_FAILURES` times; after that it is given up: recorded FAILED with its
error, logged as an error, listed on the support console (where it can be run again), and the day goes on with its
other steps and the clock with the next days. Each step works on what exists, so the later ones do not need it:
collection and retries take every charge due by their day, overdue evaluation reads balances (docs/reliability.md,
"A day that keeps failing").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import F
from django.utils import timezone
from django_tenants.utils import tenant_context
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from billing.collection import CollectionSummary, agency_charges_collect, collect_due
from billing.dunning import OverdueSummary, overdue_evaluate
from billing.invoicing import BillingRunResult, billing_run
from billing.models import AgencyDay, AgencyDayStep, DayStep, RunStatus, StepStatus
from billing.reminders import ReminderSummary, reminders_send
from billing.settlement import provider_day_settle
from core.metrics import DAY_STEP_SECONDS, Stopwatch
from notifications.services import OutboxFlush, outbox_flush
from tenants.models import Agency


@dataclass
class DayResult:
    """What each step did; a step already done by an earlier run of the day is listed in `skipped`."""

    notices: ReminderSummary | None = None
    billing: BillingRunResult | None = None
    collection: CollectionSummary | None = None
    retries: CollectionSummary | None = None
    platform_invoice: CollectionSummary | None = None
    provider_events: int | None = None
    overdue: OverdueSummary | None = None
    notices_sent: OutboxFlush | None = None
    skipped: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)


logger = logging.getLogger(__name__)

# Failures of the services a step stands on, not of the step: never given up, the day is run again.
UNAVAILABLE = (
    OperationalError,
    InterfaceError,
    BrokerError,
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
)


def _counts(value: Any) -> dict:
    if isinstance(value, int):
        return {"events": value}
    counts = asdict(value)
    counts.pop("agency", None)
    counts.pop("run_date", None)
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in counts.items()}


def _notices_out(today: date) -> OutboxFlush:
    return outbox_flush(business_date=today, wait_seconds=settings.DAY_NOTICES_WAIT_SECONDS)


# (step, DayResult attribute, runner). The billing step runs outside the tenant context: it opens its own.
PIPELINE: list[tuple[str, str, Callable[..., Any], bool]] = [
    (DayStep.NOTICES, "notices", reminders_send, True),
    (DayStep.BILLING, "billing", billing_run, False),
    (DayStep.COLLECTION, "collection", lambda *, agency, today: collect_due(today=today, retries=False), True),
    (DayStep.RETRIES, "retries", lambda *, agency, today: collect_due(today=today, first_attempts=False), True),
    (DayStep.PLATFORM_INVOICE, "platform_invoice", agency_charges_collect, False),
    (DayStep.SETTLEMENT, "provider_events", provider_day_settle, False),
    (DayStep.OVERDUE, "overdue", overdue_evaluate, True),
    (DayStep.NOTICES_SENT, "notices_sent", lambda *, agency, today: _notices_out(today), True),
]


def agency_day_run(*, agency: Agency, today: date) -> DayResult:
    """Run (or resume) the agency's pipeline for `today` and record each step."""
    with tenant_context(agency):
        day, _ = AgencyDay.objects.get_or_create(day=today)
        done = set(AgencyDayStep.objects.filter(day=day, status=StepStatus.DONE).values_list("step", flat=True))
    result = DayResult()
    for step, attribute, runner, in_tenant in PIPELINE:
        if step in done:
            result.skipped.append(step)
            continue
        with tenant_context(agency):
            record, _ = AgencyDayStep.objects.get_or_create(day=day, step=step)
            AgencyDayStep.objects.filter(pk=record.pk).update(status=StepStatus.STARTED, attempts=F("attempts") + 1)
        try:
            with Stopwatch() as watch:
                if in_tenant:
                    with tenant_context(agency):
                        outcome = runner(agency=agency, today=today)
                else:
                    outcome = runner(agency=agency, today=today)
            DAY_STEP_SECONDS.labels(step=step).observe(watch.seconds)
        except Exception as exc:
            if not _step_failed(agency=agency, day=day, record=record, step=step, exc=exc):
                raise
            result.given_up.append(step)
            continue
        setattr(result, attribute, outcome)
        with tenant_context(agency):
            AgencyDayStep.objects.filter(pk=record.pk).update(
                status=StepStatus.DONE, counts=_counts(outcome), error="", finished_at=timezone.now()
            )
    with tenant_context(agency):
        if result.given_up:
            AgencyDay.objects.filter(pk=day.pk).update(status=RunStatus.FAILED, finished_at=timezone.now())
        else:
            AgencyDay.objects.filter(pk=day.pk).update(status=RunStatus.DONE, error="", finished_at=timezone.now())
    return result


def _step_failed(*, agency: Agency, day: AgencyDay, record: AgencyDayStep, step: str, exc: Exception) -> bool:
    """Record a failed step. True when it is given up (the day goes on without it), False when it is to be run
    again (the caller re-raises: the day stops here)."""
    message = f"{type(exc).__name__}: {exc}"[:2000]
    unavailable = isinstance(exc, UNAVAILABLE)
    with tenant_context(agency):
        AgencyDayStep.objects.filter(pk=record.pk).update(
            status=StepStatus.FAILED,
            error=message,
            finished_at=timezone.now(),
            failures=F("failures") + (0 if unavailable else 1),
        )
        failures = AgencyDayStep.objects.values_list("failures", flat=True).get(pk=record.pk)
        given_up = not unavailable and failures >= settings.DAY_STEP_MAX_FAILURES
        AgencyDay.objects.filter(pk=day.pk).update(error=f"{step}: {message}"[:2000])
    if given_up:
        logger.error(
            "agency %s day %s: step %s failed %d times and is given up; the day goes on without it "
            "(billing support console; run it again with manage.py run_day): %s",
            agency.schema_name,
            day.day,
            step,
            failures,
            message,
        )
    else:
        logger.warning(
            "agency %s day %s: step %s failed (%d): %s", agency.schema_name, day.day, step, failures, message
        )
    return given_up
