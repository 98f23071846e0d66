"""The day's last step sees the day's notices out (P7's "every notice of the day sent before the day's last step
finishes"): it sends what is still waiting, waits for what another sender is sending, and never holds the billing
day longer than `DAY_NOTICES_WAIT_SECONDS` however the mail server behaves."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from datetime import date, timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from agencybilling.seed import Outcome, client, run_days
from billing.models import AgencyDay, AgencyDayStep, DayStep, RunStatus, StepStatus
from notifications.models import Notice, OutboxStatus
from notifications.services import outbox_flush
from tests.billing_helpers import payment_received_notice, with_plan

pytestmark = pytest.mark.django_db

DAY = date(2027, 1, 1)


def _clients(agency, count: int = 3) -> None:
    with_plan(agency)
    with schema_context(agency.schema_name):
        for n in range(count):
            client(
                name=f"Client {n}",
                email=f"c{n}@example.com",
                activated_on=date(2026, 12, 1),
                license_price_minor=5000,
                outcome=Outcome.PAYING,
                method_tag=f"m{n}",
            )


def _last_step(agency) -> AgencyDayStep:
    with schema_context(agency.schema_name):
        return AgencyDayStep.objects.get(day__day=DAY, step=DayStep.NOTICES_SENT)


def test_NOT_4_the_day_is_finished_only_once_its_notices_are_sent(agency_a, smtp_server):
    """No send task runs here (their after-commit hooks never fire in this test): the day's last step sends them."""
    _clients(agency_a)
    run_days(agency_a, [DAY])
    step = _last_step(agency_a)
    with schema_context(agency_a.schema_name):
        notices = list(Notice.objects.filter(business_date=DAY).values_list("status", "sent_at"))
        assert AgencyDay.objects.get(day=DAY).status == RunStatus.DONE
    assert len(notices) >= 3  # a Payment Received per client at least
    assert {status for status, _ in notices} == {OutboxStatus.SENT}
    assert all(sent_at <= step.finished_at for _, sent_at in notices)
    assert step.status == StepStatus.DONE and step.counts["sent"] == len(notices) and step.counts["unsent"] == 0
    keys = Counter(str(message["X-Notice-Key"]) for message in smtp_server.messages)
    assert len(keys) == len(notices) and max(keys.values()) == 1


def test_NOT_4_a_mail_server_that_cannot_be_reached_does_not_hold_the_day(agency_a, settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 1
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    _clients(agency_a)
    started = time.monotonic()
    run_days(agency_a, [DAY])
    assert time.monotonic() - started < settings.DAY_NOTICES_WAIT_SECONDS
    step = _last_step(agency_a)
    with schema_context(agency_a.schema_name):
        assert AgencyDay.objects.get(day=DAY).status == RunStatus.DONE
        statuses = Counter(Notice.objects.filter(business_date=DAY).values_list("status", "attempts"))
    # Failed once, retried with backoff by their tasks and the sweeper as any failed notice.
    assert set(statuses) == {(OutboxStatus.FAILED, 1)}
    assert step.status == StepStatus.DONE and step.counts["unsent"] == sum(statuses.values())


class _Hanging:
    """An SMTP handler that never answers DATA: the client times out not knowing whether the message left."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.received += 1
        await asyncio.sleep(3600)


def test_NOT_7_a_stuck_mail_server_holds_the_day_no_longer_than_the_wait(agency_a, settings):
    """Each notice handed to a server that never answers is Uncertain (NOT-7: it may have left); at the deadline the
    step stops, puts back what it claimed but had not handed over, and the day finishes with the rest still
    queued for their tasks."""
    from aiosmtpd.controller import Controller

    from tests.reliability.harness import free_port

    handler = _Hanging()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 1
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.DAY_NOTICES_WAIT_SECONDS = 2
        _clients(agency_a, count=8)
        started = time.monotonic()
        run_days(agency_a, [DAY])
        elapsed = time.monotonic() - started
    finally:
        controller.stop()
    step = _last_step(agency_a)
    with schema_context(agency_a.schema_name):
        assert AgencyDay.objects.get(day=DAY).status == RunStatus.DONE
        statuses = Counter(Notice.objects.filter(business_date=DAY).values_list("status", flat=True))
        assert not Notice.objects.filter(status=OutboxStatus.PENDING).exclude(attempts=0).exists()
    # The wait, and at most the one send under way when it ended (one timeout of the client), besides the day's work.
    assert step.counts["waited_seconds"] < 2 + 1 + 1 and step.finished_at - step.started_at < timedelta(seconds=5)
    assert elapsed < 30
    assert statuses[OutboxStatus.UNCERTAIN] == handler.received >= 1
    assert statuses[OutboxStatus.PENDING] >= 1 and OutboxStatus.SENDING not in statuses
    assert step.status == StepStatus.DONE and step.counts["unsent"] == statuses[OutboxStatus.PENDING]


def _notice(account: str = "client-1") -> Notice:
    notice = payment_received_notice(account=account)
    assert notice is not None
    return notice


def test_NOT_7_a_notice_another_sender_is_sending_is_waited_for_within_the_bound_never_sent_here(agency_a, smtp_server):
    with schema_context(agency_a.schema_name):
        busy = _notice("client-1")
        Notice.objects.filter(pk=busy.pk).update(status=OutboxStatus.SENDING, attempts=1, claimed_at=timezone.now())
        started = time.monotonic()
        result = outbox_flush(business_date=DAY, wait_seconds=0.5)
        assert 0.5 <= time.monotonic() - started < 3
        assert result.sent == 0 and result.unsent == 1
        busy.refresh_from_db()
        assert busy.status == OutboxStatus.SENDING  # its sender records it
        # A claim older than the sending timeout lost its sender: the sweeper's (Uncertain), not waited for.
        Notice.objects.filter(pk=busy.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
        started = time.monotonic()
        assert outbox_flush(business_date=DAY, wait_seconds=5).unsent == 1
        assert time.monotonic() - started < 1
    assert smtp_server.messages == []
