"""Queue notices (exactly once per key) and send them over the configured email backend after commit."""

from __future__ import annotations

import hashlib
import logging
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import audit_record
from notifications.catalog import CATALOG
from notifications.models import Notice, NoticeTemplate, OutboxStatus
from notifications.rendering import Rendered, TemplateInvalid, render, render_default, template_validate

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


MAX_SEND_ATTEMPTS = 10


def notice_key(notice: Notice) -> str:
    """The outbox key, sent as the X-Notice-Key header so a mail log can be matched to the row."""
    return f"{notice.account}/{notice.kind}/{notice.period}/{notice.number}"


def _close_quietly(mail) -> None:
    try:
        mail.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail too; nothing to do
        logger.debug("closing the mail connection failed", exc_info=True)


def _record(notice_pk: int, *, from_statuses: tuple[str, ...], **fields) -> int:
    """A conditional update of the row that survives a database restart: after the mail has left, losing
    the record of it would leave the notice SENDING (then UNCERTAIN), so retry for about two minutes."""
    for delay in (0, 0.5, 1, 2, 4, 8, 15, 30, 30, 30):
        time.sleep(delay)
        try:
            return Notice.objects.filter(pk=notice_pk, status__in=from_statuses).update(**fields)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block:
                raise
            logger.warning("recording notice %s failed (%s); retrying", notice_pk, exc)
            connection.close()
    logger.error("could not record notice %s as %s", notice_pk, fields.get("status"))
    return 0


