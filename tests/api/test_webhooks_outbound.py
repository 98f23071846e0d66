"""Outbound webhooks to the agency's own systems, over real HTTP to a receiver on loopback: signed events for
invoice finalized, charge paid / failed / uncollectable and payout paid; retries with backoff; a delivery log;
manual redelivery; nothing sent for a rolled-back change; nothing stored when no endpoint listens."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from billing.day import agency_day_run
from billing.payment_methods import payment_method_attach
from clients.services import client_create
from integrations.models import DeliveryStatus, OutboundEvent, WebhookDelivery
from integrations.services import MAX_ATTEMPTS, RETRY_DELAYS, delivery_attempt
from integrations.signing import SIGNATURE_HEADER, signature_verify
from tests.api.conftest import api, token_for
from tests.billing_helpers import ready_to_collect

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; answers with the scripted statuses, then 200."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"nope")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def agency(agency_a):
    return ready_to_collect(agency_a)


def _register(agency, url, kinds=()):
    http = api(agency, token_for(agency, "hooks-admin@alpha.test", Role.ADMINISTRATOR))
    created = http.post("/api/v1/webhook-endpoints/", {"url": url, "event_kinds": list(kinds)}, format="json")
    assert created.status_code == 201, created.content
    return http, created.json()


def _clients(agency):
    with schema_context(agency.schema_name):
        paying = client_create(
            name="Paying", email="paying@example.com", activated_on=date(2026, 12, 1), license_price_minor=10000
        )
        payment_method_attach(client=paying, token="pm_card_visa:hooks")
        declined = client_create(
            name="Declined", email="declined@example.com", activated_on=date(2026, 12, 1), license_price_minor=20000
        )
        payment_method_attach(client=declined, token="pm_card_visa_chargeDeclined:hooks")
        client_create(
            name="No Card", email="nocard@example.com", activated_on=date(2026, 12, 1), license_price_minor=5000
        )


def test_events_are_signed_and_cover_invoices_charges_and_payouts(
    agency, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    _, endpoint = _register(agency, receiver.url)
    _clients(agency)
    day = date(2027, 1, 1)
    with django_capture_on_commit_callbacks(execute=True):
        agency_day_run(agency=agency, today=day)
    for offset in range(1, 8):  # settlement and the payout, 3 business days later
        with django_capture_on_commit_callbacks(execute=True):
            agency_day_run(agency=agency, today=day + timedelta(days=offset))
    events = receiver.events()
    kinds = sorted(e["type"] for e in events)
    assert kinds.count("invoice.finalized") == 3
    assert kinds.count("charge.paid") == 1
    # The declined card: attempt 1 on the billing date, attempt 2 on the 5th weekday after it (RET-2), Jan 8.
    failed = sorted(e["data"]["attempt"]["number"] for e in events if e["type"] == "charge.failed")
    assert failed == [1, 2]
    assert kinds.count("charge.uncollectable") == 1  # no card → Uncollectable at once (COL-4)
    assert kinds.count("payout.paid") == 1
    payout = next(e for e in events if e["type"] == "payout.paid")
    paid = next(e for e in events if e["type"] == "charge.paid")
    assert payout["data"]["charges"] == [paid["data"]["id"]] and payout["data"]["amount_minor"] == 10000
    finalized = [e["data"] for e in events if e["type"] == "invoice.finalized"]
    assert {f["total_minor"] for f in finalized} == {10000, 20000, 5000}
    now = int(time.time())
    for request in receiver.requests:
        header = request["headers"][SIGNATURE_HEADER]
        assert signature_verify(header=header, secret=endpoint["secret"], body=request["body"], now=now)
        assert not signature_verify(header=header, secret="whsec_wrong", body=request["body"], now=now)
        assert not signature_verify(header=header, secret=endpoint["secret"], body=request["body"] + b" ", now=now)
        assert not signature_verify(
            header=header, secret=endpoint["secret"], body=request["body"], now=now + 3600
        )  # a replay an hour later is refused
    assert len({e["id"] for e in events}) == len(events)
    with schema_context(agency.schema_name):
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED}


def test_a_rerun_publishes_nothing_twice(agency, receiver, eager_tasks, django_capture_on_commit_callbacks):
    _register(agency, receiver.url, ["invoice.finalized"])
    _clients(agency)
    with django_capture_on_commit_callbacks(execute=True):
        agency_day_run(agency=agency, today=date(2027, 1, 1))
    with django_capture_on_commit_callbacks(execute=True):
        agency_day_run(agency=agency, today=date(2027, 1, 1))
    assert [e["type"] for e in receiver.events()] == ["invoice.finalized"] * 3
    with schema_context(agency.schema_name):
        assert OutboundEvent.objects.count() == 3  # only the kinds someone listens to are stored


def test_failed_deliveries_are_retried_with_backoff_then_given_up(
    agency, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    http, _ = _register(agency, receiver.url, ["invoice.finalized"])
    receiver.script = [500] * (MAX_ATTEMPTS + 5)
    with schema_context(agency.schema_name):
        client_create(name="Solo", email="solo@example.com", activated_on=date(2026, 12, 1), license_price_minor=100)
    with django_capture_on_commit_callbacks(execute=True):
        agency_day_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        delivery = WebhookDelivery.objects.get()
        assert delivery.status == DeliveryStatus.RETRYING and delivery.attempt_count == 1
        first_retry = delivery.next_attempt_at
        # The queued retry (eager here, so it ran at once) found it not due yet and sent nothing.
        assert len(receiver.requests) == 1
        now = first_retry
        for number, delay in enumerate(RETRY_DELAYS[1:], start=2):
            result = delivery_attempt(delivery_pk=delivery.pk, now=now)
            assert result.status == DeliveryStatus.RETRYING and result.retry_in == delay
            delivery.refresh_from_db()
            assert delivery.attempt_count == number and delivery.next_attempt_at == now + timedelta(seconds=delay)
            assert delivery_attempt(delivery_pk=delivery.pk, now=now + timedelta(seconds=delay - 1)).status == "not due"
            now += timedelta(seconds=delay)
        final = delivery_attempt(delivery_pk=delivery.pk, now=now)
        assert final.status == DeliveryStatus.FAILED and final.retry_in is None
        assert delivery_attempt(delivery_pk=delivery.pk, now=now + timedelta(days=1)).status == "FAILED"
        assert len(receiver.requests) == MAX_ATTEMPTS
        public_id = str(delivery.public_id)
    log = http.get(f"/api/v1/webhook-deliveries/{public_id}/").json()
    assert log["status"] == "FAILED" and [a["status_code"] for a in log["attempts"]] == [500] * MAX_ATTEMPTS
    assert log["payload"]["number"].endswith("-000001")
    # The agency's receiver is fixed: a manual redelivery succeeds and is logged as manual.
    receiver.script = []
    with django_capture_on_commit_callbacks(execute=True):
        redelivered = http.post(f"/api/v1/webhook-deliveries/{public_id}/redeliver/", {}, format="json")
    assert redelivered.status_code == 202
    log = http.get(f"/api/v1/webhook-deliveries/{public_id}/").json()
    assert log["status"] == "SUCCEEDED" and log["attempts"][-1]["manual"] is True
    assert receiver.requests[-1]["headers"]["Agencybilling-Delivery-Attempt"] == str(MAX_ATTEMPTS + 1)
    assert receiver.requests[-1]["body"] == receiver.requests[0]["body"]  # the same event, byte for byte


def test_nothing_is_sent_for_a_rolled_back_change(agency, receiver, eager_tasks, django_capture_on_commit_callbacks):
    from django.db import transaction

    from integrations.services import event_publish

    _register(agency, receiver.url)
    with tenant_context(agency), django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                event_publish(kind="charge.paid", key="charge.paid:rolled-back", payload={"id": "x"})
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass
        assert not OutboundEvent.objects.exists()
    assert receiver.requests == []


def test_no_endpoint_means_nothing_stored(agency, eager_tasks):
    _clients(agency)
    agency_day_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        assert not OutboundEvent.objects.exists() and not WebhookDelivery.objects.exists()


def test_endpoint_urls_are_checked(agency, settings):
    http = api(agency, token_for(agency, "hooks-admin@alpha.test", Role.ADMINISTRATOR))
    for url in ("ftp://example.com/x", "http://user:pw@example.com/x", "https://"):
        response = http.post("/api/v1/webhook-endpoints/", {"url": url}, format="json")
        assert response.status_code == 400 and "url" in response.json()["fields"], url
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False  # production: https to public addresses only
    for url in (
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://localhost/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest/meta-data",
    ):
        response = http.post("/api/v1/webhook-endpoints/", {"url": url}, format="json")
        assert response.status_code == 400 and "url" in response.json()["fields"], url


def test_a_disabled_endpoint_is_not_called(agency, receiver, eager_tasks, django_capture_on_commit_callbacks):
    http, endpoint = _register(agency, receiver.url, ["invoice.finalized"])
    assert (
        http.patch(f"/api/v1/webhook-endpoints/{endpoint['id']}/", {"is_active": False}, format="json").json()[
            "is_active"
        ]
        is False
    )
    _clients(agency)
    with django_capture_on_commit_callbacks(execute=True):
        agency_day_run(agency=agency, today=date(2027, 1, 1))
    assert receiver.requests == []
    assert http.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}/").status_code == 204
    assert http.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/").status_code == 404


def test_delivery_timestamps_use_the_attempt_time(agency, receiver):
    """The signature's t= is the attempt's time, so a late retry is not refused by a receiver's tolerance."""
    from integrations.services import endpoint_create, event_publish

    with tenant_context(agency):
        endpoint, secret = endpoint_create(url=receiver.url)
        event_publish(kind="charge.paid", key="charge.paid:t", payload={"id": "t"})
        delivery = WebhookDelivery.objects.get()
        later = timezone.now() + timedelta(hours=5)
        delivery_attempt(delivery_pk=delivery.pk, now=later)
    header = receiver.requests[0]["headers"][SIGNATURE_HEADER]
    assert header.startswith(f"t={int(later.timestamp())},v1=")
    assert signature_verify(header=header, secret=secret, body=receiver.requests[0]["body"], now=int(later.timestamp()))


