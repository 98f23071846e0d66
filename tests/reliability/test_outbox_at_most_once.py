"""The outbox sends each notice at most once (NOT-7) and loses none that were committed (R1, R4): claim before
sending, Uncertain when the sender dies mid-send, the sweeper re-enqueues what was never sent."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import date, timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.catalog import NoticeKind
from notifications.models import Notice
from notifications.services import notice_deliver, outbox_sweep
from tests.billing_helpers import PAYMENT_RECEIVED_CONTEXT, payment_received_notice

pytestmark = pytest.mark.django_db

GRACE = timedelta(seconds=120)
TIMEOUT = timedelta(minutes=15)


def _queue(number: int = 1) -> Notice:
    notice = payment_received_notice(number=number)
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


class _HoldingAt:
    """An SMTP handler that records each message's X-Notice-Key and holds its reply to the `at`-th message: the
    sender is then between handing a message over and hearing back, the moment the test kills it."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.keys: list[str] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        import email
        import email.policy

        self.keys.append(str(email.message_from_bytes(envelope.content, policy=email.policy.default)["X-Notice-Key"]))
        if len(self.keys) == self.at:
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        return "250 OK"


_SENDER = """
import json, sys
import django
django.setup()
from django_tenants.utils import schema_context
from notifications.services import notices_deliver
with schema_context(sys.argv[1]):
    notices_deliver(notice_pks=json.loads(sys.argv[2]))
"""


@pytest.mark.django_db(transaction=True)
def test_NOT_7_a_sender_killed_mid_group_leaves_that_group_uncertain_and_sends_nothing_twice(
    agency_a, settings, monkeypatch
):
    """A real crash (SIGKILL) of the sending process while the mail server holds its reply to a notice in the middle
    of the second claimed group: the first group is SENT, the whole second group — the notices it had handed over
    and those it had not — is SENDING and becomes UNCERTAIN, the third is still PENDING and is sent by the next
    sender. Every notice reaches the server at most once; the cost is up to a group of Uncertain notices."""
    import json
    import subprocess
    import sys

    from aiosmtpd.controller import Controller

    from notifications import services
    from notifications.services import CLAIM_GROUP, NoticeDraft, notices_deliver, notices_enqueue
    from tests.reliability.harness import ROOT, celery_env, child_database_url, free_port, wait_until

    monkeypatch.setattr(services, "_send_later", lambda *args: None)  # no send tasks: the test is the sender
    count, killed_at = 2 * CLAIM_GROUP + 5, CLAIM_GROUP + 5
    handler = _HoldingAt(killed_at)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with schema_context(agency_a.schema_name):
            pks = notices_enqueue(
                drafts=[
                    NoticeDraft(
                        account=f"client-{n}",
                        kind=NoticeKind.PAYMENT_RECEIVED,
                        period="2027-01",
                        number=1,
                        to_email=f"ap{n}@acme.example",
                        context=PAYMENT_RECEIVED_CONTEXT,
                        business_date=date(2027, 1, 1),
                    )
                    for n in range(count)
                ]
            )
        assert len(pks) == count
        sender = subprocess.Popen(
            [sys.executable, "-c", _SENDER, agency_a.schema_name, json.dumps(pks)],
            cwd=ROOT,
            env=celery_env(DATABASE_URL=child_database_url(), EMAIL_URL=f"smtp://127.0.0.1:{port}"),
        )
        try:
            wait_until(handler.holding.is_set, timeout=120, what="the sender to reach the held notice")
        finally:
            sender.kill()
            sender.wait(timeout=30)
        handler.release.set()
        key_of = {}
        with schema_context(agency_a.schema_name):
            rows = list(Notice.objects.filter(pk__in=pks).values_list("pk", "account", "status"))
            for pk, account, _ in rows:
                key_of[pk] = f"{account}/{NoticeKind.PAYMENT_RECEIVED}/2027-01/1"
            status = {pk: state for pk, _, state in rows}
            assert [status[pk] for pk in pks] == (
                ["SENT"] * CLAIM_GROUP + ["SENDING"] * CLAIM_GROUP + ["PENDING"] * (count - 2 * CLAIM_GROUP)
            )
            assert handler.keys == [key_of[pk] for pk in pks[:killed_at]]  # nothing received that was not claimed
            result, requeued = _sweep_now()
            assert result.uncertain == CLAIM_GROUP and sorted(requeued) == sorted(pks[2 * CLAIM_GROUP :])
            settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
            settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
            settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
            results = notices_deliver(notice_pks=pks)  # the task again, and the sweeper's copies
            assert list(results.values()) == (
                ["already sent"] * CLAIM_GROUP + ["uncertain"] * CLAIM_GROUP + ["sent"] * (count - 2 * CLAIM_GROUP)
            )
            assert notices_deliver(notice_pks=pks) == results | dict.fromkeys(pks[2 * CLAIM_GROUP :], "already sent")
            final = dict(Notice.objects.filter(pk__in=pks).values_list("pk", "status"))
    finally:
        handler.release.set()
        controller.stop()
    received = Counter(handler.keys)
    assert max(received.values()) == 1  # never twice
    assert set(received) == {key_of[pk] for pk in pks[:killed_at] + pks[2 * CLAIM_GROUP :]}
    # What the crash cost: the second group's notices never handed over are Uncertain although they never left.
    never_left = pks[killed_at : 2 * CLAIM_GROUP]
    assert {final[pk] for pk in never_left} == {"UNCERTAIN"} and len(never_left) < CLAIM_GROUP


def _sweep_now():
    requeued: list[int] = []
    result = outbox_sweep(
        now=timezone.now() + timedelta(minutes=5), grace=GRACE, sending_timeout=timedelta(0), send=requeued.append
    )
    return result, requeued
