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

from accounts.models import audit_record
from billing.platform.models import WebhookEvent, WebhookStatus
from billing.providers.base import ProviderError
from billing.providers.stripe import StripeProvider
from billing.settlement import provider_event_dispatch
from core.errors import ApplicationError, NotFound
from core.metrics import WEBHOOK_LAG_SECONDS

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    # Stripe signs the platform's events and its connected accounts' events (Connect endpoint: account.updated,
    # payouts) with each endpoint's own secret.
    secrets = [s for s in (settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_CONNECT_WEBHOOK_SECRET) if s]
    event: dict | None = None
    refusal = ProviderError("Invalid or stale webhook signature.", code="invalid_signature")
    for secret in secrets or [""]:
        try:
            event = StripeProvider.webhook_verify(
                payload=request.body, signature=request.headers.get("Stripe-Signature", ""), secret=secret
            )
            break
        except ProviderError as exc:
            refusal = exc
    if event is None:
        return JsonResponse({"code": refusal.code, "message": str(refusal), "fields": {}}, status=400)
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
    """Apply one stored event once. Safe to run twice: a processed event is skipped.

    If applying it fails, everything it did is rolled back, and the failure — status, error, one more attempt — is
    then written in a transaction of its own, so it is never rolled back with the work (before, the FAILED row went
    down with it: the event stayed "received" with no error, and was re-enqueued for ever). After
    `WEBHOOK_MAX_ATTEMPTS` failures the event is a dead letter: no more retries, listed on the support console,
    where it can be replayed once its cause is fixed."""
    try:
        with transaction.atomic():
            stored = WebhookEvent.objects.select_for_update().get(pk=event_pk)
            if stored.status in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED, WebhookStatus.DEAD):
                return stored.status
            event = StripeProvider.event_from_webhook(stored.payload)
            if event is None:
                stored.status, stored.processed_at = WebhookStatus.IGNORED, timezone.now()
                stored.attempts += 1
                stored.save(update_fields=["status", "processed_at", "attempts"])
                return stored.status
            outcome = provider_event_dispatch(event)
            stored.status, stored.processed_at, stored.error = WebhookStatus.PROCESSED, timezone.now(), outcome
            stored.attempts += 1
            stored.save(update_fields=["status", "processed_at", "error", "attempts"])
            WEBHOOK_LAG_SECONDS.observe((stored.processed_at - stored.received_at).total_seconds())
            return stored.status
    except Exception as exc:
        status = _failure_record(event_pk, exc)
        if status == WebhookStatus.DEAD:
            logger.error("webhook event %s is a dead letter after %d attempts: %s", event_pk, WEBHOOK_MAX_ATTEMPTS, exc)
            return status  # no more retries: billing support replays it from the console
        logger.warning("webhook event %s failed, to be retried: %s", event_pk, exc)
        raise


def _failure_record(event_pk: int, exc: Exception) -> str:
    """Write a failed attempt in its own transaction (the work's was rolled back); the status it leaves."""
    with transaction.atomic():
        stored = WebhookEvent.objects.select_for_update().get(pk=event_pk)
        stored.attempts += 1
        stored.error = f"{type(exc).__name__}: {exc}"[:2000]
        stored.status = WebhookStatus.DEAD if stored.attempts >= WEBHOOK_MAX_ATTEMPTS else WebhookStatus.FAILED
        stored.save(update_fields=["status", "error", "attempts"])
        return stored.status


def webhook_replay(*, event_id: str, actor) -> WebhookEvent:
    """Billing support sends a dead-letter (or failed) event through processing again, with a fresh allowance of
    attempts; audited. Processing is idempotent, so a replay can never apply an event twice."""
    # Imported here: the services/tasks idiom (the task calls back into this module).
    from billing.tasks import webhook_process

    with transaction.atomic():
        stored = WebhookEvent.objects.select_for_update().filter(event_id=event_id).first()
        if stored is None:
            raise NotFound("No such webhook event.")
        if stored.status not in (WebhookStatus.DEAD, WebhookStatus.FAILED):
            raise ApplicationError(
                f"Only a failed event can be replayed; this one is {WebhookStatus(stored.status).label.lower()}.",
                code="not_replayable",
                fields={"event": ["Not failed."]},
            )
        before = {"status": stored.status, "attempts": stored.attempts, "error": stored.error}
        stored.status, stored.attempts = WebhookStatus.RECEIVED, 0
        stored.save(update_fields=["status", "attempts"])
        audit_record(actor=actor, action="webhook.replay", obj=stored, before=before, after={"status": "RECEIVED"})
        transaction.on_commit(lambda: webhook_process.delay(event_pk=stored.pk))
    return stored


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
