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
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import audit_record
from core.metrics import NOTICES
from notifications.catalog import CATALOG
from notifications.layout import Branding, branded_message
from notifications.mime import alternative_message_bytes, envelope_address, header_value
from notifications.models import Notice, NoticeTemplate, OutboxStatus
from notifications.rendering import Rendered, TemplateInvalid, render, render_default, template_validate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoticeDraft:
    """A notice to queue: its key (account, kind, period, number — NOT-7), recipient and template variables."""

    account: str
    kind: str
    period: str
    number: int
    to_email: str
    context: dict
    business_date: date


def _rendered(kind: str, context: dict, custom: NoticeTemplate | None) -> tuple[Rendered, bool, str]:
    """(subject and body, whether the default was used, the custom template's error). A custom template that
    fails to render falls back to the default and the failure is recorded."""
    if custom is None:
        return render_default(kind=kind, context=context), True, ""
    try:
        return render(kind=kind, subject=custom.subject, body=custom.body, context=context), False, ""
    except Exception as exc:  # noqa: BLE001 - a broken custom template must not stop the notice
        return render_default(kind=kind, context=context), True, f"{exc}"[:1000]


def notice_enqueue(
    *, account: str, kind: str, period: str, number: int = 1, to_email: str, context: dict, business_date: date
) -> Notice | None:
    """Render and store one notice (`notices_enqueue` for one); None when that (account, kind, period, number)
    was already queued."""
    inserted = notices_enqueue(
        drafts=[
            NoticeDraft(
                account=account,
                kind=kind,
                period=period,
                number=number,
                to_email=to_email,
                context=context,
                business_date=business_date,
            )
        ]
    )
    return Notice.objects.get(pk=inserted[0]) if inserted else None


def notices_enqueue(*, drafts: list[NoticeDraft]) -> list[int]:
    """`notice_enqueue` for many notices at once: the templates read once, the rows written by one INSERT that
    skips every key already queued (the unique constraint decides, NOT-7 — also between two drafts of the same
    batch), and one send task for all of them after commit. Returns the ids of the rows inserted, in order."""
    if not drafts:
        return []
    custom = {t.kind: t for t in NoticeTemplate.objects.filter(kind__in={d.kind for d in drafts})}
    columns: dict[str, list] = {
        name: []
        for name in (
            "account",
            "kind",
            "period",
            "number",
            "to_email",
            "subject",
            "body",
            "used_default",
            "template_error",
            "business_date",
        )
    }
    for draft in drafts:
        rendered, used_default, error = _rendered(draft.kind, draft.context, custom.get(draft.kind))
        for name, value in (
            ("account", draft.account),
            ("kind", draft.kind),
            ("period", draft.period),
            ("number", draft.number),
            ("to_email", draft.to_email),
            ("subject", rendered.subject[:500]),
            ("body", rendered.body),
            ("used_default", used_default),
            ("template_error", error),
            ("business_date", draft.business_date),
        ):
            columns[name].append(value)
    types = {"number": "int[]", "used_default": "boolean[]", "business_date": "date[]"}
    names = ", ".join(columns)
    arrays = ", ".join(f"%s::{types.get(name, 'text[]')}" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Notice._meta.db_table} ({names}, status, attempts, last_error, created_at) "
            f"SELECT {names}, %s, 0, '', %s FROM unnest({arrays}) WITH ORDINALITY AS v({names}, position) "
            "ORDER BY position ON CONFLICT (account, kind, period, number) DO NOTHING RETURNING id",
            [OutboxStatus.PENDING, timezone.now(), *columns.values()],
        )
        inserted = [row[0] for row in cursor.fetchall()]
    if inserted:
        schema_name = connection.schema_name  # type: ignore[attr-defined]
        # Sent from the notices' own schema, whatever schema the connection is in when the transaction commits (a
        # notice queued for an agency from a public-schema transaction: the agency's own invoice, PAY-3).
        transaction.on_commit(lambda: _send_later_from(schema_name, inserted))
    return inserted


SEND_BATCH = 100  # notices per send task: one SMTP connection each
# Notices claimed by one statement and recorded SENT by one statement (`notices_deliver`): a sender that dies
# mid-group leaves up to this many Uncertain (docs/decisions/clock-and-notices.md, "Notices are claimed in groups").
CLAIM_GROUP = 20


