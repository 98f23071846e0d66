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


PLAIN = [
    "a@b",
    "billing@localhost",
    "ap1@client1.example",
    "o'brien@x.example",
    "a+b-c_d{e}|f~g=h?i^j`k!#$%&*/@x-y.example",
    "A.B.C@EXAMPLE.COM",
]
OTHER = [
    "a..b@x.example",
    ".a@x.example",
    "a.@x.example",
    "a@-x.example",
    "a@x.example.",
    '"a b"@x.example',
    "a@[192.0.2.1]",
    "Name <a@b.example>",
    "a@bü.example",
    "a b@x.example",
    "a,b@x.example",
    "a@b\r\nBcc: c@d.example",
]


def test_NOT_4_a_plain_address_skips_the_parser_and_comes_out_as_djangos_backend_makes_it():
    """The fast path for plain addresses gives exactly what Django's SMTP backend's `prep_address` gives (the
    envelope) and what the email package's parsing gives (the header); every other address still goes through them."""
    from email.utils import formataddr, getaddresses

    from django.core.mail.backends.smtp import EmailBackend

    from notifications.mime import _address, envelope_address

    backend = EmailBackend(host="mail.invalid")
    for address in PLAIN:
        assert envelope_address(address, lambda value: "parsed") == address == backend.prep_address(address)
        assert _address(address) == address == formataddr(getaddresses([address])[0])
    for address in OTHER:
        assert envelope_address(address, lambda value: "parsed") == "parsed", address
    assert _address("Agence Élan <billing@elan.example>") == formataddr(
        ("Agence Élan", "billing@elan.example"), charset="utf-8"
    )
