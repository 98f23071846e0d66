"""Redis clients kept per process."""

from __future__ import annotations

import functools


@functools.cache
def redis_client(url: str, *, timeout: float | None = None):
    """One client (and connection pool) per process, URL and timeout. A client made per call opens a new
    connection each time, and redis-py reads its own package metadata on every connect (2.6 ms of a 3.7 ms
    health check, docs/performance.md, P5)."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
