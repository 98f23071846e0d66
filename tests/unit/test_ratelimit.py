"""The client-side provider rate limiter (billing.providers.ratelimit): slots at least `spacing` apart, and a
late wake-up gives its slot up instead of sending late (so no one-second window ever holds more than R)."""

from __future__ import annotations

from billing.providers.ratelimit import LocalRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.oversleep: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + (self.oversleep.pop(0) if self.oversleep else 0.0)


def test_slots_are_spaced_so_the_rate_never_exceeds_r():
    clock = FakeClock()
    limiter = LocalRateLimiter(10, clock=clock, sleep=clock.sleep)
    sends = []
    for _ in range(30):
        limiter.acquire()
        sends.append(clock.now)
    assert all(b - a >= limiter.spacing - 1e-9 for a, b in zip(sends, sends[1:], strict=False))
    assert max(sum(1 for t in sends if start <= t < start + 1.0) for start in sends) <= 10


def test_a_late_wake_up_reserves_a_new_slot_instead_of_sending_late():
    clock = FakeClock()
    limiter = LocalRateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire()  # first slot: now
    first = clock.now
    clock.oversleep = [0.05]  # the next sleep overruns its slot by 50 ms (beyond the tolerance)
    limiter.acquire()
    # The late slot was given up: the send happens on the following slot, not 50 ms after the missed one.
    assert abs(clock.now - (first + 2 * limiter.spacing)) < 1e-9


def test_a_small_delay_within_tolerance_still_sends():
    clock = FakeClock()
    limiter = LocalRateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    first = clock.now
    clock.oversleep = [limiter.tolerance / 2]
    limiter.acquire()
    assert abs(clock.now - (first + limiter.spacing + limiter.tolerance / 2)) < 1e-9


def test_redis_limiter_threads_never_send_more_than_r_in_a_second():
    import os
    import threading
    import time

    from django.conf import settings

    from billing.providers.ratelimit import RedisRateLimiter

    limiter = RedisRateLimiter(40, redis_url=settings.REDIS_URL, key=f"test:ratelimit:{os.getpid()}")
    limiter.reset()
    sends: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(15):
            limiter.acquire()
            with lock:
                sends.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limiter.reset()
    sends.sort()
    assert len(sends) == 60
    assert max(sum(1 for t in sends if start <= t < start + 1.0) for start in sends) <= 40


class SwitchedOutAfterWaking(FakeClock):
    """After each sleep, the thread is switched out for `delay` between its first reading and the next."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay, self.pending = delay, []

    def __call__(self) -> float:
        if self.pending:
            self.now += self.pending.pop(0)
        return self.now

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.pending = [0.0, self.delay]


def test_the_time_granted_is_the_time_checked_against_the_slot():
    clock = SwitchedOutAfterWaking(delay=0.0)
    limiter = LocalRateLimiter(10, clock=clock, sleep=clock.sleep)
    clock.delay = 2 * limiter.tolerance
    granted = []
    for _ in range(5):
        started = clock()
        granted.append(started + limiter.acquire())
    slots = [granted[0] + n * limiter.spacing for n in range(5)]
    # A second reading after the check would grant a time beyond the tolerance that was checked.
    assert all(abs(grant - slot) <= limiter.tolerance for grant, slot in zip(granted, slots, strict=True))
