"""Parsing untrusted text into numbers without surprises."""

from __future__ import annotations

import re
import unicodedata

_ASCII_DIGITS = re.compile(r"[0-9]+")


def whole_number(text: object, *, max_digits: int = 18) -> int | None:
    """The non-negative integer written in `text` with ASCII digits only, or None.

    `str.isdigit()` is not enough before `int()`: it accepts digits `int()` refuses ('²', '①') and any length,
    while `int()` refuses strings over 4,300 digits — both would be a ValueError (a 500) on untrusted input.
    `max_digits` (18 by default) keeps the result within a signed 64-bit column.
    """
    if not isinstance(text, str) or not 0 < len(text) <= max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


def has_control_characters(text: str) -> bool:
    """Whether a one-line value (a name) holds a control, format or line-separator character: CR, LF, tab, NUL,
    U+2028 … A name travels into mail subjects and display names, file names and CSV cells; none of those wants
    them, so names refuse them at the door (notifications.mime.header_value strips them again where mail is built)."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)
