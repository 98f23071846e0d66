"""One agency's day: the pipeline the billing clock (beat), `run_day` and `simulate` all run.

In order: notices due that day; on a billing date, build invoices and collect what falls due; retries due
that day; the processor's day (bank-debit settlement, payouts reconciliation); overdue evaluation.

Every step is idempotent on its own (unique constraints on invoices, attempts and notices), and every step
is recorded (`AgencyDayStep`: started, then done with its counts or failed with its error). Rerunning a
day — after a crash, or by hand — skips the steps already done and resumes at the first one that is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from django.db.models import F
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.collection import CollectionSummary, collect_due
from billing.dunning import OverdueSummary, overdue_evaluate
from billing.invoicing import BillingRunResult, billing_run
from billing.models import AgencyDay, AgencyDayStep, DayStep, RunStatus
from billing.reminders import ReminderSummary, reminders_send
from billing.settlement import provider_day_settle
from tenants.models import Agency


@dataclass
class DayResult:
    """What each step did; a step already done by an earlier run of the day is listed in `skipped`."""

    notices: ReminderSummary | None = None
    billing: BillingRunResult | None = None
    collection: CollectionSummary | None = None
    retries: CollectionSummary | None = None
    provider_events: int | None = None
    overdue: OverdueSummary | None = None
    skipped: list[str] = field(default_factory=list)


def _counts(value: Any) -> dict:
    if isinstance(value, int):
        return {"events": value}
    counts = asdict(value)
    counts.pop("agency", None)
    counts.pop("run_date", None)
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in counts.items()}


# (step, DayResult attribute, runner). The billing step runs outside the tenant context: it opens its own.
PIPELINE: list[tuple[str, str, Callable[..., Any], bool]] = [
    (DayStep.NOTICES, "notices", reminders_send, True),
    (DayStep.BILLING, "billing", billing_run, False),
    (DayStep.COLLECTION, "collection", lambda *, agency, today: collect_due(today=today, retries=False), True),
    (DayStep.RETRIES, "retries", lambda *, agency, today: collect_due(today=today, first_attempts=False), True),
    (DayStep.SETTLEMENT, "provider_events", provider_day_settle, False),
    (DayStep.OVERDUE, "overdue", overdue_evaluate, True),
]


def agency_day_run(*, agency: Agency, today: date) -> DayResult:
    """Run (or resume) the agency's pipeline for `today` and record each step."""
    with tenant_context(agency):
        day, _ = AgencyDay.objects.get_or_create(day=today)
        done = set(AgencyDayStep.objects.filter(day=day, status=RunStatus.DONE).values_list("step", flat=True))
    result = DayResult()
    for step, attribute, runner, in_tenant in PIPELINE:
        if step in done:
            result.skipped.append(step)
            continue
        with tenant_context(agency):
            record, _ = AgencyDayStep.objects.get_or_create(day=day, step=step)
            AgencyDayStep.objects.filter(pk=record.pk).update(status=RunStatus.STARTED, attempts=F("attempts") + 1)
        try:
            if in_tenant:
                with tenant_context(agency):
                    outcome = runner(agency=agency, today=today)
            else:
                outcome = runner(agency=agency, today=today)
        except Exception as exc:
            with tenant_context(agency):
                message = f"{type(exc).__name__}: {exc}"[:2000]
                AgencyDayStep.objects.filter(pk=record.pk).update(
                    status="FAILED", error=message, finished_at=timezone.now()
                )
                AgencyDay.objects.filter(pk=day.pk).update(error=f"{step}: {message}"[:2000])
            raise
        setattr(result, attribute, outcome)
        with tenant_context(agency):
            AgencyDayStep.objects.filter(pk=record.pk).update(
                status=RunStatus.DONE, counts=_counts(outcome), error="", finished_at=timezone.now()
            )
    with tenant_context(agency):
        AgencyDay.objects.filter(pk=day.pk).update(status=RunStatus.DONE, error="")
    return result
