"""Every notice goes out as plain text with the agency's branded HTML layout beside it (multipart/alternative),
rendered in Jinja2's sandbox with escaping; "Send test email" sends the editor's draft that way to the signed-in
Administrator, over a real SMTP server (NOT-4, the template editor)."""

from __future__ import annotations

import io
from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from billing.billing_setup import agency_logo_set
from notifications.layout import Branding, render_html
from notifications.models import Notice
from notifications.services import notices_deliver
from tests.conftest import login_client
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a, months=(date(2027, 1, 1),))


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (47, 91, 211)).save(buffer, format="PNG")
    return buffer.getvalue()


def _parts(message) -> dict[str, object]:
    return {part.get_content_type(): part for part in message.walk()}


def test_layout_escapes_the_body_and_links_its_urls():
    html = render_html(
        subject="Hi <b>",
        body="Hello <script>alert(1)</script>,\nsee https://demo.example/portal/.\n\nThanks",
        branding=Branding(name="Acme & Co", colour="#123456"),
    )
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert '<a href="https://demo.example/portal/"' in html
    assert "Acme &amp; Co" in html and "#123456" in html and html.count("<p ") == 2


def test_NOT_4_notices_are_sent_multipart_with_the_branded_layout(scenario, smtp_server):
    with schema_context("alpha"):
        agency_logo_set(agency=scenario.agency, actor=scenario.admin, upload=SimpleUploadedFile("logo.png", _png()))
        scenario.agency.refresh_from_db()
        notice = Notice.objects.filter(to_email=scenario.paying.email).first()
        # The billing day's last step sent it before the logo existed: it is made one still to send.
        Notice.objects.filter(pk=notice.pk).update(status="PENDING", attempts=0, sent_at=None)
        assert notices_deliver(notice_pks=[notice.pk]) == {notice.pk: "sent"}
    message = next(m for m in smtp_server.messages if m["To"] == scenario.paying.email)
    parts = _parts(message)
    assert message.get_content_type() == "multipart/alternative" and "text/plain" in parts and "text/html" in parts
    assert parts["text/plain"].get_content().replace("\r\n", "\n").strip() == notice.body.strip()
    html = parts["text/html"].get_content()
    assert "Alpha Agency" in html and 'src="http://alpha.localhost/branding/logo"' in html


def test_send_test_email_sends_the_draft_to_the_administrator(scenario, smtp_server):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        client = scenario.declining
    page = http.post(
        "/email-templates/PAYMENT_FAILED/test-email",
        {"subject": "About {{ client_name }}", "body": "Dear {{ client_name }},\n\nDraft text.", "client": client.pk},
    )
    assert page.status_code == 200
    assert f"Test email sent to {scenario.admin.email}" in page.content.decode()
    assert 'value="About {{ client_name }}"' in page.content.decode()  # the draft is kept, not saved
    (message,) = [m for m in smtp_server.messages if m["To"] == scenario.admin.email]
    assert message["Subject"] == f"[Test] About {client.name}"
    parts = _parts(message)
    assert f"Dear {client.name}," in parts["text/plain"].get_content()
    assert "Draft text." in parts["text/html"].get_content()
    with schema_context("alpha"):
        from notifications.models import NoticeTemplate

        assert not NoticeTemplate.objects.exists()
    bad = http.post("/email-templates/PAYMENT_FAILED/test-email", {"subject": "{{ settings }}", "body": "x"})
    assert bad.status_code == 400 and len(smtp_server.messages) == 1


def test_template_editor_select_shows_the_preview_client(scenario):
    html = login_client(scenario.agency, scenario.admin.email).get("/email-templates/PAYMENT_FAILED/").content.decode()
    with schema_context("alpha"):
        from clients.models import Client

        first = Client.objects.order_by("name").first()
    assert f'<option value="{first.pk}" selected>{first.name}</option>' in html
    assert f"with {first.name}" in html
