"""Views that exist on every host: health check, favicon and the landing redirect."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import FileResponse, HttpRequest, JsonResponse
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET

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