def _send_later_from(schema_name: str, notice_pks: list[int]) -> None:
    with schema_context(schema_name):
        _send_later(schema_name, notice_pks)


def _send_later(schema_name: str, notice_pks: list[int]) -> None:
    # Imported here: the services/tasks idiom (the task calls back into this module).
    from notifications.tasks import notices_send

    for start in range(0, len(notice_pks), SEND_BATCH):
        notices_send.delay(schema_name=schema_name, notice_pks=notice_pks[start : start + SEND_BATCH])


MAX_SEND_ATTEMPTS = 10


def notice_key(notice: Notice) -> str:
    """The outbox key, sent as the X-Notice-Key header so a mail log can be matched to the row."""
    return f"{notice.account}/{notice.kind}/{notice.period}/{notice.number}"


def _close_quietly(mail) -> None:
    try:
        mail.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail too; nothing to do
        logger.debug("closing the mail connection failed", exc_info=True)


def _retrying(what: str, write: Callable[[], int]) -> int:
    """A write that survives a database restart: after the mail has left, losing the record of it would leave the
    notice SENDING (then UNCERTAIN), so retry for about two minutes."""
    for delay in (0, 0.5, 1, 2, 4, 8, 15, 30, 30, 30):
        time.sleep(delay)
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block:
                raise
            logger.warning("recording %s failed (%s); retrying", what, exc)
            connection.close()
    logger.error("could not record %s", what)
    return 0


def _record(notice_pk: int, *, from_statuses: tuple[str, ...], **fields) -> int:
    """A conditional update of one notice's row, retried across a database restart (`_retrying`)."""
    return _retrying(
        f"notice {notice_pk} as {fields.get('status')}",
        lambda: Notice.objects.filter(pk=notice_pk, status__in=from_statuses).update(**fields),
    )


def notice_deliver(*, notice_pk: int) -> str:
    """Send one queued notice, at most once (NOT-7): `notices_deliver` for one."""
    return notices_deliver(notice_pks=[notice_pk])[notice_pk]


_CLAIMABLE = (OutboxStatus.PENDING, OutboxStatus.FAILED)


def _message(notice: Notice, mail, branding: Branding | None = None) -> EmailMessage:
    """The plain text as written and the agency's branded HTML layout beside it (notifications/layout.py).
    A Message-ID derived from the key: should anyone ever resend an Uncertain notice by hand, mail clients that
    de-duplicate by Message-ID show it once."""
    digest = hashlib.sha256(f"{connection.schema_name}:{notice_key(notice)}".encode()).hexdigest()[:32]  # type: ignore[attr-defined]
    headers = {"X-Notice-Key": notice_key(notice), "Message-ID": f"<notice-{digest}@{settings.BASE_DOMAIN}>"}
    try:
        return branded_message(
            subject=notice.subject,
            body=notice.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[notice.to_email],
            branding=branding or _branding(),
            headers=headers,
            connection=mail,
        )
    except Exception:  # noqa: BLE001 - the layout must never stop a notice (nor leave it Uncertain): plain text
        logger.exception("branded layout failed for notice %s; sending plain text", notice.pk)
        return EmailMessage(
            header_value(notice.subject),
            notice.body,
            settings.DEFAULT_FROM_EMAIL,
            [header_value(notice.to_email)],
            headers=headers,
            connection=mail,
        )


@dataclass(frozen=True)
class _Ready:
    """A notice's message with everything that can fail before a byte goes to the mail server done: over Django's
    SMTP backend, its envelope and bytes; over any other backend, the message, built once (`envelope` None)."""

    message: EmailMessage
    envelope: tuple[str, list[str], bytes] | None = None

    def send(self, mail) -> None:
        smtp = getattr(mail, "connection", None)
        if self.envelope is not None and isinstance(smtp, smtplib.SMTP):
            smtp.sendmail(*self.envelope)
        else:
            self.message.connection = mail
            self.message.send(fail_silently=False)


