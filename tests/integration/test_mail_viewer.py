"""The demo's mail viewer (agencybilling/mailviewer.py): messages received by the local SMTP server, newest first,
read as their recipient would, every link clickable and everything else escaped."""

from __future__ import annotations

import mailbox
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from agencybilling import mailviewer

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mail_sink(tmp_path):
    """scripts/mailsink.py as the demo runs it: a real SMTP server writing a Maildir."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "mailsink.py"), "--port", str(port), "--maildir", str(tmp_path)]
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield port, tmp_path
    proc.terminate()
    proc.wait(10)


def _get(view, *args):
    request = RequestFactory().get("/mail/")
    request.user = AnonymousUser()
    return view(request, *args)


def test_mail_viewer_shows_what_went_through_smtp_with_links_and_nothing_unescaped(mail_sink, settings):
    port, maildir = mail_sink
    settings.DEMO_MAIL_DIR = str(maildir)
    message = EmailMessage()
    message["From"], message["To"] = "billing@demo.test", "client@demo.test"
    message["Subject"] = "Your payment failed <script>alert(1)</script>"
    message.set_content("Pay it here: http://demo.localhost:8123/portal/charges/abc/pay/.\n<b>not bold</b>\n")
    message.add_alternative("<p>Pay it <a href='http://demo.localhost:8123/portal/'>here</a></p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)
    [key] = list(mailbox.Maildir(str(maildir), create=False).keys())
    listing = _get(mailviewer.mail_list).content.decode()
    assert f'href="/mail/{key}/"' in listing and "&lt;script&gt;" in listing and "<script>alert" not in listing
    detail = _get(mailviewer.mail_detail, key).content.decode()
    link = "http://demo.localhost:8123/portal/charges/abc/pay/"
    assert f'<a href="{link}">{link}</a>.' in detail  # the sentence's full stop is not part of the link
    assert "&lt;b&gt;not bold&lt;/b&gt;" in detail and f'href="/mail/{key}/html"' in detail
    html = _get(mailviewer.mail_html, key)
    assert html["Content-Security-Policy"].startswith("sandbox") and b"Pay it" in html.content
