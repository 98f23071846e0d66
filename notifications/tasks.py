"""Sending notices: one task per notice, retried with backoff when the mail server fails."""

from __future__ import annotations

from core.tasks import agency_task
from notifications.services import notice_deliver


@agency_task(name="notifications.tasks.notice_send", autoretry_for=(Exception,), retry_backoff=30,
             retry_backoff_max=3600, max_retries=10)
def notice_send(*, schema_name: str, notice_pk: int) -> str:
    return notice_deliver(notice_pk=notice_pk)
