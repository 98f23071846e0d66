"""The Celery app. Tasks run in the schema they were sent from (tenant-schemas-celery)."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.local")

app = CeleryApp("agencybilling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _beat_schedule(sender, **kwargs):
    """The beat schedule lives in code: one frequent tick that fans out per agency."""
    from django.conf import settings

    sender.conf.beat_schedule = {
        "billing-clock-tick": {
            "task": "billing.tasks.billing_clock_tick",
            "schedule": float(settings.CELERY_BILLING_TICK_SECONDS),
        },
        "reliability-sweep": {
            "task": "billing.tasks.reliability_sweep",
            "schedule": float(settings.SWEEP_SECONDS),
        },
        "idempotency-expiry": {
            "task": "api.tasks.idempotency_expire",
            "schedule": 3600.0,
        },
        "spare-schemas-refill": {
            "task": "tenants.tasks.spare_schemas_refill",
            "schedule": 3600.0,
        },
    }
