"""Platform-level tasks (public schema) and the per-agency diagnostic task."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.tasks import agency_task

logger = logging.getLogger(__name__)


@agency_task(name="tenants.tasks.agency_ping", ignore_result=False)
def agency_ping(*, schema_name: str) -> dict:
    """Report which schema the task ran in and how many clients it sees there."""
    from clients.models import Client

    return {"schema": connection.schema_name, "clients": Client.objects.count()}


@shared_task(name="tenants.tasks.spare_schemas_refill")
def spare_schemas_refill() -> dict:
    """After each agency creation and hourly: keep TENANT_SPARE_SCHEMAS migrated spare schemas ready."""
    from django.core.cache import cache

    from tenants.spares import spare_schemas_refill as refill

    # One refill at a time (several creations in a row each enqueue one). A cache lock rather than a
    # PostgreSQL session lock: migrating a spare closes the database connection, which would release it.
    lock = "tenants.spare_schemas_refill"
    if not cache.add(lock, 1, timeout=900):
        return {"skipped": "another refill is running"}
    try:
        return refill()
    finally:
        cache.delete(lock)


@shared_task(name="tenants.tasks.billing_clock_tick")
def billing_clock_tick() -> dict:
    """Beat's one frequent tick: enqueue one task per agency whose local date has moved on (CYC-5)."""
    from billing.clock import agencies_due
    from core.calendar import local_date

    now = timezone.now()
    sent = {}
    for agency in agencies_due(now):
        until = local_date(now, agency.time_zone).isoformat()
        agency_clock_run.delay(schema_name=agency.schema_name, until=until)
        sent[agency.schema_name] = until
    logger.info("billing clock tick: %d agencies due", len(sent))
    return sent


@agency_task(name="tenants.tasks.agency_clock_run")
def agency_clock_run(*, schema_name: str, until: str) -> list[str]:
    """Run the agency's missed days up to `until` (its local today), in order."""
    from datetime import date

    from billing.clock import AgencyBusy, agency_days_run
    from tenants.models import Agency

    agency = Agency.objects.get(schema_name=schema_name)
    try:
        return [d.isoformat() for d in agency_days_run(agency=agency, until=date.fromisoformat(until))]
    except AgencyBusy:
        logger.info("agency %s is already running its days", schema_name)
        return []


@shared_task(name="tenants.tasks.reliability_sweep")
def reliability_sweep() -> dict:
    """Beat: find work that was committed but whose task never ran (a killed worker, a restarted broker) and
    enqueue it again: webhook events here, each agency's outbox and unresolved attempts in `agency_sweep`.
    Lost agency days need nothing here: the clock tick re-enqueues any agency whose clock is behind."""
    from datetime import timedelta

    from billing.webhooks import webhook_sweep
    from tenants.models import Agency

    now = timezone.now()
    webhooks = webhook_sweep(now=now, grace=timedelta(seconds=settings.SWEEP_GRACE_SECONDS))
    schemas = list(Agency.objects.values_list("schema_name", flat=True))
    for schema_name in schemas:
        agency_sweep.delay(schema_name=schema_name)
    return {"webhooks": webhooks, "agencies": len(schemas)}


@agency_task(name="tenants.tasks.agency_sweep")
def agency_sweep(*, schema_name: str) -> dict:
    """One agency: re-enqueue unsent notices, mark notices whose sender died mid-send, resolve attempts left
    unknown — the last only while the agency's day is not running (the day resolves its own)."""
    from datetime import timedelta

    from billing.clock import _lock_key
    from billing.collection import attempts_sweep
    from core.calendar import local_date
    from notifications.services import outbox_sweep
    from tenants.models import Agency

    now = timezone.now()
    grace = timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    outbox = outbox_sweep(
        now=now, grace=grace, sending_timeout=timedelta(seconds=settings.OUTBOX_SENDING_TIMEOUT_SECONDS)
    )
    agency = Agency.objects.get(schema_name=schema_name)
    attempts: dict = {"skipped": "day running"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_lock_key(schema_name)])
        free = cursor.fetchone()[0]
    if free:
        try:
            attempts = attempts_sweep(today=local_date(now, agency.time_zone), started_before=now - grace)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_lock_key(schema_name)])
    return {"requeued": outbox.requeued, "uncertain": outbox.uncertain, "attempts": attempts}
