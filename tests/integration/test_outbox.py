"""The notice outbox over a real SMTP server: at most once per key (NOT-7), retried when SMTP fails,
custom templates with a safe fallback (SPEC §8)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context

from notifications.catalog import NoticeKind
from notifications.models import Notice, NoticeTemplate
from notifications.services import notice_deliver, notice_enqueue

pytestmark = pytest.mark.django_db

CONTEXT = {"agency_name": "Alpha Agency", "client_name": "Acme", "currency": "USD", "portal_url": "http://p/",
           "amount": "42.00", "invoice_number": "ALPHA-000001", "paid_on": "2027-01-01"}


def _enqueue(number=1, period="2027-01"):
    return notice_enqueue(account="client-1", kind=NoticeKind.PAYMENT_RECEIVED, period=period, number=number,
                          to_email="ap@acme.example", context=CONTEXT, business_date=date(2027, 1, 1))


def test_NOT_7_a_notice_is_queued_and_sent_at_most_once_per_key(agency_a, smtp_server,
                                                                 django_capture_on_commit_callbacks, eager_tasks):
    with schema_context(agency_a.schema_name):
        with django_capture_on_commit_callbacks(execute=True):
            first = _enqueue()
            again = _enqueue()
            other_period = _enqueue(period="2027-02")
        assert first is not None and again is None and other_period is not None
        assert Notice.objects.count() == 2
        assert notice_deliver(notice_pk=first.pk) == "already sent"  # a rerun sends nothing
    assert len(smtp_server.messages) == 2
    message = smtp_server.messages[0]
    assert message["To"] == "ap@acme.example" and message["Subject"] == "Payment received — thank you"
    assert message["X-Notice-Key"] == "client-1/PAYMENT_RECEIVED/2027-01/1"
    assert "We received 42.00 USD for invoice ALPHA-000001" in message.get_content()


def test_NOT_4_failed_smtp_is_recorded_then_sent_on_retry(agency_a, smtp_server, settings):
    with schema_context(agency_a.schema_name):
        notice = _enqueue()
        good_port = settings.EMAIL_PORT
        settings.EMAIL_PORT = 1  # nothing listens there
        with pytest.raises(OSError):
            notice_deliver(notice_pk=notice.pk)
        notice.refresh_from_db()
        assert notice.status == "FAILED" and notice.attempts == 1 and notice.last_error
        settings.EMAIL_PORT = good_port
        assert notice_deliver(notice_pk=notice.pk) == "sent"
        notice.refresh_from_db()
        assert notice.status == "SENT" and notice.attempts == 2
    assert len(smtp_server.messages) == 1


def test_custom_template_used_and_broken_one_falls_back_to_default(agency_a, smtp_server):
    with schema_context(agency_a.schema_name):
        NoticeTemplate.objects.create(kind=NoticeKind.PAYMENT_RECEIVED, subject="Thanks {{ client_name }}!",
                                      body="Got {{ amount }} {{ currency }}.")
        custom = _enqueue(number=1)
        assert (custom.subject, custom.body, custom.used_default) == ("Thanks Acme!", "Got 42.00 USD.", False)
        # A template saved before a variable was removed, say: rendering fails → the default, recorded.
        NoticeTemplate.objects.filter(kind=NoticeKind.PAYMENT_RECEIVED).update(body="{{ vanished }}")
        fallback = _enqueue(number=2)
        assert fallback.used_default and "vanished" in fallback.template_error
        assert fallback.subject == "Payment received — thank you"


def test_TEN_2_notices_stay_in_their_agency(agency_a, agency_b, smtp_server):
    with schema_context(agency_a.schema_name):
        _enqueue()
    with schema_context(agency_b.schema_name):
        assert not Notice.objects.exists()
        assert _enqueue() is not None  # the same key in another agency is another notice
