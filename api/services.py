"""Writes of the API layer's own records."""

from __future__ import annotations

from datetime import datetime, timedelta

from api.models import IdempotencyRecord


def idempotency_records_expire(*, now: datetime, max_age: timedelta) -> int:
    """Forget `Idempotency-Key`s older than `max_age` in the current schema; returns how many. After that the
    same key is a new request (Stripe keeps keys 24 hours too). A claim left unfinished by a crashed request
    goes as well, which frees its key."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=now - max_age).delete()
    return deleted
