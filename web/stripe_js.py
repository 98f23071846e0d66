"""Stripe.js on the pages that take a card (the portal's payment method, the agency's own in Billing Setup)."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.http import HttpResponse

# Stripe.js and the card frame it opens, allowed on the payment-method pages only and only with a Stripe key
# (Stripe's documented CSP requirements for Elements).
STRIPE_CSP = {
    "script-src": ["https://js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}


def with_stripe_csp(response: HttpResponse) -> HttpResponse:
    base = cast(dict[str, list[str]], settings.SECURE_CSP)
    policy = {name: list(values) for name, values in base.items()}
    for name, sources in STRIPE_CSP.items():
        policy[name] = [*policy.get(name, policy["default-src"]), *sources]
    setattr(response, "_csp_config", policy)  # noqa: B010 - Django's CSP middleware reads this attribute
    return response
