"""Fixtures of the reliability tests: one Stripe-compatible server per session, an SMTP server that counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.stripe_server import StripeTestServer
from tests.reliability.harness import SmtpServer


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[StripeTestServer]:
    with StripeTestServer(request_log_size=1000) as server:
        yield server


@pytest.fixture
def clean_stripe(stripe_server: StripeTestServer) -> StripeTestServer:
    stripe_server.reset(keep_webhooks=False)
    return stripe_server


@pytest.fixture
def counting_smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server
