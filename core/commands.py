"""Helpers for management commands: argument parsing that fails with one clear line."""

from __future__ import annotations

from datetime import date

from django.core.management.base import CommandError


def parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise CommandError(f"{option} must be a date as YYYY-MM-DD, got {value!r}") from None


def error_line(exc) -> CommandError:
    """An ApplicationError (any object with `message` and `fields`) as one line: the message, then each field's
    problems."""
    problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in (exc.fields or {}).items())
    return CommandError(f"{exc.message} {problems}".strip())
