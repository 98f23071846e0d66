"""MON-2, exact rates: the worked example of docs/billing-cycle.md ("Fractional rates and sub-cent prices"), set up
through the API only, billed by the real day pipeline, and read back through the API and from the PDF.

License 249.95, taxes 4.7125 % and 0.35 %, services 1,200.00, 98,765 units at 0.000875 USD (0.0875 cents):
each line rounded half-up once, each tax per taxable line — total 1,614.14 USD, computed by hand in the doc."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context

from accounts.models import Role
from agencybilling import seed
from clients.models import TaxRate
from tenants.models import PartnerPlan
from tests.api.conftest import api, token_for
from tests.ui_helpers import pdf_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def worked(agency_a):
    platform = api(None, token_for(None, "support@platform.test", Role.BILLING_SUPPORT))
    plan = platform.post(
        "/api/v1/partner-plans/",
        {
            "name": "Metered 2027",
            "currency": "USD",
            "package_minimum_minor": 0,
            "license_fee_minor": 0,
            "products": [
                {
                    "code": "api-calls",
                    "name": "API calls",
                    "unit_price_decimal": "0.0875",  # 0.0875 cents = 0.000875 USD a call
                    "included_quantity": 1_000_000,
                    "overage_unit_price_decimal": "0.05",
                }
            ],
        },
        format="json",
    )
    assert plan.status_code == 201, plan.content
    product = plan.json()["products"][0]
    assert (product["unit_price_decimal"], product["unit_price_minor"]) == ("0.0875", None)
    assigned = platform.patch("/api/v1/agencies/alpha/", {"plan": plan.json()["id"]}, format="json")
    assert assigned.status_code == 200, assigned.content

    http = api(agency_a, token_for(agency_a, "admin@alpha.test", Role.ADMINISTRATOR))
    taxes = []
    for name, rate in [("State tax", "4.7125"), ("District tax", "0.35")]:
        created = http.post("/api/v1/tax-rates/", {"name": name, "rate_percent": rate}, format="json")
        assert created.status_code == 201, created.content
        taxes.append(created.json())
    assert [(t["rate_percent"], t["rate_bp"]) for t in taxes] == [("4.7125", None), ("0.35", 35)]
    client = http.post(
        "/api/v1/clients/",
        {
            "name": "Fractional Co",
            "email": "billing@fractional.example",
            "license_price_minor": 24995,
            "taxes": [t["id"] for t in taxes],
            "activated_on": "2026-12-01",
        },
        format="json",
    )
    assert client.status_code == 201, client.content
    client_id = client.json()["id"]
    service = http.post(
        f"/api/v1/clients/{client_id}/service-lines/",
        {"description": "Services", "amount_minor": 120000},
        format="json",
    )
    assert service.status_code == 201, service.content
    recorded = http.post(
        "/api/v1/usage-records/",
        {
            "records": [
                {
                    "client": client_id,
                    "product_code": "api-calls",
                    "quantity": 98_765,
                    "occurred_at": "2026-12-02T12:00:00Z",
                    "idempotency_key": "worked-example-1",
                }
            ]
        },
        format="json",
    )
    assert recorded.status_code == 201, recorded.content
    agency_a.refresh_from_db()  # the plan was assigned through the API
    seed.run_days(agency_a, [date(2027, 1, 1)])  # the real day pipeline bills the client on its billing date
    return http, client_id


def test_MON_2_worked_example_total_through_the_api_and_on_the_pdf(worked):
    http, client_id = worked
    listed = http.get(f"/api/v1/invoices/?client={client_id}").json()["results"]
    assert len(listed) == 1
    invoice = http.get(f"/api/v1/invoices/{listed[0]['id']}/").json()
    lines = [
        (
            line["description"],
            line["quantity"],
            line["unit_amount_decimal"],
            line["unit_amount_minor"],
            line["amount_minor"],
        )
        for line in invoice["lines"]
    ]
    assert lines == [
        ("License 2027-01-01 – 2027-01-31", 1, "24995", 24995, 24995),
        ("Services", 1, "120000", 120000, 120000),
        ("API calls", 98_765, "0.0875", None, 8642),  # 8,641.9375 cents, rounded once
        ("State tax (4.7125 %)", 1, "7240", 7240, 7240),  # 1,177.889375→1,178 + 5,655 + 407.25425→407
        ("District tax (0.35 %)", 1, "537", 537, 537),  # 87.4825→87 + 420 + 30.247→30
    ]
    assert (invoice["subtotal_minor"], invoice["tax_minor"], invoice["total_minor"]) == (153637, 7777, 161414)
    assert invoice["total_minor"] == sum(line["amount_minor"] for line in invoice["lines"])
    assert [c["amount_minor"] for c in invoice["charges"]] == [161414]

    pdf = http.get(f"/api/v1/invoices/{invoice['id']}/pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    text = pdf_text(pdf.content)
    assert "1,614.14 USD" in text  # the total
    assert "0.000875" in text and "86.42" in text  # the unit price as it is, and its line rounded once
    assert "State tax (4.7125 %)" in text and "72.40" in text
    assert "District tax (0.35 %)" in text and "5.37" in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "City", "rate_percent": "8.87501"}, "rate_percent"),  # 5 decimals
        ({"name": "City", "rate_percent": "100.0001"}, "rate_percent"),
        ({"name": "City", "rate_percent": 8.875}, "rate_percent"),  # a JSON number is read as a float by clients
        ({"name": "City", "rate_percent": "8.875e0"}, "rate_percent"),
        ({"name": "City", "rate_percent": "8.875", "rate_bp": 888}, "rate_percent"),  # both
        ({"name": "City"}, "rate_percent"),  # neither
    ],
)
def test_MON_2_a_rate_with_5_decimals_or_not_a_decimal_string_is_refused_and_nothing_changes(agency_a, body, field):
    http = api(agency_a, token_for(agency_a, "admin@alpha.test", Role.ADMINISTRATOR))
    refused = http.post("/api/v1/tax-rates/", body, format="json")
    assert refused.status_code == 400
    error = refused.json()
    assert error["code"] and error["message"] and field in error["fields"]
    with schema_context("alpha"):
        assert not TaxRate.objects.exists()


@pytest.mark.parametrize("price", ["0.0000000000001", "-0.5", "0.0875.1", "1e-3", 0.0875])
def test_MON_2_a_unit_price_with_13_decimals_or_not_a_decimal_string_is_refused(price):
    platform = api(None, token_for(None, "support@platform.test", Role.BILLING_SUPPORT))
    refused = platform.post(
        "/api/v1/partner-plans/",
        {
            "name": "Too fine",
            "currency": "USD",
            "package_minimum_minor": 0,
            "license_fee_minor": 0,
            "products": [{"code": "x", "unit_price_decimal": price}],
        },
        format="json",
    )
    assert refused.status_code == 400
    assert "products" in refused.json()["fields"] or any(k.startswith("products") for k in refused.json()["fields"])
    assert not PartnerPlan.objects.filter(name="Too fine").exists()
