"""Set-up shared by the payout tests: the product switched to Stripe (the Stripe-compatible test server), Stripe's
hosted onboarding page walked over HTTP as a browser would, signed webhook deliveries, waiting for them."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests

from billing.providers import get_provider

WEBHOOK_SECRET = "whsec_payouts_tests_0123456789"


@contextmanager
def stripe_product(settings, server) -> Iterator[None]:
    """The product with STRIPE_SECRET_KEY set, talking to the test server (every `get_provider()` is Stripe)."""
    settings.STRIPE_SECRET_KEY = "sk_test_payouts"
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_RATE_LIMIT = -1
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = WEBHOOK_SECRET
    get_provider.cache_clear()
    try:
        yield
    finally:
        get_provider.cache_clear()


def hosted_onboarding(url: str, action: str, *, bank_account: str = "") -> str:
    """Open Stripe's hosted onboarding page (the test server's) and press a button, as a browser would; returns where
    the page sends the browser (the return URL, or the refresh URL for a used or expired link)."""
    with requests.Session() as browser:
        page = browser.get(url, allow_redirects=False, timeout=10)
        if page.status_code in (302, 303):
            return page.headers["Location"]
        session = re.search(r"name=['\"]session['\"] value=['\"]([^'\"]+)", page.text)
        form = {"action": action, "session": session.group(1) if session else "", "bank_account": bank_account}
        answer = browser.post(url, data=form, allow_redirects=False, timeout=10)
        assert answer.status_code in (302, 303), answer.text[:500]
        return answer.headers["Location"]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def sign(payload: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def deliver(http, event: dict, *, secret: str = WEBHOOK_SECRET):
    """POST an event to the product's webhook endpoint, signed as Stripe signs it."""
    body = json.dumps(event).encode()
    return http.post(
        "/webhooks/stripe", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body, secret=secret)
    )


def eventually(check: Callable[[], object], *, timeout: float = 15.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
