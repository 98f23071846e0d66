"""Agency tasks: keeping spare schemas ready (public schema) and the per-agency diagnostic task."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import connection

from clients.models import Client
from core.tasks import agency_task
from tenants.spares import spare_schemas_refill as refill

logger = logging.getLogger(__name__)


@agency_task(name="tenants.tasks.agency_ping", ignore_result=False)
def agency_ping(*, schema_name: str) -> dict:
    """Report which schema the task ran in and how many clients it sees there."""
    return {"schema": connection.schema_name, "clients": Client.objects.count()}


@shared_task(name="tenants.tasks.spare_schemas_refill")
def spare_schemas_refill() -> dict:
    """After each agency creation and hourly: keep TENANT_SPARE_SCHEMAS migrated spare schemas ready."""
    from django.core.cache import cache

    # One refill at a time (several creations in a row each enqueue one). A cache lock rather than a
    # PostgreSQL session lock: migrating a spare closes the database connection, which would release it.
    lock = "tenants.spare_schemas_refill"
    if not cache.add(lock, 1, timeout=900):
        return {"skipped": "another refill is running"}
    try:
        return refill()
    finally:
        cache.delete(lock)
