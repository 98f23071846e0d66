"""Stripe webhooks: verified, stored first (unique event id), then processed by a task."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.platform.models import WebhookEvent, WebhookStatus
from billing.providers.base import ProviderError
from billing.providers.stripe import StripeProvider
from billing.settlement import provider_event_dispatch
from core.metrics import WEBHOOK_LAG_SECONDS

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = StripeProvider.webhook_verify(
            payload=request.body,
            signature=request.headers.get("Stripe-Signature", ""),
            secret=settings.STRIPE_WEBHOOK_SECRET,
        )
    except ProviderError as exc:
        return JsonResponse({"code": exc.code, "message": str(exc), "fields": {}}, status=400)
    event_id = event.get("id") or ""
    if not event_id:
        return JsonResponse({"code": "invalid_payload", "message": "The event has no id.", "fields": {}}, status=400)
    try:
        with transaction.atomic():
            stored = WebhookEvent.objects.create(
                event_id=event_id, event_type=event.get("type", ""), account=event.get("account") or "", payload=event
            )
    except IntegrityError:
        return JsonResponse({"status": "duplicate"})  # delivered before: nothing to do
    # Imported here: the services/tasks idiom (the task calls back into this module).
    from billing.tasks import webhook_process

    transaction.on_commit(lambda: webhook_process.delay(event_pk=stored.pk))
    return JsonResponse({"status": "received"})


def webhook_event_process(event_pk: int) -> str:
    """Apply one stored event once. Safe to run twice: a processed event is skipped."""

    with transaction.atomic():
        stored = WebhookEvent.objects.select_for_update().get(pk=event_pk)
        if stored.status in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED):
            return stored.status
        stored.attempts += 1
        event = StripeProvider.event_from_webhook(stored.payload)
        if event is None:
            stored.status, stored.processed_at = WebhookStatus.IGNORED, timezone.now()
            stored.save(update_fields=["status", "processed_at", "attempts"])
            return stored.status
        try:
            with transaction.atomic():
                outcome = provider_event_dispatch(event)
        except Exception as exc:
            stored.status, stored.error = WebhookStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
            stored.save(update_fields=["status", "error", "attempts"])
            logger.exception("webhook %s failed", stored.event_id)
            raise
        stored.status, stored.processed_at, stored.error = WebhookStatus.PROCESSED, timezone.now(), outcome
        stored.save(update_fields=["status", "processed_at", "error", "attempts"])
        WEBHOOK_LAG_SECONDS.observe((stored.processed_at - stored.received_at).total_seconds())
        return stored.status


WEBHOOK_MAX_ATTEMPTS = 9  # the task's own retries (8) plus the first run


def webhook_sweep(*, now: datetime, grace: timedelta) -> int:
    """Re-enqueue stored events whose processing task was lost (worker killed before or during it, broker
    restarted): received but unprocessed after `grace`, or failed and due again (backoff doubling from
    `grace`). Processing an event twice is harmless: a processed event is skipped."""
    # Imported here: the services/tasks idiom (the task calls back into this module).
    from billing.tasks import webhook_process

    due = []
    for pk, status, attempts, received_at in WebhookEvent.objects.filter(
        status__in=[WebhookStatus.RECEIVED, WebhookStatus.FAILED],
        attempts__lt=WEBHOOK_MAX_ATTEMPTS,
        received_at__lt=now - grace,
    ).values_list("pk", "status", "attempts", "received_at"):
        if status == WebhookStatus.RECEIVED or received_at + grace * 2 ** min(attempts, 12) <= now:
            due.append(pk)
    for pk in due:
        webhook_process.delay(event_pk=pk)
    return len(due)
