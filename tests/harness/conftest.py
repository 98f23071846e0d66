"""Fixtures of the Stripe test server's own tests: one server per test module, reset around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.harness.stripe_server import StripeTestServer, WebhookRecorder


@pytest.fixture(scope="module")
def server() -> Iterator[StripeTestServer]:
    with StripeTestServer(webhook_delay=0.01, webhook_backoff=0.05) as srv:
        yield srv
        assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(autouse=True)
def _clean(server: StripeTestServer) -> Iterator[None]:
    server.reset(keep_webhooks=False)
    yield
    server.reset(keep_webhooks=False)
    server.restore_settings()


@pytest.fixture
def client(server: StripeTestServer) -> stripe.StripeClient:
    return server.client("sk_test_harness")


@pytest.fixture
def recorder() -> Iterator[WebhookRecorder]:
    with WebhookRecorder() as rec:
        yield rec
