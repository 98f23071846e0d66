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
    """Beat's one frequent tick: note each agency's local date."""
    from zoneinfo import ZoneInfo

    from tenants.models import Agency

    now = timezone.now()
    dates = {a.schema_name: now.astimezone(ZoneInfo(a.time_zone)).date().isoformat()
             for a in Agency.objects.only("schema_name", "time_zone")}
    logger.info("billing clock tick: %d agencies", len(dates))
    return dates
