"""Sending notices: one task per batch of notices (one connection to the mail server), retried with backoff
when the mail server fails."""

from __future__ import annotations

from collections import Counter

from core.tasks import agency_task
from notifications.services import notice_deliver, notices_deliver


@agency_task(
    name="notifications.tasks.notices_send",
    autoretry_for=(Exception,),
    retry_backoff=30,
    retry_backoff_max=3600,
    max_retries=10,
)
def notices_send(*, schema_name: str, notice_pks: list[int]) -> dict[str, int]:
    return dict(Counter(notices_deliver(notice_pks=notice_pks).values()))


# Kept so that one-notice tasks queued before batches existed are still run.
@agency_task(
    name="notifications.tasks.notice_send",
    autoretry_for=(Exception,),
    retry_backoff=30,
    retry_backoff_max=3600,
    max_retries=10,
)
def notice_send(*, schema_name: str, notice_pk: int) -> str:
    return notice_deliver(notice_pk=notice_pk)