def test_rolling_the_secret_signs_with_both_until_the_old_one_expires(agency, receiver):
    """A roll returns a new secret once; deliveries carry a v1 for the new and one for the old secret until the
    old one expires (the receiver can switch over without refusing events); a roll with 0 hours drops the old
    secret at once; bad input changes nothing."""
    from integrations.models import WebhookEndpoint
    from integrations.services import event_publish

    http, endpoint = _register(agency, receiver.url)
    old = endpoint["secret"]
    url = f"/api/v1/webhook-endpoints/{endpoint['id']}/roll-secret/"
    refused = http.post(url, {"previous_valid_for_hours": 169}, format="json")
    assert refused.status_code == 400 and "previous_valid_for_hours" in refused.json()["fields"]
    with schema_context(agency.schema_name):
        assert WebhookEndpoint.objects.get().secret == old

    rolled = http.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="roll-1")
    assert rolled.status_code == 200
    new, expires = rolled.json()["secret"], rolled.json()["previous_secret_expires_at"]
    assert new.startswith(old[:6]) and new != old and expires
    replay = http.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="roll-1")
    assert replay.json()["secret"] is None  # a replay rolls nothing and shows no secret
    with schema_context(agency.schema_name):
        assert WebhookEndpoint.objects.get().secret == new

    def deliver(key: str, at):
        with tenant_context(agency):
            event_publish(kind="charge.paid", key=key, payload={"id": key})
            delivery = WebhookDelivery.objects.get(event__key=key)
            delivery_attempt(delivery_pk=delivery.pk, now=at)
        request = receiver.requests[-1]
        return request["headers"][SIGNATURE_HEADER], request["body"]

    now = timezone.now() + timedelta(seconds=5)  # after the deliveries' first due time
    header, body = deliver("during-overlap", now)
    assert header.count("v1=") == 2
    for secret in (new, old):
        assert signature_verify(header=header, secret=secret, body=body, now=int(now.timestamp()))
    after = now + timedelta(hours=24, minutes=1)
    header, body = deliver("after-overlap", after)
    assert header.count("v1=") == 1
    assert signature_verify(header=header, secret=new, body=body, now=int(after.timestamp()))
    assert not signature_verify(header=header, secret=old, body=body, now=int(after.timestamp()))

    leaked = http.post(url, {"previous_valid_for_hours": 0}, format="json").json()["secret"]
    header, body = deliver("after-leak", now)
    assert header.count("v1=") == 1
    assert signature_verify(header=header, secret=leaked, body=body, now=int(now.timestamp()))
    assert not signature_verify(header=header, secret=new, body=body, now=int(now.timestamp()))


