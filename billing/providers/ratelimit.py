"""Client-side rate limits for a payment provider's API (Stripe allows N requests per second per account).

Virtual scheduling (GCRA without burst): each request reserves the next free send slot, at least
`spacing = (window + margin) / rate` after the previous reservation, and sleeps until its slot. Slots are
reserved on a schedule, not measured from actual sends, so the time a thread needs to wake up and send does
not accumulate: the sustained rate is rate / (1 + margin). Because slots are at least `spacing` apart, no
`window + margin` interval holds more than `rate` of them: the limit is never exceeded, and no window's worth
ever leaves at once.

The margin (3 %) is there because a request reaches the server some milliseconds after its slot, by a varying
amount (a thread waiting for the CPU or the GIL): the server counts arrivals per second, and two slots a bit
more than a second apart could otherwise arrive within one second. Up to ~30 ms of such jitter is absorbed.

Late wake-ups: a thread that wakes up more than half the margin after its slot (a busy machine can hold a
sleeping thread back for tens of milliseconds, or the reservation's reply can come back late) does not send
late, which would bunch its request with the next ones; it gives the slot up and reserves a new one. A slot
given up is a request not sent, never one too many: the rate stays at most R, and the late wake-ups cost only
the slots they miss.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

DEFAULT_MARGIN = 0.03


class RateLimiter(Protocol):
    rate: float

    def acquire(self) -> float:
        """Block until this request's send slot; returns the seconds waited."""
        ...


def _spacing(rate: float, window: float, margin: float) -> float:
    if rate <= 0:
        raise ValueError("rate must be positive")
    return (window + margin) / max(1, int(rate * window))


class LocalRateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.spacing = _spacing(rate, window, margin)
        self.tolerance = margin * window / 2
        self.missed = 0  # slots given up by late wake-ups (diagnostics)
        self._last: float | None = None
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def _reserve_slot(self) -> float:
        with self._lock:
            now = self._clock()
            slot = now if self._last is None else max(now, self._last + self.spacing)
            self._last = slot
            return slot

    def reserve(self) -> float:
        """Reserve the next slot; returns how long to wait for it."""
        return max(0.0, self._reserve_slot() - self._clock())

    def acquire(self) -> float:
        return _wait_for_slot(self, self._reserve_slot, clock=self._clock, sleep=self._sleep)


def _wait_for_slot(
    limiter, reserve_slot: Callable[[], float], *, clock: Callable[[], float], sleep: Callable[[float], None]
) -> float:
    """Sleep until a reserved slot (in `clock`'s time); a wake-up later than the limiter's tolerance gives the
    slot up and reserves another. Returns the seconds waited."""
    started = clock()
    while True:
        slot = reserve_slot()
        delay = slot - clock()
        if delay > 0:
            sleep(delay)
        woke = clock()  # one reading for the check and the answer: a thread switch between two readings
        if woke - slot <= limiter.tolerance:  # would hand out a slot later than the one checked
            return woke - started
        limiter.missed += 1


# KEYS[1]: the last reserved slot (microseconds, Redis clock); ARGV[1]: spacing in microseconds.
# Reserves the next slot; returns Redis's time now and the slot, in microseconds.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local spacing = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + spacing)
redis.call('SET', KEYS[1], string.format('%d', slot), 'PX', math.ceil((slot - now) / 1000) + 60000)
return {now, slot}
"""


class RedisRateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        redis_url: str,
        key: str,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        client: Any = None,
    ) -> None:
        import redis

        self.rate = rate
        self.key = key
        self.spacing = _spacing(rate, window, margin)
        self.tolerance = margin * window / 2
        self.missed = 0  # slots given up by late wake-ups (diagnostics)
        self._offset = float("inf")
        self._spacing_us = int(self.spacing * 1_000_000)
        self._redis = client or redis.Redis.from_url(redis_url)
        self._script = self._redis.register_script(_RESERVE_LUA)

    def reset(self) -> None:
        self._redis.delete(self.key)

    def _calibrate(self, samples: int = 5) -> None:
        """Learn Redis's clock from a few TIME round trips before the first reservation. Otherwise the first
        slots are placed by the first replies alone, which can be slow (a busy process): later, faster replies
        would then move the estimate, and the slots placed after it, earlier than the ones before — bunching
        sends across that change."""
        for _ in range(samples):
            seconds, micros = self._redis.time()
            self._offset = min(self._offset, time.monotonic() - (seconds + micros / 1_000_000))

    def _reserve_slot(self) -> float:
        """The next slot, in this process's monotonic time."""
        now_us, slot_us = (int(v) for v in self._script(keys=[self.key], args=[self._spacing_us]))
        # Redis's clock in this process's terms: the smallest (local time after a reply - Redis time of that
        # reservation) seen so far. A reply can be late, never early, so the smallest is the truest, and a
        # late reply neither counts as a late send nor makes one look on time.
        self._offset = min(self._offset, time.monotonic() - now_us / 1_000_000)
        return slot_us / 1_000_000 + self._offset

    def acquire(self) -> float:
        if self._offset == float("inf"):
            self._calibrate()
        return _wait_for_slot(self, self._reserve_slot, clock=time.monotonic, sleep=time.sleep)
