"""A notice's MIME message written directly as bytes: multipart/alternative (plain text, then the branded HTML),
UTF-8, quoted-printable, CRLF line ends — what Django's EmailMultiAlternatives produces for a notice, without
the email package's general-purpose generator, which costs several times the SMTP exchange itself (P8,
docs/performance.md). Headers other than the subject and the addresses are ASCII by construction (the notice
key, a Message-ID); non-ASCII subjects and display names are RFC 2047 encoded."""

from __future__ import annotations

import binascii
import re
import secrets
import unicodedata
from collections.abc import Callable
from email.header import Header
from email.utils import formataddr, formatdate, getaddresses
from functools import lru_cache

CRLF = b"\r\n"
_SPACES = re.compile(r"\s+")
MAX_HEADER_CHARS = 900
# A bare address whose every part is a dot-atom of ASCII (RFC 5322): the address as is is its own header value and
# its own envelope address, and the email package's parser (a large share of a notice's serialising) is not needed.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")


def header_value(value: object) -> str:
    """A header value as mail may carry it: every control or line-separator character (CR, LF, tab, NUL, NEL, U+2028,
    U+2029) a space, runs of white space one, at most 900 characters. The one place a value becomes a header
    (subjects, display names, the notice key): text from a template or a client's name cannot add a header, nor make
    the mail library refuse the message after it was claimed for sending (NOT-7). Format characters stay, as names
    keep them (core.parsing.has_control_characters): the zero-width joiner of an emoji sequence is no line break."""
    text = str(value)
    if not (text.isascii() and text.isprintable()):  # printable ASCII has no control or separator character
        text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    return _SPACES.sub(" ", text).strip()[:MAX_HEADER_CHARS]


@lru_cache(maxsize=1024)  # a notice kind's subject, the sender: the same text for many notices
def _header_text(value: str) -> str:
    """A header value: as is when it is short printable ASCII, else RFC 2047 encoded words (UTF-8), folded."""
    value = header_value(value)
    if value.isascii() and value.isprintable():
        return value
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


@lru_cache(maxsize=1024)
def _address(value: str) -> str:
    value = header_value(value)
    if _PLAIN_ADDRESS.fullmatch(value):
        return value
    (name, addr), *_ = getaddresses([value])
    if name and not name.isascii():
        return formataddr((name, addr), charset="utf-8")
    return formataddr((name, addr))


def envelope_address(address: str, prepare: Callable[[str], str]) -> str:
    """The address for the SMTP envelope: a plain ASCII address is its own (what Django's SMTP backend's
    `prep_address` returns for it); any other goes through `prepare` (display names, IDNA domains, refusals)."""
    return address if _PLAIN_ADDRESS.fullmatch(address) else prepare(address)


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (line breaks in the text stay line breaks)."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(normalised, quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", CRLF)


def alternative_message_bytes(
    *, subject: str, body: str, html: str, from_email: str, to: list[str], headers: dict[str, str]
) -> bytes:
    boundary = f"=============={secrets.token_hex(12)}=="
    head = [
        f"Subject: {_header_text(subject)}",
        f"From: {_address(from_email)}",
        f"To: {', '.join(_address(address) for address in to)}",
        f"Date: {formatdate()}",
        *(f"{name}: {_header_text(value)}" for name, value in headers.items()),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return b"".join(
        [
            "\r\n".join(head).encode("ascii"),
            CRLF,
            CRLF,
            f"--{boundary}\r\n{part.format('plain')}".encode("ascii"),
            _qp(body),
            CRLF,
            f"--{boundary}\r\n{part.format('html')}".encode("ascii"),
            _qp(html),
            CRLF,
            f"--{boundary}--\r\n".encode("ascii"),
        ]
    )
