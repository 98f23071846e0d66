"""The notice outbox over a real SMTP server: at most once per key (NOT-7), retried when SMTP fails,
custom templates with a safe fallback (SPEC §8)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context

from notifications.catalog import NoticeKind
from notifications.models import Notice, NoticeTemplate
from notifications.services import notice_deliver
from tests.billing_helpers import PAYMENT_RECEIVED_CONTEXT, payment_received_notice

pytestmark = pytest.mark.django_db


def test_NOT_7_a_notice_is_queued_and_sent_at_most_once_per_key(
    agency_a, smtp_server, django_capture_on_commit_callbacks, eager_tasks
):
    with schema_context(agency_a.schema_name):
        with django_capture_on_commit_callbacks(execute=True):
            first = payment_received_notice()
            again = payment_received_notice()
            other_period = payment_received_notice(period="2027-02")
        assert first is not None and again is None and other_period is not None
        assert Notice.objects.count() == 2
        assert notice_deliver(notice_pk=first.pk) == "already sent"  # a rerun sends nothing
    assert len(smtp_server.messages) == 2
    message = smtp_server.messages[0]
    assert message["To"] == "ap@acme.example" and message["Subject"] == "Payment received — thank you"
    assert message["X-Notice-Key"] == "client-1/PAYMENT_RECEIVED/2027-01/1"
    assert "We received 42.00 USD for invoice ALPHA-000001" in message.get_body(preferencelist=("plain",)).get_content()


def test_NOT_4_failed_smtp_is_recorded_then_sent_on_retry(agency_a, smtp_server, settings):
    with schema_context(agency_a.schema_name):
        notice = payment_received_notice()
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
        NoticeTemplate.objects.create(
            kind=NoticeKind.PAYMENT_RECEIVED,
            subject="Thanks {{ client_name }}!",
            body="Got {{ amount }} {{ currency }}.",
        )
        custom = payment_received_notice(number=1)
        assert (custom.subject, custom.body, custom.used_default) == ("Thanks Acme!", "Got 42.00 USD.", False)
        # A template saved before a variable was removed, say: rendering fails → the default, recorded.
        NoticeTemplate.objects.filter(kind=NoticeKind.PAYMENT_RECEIVED).update(body="{{ vanished }}")
        fallback = payment_received_notice(number=2)
        assert fallback.used_default and "vanished" in fallback.template_error
        assert fallback.subject == "Payment received — thank you"


def test_TEN_2_notices_stay_in_their_agency(agency_a, agency_b, smtp_server):
    with schema_context(agency_a.schema_name):
        payment_received_notice()
    with schema_context(agency_b.schema_name):
        assert not Notice.objects.exists()
        assert payment_received_notice() is not None  # the same key in another agency is another notice


def _draft(account="client-1", number=1, period="2027-01"):
    from notifications.services import NoticeDraft

    return NoticeDraft(
        account=account,
        kind=NoticeKind.PAYMENT_RECEIVED,
        period=period,
        number=number,
        to_email=f"{account}@acme.example",
        context=PAYMENT_RECEIVED_CONTEXT,
        business_date=date(2027, 1, 1),
    )


def test_NOT_7_a_batch_of_notices_is_one_insert_that_skips_keys_already_queued(
    agency_a, smtp_server, django_capture_on_commit_callbacks
):
    from notifications.services import notices_enqueue

    with schema_context(agency_a.schema_name):
        first = payment_received_notice()
        with django_capture_on_commit_callbacks() as callbacks:
            inserted = notices_enqueue(drafts=[_draft(), _draft("client-2"), _draft("client-2"), _draft("client-3")])
        assert len(inserted) == 2  # client-1's key was queued already; client-2's second draft is the same key
        assert len(callbacks) == 1  # one send task for the batch
        assert list(Notice.objects.order_by("id").values_list("account", flat=True)) == [
            "client-1",
            "client-2",
            "client-3",
        ]
        assert Notice.objects.get(pk=inserted[0]).subject == "Payment received — thank you"
        assert notices_enqueue(drafts=[_draft("client-2")]) == []
        assert first.pk not in inserted


def test_NOT_7_a_batch_is_sent_over_one_connection_and_an_uncertain_send_stops_only_that_notice(
    agency_a, smtp_server, monkeypatch
):
    import smtplib

    from django.core.mail.backends.smtp import EmailBackend

    from notifications.services import notices_deliver, notices_enqueue

    opened = []
    real_open, real_sendmail = EmailBackend.open, smtplib.SMTP.sendmail

    def counting_open(self):
        if self.connection is None:  # the backend calls open() before every message; it connects once
            opened.append(1)
        return real_open(self)

    def flaky_sendmail(self, from_addr, to_addrs, msg, *args, **kwargs):
        if to_addrs == ["client-2@acme.example"]:
            raise TimeoutError("timed out after the DATA command")  # the message may have left
        return real_sendmail(self, from_addr, to_addrs, msg, *args, **kwargs)

    monkeypatch.setattr(EmailBackend, "open", counting_open)
    monkeypatch.setattr(smtplib.SMTP, "sendmail", flaky_sendmail)
    with schema_context(agency_a.schema_name):
        pks = notices_enqueue(drafts=[_draft(f"client-{n}") for n in (1, 2, 3, 4)])
        results = notices_deliver(notice_pks=pks)
        assert list(results.values()) == ["sent", "uncertain", "sent", "sent"]
        assert dict(Notice.objects.values_list("account", "status")) == {
            "client-1": "SENT",
            "client-2": "UNCERTAIN",
            "client-3": "SENT",
            "client-4": "SENT",
        }
        assert notices_deliver(notice_pks=pks) == dict.fromkeys(pks[:1], "already sent") | {
            pks[1]: "uncertain",
            pks[2]: "already sent",
            pks[3]: "already sent",
        }  # a rerun sends nothing
    assert len(opened) == 2  # one connection, and a new one after the uncertain send
    assert sorted(m["To"] for m in smtp_server.messages) == [
        "client-1@acme.example",
        "client-3@acme.example",
        "client-4@acme.example",
    ]


def test_NOT_4_a_refused_notice_in_a_batch_is_failed_and_retried_the_others_sent(agency_a, smtp_server, monkeypatch):
    import smtplib

    from notifications.services import notices_deliver, notices_enqueue

    real_sendmail = smtplib.SMTP.sendmail

    def refusing_sendmail(self, from_addr, to_addrs, msg, *args, **kwargs):
        if to_addrs == ["client-1@acme.example"]:
            raise smtplib.SMTPDataError(554, b"refused")
        return real_sendmail(self, from_addr, to_addrs, msg, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "sendmail", refusing_sendmail)
    with schema_context(agency_a.schema_name):
        pks = notices_enqueue(drafts=[_draft("client-1"), _draft("client-2")])
        with pytest.raises(smtplib.SMTPDataError):
            notices_deliver(notice_pks=pks)  # raised so that the task is retried with backoff
        assert dict(Notice.objects.values_list("account", "status")) == {"client-1": "FAILED", "client-2": "SENT"}
        monkeypatch.setattr(smtplib.SMTP, "sendmail", real_sendmail)
        assert notices_deliver(notice_pks=pks) == {pks[0]: "sent", pks[1]: "already sent"}
    assert len(smtp_server.messages) == 2


def test_NOT_7_a_notice_listed_twice_in_a_batch_is_sent_once(agency_a, smtp_server):
    from notifications.services import notices_deliver, notices_enqueue

    with schema_context(agency_a.schema_name):
        first, second = notices_enqueue(drafts=[_draft("client-1"), _draft("client-2")])
        assert notices_deliver(notice_pks=[first, second, first, second]) == {first: "sent", second: "sent"}
        assert dict(Notice.objects.values_list("account", "attempts")) == {"client-1": 1, "client-2": 1}
    assert sorted(m["To"] for m in smtp_server.messages) == ["client-1@acme.example", "client-2@acme.example"]


def test_NOT_7_a_notice_that_cannot_be_prepared_is_failed_and_the_batch_goes_on(agency_a, smtp_server, monkeypatch):
    from notifications import services
    from notifications.services import notices_deliver, notices_enqueue

    real_prepared = services._prepared

    def failing_for_client_1(message, mail):
        if message.to == ["client-1@acme.example"]:
            raise ValueError("bad header")
        return real_prepared(message, mail)

    monkeypatch.setattr(services, "_prepared", failing_for_client_1)
    with schema_context(agency_a.schema_name):
        pks = notices_enqueue(drafts=[_draft("client-1"), _draft("client-2")])
        with pytest.raises(ValueError, match="bad header"):
            notices_deliver(notice_pks=pks)  # raised at the end, so that the task is retried with backoff
        assert dict(Notice.objects.values_list("account", "status")) == {"client-1": "FAILED", "client-2": "SENT"}
    assert [m["To"] for m in smtp_server.messages] == ["client-2@acme.example"]


def test_NOT_7_a_sender_stopped_by_an_error_hands_back_what_it_had_not_sent(agency_a, smtp_server, monkeypatch):
    """An error that escapes mid-group (not a crash): what was sent is recorded SENT, the notice being handled stays
    SENDING (it may have left: Uncertain later, never resent), the claimed notices after it go back to FAILED."""
    from notifications import services
    from notifications.services import notices_deliver, notices_enqueue

    real_deliver_one = services._deliver_one

    def stopping_at_client_2(notice, mail, ready):
        if notice.account == "client-2":
            raise RuntimeError("stopped")
        return real_deliver_one(notice, mail, ready)

    monkeypatch.setattr(services, "_deliver_one", stopping_at_client_2)
    with schema_context(agency_a.schema_name):
        pks = notices_enqueue(drafts=[_draft(f"client-{n}") for n in (1, 2, 3, 4)])
        with pytest.raises(RuntimeError, match="stopped"):
            notices_deliver(notice_pks=pks)
        assert dict(Notice.objects.values_list("account", "status")) == {
            "client-1": "SENT",
            "client-2": "SENDING",
            "client-3": "FAILED",
            "client-4": "FAILED",
        }
        assert "not sent" in Notice.objects.get(account="client-3").last_error
    assert [m["To"] for m in smtp_server.messages] == ["client-1@acme.example"]
