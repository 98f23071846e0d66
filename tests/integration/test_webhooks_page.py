"""The Webhooks page (Administrator): endpoints with their event kinds, the delivery log with every attempt, and
redelivery — the same services as the API (issue: outbound webhooks without the API)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context

from integrations.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import login_client
from tests.integration.test_pages import _field_error
from tests.ui_helpers import billed_agency, run_day

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a, months=(date(2027, 1, 1),))


def test_webhooks_page_adds_endpoints_lists_deliveries_and_redelivers(scenario, django_capture_on_commit_callbacks):
    http = login_client(scenario.agency, scenario.admin.email)
    bad = http.post("/webhooks/", {"url": "ftp://nowhere", "event_kinds": ["invoice.finalized"]})
    assert bad.status_code == 400 and _field_error(bad.content.decode(), "id_url")
    with schema_context("alpha"):
        assert not WebhookEndpoint.objects.exists()
    added = http.post(
        "/webhooks/",
        {"url": "http://127.0.0.1:9/hook", "description": "Accounting", "event_kinds": ["invoice.finalized"]},
    )
    html = added.content.decode()
    assert added.status_code == 200 and "whsec_" in html and "Invoice finalized" in html
    with schema_context("alpha"):
        endpoint = WebhookEndpoint.objects.get()
        assert endpoint.event_kinds == ["invoice.finalized"] and endpoint.secret in html
    run_day(scenario.agency, date(2027, 2, 1))  # invoices finalized: one delivery each
    with schema_context("alpha"):
        delivery = WebhookDelivery.objects.first()
        count = WebhookDelivery.objects.count()
    assert count == 3
    page = http.get("/webhooks/").content.decode()
    assert page.count('href="/webhooks/deliveries/') == count
    detail = http.get(f"/webhooks/deliveries/{delivery.public_id}/").content.decode()
    assert "Payload" in detail and "Redeliver now" in detail
    with django_capture_on_commit_callbacks() as callbacks:
        http.post(f"/webhooks/deliveries/{delivery.public_id}/")
    assert len(callbacks) == 1  # one manual attempt queued after commit
    asked = http.post(f"/webhooks/endpoints/{endpoint.public_id}", {"action": "remove"})
    assert "Remove endpoint" in asked.content.decode()
    http.post(f"/webhooks/endpoints/{endpoint.public_id}", {"action": "remove", "confirm": "yes"})
    with schema_context("alpha"):
        assert WebhookEndpoint.objects.get().removed_at is not None


def test_ROLE_1_webhooks_are_for_administrators(scenario):
    assert login_client(scenario.agency, scenario.seller.email).get("/webhooks/").status_code == 403
