"""Helpers for management commands: argument parsing that fails with one clear line."""

from __future__ import annotations

from datetime import UTC, date, datetime

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


def parse_instant(value: str, option: str) -> datetime:
    """An instant in ISO 8601 with its offset (`2027-03-14T07:00Z`, `2027-03-14T02:00-05:00`), as UTC. A time
    without an offset is refused: which instant it names depends on a time zone."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise CommandError(f"{option} must be an instant as YYYY-MM-DDTHH:MMZ, got {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise CommandError(f"{option} needs a UTC offset (Z or +HH:MM), got {value!r}")
    return parsed.astimezone(UTC)
