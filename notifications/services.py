"""Queue notices (exactly once per key) and send them over the configured email backend after commit."""

from __future__ import annotations

import logging
from datetime import date

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from notifications.models import Notice, NoticeTemplate, OutboxStatus
from notifications.rendering import render, render_default

logger = logging.getLogger(__name__)


def notice_enqueue(*, account: str, kind: str, period: str, number: int = 1, to_email: str, context: dict,
                   business_date: date) -> Notice | None:
    """Render and store a notice; None when that (account, kind, period, number) was already queued.

    A custom template that fails to render falls back to the default and the failure is recorded."""
    custom = NoticeTemplate.objects.filter(kind=kind).first()
    used_default, error = custom is None, ""
    if custom is not None:
        try:
            rendered = render(kind=kind, subject=custom.subject, body=custom.body, context=context)
        except Exception as exc:  # noqa: BLE001 - a broken custom template must not stop the notice
            rendered, used_default, error = render_default(kind=kind, context=context), True, f"{exc}"[:1000]
    else:
        rendered = render_default(kind=kind, context=context)
    try:
        with transaction.atomic():
            notice = Notice.objects.create(account=account, kind=kind, period=period, number=number,
                                           to_email=to_email, subject=rendered.subject[:500], body=rendered.body,
                                           used_default=used_default, template_error=error,
                                           business_date=business_date)
    except IntegrityError:
        return None  # NOT-7: already sent (or queued) for this key
    schema_name = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: _send_later(schema_name, notice.pk))
    return notice


def _send_later(schema_name: str, notice_pk: int) -> None:
    from notifications.tasks import notice_send

    notice_send.delay(schema_name=schema_name, notice_pk=notice_pk)


def notice_deliver(*, notice_pk: int) -> str:
    """Send one queued notice over SMTP (or the configured backend). Safe to run twice: a sent notice
    is not sent again; the row is locked while sending so two workers never both send it."""
    with transaction.atomic():
        notice = Notice.objects.select_for_update(skip_locked=True).filter(pk=notice_pk).first()
        if notice is None:
            return "busy"
        if notice.status == OutboxStatus.SENT:
            return "already sent"
        notice.attempts += 1
        failure: Exception | None = None
        try:
            EmailMessage(notice.subject, notice.body, settings.DEFAULT_FROM_EMAIL, [notice.to_email],
                         headers={"X-Notice-Key": f"{notice.account}/{notice.kind}/{notice.period}/{notice.number}"}
                         ).send(fail_silently=False)
        except Exception as exc:  # noqa: BLE001 - recorded on the row, then raised for the task to retry
            failure = exc
            notice.status, notice.last_error = OutboxStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
            notice.save(update_fields=["status", "last_error", "attempts"])
        else:
            notice.status, notice.sent_at, notice.last_error = OutboxStatus.SENT, timezone.now(), ""
            notice.save(update_fields=["status", "sent_at", "last_error", "attempts"])
    if failure is not None:
        raise failure
    return "sent"