def _prepared(message: EmailMessage, mail) -> _Ready:
    """Everything about sending the message that can fail before a byte goes to the mail server — building its
    bytes, checking its headers and addresses — done now. Over Django's SMTP backend with its connection open, the
    bytes are written by `notifications.mime` and handed to the connection by `_Ready.send` (the same exchange as
    `message.send()`, a fraction of the time); any other backend (console, locmem in development) gets
    `message.send()`, its message built first."""
    smtp = getattr(mail, "connection", None)
    alternatives = getattr(message, "alternatives", [])
    if not isinstance(smtp, smtplib.SMTP) or not hasattr(mail, "prep_address") or len(alternatives) != 1:
        message.message()  # the headers are checked here (Django refuses a line break in a header value)
        return _Ready(message)
    data = alternative_message_bytes(
        subject=message.subject,
        body=message.body,
        html=alternatives[0].content,
        from_email=message.from_email,
        to=message.to,
        headers=message.extra_headers,
    )
    recipients = [envelope_address(address, mail.prep_address) for address in message.recipients()]
    sender = envelope_address(message.from_email, mail.prep_address)
    return _Ready(message, (sender, recipients, data))


def _branding() -> Branding:
    """The branding of the agency whose schema is current (read through django-tenants' tenant model, so this
    app imports nothing of the tenants app)."""
    from django_tenants.utils import get_tenant_model

    tenant = getattr(connection, "tenant", None)
    if not hasattr(tenant, "brand_color"):  # a schema set by name only (schema_context): load the agency
        tenant = get_tenant_model().objects.filter(schema_name=connection.schema_name).first()  # type: ignore[attr-defined]
    return Branding.of(tenant)


def notice_test_send(*, kind: str, subject: str, body: str, context: dict, to_email: str, agency) -> Rendered:
    """Send a draft template, rendered with real data, to one address (the editor's "Send test email"): the
    same checks as saving, the same rendering and layout as a real notice, nothing queued or recorded."""
    template_validate(kind=kind, subject=subject, body=body)
    rendered = render(kind=kind, subject=subject, body=body, context=context)
    message = branded_message(
        subject=f"[Test] {rendered.subject}",
        body=rendered.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to_email],
        branding=Branding.of(agency),
        headers={"X-Notice-Test": kind},
    )
    message.send(fail_silently=False)
    return rendered


def notices_deliver(*, notice_pks: list[int], deadline: float | None = None) -> dict[int, str]:
    """Send queued notices over one connection to the mail server, each at most once (NOT-7), in groups of
    `CLAIM_GROUP`: claim the group, send each of its notices, record the group's SENT. Returns what became of each
    notice: sent, already sent, busy, uncertain, failed, gave up, missing, deferred (`deadline`, a
    `time.monotonic()` value, passed before it was sent: left PENDING, as it was).

    A group's claim (PENDING or FAILED → SENDING) is one statement, committed before any of its notices is handed to
    the mail server, so two senders never both send a notice; the notices the server accepted are recorded SENT
    together by one statement once the group is done. A sender that dies mid-group leaves that group's claimed
    notices SENDING — those it had sent and those it had not yet — and `outbox_sweep` later marks them UNCERTAIN
    instead of sending them again: never sent twice, at the cost of up to a group listed for a person to check
    (docs/decisions/clock-and-notices.md); the groups after it are still PENDING and are sent by a later task. A
    sender that stops with an error of its own hands the group's notices it had not sent back as FAILED.
    The connection is opened before a claim, so an unreachable server is a plain failure (FAILED, retried with
    backoff). A refusal by the server (an SMTP error reply) is FAILED too; the batch goes on and the task raises at
    the end so the refused ones are retried. Any other error mid-send (connection lost, timeout) may have happened
    after the server took the message, so that notice is UNCERTAIN and not retried; the rest go over a new
    connection."""
    results: dict[int, str] = {}
    notices = Notice.objects.in_bulk(notice_pks)
    todo: list[Notice] = []
    for pk in dict.fromkeys(notice_pks):  # a notice listed twice is still sent once
        notice = notices.get(pk)
        if notice is None:
            results[pk] = "missing"
        elif notice.status not in _CLAIMABLE:
            results[pk] = {OutboxStatus.SENT: "already sent", OutboxStatus.SENDING: "busy"}.get(
                notice.status, "uncertain"
            )
        elif notice.attempts >= MAX_SEND_ATTEMPTS:
            results[pk] = "gave up"
        else:
            todo.append(notice)
    refused: Exception | None = None
    mail = None
    branding = _batch_branding() if todo else None
    try:
        for start in range(0, len(todo), CLAIM_GROUP):
            group, later = todo[start : start + CLAIM_GROUP], todo[start + CLAIM_GROUP :]
            if deadline is not None and time.monotonic() >= deadline:
                results.update((notice.pk, "deferred") for notice in todo[start:])
                break
            if mail is None:
                mail = _connection_open(unclaimed=group + later)
            claimed = _claim([notice.pk for notice in group])
            results.update((notice.pk, "busy") for notice in group if notice.pk not in claimed)
            mail, error = _group_send(
                [notice for notice in group if notice.pk in claimed], mail, branding, results, later, deadline
            )
            refused = refused or error
    finally:
        if mail is not None:
            _close_quietly(mail)
    if refused is not None:
        raise refused  # the task is retried with backoff; what was sent meanwhile is "already sent" then
    return {pk: results[pk] for pk in dict.fromkeys(notice_pks)}


