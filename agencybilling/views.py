"""Views that exist on every host: health check, favicon and the landing redirect."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from core.metrics import PlatformCollector, exposition
from core.redis_clients import redis_client


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachability, as JSON; 503 when either is down."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is "down", reported as text
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis_client(settings.CELERY_BROKER_URL, timeout=2).ping()
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", **checks}, status=200 if healthy else 503)


FAVICON = settings.BASE_DIR / "static" / "img" / "favicon.ico"


@cache_control(max_age=86400, public=True)
@require_GET
def favicon(request: HttpRequest) -> FileResponse:
    """`/favicon.ico`, which browsers and feed readers ask for whatever the page's <link rel="icon"> says."""
    return FileResponse(FAVICON.open("rb"), content_type="image/x-icon")


def _queue_depths() -> dict[str, int]:
    client = redis_client(settings.CELERY_BROKER_URL, timeout=2)
    return {name: int(client.llen(name)) for name in settings.CELERY_QUEUE_NAMES}


def _waiting() -> dict[str, float]:
    """What waits in the database: provider events not processed yet (and the oldest one's age), agencies whose
    clock is behind their local day (a day stuck or workers down)."""
    from billing.clock import agencies_due  # Imported here: read only when /metrics is scraped.
    from billing.platform.models import WebhookEvent, WebhookStatus  # Imported here: as above.

    now = timezone.now()
    waiting = WebhookEvent.objects.exclude(status__in=[WebhookStatus.PROCESSED, WebhookStatus.IGNORED])
    oldest = waiting.aggregate(oldest=Min("received_at"))["oldest"]
    return {
        "webhook_events_waiting": waiting.count(),
        "webhook_oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else 0.0,
        "agencies_with_days_due": len(agencies_due(now)),
    }


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus: this host's counters (every process in multiprocess mode) and the platform's gauges. With
    METRICS_TOKEN set, a bearer token is required; without, only this machine may scrape."""
    token = settings.METRICS_TOKEN
    if token:
        if not constant_time_compare(request.META.get("HTTP_AUTHORIZATION", ""), f"Bearer {token}"):
            return HttpResponse(status=404)
    elif request.META.get("REMOTE_ADDR") not in ("127.0.0.1", "::1"):
        return HttpResponse(status=404)
    body = exposition(PlatformCollector(queue_depths=_queue_depths, waiting=_waiting))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
