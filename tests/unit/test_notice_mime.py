"""The notice's MIME bytes written by notifications.mime read back as Django's message would (NOT-4's emails)."""

from __future__ import annotations

import email
import email.policy

from notifications.mime import alternative_message_bytes


def _read(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_NOT_4_notice_bytes_read_back_with_unicode_subject_long_lines_and_both_parts():
    body = "Bonjour Zoë,\n\nWe received 1 234,56 € — thank you.\n" + "x" * 300 + "\n.\nA line with a dot."
    html = "<p>Bonjour Zoë</p>" + "<span>y</span>" * 100
    data = alternative_message_bytes(
        subject="Payment received — thank you, Zoë",
        body=body,
        html=html,
        from_email="Agence Élan <billing@elan.example>",
        to=["zoe@client.example"],
        headers={"X-Notice-Key": "c-1/PAYMENT_RECEIVED/2027-03/1", "Message-ID": "<notice-abc@example.com>"},
    )
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only, as SMTP wants
    message = _read(data)
    assert message["Subject"] == "Payment received — thank you, Zoë"
    assert message["From"].addresses[0].display_name == "Agence Élan"
    assert message["To"] == "zoe@client.example"
    assert message["X-Notice-Key"] == "c-1/PAYMENT_RECEIVED/2027-03/1"
    assert message["Message-ID"] == "<notice-abc@example.com>" and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == body
    assert message.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n").rstrip("\n") == html