def _batch_branding() -> Branding | None:
    """The agency's branding, read once for a batch; None (each message then tries again, falling back to plain
    text) when it cannot be read."""
    try:
        return _branding()
    except Exception:  # noqa: BLE001 - the layout must never stop a notice
        logger.exception("reading the agency's branding failed")
        return None


def _connection_open(*, unclaimed: list[Notice]):
    """An open connection to the mail server. When it cannot be opened, the notices still to send (none of them
    claimed) failed this time and are retried with backoff, and the error goes up."""
    mail = get_connection(fail_silently=False)
    try:
        mail.open()
    except Exception as exc:
        Notice.objects.filter(pk__in=[n.pk for n in unclaimed], status__in=_CLAIMABLE).update(
            status=OutboxStatus.FAILED,
            attempts=F("attempts") + 1,
            claimed_at=timezone.now(),
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        raise
    return mail


def _claim(notice_pks: list[int]) -> set[int]:
    """Claim notices for sending (PENDING or FAILED → SENDING), one statement, committed: the ids claimed. A notice
    another sender claimed first (or that was sent meanwhile) is not among them."""
    table = Notice._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, attempts = attempts + 1, claimed_at = %s "  # noqa: S608 - the model's table
            "WHERE id = ANY(%s) AND status IN (%s, %s) RETURNING id",
            [OutboxStatus.SENDING, timezone.now(), notice_pks, *_CLAIMABLE],
        )
        return {row[0] for row in cursor.fetchall()}


def _group_send(
    group: list[Notice],
    mail,
    branding: Branding | None,
    results: dict[int, str],
    later: list[Notice],
    deadline: float | None = None,
) -> tuple[object, Exception | None]:
    """Send a claimed group over `mail` (a new connection after an uncertain send), then record the notices the
    server accepted SENT in one statement. Returns the connection (None when it is to be reopened) and the first
    refusal. Should sending stop with an error, what was sent is still recorded SENT and the claimed notices not yet
    handed to the server go back to FAILED (nothing of them left this process: retried); at the deadline, they go
    back to PENDING, unattempted."""
    handed: list[tuple[int, datetime]] = []  # accepted by the server, recorded SENT together at the end
    waiting = list(reversed(group))  # claimed, not yet handed to the server; the next one last
    refused: Exception | None = None
    try:
        # Every message of the group built first, so that the sends then follow one another as closely as a bare
        # loop's: the mail server answers each command at once instead of waking for it after a pause.
        ready: dict[int, _Ready | Exception] = {}
        for notice in group:
            try:
                ready[notice.pk] = _prepared(_message(notice, mail, branding), mail)
            except Exception as exc:  # noqa: BLE001 - recorded when its turn comes: nothing was sent
                ready[notice.pk] = exc
        while waiting:
            if deadline is not None and time.monotonic() >= deadline:
                _unclaim(waiting)
                results.update((notice.pk, "deferred") for notice in waiting)
                waiting = []
                break
            if mail is None:
                mail = _connection_open(unclaimed=later)
            notice = waiting.pop()  # from here on it may leave: never handed back
            outcome, error = _deliver_one(notice, mail, ready[notice.pk])
            results[notice.pk] = outcome
            NOTICES.labels(result=outcome).inc()
            if outcome == "sent":
                handed.append((notice.pk, timezone.now()))
            elif outcome == "failed":
                refused = refused or error
            else:  # uncertain: the connection is in an unknown state, the next notice gets a new one
                _close_quietly(mail)
                mail = None
    finally:
        _record_sent(handed)
        if waiting:
            _release(waiting)
    return mail, refused