def notice_deliver(*, notice_pk: int) -> str:
    """Send one queued notice, at most once (NOT-7): claim, send, record.

    The claim (PENDING or FAILED → SENDING) is committed before the mail server is called, so two senders
    never both send a notice, and a sender that dies mid-send leaves it SENDING: `outbox_sweep` later marks
    it UNCERTAIN instead of sending it again. The connection to the mail server is opened before the claim,
    so an unreachable server is a plain failure (FAILED, retried with backoff). A refusal by the server
    (an SMTP error reply) is FAILED too; any other error mid-send (connection lost, timeout) may have
    happened after the server took the message, so it is UNCERTAIN and is not retried."""
    notice = Notice.objects.filter(pk=notice_pk).first()
    if notice is None:
        return "missing"
    if notice.status not in (OutboxStatus.PENDING, OutboxStatus.FAILED):
        return {OutboxStatus.SENT: "already sent", OutboxStatus.SENDING: "busy"}.get(notice.status, "uncertain")
    if notice.attempts >= MAX_SEND_ATTEMPTS:
        return "gave up"
    mail = get_connection(fail_silently=False)
    try:
        mail.open()
    except Exception as exc:
        Notice.objects.filter(pk=notice_pk, status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED]).update(
            status=OutboxStatus.FAILED, attempts=F("attempts") + 1, claimed_at=timezone.now(),
            last_error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    try:
        claimed = Notice.objects.filter(pk=notice_pk, status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED]).update(
            status=OutboxStatus.SENDING, attempts=F("attempts") + 1, claimed_at=timezone.now())
        if not claimed:
            return "busy"
        # A Message-ID derived from the key: should anyone ever resend an Uncertain notice by hand, mail
        # clients that de-duplicate by Message-ID show it once.
        digest = hashlib.sha256(f"{connection.schema_name}:{notice_key(notice)}".encode()).hexdigest()[:32]  # type: ignore[attr-defined]
        message = EmailMessage(notice.subject, notice.body, settings.DEFAULT_FROM_EMAIL, [notice.to_email],
                               headers={"X-Notice-Key": notice_key(notice),
                                        "Message-ID": f"<notice-{digest}@{settings.BASE_DOMAIN}>"},
                               connection=mail)
        try:
            message.send(fail_silently=False)
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
            # The server answered "no": the message did not leave. Retried later.
            _record(notice_pk, from_statuses=(OutboxStatus.SENDING,), status=OutboxStatus.FAILED,
                    last_error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        except Exception as exc:  # noqa: BLE001 - it may have left: never send it again
            logger.warning("notice %s may or may not have been sent: %s", notice_pk, exc)
            _record(notice_pk, from_statuses=(OutboxStatus.SENDING,), status=OutboxStatus.UNCERTAIN,
                    last_error=f"{type(exc).__name__}: {exc}"[:2000])
            return "uncertain"
        _record(notice_pk, from_statuses=(OutboxStatus.SENDING,), status=OutboxStatus.SENT,
                sent_at=timezone.now(), last_error="")
        return "sent"
    finally:
        _close_quietly(mail)


@dataclass
class OutboxSweep:
    requeued: int = 0
    uncertain: int = 0


def _retry_after(attempts: int) -> timedelta:
    """Backoff between send attempts: 30 s, 1 min, 2 min, ... at most an hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def outbox_sweep(*, now: datetime, grace: timedelta, sending_timeout: timedelta,
                 send: Callable[[int], None] | None = None) -> OutboxSweep:
    """Re-enqueue what was committed but never sent, in the current agency schema.

    A notice's send task can be lost: the worker died between the commit and the after-commit enqueue, the
    broker lost its queue (Redis restarted without persistence), or a worker died holding the message (Redis
    redelivers it only after the visibility timeout). So: PENDING notices older than `grace` and FAILED ones
    whose backoff has passed are enqueued again (a second enqueue is harmless: sending claims the row); a
    notice SENDING for longer than `sending_timeout` lost its sender mid-send and becomes UNCERTAIN."""
    schema_name = connection.schema_name  # type: ignore[attr-defined]
    send = send or (lambda pk: _send_later(schema_name, pk))
    result = OutboxSweep()
    stale = Notice.objects.filter(status=OutboxStatus.SENDING, claimed_at__lt=now - sending_timeout)
    result.uncertain = stale.update(
        status=OutboxStatus.UNCERTAIN,
        last_error="The sender stopped while sending; not sent again so that it is never sent twice.")
    due = []
    # Once enqueued again, a notice waits another grace period before the next re-enqueue: a long but
    # healthy queue is not flooded with copies.
    for pk, status, attempts, claimed_at, created_at in Notice.objects.filter(
            status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED], attempts__lt=MAX_SEND_ATTEMPTS,
            created_at__lt=now - grace).exclude(requeued_at__gte=now - grace).values_list(
            "pk", "status", "attempts", "claimed_at", "created_at"):
        last = claimed_at or created_at
        if status == OutboxStatus.PENDING or last + _retry_after(attempts) <= now:
            due.append(pk)
    Notice.objects.filter(pk__in=due).update(requeued_at=now)
    for pk in due:
        send(pk)
    result.requeued = len(due)
    if result.requeued or result.uncertain:
        logger.info("outbox sweep %s: %d re-enqueued, %d uncertain", schema_name, result.requeued, result.uncertain)
    return result


def notice_template_save(*, kind: str, subject: str, body: str, actor) -> NoticeTemplate:
    """Save the agency's own subject and body for a notice kind, after `template_validate` (a syntax error
    is refused with its line number; reaching outside the documented variables is refused). Audited."""
    if kind not in CATALOG:
        raise TemplateInvalid("Unknown notice.", fields={"kind": [f"Must be one of {', '.join(CATALOG)}."]})
    template_validate(kind=kind, subject=subject, body=body)
    with transaction.atomic():
        current = NoticeTemplate.objects.select_for_update().filter(kind=kind).first()
        before = {"subject": current.subject, "body": current.body} if current else {}
        template, _ = NoticeTemplate.objects.update_or_create(
            kind=kind, defaults={"subject": subject, "body": body,
                                 "updated_by": getattr(actor, "email", "") or str(actor or "")})
        audit_record(actor=actor, action="notice_template.save", obj=template, before=before,
                     after={"subject": subject, "body": body})
    return template


def notice_template_reset(*, kind: str, actor) -> None:
    """Go back to the shipped default for a notice kind. Audited."""
    with transaction.atomic():
        template = NoticeTemplate.objects.select_for_update().filter(kind=kind).first()
        if template is None:
            return
        audit_record(actor=actor, action="notice_template.reset", obj=template,
                     before={"subject": template.subject, "body": template.body})
        template.delete()


def notice_preview(*, kind: str, subject: str, body: str, context: dict) -> Rendered:
    """Render a draft template against real data for the editor's live preview; refuses what save refuses."""
    template_validate(kind=kind, subject=subject, body=body)
    return render(kind=kind, subject=subject, body=body, context=context)
