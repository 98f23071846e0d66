"""Helpers for management commands: argument parsing that fails with one clear line."""

from __future__ import annotations

from datetime import date

from django.core.management.base import CommandError


def parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise CommandError(f"{option} must be a date as YYYY-MM-DD, got {value!r}") from None