def _record_sent(handed: list[tuple[int, datetime]]) -> None:
    """Record notices the mail server accepted as SENT, each with the time it was handed over: one statement."""
    if not handed:
        return
    table = Notice._meta.db_table

    def write() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS n SET status = %s, sent_at = v.sent_at, last_error = '' "  # noqa: S608 - the model's table
                "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, sent_at) WHERE n.id = v.id AND n.status = %s",
                [OutboxStatus.SENT, [pk for pk, _ in handed], [at for _, at in handed], OutboxStatus.SENDING],
            )
            return cursor.rowcount

    _retrying(f"{len(handed)} notices as SENT", write)


def _release(waiting: list[Notice]) -> None:
    """Claimed notices never handed to the mail server, back to FAILED (retried with backoff). If even that fails,
    they stay SENDING and become UNCERTAIN: never sent twice."""
    try:
        Notice.objects.filter(pk__in=[n.pk for n in waiting], status=OutboxStatus.SENDING).update(
            status=OutboxStatus.FAILED, last_error="The sender stopped before sending it; it was not sent."
        )
    except Exception:  # noqa: BLE001 - the error that stopped the sender is the one to report
        logger.exception("handing back %d claimed notices failed; they will be Uncertain", len(waiting))


def _unclaim(waiting: list[Notice]) -> None:
    """Claimed notices not handed to the mail server, back as they were (PENDING or FAILED; the claim's attempt
    undone)."""
    for status in {notice.status for notice in waiting}:
        Notice.objects.filter(pk__in=[n.pk for n in waiting if n.status == status], status=OutboxStatus.SENDING).update(
            status=status, attempts=F("attempts") - 1
        )


