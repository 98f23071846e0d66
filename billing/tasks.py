"""Billing tasks: thin, one service call each, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from billing.webhooks import webhook_event_process


@shared_task(
    name="billing.tasks.webhook_process",
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=8,
)
def webhook_process(*, event_pk: int) -> str:
    """A platform task (public schema): the event routes itself to its agency."""
    return webhook_event_process(event_pk)
