"""Whole numbers from untrusted text (core.parsing): never a ValueError, never a value a column cannot hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.parsing import whole_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("28", 28),
        ("007", 7),
        ("999999999999999999", 999_999_999_999_999_999),
        ("", None),
        (" 1", None),
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        ("1e3", None),
        ("²", None),
        ("①", None),
        ("１２", None),
        ("١٢", None),
        ("9" * 19, None),
        ("9" * 5000, None),
        (None, None),
        (5, None),
    ],
)
def test_whole_number_accepts_ascii_digits_only(text, expected):
    assert whole_number(text) == expected


def test_whole_number_max_digits():
    assert whole_number("123", max_digits=2) is None
    assert whole_number("12", max_digits=2) == 12


@given(st.text(max_size=40))
def test_whole_number_never_raises_and_round_trips(text):
    value = whole_number(text)
    assert value is None or (str(value) == text.lstrip("0") or (value == 0 and set(text) == {"0"}))
