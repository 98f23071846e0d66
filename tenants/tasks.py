"""Platform-level tasks (public schema) and the per-agency diagnostic task."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import connection
from django.utils import timezone

from core.tasks import agency_task

logger = logging.getLogger(__name__)


@agency_task(name="tenants.tasks.agency_ping", ignore_result=False)
def agency_ping(*, schema_name: str) -> dict:
    """Report which schema the task ran in and how many clients it sees there."""
    from clients.models import Client

    return {"schema": connection.schema_name, "clients": Client.objects.count()}


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
