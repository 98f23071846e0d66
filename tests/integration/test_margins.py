"""Margin per client: each client's billed amounts beside the platform's charges for it, reconciled to the cent with
both invoices — the client's own invoice, and the agency invoice split into per-client license fees, per-client
usage shares and what is not per client (CYC-2, MON-2, MON-4)."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from django_tenants.utils import schema_context

from billing.margins import month_margins, split_exactly
from billing.models import Invoice
from billing.platform.models import AgencyInvoice
from core.categories import BillingCategory
from tests.billing_helpers import at, usage
from tests.conftest import login_client
from tests.ui_helpers import billed_agency, run_day

pytestmark = pytest.mark.django_db
FEB = date(2027, 2, 1)


def test_split_exactly_sums_to_the_amount_and_favours_lower_ids_on_ties():
    assert split_exactly(100, [(1, 1), (2, 1), (3, 1)]) == {1: 34, 2: 33, 3: 33}
    assert split_exactly(7, [(None, 1), (5, 1)]) == {5: 4, None: 3}
    shares = split_exactly(999, [(1, 7), (2, 13), (3, 0), (None, 29)])
    assert sum(shares.values()) == 999 and 3 not in shares


@pytest.fixture
def scenario(agency_a):
    scenario = billed_agency(agency_a, months=(date(2027, 1, 1),))
    jan = date(2027, 1, 14)
    with schema_context("alpha"):
        for key, (client, code, quantity) in enumerate(
            [
                (scenario.paying, "listings", 71),
                (scenario.declining, "listings", 53),
                (None, "listings", 29),  # the agency's own use
                (scenario.paying, "reviews", 41),
                (scenario.junior_client, "reviews", 37),
            ]
        ):
            usage(scenario.agency, client, code, quantity, at(jan), f"u-{key}")
    run_day(scenario.agency, FEB)
    return scenario


def test_margins_reconcile_to_the_cent_with_both_invoices(scenario):
    with schema_context("alpha"):
        report = month_margins(agency=scenario.agency, month=FEB)
        invoices = {i.client_id: i for i in Invoice.objects.filter(period_start=FEB)}
        agency_invoice = AgencyInvoice.objects.get(agency=scenario.agency, due_on=FEB)
        lines = list(agency_invoice.lines.all())
    assert report.agency_invoice_number == agency_invoice.number
    # Each client's billed amounts are its invoice, to the cent.
    assert set(report.clients) == set(invoices)
    for client_id, margin in report.clients.items():
        assert margin.billed_total_minor == invoices[client_id].total_minor
        assert margin.billed_taxes_minor == invoices[client_id].tax_minor
        assert margin.invoice_number == invoices[client_id].number
        assert margin.margin_minor == margin.billed_minor - margin.license_fee_minor - margin.usage_minor
    # The platform's invoice is the clients' shares plus what is not per client, to the cent.
    per_client = sum(m.platform_minor for m in report.clients.values())
    assert per_client + report.not_per_client_minor == agency_invoice.total_minor
    license = sum(line.amount_minor for line in lines if line.category == BillingCategory.LICENSE)
    assert sum(m.license_fee_minor for m in report.clients.values()) == license
    assert {m.license_fee_minor for m in report.clients.values()} == {2500}
    usage_lines = sum(line.amount_minor for line in lines if line.category in ("PRODUCTS", "OVERAGE"))
    client_usage = sum(m.usage_minor for m in report.clients.values())
    assert 0 < client_usage < usage_lines  # the agency's own listings stay with the agency
    assert report.clients[scenario.junior_client.pk].usage_minor > 0  # reviews beyond the included 50


def test_margins_page_api_and_csv_show_the_same_numbers(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        report = month_margins(agency=scenario.agency, month=FEB)
    api = http.get("/api/v1/margins/?month=2027-02").json()
    assert api["not_per_client_minor"] == report.not_per_client_minor
    assert {c["name"]: c["margin_minor"] for c in api["clients"]} == {
        m.name: m.margin_minor for m in report.clients.values()
    }
    rows = list(
        csv.DictReader(
            io.StringIO(b"".join(http.get("/margins/?month=2027-02&format=csv").streaming_content).decode("utf-8-sig"))
        )
    )
    assert sum(int(r["Margin"].replace(".", "")) for r in rows) == sum(m.margin_minor for m in report.clients.values())
    one = http.get(f"/api/v1/clients/{scenario.paying.public_id}/margins/?month=2027-02").json()
    assert [m["month"] for m in one][-2:] == ["2027-01", "2027-02"]
    assert one[-1]["margin_minor"] == report.clients[scenario.paying.pk].margin_minor
    page = http.get(f"/clients/{scenario.paying.public_id}/").content.decode()
    assert 'data-testid="client-margins"' in page and "February 2027" in page
    assert http.get("/margins/?month=2027-02").status_code == 200


def test_ROLE_1_margins_are_for_roles_that_see_every_client_with_amounts(scenario):
    for email in (scenario.seller.email, scenario.junior.email):
        http = login_client(scenario.agency, email)
        assert http.get("/margins/").status_code == 403
        assert http.get("/margins/?format=csv").status_code == 403
        assert http.get(f"/clients/{scenario.paying.public_id}/margins.csv").status_code == 403
        assert http.get("/api/v1/margins/").status_code == 403