def _deliver_one(notice: Notice, mail, ready: _Ready | Exception) -> tuple[str, Exception | None]:
    """Send one claimed notice, its message prepared (or the error that stopped preparing it). A failure is recorded
    at once; a success is recorded with its group."""
    if isinstance(ready, Exception):  # nothing reached the mail server: a plain failure, retried (NOT-7)
        exc = ready
        logger.warning("notice %s could not be prepared, not sent: %s", notice.pk, exc)
        _record(
            notice.pk,
            from_statuses=(OutboxStatus.SENDING,),
            status=OutboxStatus.FAILED,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        return "failed", exc
    try:
        ready.send(mail)
    except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
        # The server answered "no": the message did not leave. Retried later.
        _record(
            notice.pk,
            from_statuses=(OutboxStatus.SENDING,),
            status=OutboxStatus.FAILED,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        return "failed", exc
    except Exception as exc:  # noqa: BLE001 - it may have left: never send it again
        logger.warning("notice %s may or may not have been sent: %s", notice.pk, exc)
        _record(
            notice.pk,
            from_statuses=(OutboxStatus.SENDING,),
            status=OutboxStatus.UNCERTAIN,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        return "uncertain", None
    return "sent", None


@dataclass
class OutboxSweep:
    requeued: int = 0
    uncertain: int = 0


def _retry_after(attempts: int) -> timedelta:
    """Backoff between send attempts: 30 s, 1 min, 2 min, ... at most an hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def outbox_sweep(
    *, now: datetime, grace: timedelta, sending_timeout: timedelta, send: Callable[[int], None] | None = None
) -> OutboxSweep:
    """Re-enqueue what was committed but never sent, in the current agency schema.

    A notice's send task can be lost: the worker died between the commit and the after-commit enqueue, the
    broker lost its queue (Redis restarted without persistence), or a worker died holding the message (Redis
    redelivers it only after the visibility timeout). So: PENDING notices older than `grace` and FAILED ones
    whose backoff has passed are enqueued again (a second enqueue is harmless: sending claims the row); a
    notice SENDING for longer than `sending_timeout` lost its sender mid-send and becomes UNCERTAIN."""
    schema_name = connection.schema_name  # type: ignore[attr-defined]
    result = OutboxSweep()
    stale = Notice.objects.filter(status=OutboxStatus.SENDING, claimed_at__lt=now - sending_timeout)
    result.uncertain = stale.update(
        status=OutboxStatus.UNCERTAIN,
        last_error="The sender stopped while sending; not sent again so that it is never sent twice.",
    )
    due = []
    # Once enqueued again, a notice waits another grace period before the next re-enqueue: a long but
    # healthy queue is not flooded with copies.
    for pk, status, attempts, claimed_at, created_at in (
        Notice.objects.filter(
            status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED],
            attempts__lt=MAX_SEND_ATTEMPTS,
            created_at__lt=now - grace,
        )
        .exclude(requeued_at__gte=now - grace)
        .values_list("pk", "status", "attempts", "claimed_at", "created_at")
    ):
        last = claimed_at or created_at
        if status == OutboxStatus.PENDING or last + _retry_after(attempts) <= now:
            due.append(pk)
    Notice.objects.filter(pk__in=due).update(requeued_at=now)
    if send is None:
        _send_later(schema_name, due)  # batches of SEND_BATCH, one task each
    else:
        for pk in due:
            send(pk)
    result.requeued = len(due)
    if result.requeued or result.uncertain:
        logger.info("outbox sweep %s: %d re-enqueued, %d uncertain", schema_name, result.requeued, result.uncertain)
    return result


@dataclass
class OutboxFlush:
    """What `outbox_flush` did: notices it sent itself, and those still unsent when it ended (left to their own send
    tasks, their retries and the sweeper)."""

    sent: int = 0
    unsent: int = 0
    waited_seconds: float = 0.0


def outbox_flush(*, business_date: date, wait_seconds: float) -> OutboxFlush:
    """See the notices of a business date out, in the current agency schema, for at most `wait_seconds`: those still
    PENDING are sent here (claimed as their own tasks would claim them: whichever sender claims a notice first sends
    it, the other finds it busy or already sent), and those another sender has claimed are waited for. It ends when
    none is left, at the deadline, or at the first error from the mail server (a refusal, or a server that cannot be
    reached: those notices are FAILED and retried with backoff as ever). What is still unsent then is not lost: its
    own tasks, their retries and the sweeper send it later. Notices FAILED before are left to their backoff, and a
    claim older than the sending timeout to the sweeper."""
    started = time.monotonic()
    deadline = started + wait_seconds
    result = OutboxFlush()
    day = Notice.objects.filter(business_date=business_date)
    while True:
        live_claims = Q(
            status=OutboxStatus.SENDING,
            claimed_at__gte=timezone.now() - timedelta(seconds=settings.OUTBOX_SENDING_TIMEOUT_SECONDS),
        )
        waiting = list(
            day.filter(Q(status=OutboxStatus.PENDING, attempts__lt=MAX_SEND_ATTEMPTS) | live_claims)
            .order_by("pk")
            .values_list("pk", "status")
        )
        if not waiting or time.monotonic() >= deadline:
            break
        pending = [pk for pk, status in waiting if status == OutboxStatus.PENDING][:SEND_BATCH]
        if not pending:
            time.sleep(0.05)  # claimed by another sender: being sent
            continue
        try:
            outcomes = notices_deliver(notice_pks=pending, deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - recorded on the notices (FAILED), retried by their tasks
            logger.warning("sending the notices of %s stopped: %s", business_date, exc)
            break
        result.sent += sum(1 for outcome in outcomes.values() if outcome == "sent")
    result.unsent = day.exclude(status__in=[OutboxStatus.SENT, OutboxStatus.UNCERTAIN]).count()
    result.waited_seconds = round(time.monotonic() - started, 3)
    if result.unsent:
        logger.warning(
            "%s: %d notices of %s still unsent after %.1fs; they are sent by their own tasks and retries",
            connection.schema_name,  # type: ignore[attr-defined]
            result.unsent,
            business_date,
            result.waited_seconds,
        )
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
            kind=kind,
            defaults={"subject": subject, "body": body, "updated_by": getattr(actor, "email", "") or str(actor or "")},
        )
        audit_record(
            actor=actor,
            action="notice_template.save",
            obj=template,
            before=before,
            after={"subject": subject, "body": body},
        )
    return template


def notice_template_reset(*, kind: str, actor) -> None:
    """Go back to the shipped default for a notice kind. Audited."""
    with transaction.atomic():
        template = NoticeTemplate.objects.select_for_update().filter(kind=kind).first()
        if template is None:
            return
        audit_record(
            actor=actor,
            action="notice_template.reset",
            obj=template,
            before={"subject": template.subject, "body": template.body},
        )
        template.delete()


def notice_preview(*, kind: str, subject: str, body: str, context: dict) -> Rendered:
    """Render a draft template against real data for the editor's live preview; refuses what save refuses."""
    template_validate(kind=kind, subject=subject, body=body)
    return render(kind=kind, subject=subject, body=body, context=context)
