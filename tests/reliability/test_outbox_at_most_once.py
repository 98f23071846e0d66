"""The outbox sends each notice at most once (NOT-7) and loses none that were committed (R1, R4): claim before
sending, Uncertain when the sender dies mid-send, the sweeper re-enqueues what was never sent."""

from __future__ import annotations

import asyncio
import threading
from datetime import date, timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.catalog import NoticeKind
from notifications.models import Notice
from notifications.services import notice_deliver, notice_enqueue, outbox_sweep

pytestmark = pytest.mark.django_db

CONTEXT = {
    "agency_name": "Alpha Agency",
    "client_name": "Acme",
    "currency": "USD",
    "portal_url": "http://p/",
    "amount": "42.00",
    "invoice_number": "ALPHA-000001",
    "paid_on": "2027-01-01",
}
GRACE = timedelta(seconds=120)
TIMEOUT = timedelta(minutes=15)


def _queue(number: int = 1) -> Notice:
    notice = notice_enqueue(
        account="client-1",
        kind=NoticeKind.PAYMENT_RECEIVED,
        period="2027-01",
        number=number,
        to_email="ap@acme.example",
        context=CONTEXT,
        business_date=date(2027, 1, 1),
    )
    assert notice is not None
    return notice


def _age(notice: Notice, **delta) -> None:
    Notice.objects.filter(pk=notice.pk).update(created_at=timezone.now() - timedelta(**delta))


def _sweep(**kwargs):
    sent: list[int] = []
    result = outbox_sweep(now=timezone.now(), grace=GRACE, sending_timeout=TIMEOUT, send=sent.append, **kwargs)
    return result, sent


def test_NOT_7_a_committed_notice_whose_task_was_lost_is_sent_by_the_sweeper(agency_a, smtp_server):
    with schema_context(agency_a.schema_name):
        notice = _queue()  # its after-commit task never runs here: as if the worker died first
        result, sent = _sweep()
        assert sent == [] and result.requeued == 0  # younger than the grace period: maybe just queued
        _age(notice, minutes=3)
        result, sent = _sweep()
        assert sent == [notice.pk] and result.requeued == 1
        assert _sweep()[1] == []  # enqueued again just now: not flooded with copies while the queue is long
        assert notice_deliver(notice_pk=notice.pk) == "sent"
        assert notice_deliver(notice_pk=notice.pk) == "already sent"  # the original task, late
        assert _sweep()[1] == []
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0]["Message-ID"].startswith("<notice-")


def test_NOT_7_a_sender_that_died_mid_send_leaves_the_notice_uncertain_never_resent(agency_a, smtp_server):
    with schema_context(agency_a.schema_name):
        notice = _queue()
        # The claim was committed, then the process vanished (SIGKILL) before recording anything.
        Notice.objects.filter(pk=notice.pk).update(
            status="SENDING", attempts=1, claimed_at=timezone.now() - timedelta(minutes=1)
        )
        _age(notice, minutes=20)
        assert notice_deliver(notice_pk=notice.pk) == "busy"  # a redelivered task does not send it
        assert _sweep()[0].uncertain == 0  # a sender may still be at work
        Notice.objects.filter(pk=notice.pk).update(claimed_at=timezone.now() - TIMEOUT - timedelta(seconds=1))
        result, sent = _sweep()
        assert result.uncertain == 1 and sent == []
        notice.refresh_from_db()
        assert notice.status == "UNCERTAIN" and "never sent twice" in notice.last_error
        assert notice_deliver(notice_pk=notice.pk) == "uncertain"
        assert _sweep()[1] == []
    assert smtp_server.messages == []


def test_NOT_4_failed_sends_are_retried_with_backoff_then_given_up(agency_a, smtp_server, settings):
    with schema_context(agency_a.schema_name):
        notice = _queue()
        _age(notice, minutes=10)
        Notice.objects.filter(pk=notice.pk).update(
            status="FAILED", attempts=3, claimed_at=timezone.now() - timedelta(seconds=90)
        )
        assert _sweep()[1] == []  # the third failure waits 2 minutes
        Notice.objects.filter(pk=notice.pk).update(claimed_at=timezone.now() - timedelta(seconds=121))
        assert _sweep()[1] == [notice.pk]
        Notice.objects.filter(pk=notice.pk).update(attempts=10, claimed_at=timezone.now() - timedelta(days=1))
        assert _sweep()[1] == []
        assert notice_deliver(notice_pk=notice.pk) == "gave up"
    assert smtp_server.messages == []


class _Replying:
    """An SMTP handler whose answer to DATA is chosen per test: refuse, or hang past the client's timeout."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.release = threading.Event()
        self.received = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.received += 1
        if self.mode == "refuse":
            return "554 Transaction failed: refused"
        while not self.release.is_set():  # hold the reply: the client times out not knowing
            await asyncio.sleep(0.05)
        return "250 OK"


@pytest.fixture
def replying_smtp(settings):
    from aiosmtpd.controller import Controller

    from tests.reliability.harness import free_port

    servers = []

    def start(mode: str) -> _Replying:
        handler = _Replying(mode)
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        servers.append((controller, handler))
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 1
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        return handler

    yield start
    for controller, handler in servers:
        handler.release.set()
        controller.stop()


def test_NOT_4_a_refusal_by_the_mail_server_is_failed_and_retried(agency_a, replying_smtp):
    handler = replying_smtp("refuse")
    with schema_context(agency_a.schema_name):
        notice = _queue()
        with pytest.raises(Exception, match="refused"):
            notice_deliver(notice_pk=notice.pk)
        notice.refresh_from_db()
        assert notice.status == "FAILED" and notice.attempts == 1
    assert handler.received == 1


def test_NOT_7_a_timeout_after_the_message_was_handed_over_is_uncertain_not_retried(agency_a, replying_smtp):
    handler = replying_smtp("hang")
    with schema_context(agency_a.schema_name):
        notice = _queue()
        assert notice_deliver(notice_pk=notice.pk) == "uncertain"
        notice.refresh_from_db()
        assert notice.status == "UNCERTAIN" and "timed out" in notice.last_error.lower()
        assert notice_deliver(notice_pk=notice.pk) == "uncertain"
    assert handler.received == 1
