"""Named PostgreSQL advisory locks: one holder at a time per name, across processes and hosts.

The key is the first 8 bytes of the name's SHA-256, so a name means the same lock in every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import connection


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def advisory_lock(name: str) -> Iterator[bool]:
    """Try to take the session lock `name` without waiting; yields whether it was taken, and releases it on
    exit when it was. Session-level: it outlives transactions, so it can guard work that commits several."""
    key = lock_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        taken = bool(cursor.fetchone()[0])
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def advisory_xact_lock(name: str) -> None:
    """Wait for the lock `name` and hold it to the end of the current transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(name)])


def beat_slot_claim(name: str, *, every: int, now: datetime) -> bool:
    """Claim the run of the periodic job `name` for the slot of `every` seconds that `now` falls in: True for the
    first caller of the slot, False for every other (an atomic SET NX in the shared cache, Redis). So two beats —
    two hosts each running one for availability — send the job twice, and it runs once per slot. The claim
    outlives its slot by one slot, so a late second tick of the same slot is refused too."""
    from django.core.cache import cache

    return bool(cache.add(beat_slot_key(name, every=every, now=now), now.isoformat(), timeout=2 * max(every, 1)))


def beat_slot_key(name: str, *, every: int, now: datetime) -> str:
    return f"beat-slot:{name}:{every}:{int(now.timestamp()) // max(every, 1)}"
