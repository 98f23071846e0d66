"""The Celery app. Tasks run in the schema they were sent from (tenant-schemas-celery)."""

from __future__ import annotations

import os
import time

from celery import signals
from django.conf import settings
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.local")

app = CeleryApp("agencybilling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _beat_schedule(sender, **kwargs):
    """The beat schedule lives in code: one frequent tick that fans out per agency."""
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


# --- metrics and logs of the workers (docs/operations.md) ------------------------------------------------------


@signals.task_postrun.connect
def _count_task(sender=None, task=None, state=None, **kwargs):
    """Tasks by queue, task and outcome (SUCCESS, FAILURE, RETRY), and their run time."""
    # Imported here: this module loads with Django (agencybilling/__init__.py); metrics serve workers only.
    from core.metrics import TASK_SECONDS, TASKS

    request = getattr(task, "request", None)
    queue = ((getattr(request, "delivery_info", None) or {}).get("routing_key")) or "eager"
    TASKS.labels(queue=queue, task=getattr(task, "name", "?"), outcome=state or "UNKNOWN").inc()
    started = getattr(request, "_metrics_started", None)
    if started is not None:
        TASK_SECONDS.labels(queue=queue).observe(time.perf_counter() - started)


@signals.task_prerun.connect
def _start_task_clock(sender=None, task=None, **kwargs):
    if task is not None and task.request is not None:
        task.request._metrics_started = time.perf_counter()


@signals.worker_ready.connect
def _serve_worker_metrics(sender=None, **kwargs):
    """WORKER_METRICS_PORT: the worker's metrics (every pool process, in multiprocess mode) on that port."""
    port = int(os.environ.get("WORKER_METRICS_PORT") or 0)
    if not port:
        return
    # Imported here: this module loads with Django in every process (agencybilling/__init__.py); the metrics server
    # runs in workers only.
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # Imported here: as above, in multiprocess mode only.

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=os.environ.get("WORKER_METRICS_ADDR", "127.0.0.1"), registry=registry)


@signals.worker_process_shutdown.connect
def _forget_pool_process(pid=None, **kwargs):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Imported here: as above (a worker's pool process, in multiprocess mode only).
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _json_logs(logger=None, **kwargs):
    """LOG_FORMAT=json: the worker's and beat's own log lines as JSON too, with agency and task ids."""
    if getattr(settings, "LOG_FORMAT", "plain") != "json" or logger is None:
        return
    # Imported here: only with LOG_FORMAT=json, once settings are loaded (this module loads with Django).
    from core.logs import ContextFilter, json_formatter

    for handler in logger.handlers:
        handler.setFormatter(json_formatter())
        handler.addFilter(ContextFilter())
