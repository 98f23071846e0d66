"""The audit trail people read (console and the agency's own log): names with links, field-by-field changes with
formatted values, an action pick-list, days and a CSV of the same."""

from __future__ import annotations

import csv
import io

import pytest
from django_tenants.utils import schema_context

from accounts.models import Role
from clients.models import Client
from clients.services import client_configure
from tests.conftest import login_client, make_user
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(agency_a):
    scenario = billed_agency(agency_a)
    with schema_context("alpha"):
        client = Client.objects.get(pk=scenario.declining.pk)
        client_configure(client=client, license_price_minor=19900, autopay_days=[5, 28], actor=scenario.admin)
    return scenario


def _rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))


def test_console_audit_reads_as_words_with_client_links(scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    http = login_client(None, "support@platform.test")
    html = http.get("/audit/").content.decode()
    assert "Changed client configuration" in html
    assert "License price 99.00 → 199.00 USD" in html
    assert "Autopay days none → 5, 28" in html
    assert f'href="/agencies/alpha/clients/{scenario.declining.public_id}/">{scenario.declining.name}</a>' in html
    assert "{&#x27;" not in html and "license_price_minor" not in html
    filtered = http.get("/audit/?action=payment_method.saved").content.decode()
    table = filtered[filtered.index('data-testid="audit"') :]
    assert "Saved a payment method" in table and "Changed client configuration" not in table
    assert '<option value="client.configure">Changed client configuration</option>' in html
    future = http.get("/audit/?start=2099-01-01").content.decode()
    assert "Nothing recorded for these filters." in future
    bad = http.get("/audit/?start=2027-02-01&end=2027-01-01")
    assert bad.status_code == 400 and "The last day cannot be before the first." in bad.content.decode()
    rows = _rows(http.get("/audit/?agency=alpha&action=client.configure&format=csv"))
    assert len(rows) == 1
    assert rows[0]["Changes"] == "License price 99.00 → 199.00 USD; Autopay days none → 5, 28"
    assert rows[0]["On"] == scenario.declining.name and rows[0]["Agency"] == "Alpha Agency"


def test_agency_audit_log_for_administrators(scenario):
    admin = login_client(scenario.agency, scenario.admin.email)
    html = admin.get("/audit/").content.decode()
    assert "License price 99.00 → 199.00 USD" in html
    assert f'href="/clients/{scenario.declining.public_id}/"' in html
    rows = _rows(admin.get("/audit/?action=client.configure&format=csv"))
    assert [r["What"] for r in rows] == ["Changed client configuration"]
    junior = login_client(scenario.agency, scenario.junior.email)
    assert junior.get("/audit/").status_code == 403
