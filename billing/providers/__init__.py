"""Payment providers. `get_provider()` picks Stripe when STRIPE_SECRET_KEY is set, else the sandbox."""

from __future__ import annotations

from functools import cache

from billing.providers.base import PaymentProvider


@cache
def get_provider() -> PaymentProvider:
    from django.conf import settings

    if settings.PAYMENT_PROVIDER == "stripe":
        from billing.providers.stripe import StripeProvider

        return StripeProvider(api_key=settings.STRIPE_SECRET_KEY, api_base=settings.STRIPE_API_BASE or None)
    from billing.providers.sandbox import SandboxProvider

    return SandboxProvider()
