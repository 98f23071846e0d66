"""Payment providers. `get_provider()` picks Stripe when STRIPE_SECRET_KEY is set, else the sandbox."""

from __future__ import annotations

import hashlib
from functools import cache

from billing.providers.base import PaymentProvider
from billing.providers.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter

# Stripe's documented limits: 100 requests/s in live mode, 25 in test mode. A little under, for headroom.
DEFAULT_LIVE_RATE = 90
DEFAULT_TEST_RATE = 23


def stripe_rate_limiter() -> RateLimiter | None:
    """The account's request budget, shared through Redis by every process that uses the same key
    (STRIPE_RATE_LIMIT requests/s; 0 = Stripe's documented limit for the key's mode; negative = none)."""
    from django.conf import settings

    rate = settings.STRIPE_RATE_LIMIT
    if rate < 0:
        return None
    if rate == 0:
        rate = (
            DEFAULT_LIVE_RATE if settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_")) else DEFAULT_TEST_RATE
        )
    if not settings.REDIS_URL:
        return LocalRateLimiter(rate)
    account = hashlib.sha256(settings.STRIPE_SECRET_KEY.encode()).hexdigest()[:16]
    return RedisRateLimiter(rate, redis_url=settings.REDIS_URL, key=f"agencybilling:stripe-rate:{account}")


@cache
def get_provider() -> PaymentProvider:
    from django.conf import settings

    if settings.PAYMENT_PROVIDER == "stripe":
        # Imported here: only the configured provider's adapter is loaded (no Stripe SDK with the sandbox).
        from billing.providers.stripe import StripeProvider

        return StripeProvider(
            api_key=settings.STRIPE_SECRET_KEY,
            api_base=settings.STRIPE_API_BASE or None,
            limiter=stripe_rate_limiter(),
            concurrency=settings.COLLECTION_CONCURRENCY,
        )
    # Imported here: only the configured provider's adapter is loaded.
    from billing.providers.sandbox import SandboxProvider

    return SandboxProvider()
