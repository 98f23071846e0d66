"""Billing's tasks: the clock's tick and each agency's days (CYC-5), the sweep that re-enqueues lost work,
and processing stored provider webhooks. Thin: one service call each, safe to run twice."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from billing.attempts import attempts_sweep
from billing.clock import agency_clock_catch_up, agency_clock_lock, clock_tick
from billing.pdf import invoices_pdf_missing, invoices_pdf_store
from billing.webhooks import webhook_event_process, webhook_sweep
from core.calendar import local_date
from core.locks import beat_slot_claim
from core.tasks import agency_task
from notifications.services import outbox_sweep
from tenants.models import Agency

logger = logging.getLogger(__name__)


@shared_task(name="billing.tasks.billing_clock_tick")
def billing_clock_tick(at: str | None = None) -> dict | None:
    """Beat's one frequent tick: the clock's tick at this instant (or `at`, an ISO instant), one task enqueued per
    agency whose local date has moved on (CYC-5). `manage.py clock_tick --at` is the same tick at a chosen instant.

    Once per tick slot (BILLING_TICK_SECONDS): a second beat's tick of the same slot does nothing and returns
    None, so beat may run on two hosts. Even without the claim a second tick would only enqueue agencies twice:
    each agency-day runs once under the agency's advisory lock and clock."""
    now = datetime.fromisoformat(at) if at else timezone.now()
    if not beat_slot_claim("billing-clock-tick", every=settings.CELERY_BILLING_TICK_SECONDS, now=now):
        logger.info("billing clock tick at %s: this slot was ticked already", now.isoformat())
        return None
    sent = clock_tick(
        now=now,
        dispatch=lambda schema_name, until: agency_clock_run.delay(schema_name=schema_name, until=until.isoformat()),
    )
    logger.info("billing clock tick at %s: %d agencies due", now.isoformat(), len(sent))
    return {schema_name: until.isoformat() for schema_name, until in sent.items()}


@agency_task(name="billing.tasks.agency_clock_run")
def agency_clock_run(*, schema_name: str, until: str) -> list[str]:
    """Run the agency's missed days up to `until` (its local today), in order."""
    ran = agency_clock_catch_up(schema_name=schema_name, until=date.fromisoformat(until))
    if ran and settings.INVOICE_PDFS_AHEAD:
        for chunk in invoices_pdf_missing(issued_on=ran, chunk=PDF_BATCH):
            invoice_pdfs_store.delay(schema_name=schema_name, invoice_ids=chunk)
    return [day.isoformat() for day in ran or []]


PDF_BATCH = 50  # invoices per PDF task


@shared_task(name="billing.tasks.reliability_sweep")
def reliability_sweep() -> dict:
    """Beat: find work that was committed but whose task never ran (a killed worker, a restarted broker) and
    enqueue it again: webhook events here, each agency's outbox and unresolved attempts in `agency_sweep`.
    Lost agency days need nothing here: the clock tick re-enqueues any agency whose clock is behind."""
    now = timezone.now()
    if not beat_slot_claim("reliability-sweep", every=settings.SWEEP_SECONDS, now=now):
        return {"skipped": "this slot was swept already"}
    webhooks = webhook_sweep(now=now, grace=timedelta(seconds=settings.SWEEP_GRACE_SECONDS))
    schemas = list(Agency.objects.values_list("schema_name", flat=True))
    for schema_name in schemas:
        agency_sweep.delay(schema_name=schema_name)
    return {"webhooks": webhooks, "agencies": len(schemas)}


@agency_task(name="billing.tasks.agency_sweep")
def agency_sweep(*, schema_name: str) -> dict:
    """One agency: re-enqueue unsent notices, mark notices whose sender died mid-send, resolve attempts left
    unknown — the last only while the agency's day is not running (the day resolves its own)."""
    now = timezone.now()
    grace = timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    outbox = outbox_sweep(
        now=now, grace=grace, sending_timeout=timedelta(seconds=settings.OUTBOX_SENDING_TIMEOUT_SECONDS)
    )
    agency_attempts_resolve.delay(schema_name=schema_name)
    return {"requeued": outbox.requeued, "uncertain": outbox.uncertain}


@agency_task(name="billing.tasks.agency_attempts_resolve")
def agency_attempts_resolve(*, schema_name: str) -> dict:
    """Collection queue: ask the processor about the agency's attempts left unknown (a killed worker, a timeout),
    only while the agency's day is not running (the day resolves its own)."""
    now = timezone.now()
    agency = Agency.objects.get(schema_name=schema_name)
    with agency_clock_lock(schema_name) as free:
        if not free:
            return {"skipped": "day running"}
        started_before = now - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
        return attempts_sweep(today=local_date(now, agency.time_zone), started_before=started_before)


@agency_task(name="billing.tasks.invoice_pdfs_store")
def invoice_pdfs_store(*, schema_name: str, invoice_ids: list[int]) -> dict:
    """PDF queue: render and store the PDFs of settled invoices ahead of their first download (INV-1)."""
    return invoices_pdf_store(invoice_ids=invoice_ids)


@shared_task(
    name="billing.tasks.webhook_process",
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=8,
)
def webhook_process(*, event_pk: int) -> str:
    """A platform task (public schema): the event routes itself to its agency."""
    return webhook_event_process(event_pk)


# --- the names the clock and sweep tasks had in tenants/tasks.py -------------------------------------------
# Messages already queued under the old names (and the beat of a deployment not yet restarted) still run:
# each old name forwards to the task above. Remove after one release (docs/decisions/tasks-and-clock.md).


@shared_task(name="tenants.tasks.billing_clock_tick")
def billing_clock_tick_v0() -> dict | None:
    return billing_clock_tick()


@agency_task(name="tenants.tasks.agency_clock_run")
def agency_clock_run_v0(*, schema_name: str, until: str) -> list[str]:
    return agency_clock_run(schema_name=schema_name, until=until)


@shared_task(name="tenants.tasks.reliability_sweep")
def reliability_sweep_v0() -> dict:
    return reliability_sweep()


@agency_task(name="tenants.tasks.agency_sweep")
def agency_sweep_v0(*, schema_name: str) -> dict:
    return agency_sweep(schema_name=schema_name)
