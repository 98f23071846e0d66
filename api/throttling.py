"""Rate limiting per API token (per user for session calls, per address otherwise).

A sliding window estimated from two fixed windows (the current one's count plus the previous one's, weighted by
how much of it the sliding window still covers), counted in Redis by one script: one round trip, atomic under
concurrent requests, constant size whatever the rate. DRF's own throttle kept the time of every request of the
window in one cache entry, read and rewritten whole by each request: its cost grew with the rate, and two
concurrent requests could each write back a history missing the other (docs/decisions.md, API rate limits).

Refused requests are not counted. Keys go through the default cache's key function
(django_tenants.cache.make_key), so they carry the schema name and agencies never share a counter.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core.redis_clients import redis_client

# KEYS[1]: the counter's base key. ARGV: window (seconds), limit. Redis's own clock places the windows, so every
# app server agrees on them. Returns {allowed (1/0), milliseconds until a request would be allowed}.
_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local index = math.floor(now / window)
local elapsed = (now - index * window) / window
local current_key = KEYS[1] .. ':' .. index
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (index - 1)) or '0')
local current = tonumber(redis.call('GET', current_key) or '0')
if previous * (1 - elapsed) + current + 1 <= limit then
  redis.call('INCR', current_key)
  redis.call('EXPIRE', current_key, 2 * window)
  return {1, 0}
end
local wait
if current + 1 <= limit then
  wait = (1 - (limit - current - 1) / previous - elapsed) * window
else
  wait = (1 - elapsed) * window + math.max(0, 1 - (limit - 1) / current) * window
end
return {0, math.ceil(wait * 1000)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait_seconds: float


@functools.cache
def _script(url: str):
    return redis_client(url).register_script(_WINDOW_LUA)


def window_allow(*, key: str, limit: int, window: int) -> Decision:
    """Count one request under `key` if fewer than `limit` fall in the sliding window of `window` seconds.
    `key` is a cache key: it goes through the cache's key function (the schema prefix)."""
    script = _script(settings.REDIS_URL)
    allowed, wait_ms = script(keys=[cache.make_and_validate_key(f"rate:{key}")], args=[window, limit])
    return Decision(allowed=bool(allowed), wait_seconds=int(wait_ms) / 1000)


class TokenRateThrottle(SimpleRateThrottle):
    """DRF makes one per request: the rate is read then, so a changed setting (tests, a reload) applies without
    re-importing the class."""

    scope = "api"

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        token = getattr(request, "auth", None)
        if token is not None and getattr(token, "pk", None) is not None:
            return f"{self.scope}:token:{token.pk}"
        if request.user and request.user.is_authenticated:
            return f"{self.scope}:user:{request.user.pk}"
        return f"{self.scope}:addr:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        decision = window_allow(key=self.get_cache_key(request, view), limit=self.num_requests, window=self.duration)
        self._wait = max(1.0, decision.wait_seconds)
        return decision.allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
