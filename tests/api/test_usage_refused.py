"""PLAN-3 through the API: usage no invoice could carry — in 1970, in 2099, before the client's activation — is a 400
naming the field, and nothing is stored (before this, it was accepted with 201 and never billed)."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from accounts.models import Role
from billing.models import UsageRecord
from clients.services import client_create
from tests.api.conftest import api, token_for
from tests.billing_helpers import with_plan

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("occurred_at", "for_client", "message"),
    [
        ("1970-01-01T00:00:00Z", True, "before Usage Co was activated"),
        ("2099-01-01T00:00:00Z", True, "in the future"),
        ("1970-01-01T00:00:00Z", False, "agency's first billing cycle"),
        ("2099-12-31T23:59:59+14:00", False, "in the future"),
    ],
)
def test_PLAN_3_usage_in_1970_or_2099_is_refused_with_a_clear_error_and_nothing_changes(
    agency_a, occurred_at, for_client, message
):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        client = client_create(name="Usage Co", email="usage@example.com", activated_on=agency.created_at.date())
    http = api(agency, token_for(agency, "admin@alpha.test", Role.ADMINISTRATOR))
    record = {"product_code": "listings", "quantity": 3, "occurred_at": occurred_at, "idempotency_key": "k-1"}
    if for_client:
        record["client"] = str(client.public_id)
    refused = http.post("/api/v1/usage-records/", {"records": [record]}, format="json")
    assert refused.status_code == 400, refused.content
    body = refused.json()
    assert body["code"] and body["message"]
    assert message in body["fields"]["occurred_at"][0]
    with schema_context(agency.schema_name):
        assert not UsageRecord.objects.exists()
