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


# Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they reorder what a reader sees.
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def has_control_characters(text: str) -> bool:
    """Whether a one-line value (a name) holds a control or line-separator character (CR, LF, tab, NUL, U+0085,
    U+2028 …) or a bidirectional override. A name travels into mail subjects and display names, file names and CSV
    cells; none of those wants them, so names refuse them at the door (notifications.mime.header_value strips them
    again where mail is built). Other format characters stay: names are written with them (the zero-width joiner of
    emoji sequences and Indic scripts, the non-joiner of Persian, a zero-width space)."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in text)
