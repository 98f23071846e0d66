"""The demo's mail viewer: every email the demo sent, as its recipient would read it, with clickable links.

The demo (scripts/demo.py) runs a real SMTP server on 127.0.0.1 (scripts/mailsink.py) that keeps each message it
receives in a Maildir, and sets `DEMO_MAIL_DIR` to it; these pages on the console host list and show them. Without
`DEMO_MAIL_DIR` (tests, production) the pages do not exist.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

_URL = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Mail:
    key: str
    sent_at: datetime | None
    sender: str
    to: str
    subject: str
    message: email.message.EmailMessage


def _box() -> mailbox.Maildir:
    if not settings.DEMO_MAIL_DIR:
        raise Http404
    for part in ("tmp", "new", "cur"):  # nothing received yet: an empty mailbox, not an error
        Path(settings.DEMO_MAIL_DIR, part).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(settings.DEMO_MAIL_DIR, create=False)


def _parse(key: str, raw: mailbox.MaildirMessage) -> Mail:
    message = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
    try:
        sent_at = parsedate_to_datetime(message["Date"]) if message["Date"] else None
    except (TypeError, ValueError):
        sent_at = None
    return Mail(
        key, sent_at, str(message["From"] or ""), str(message["To"] or ""), str(message["Subject"] or ""), message
    )


def mails() -> list[Mail]:
    """Every message received, newest first."""
    box = _box()
    found = [_parse(key, raw) for key, raw in box.iteritems()]
    return sorted(found, key=lambda m: (m.sent_at.timestamp() if m.sent_at else 0, m.key), reverse=True)


def linkified(text: str) -> SafeString:
    """Plain text, escaped, with every http(s) address a link."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:)")
        out.append(escape(text[last : match.start()]))
        out.append(f'<a href="{escape(url)}">{escape(url)}</a>')
        last = match.start() + len(url)
    out.append(escape(text[last:]))
    return mark_safe("".join(out))  # noqa: S308 - every piece above is escaped


def plain_text(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


@require_GET
def mail_list(request: HttpRequest) -> HttpResponse:
    return render(request, "mailviewer/list.html", {"mails": mails(), "maildir": settings.DEMO_MAIL_DIR})


@require_GET
def mail_detail(request: HttpRequest, key: str) -> HttpResponse:
    box = _box()
    try:
        mail = _parse(key, box[key])
    except KeyError:
        raise Http404 from None
    html = mail.message.get_body(preferencelist=("html",))
    return render(
        request,
        "mailviewer/detail.html",
        {"mail": mail, "body": linkified(plain_text(mail.message)), "has_html": html is not None},
    )


@require_GET
def mail_html(request: HttpRequest, key: str) -> HttpResponse:
    """The HTML alternative as sent, in a sandbox (no scripts, no same-origin access)."""
    box = _box()
    try:
        message = _parse(key, box[key]).message
    except KeyError:
        raise Http404 from None
    part = message.get_body(preferencelist=("html",))
    if part is None:
        raise Http404
    response = HttpResponse(part.get_content(), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return response