def test_delivery_checks_the_address_it_connects_to(agency, receiver, settings):
    """The host name is resolved and checked at send time, not only at registration, and the request goes to
    the address that was checked (with the URL's own Host header): a name that later points at a private
    address (DNS rebinding) gets nothing."""
    from integrations.services import endpoint_create, event_publish

    port = receiver.server.server_address[1]
    with tenant_context(agency):
        endpoint_create(url=f"http://localhost:{port}/hooks")  # allowed in tests: private hosts permitted
        event_publish(kind="charge.paid", key="charge.paid:pinned", payload={"id": "pinned"})
        delivery = WebhookDelivery.objects.get()
        at = timezone.now() + timedelta(seconds=5)
        assert delivery_attempt(delivery_pk=delivery.pk, now=at).status == DeliveryStatus.SUCCEEDED
        assert receiver.requests[-1]["headers"]["Host"] == f"localhost:{port}"

        settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False  # production rules: the name now resolves to loopback
        event_publish(kind="charge.paid", key="charge.paid:rebound", payload={"id": "rebound"})
        rebound = WebhookDelivery.objects.get(event__key="charge.paid:rebound")
        result = delivery_attempt(delivery_pk=rebound.pk, now=at)
        rebound.refresh_from_db()
    assert result.status == DeliveryStatus.RETRYING and len(receiver.requests) == 1
    assert rebound.last_error in ("Use an https URL.", "The URL points at a private or local address.")
