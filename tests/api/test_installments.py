"""CYC-4 in the API: every installment of an invoice with several autopay dates reports its own due date and the
invoice's billing date, and its automatic retries count from its due date (RET-2) — autopay days 3 and 26."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import tenant_context

from accounts.models import Role
from agencybilling import seed
from core.calendar import days_between
from tests.api.conftest import api, token_for
from tests.billing_helpers import with_plan

pytestmark = pytest.mark.django_db


def test_CYC_4_installments_report_due_date_and_billing_date_and_retry_from_their_due_date(agency_a):
    agency = with_plan(agency_a)
    with tenant_context(agency):
        client = seed.client(
            name="Twice Monthly",
            email="twice@example.com",
            activated_on=date(2026, 12, 1),
            license_price_minor=20000,
            autopay_days=[3, 26],
            outcome=seed.Outcome.DECLINING,
        )
    seed.run_days(agency, days_between(date(2027, 1, 1), date(2027, 1, 4)))
    http = api(agency, token_for(agency, "admin@alpha.test", Role.ADMINISTRATOR))
    (invoice,) = http.get(f"/api/v1/invoices/?client={client.public_id}").json()["results"]
    assert (invoice["issued_on"], invoice["due_on"]) == ("2027-01-03", "2027-01-26")  # built on the 3rd, billed 26th
    detail = http.get(f"/api/v1/invoices/{invoice['id']}/").json()
    assert [(c["installment"], c["due_on"], c["billing_date"], c["amount_minor"]) for c in detail["charges"]] == [
        (1, "2027-01-03", "2027-01-26", 10000),
        (2, "2027-01-26", "2027-01-26", 10000),
    ]
    charges = http.get(f"/api/v1/charges/?invoice={invoice['id']}&ordering=due_on").json()["results"]
    first, second = charges
    assert (first["due_on"], first["billing_date"]) == ("2027-01-03", "2027-01-26")
    assert (second["due_on"], second["billing_date"]) == ("2027-01-26", "2027-01-26")
    # The first installment was declined on its due date, the 3rd (a Sunday): its retry is the 5th weekday after
    # the 3rd — Friday the 8th — not a week after the invoice's billing date.
    assert first["status"] == "RETRYING" and first["next_retry_on"] == "2027-01-08"
    assert [a["attempted_on"] for a in first["attempts"]] == ["2027-01-03"]
    assert second["status"] == "SCHEDULED" and second["attempts"] == []
