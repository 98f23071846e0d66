"""Delivering webhooks: one task per delivery attempt; a failed attempt schedules the next one."""

from __future__ import annotations

from django.utils import timezone

from core.tasks import agency_task
from integrations.services import delivery_attempt


@agency_task(name="integrations.tasks.webhook_deliver")
def webhook_deliver(*, schema_name: str, delivery_pk: int, manual: bool = False) -> str:
    result = delivery_attempt(delivery_pk=delivery_pk, now=timezone.now(), manual=manual)
    if result.retry_in is not None:
        webhook_deliver.apply_async(
            kwargs={"schema_name": schema_name, "delivery_pk": delivery_pk}, countdown=result.retry_in
        )
    return result.status
