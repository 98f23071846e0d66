"""Beat tasks of the API layer."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from api.services import idempotency_records_expire
from tenants.models import Agency


@shared_task(name="api.tasks.idempotency_expire")
def idempotency_expire() -> dict:
    """Hourly: expire old idempotency records in the platform schema and in every agency's schema. A
    platform-wide sweep by design: each schema is entered explicitly, none is inherited from the caller."""
    now, max_age = timezone.now(), timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    expired: dict[str, int] = {}
    for schema_name in ["public", *Agency.objects.values_list("schema_name", flat=True)]:
        with schema_context(schema_name):
            count = idempotency_records_expire(now=now, max_age=max_age)
        if count:
            expired[schema_name] = count
    return {"schemas": len(expired), "expired": sum(expired.values())}
