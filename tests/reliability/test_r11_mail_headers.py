"""R11 — mail headers carry plain one-line text, and a notice that never reached the mail server is retried (NOT-7).

The attack review named a client `"Evil Corp\\r\\nBcc: evil@attacker.example\\r\\nX-Injected: 1"` and put
`{{ client_name }}` in a subject: no header was injected (the mail library refused the value), but the refusal came
after the notice was claimed, so it was recorded Uncertain — never resent, though nothing had been sent — and that
client stopped getting notices. Now names refuse control characters at the door, every header value is made one
line of plain text where mail is built (`notifications.mime.header_value`), and whatever fails before a byte goes
to the mail server is a plain failure, retried (FAILED), never Uncertain.

Hypothesis then writes subjects and names of any text (control characters, line separators, encoded-word
look-alikes, very long) and sends them over a real SMTP server: every notice is sent, each mail has exactly the
headers the product writes, and the subject received is the rendered subject made one line.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from clients.models import Client
from clients.services import client_create, client_update
from core.errors import ApplicationError
from notifications.catalog import NoticeKind
from notifications.mime import header_value
from notifications.models import Notice, NoticeTemplate, OutboxStatus
from notifications.services import MAX_SEND_ATTEMPTS, notice_deliver, notice_enqueue, outbox_sweep
from tests.reliability.harness import record_figures, size

pytestmark = pytest.mark.django_db

EVIL = "Evil Corp\r\nBcc: evil@attacker.example\r\nX-Injected: 1"
HEADERS_WRITTEN = {
    "Subject",
    "From",
    "To",
    "Date",
    "X-Notice-Key",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
}
FIGURES: Counter = Counter()


def _context(client_name: str) -> dict:
    return {
        "agency_name": "Alpha Agency",
        "client_name": client_name,
        "currency": "USD",
        "portal_url": "http://alpha.localhost/portal/",
        "amount": "42.00",
        "invoice_number": "ALPHA-000001",
        "paid_on": "2027-01-01",
    }


def _notice(client_name: str, *, key: str, to_email: str = "ap@acme.example") -> Notice:
    return notice_enqueue(
        account=key,
        kind=NoticeKind.PAYMENT_RECEIVED,
        period="2027-01",
        to_email=to_email,
        context=_context(client_name),
        business_date=date(2027, 1, 1),
    )


def _custom_subject(subject: str) -> None:
    NoticeTemplate.objects.update_or_create(
        kind=NoticeKind.PAYMENT_RECEIVED,
        defaults={"subject": subject, "body": "We received {{ amount }} {{ currency }}. Thank you, {{ client_name }}."},
    )


def test_R11_NOT_7_a_carriage_return_in_a_client_name_never_stops_its_notices(agency_a, smtp_server):
    """Regression (attack review F7): the name arrives as an existing row (the API refuses it now), the notice is
    sent with the name made one line, no header is added, nothing is Uncertain."""
    with schema_context(agency_a.schema_name):
        _custom_subject("Statement for {{ client_name }}")
        notice = _notice(EVIL, key="client-evil")
        assert "\r" not in notice.subject and "\n" not in notice.subject
        assert notice_deliver(notice_pk=notice.pk) == "sent"
        notice.refresh_from_db()
        assert notice.status == OutboxStatus.SENT
    (message,) = smtp_server.messages
    assert message["Subject"] == "Statement for Evil Corp Bcc: evil@attacker.example X-Injected: 1"
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert set(message.keys()) == HEADERS_WRITTEN - {"Content-Transfer-Encoding"}


@pytest.mark.parametrize("name", [EVIL, "Tab\there", "Nul\x00", "Line\u2028sep", "Next\x85line", "Bidi\u202eevil"])
def test_R11_names_with_control_characters_are_refused_with_a_message(agency_a, name):
    with schema_context(agency_a.schema_name):
        with pytest.raises(ApplicationError) as refused:
            client_create(name=name, email="a@b.example", activated_on=date(2027, 1, 1))
        assert "control characters" in refused.value.fields["name"][0]
        existing = client_create(name="Plain", email="p@b.example", activated_on=date(2027, 1, 1))
        with pytest.raises(ApplicationError):
            client_update(client=existing, name=name, email="p@b.example", actor="test")
        assert Client.objects.get(pk=existing.pk).name == "Plain"


def test_R11_NOT_7_a_notice_that_fails_before_a_byte_is_sent_is_retried_not_uncertain(agency_a, smtp_server):
    """An address the mail library cannot write (here a non-ASCII local part, stored before validation caught it):
    the failure happens before anything reaches the server, so the notice is FAILED, put back by the sweeper after
    its backoff and tried again, until it gives up; it is never Uncertain, and the server gets nothing."""
    with schema_context(agency_a.schema_name):
        notice = _notice("Acme", key="client-bad-address", to_email="ünïcode@acme.example")
        for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
            with pytest.raises(ValueError):
                notice_deliver(notice_pk=notice.pk)
            notice.refresh_from_db()
            assert notice.status == OutboxStatus.FAILED and notice.attempts == attempt
            assert notice.last_error  # the reason, for the notice log
            later = timezone.now() + timedelta(hours=2)
            sweep = outbox_sweep(now=later, grace=timedelta(0), sending_timeout=timedelta(minutes=15))
            assert sweep.uncertain == 0
        assert notice_deliver(notice_pk=notice.pk) == "gave up"
        assert not Notice.objects.filter(status=OutboxStatus.UNCERTAIN).exists()
    assert smtp_server.messages == []


TEXT = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(["\r", "\n", "\r\n", "\t", "\x00", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\u202e"]),
        st.sampled_from(["Bcc: evil@attacker.example", "=?utf-8?q?x?=", ":", "<", ">", ",", '"', "\\"]),
    ),
    max_size=16,
).map("".join)


def test_R11_fuzz_any_subject_and_name_is_sent_as_one_header_line(agency_a, smtp_server):
    with schema_context(agency_a.schema_name):
        _custom_subject("Payment from {{ client_name }} — {{ amount }}")

        @hypothesis_settings(
            max_examples=size(ci=60, full=1000),
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(name=TEXT)
        @example(name=EVIL)
        @example(name="x" * 5000)
        def send(name):
            FIGURES["notices"] += 1
            before = len(smtp_server.messages)
            notice = _notice(name, key=f"client-fuzz-{FIGURES['notices']}")
            assert notice_deliver(notice_pk=notice.pk) == "sent", repr(name)
            message = smtp_server.messages[before]
            assert set(message.keys()) <= HEADERS_WRITTEN, (repr(name), message.keys())
            expected = header_value(f"Payment from {name} — 42.00")
            assert notice.subject == expected[: len(notice.subject)], repr(name)  # stored as rendered, maybe cut
            assert message["Subject"] == notice.subject, repr(name)
            FIGURES["sent"] += 1

        send()
        assert not Notice.objects.filter(status=OutboxStatus.UNCERTAIN).exists()
    record_figures(
        "R11",
        {
            "notices_fuzzed": FIGURES["notices"],
            "sent": FIGURES["sent"],
            "uncertain": 0,
            "headers_added": 0,
            "responses_5xx": 0,
        },
    )
