"""The invoice page and charge timeline, and the Billing Overview's search, sort and CSV exports (INV-2, RET-4,
ROLE-1, TEN-2). The exports are read back and compared with the database."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from django_tenants.utils import schema_context

from billing.models import Charge, Invoice
from billing.statuses import ChargeStatus
from core.money import format_minor
from tests.conftest import login_client
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a)


def _csv(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_INV_2_invoice_number_opens_the_invoice_page_with_its_timeline(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.declining, period_start=date(2027, 2, 1))
        charge = Charge.objects.get(invoice=invoice)
        attempts = list(charge.attempts.all())
    overview = http.get("/billing/?month=2027-02").content.decode()
    assert f'href="/invoices/{invoice.public_id}/"' in overview  # the invoice number links to the page
    assert f'href="/invoices/{invoice.public_id}/pdf"' in overview  # the client name still downloads the PDF
    page = http.get(f"/invoices/{invoice.public_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f"Invoice {invoice.number}" in html and scenario.declining.name in html
    assert f"{format_minor(invoice.total_minor, 'USD')} USD" in html
    assert attempts and "Automatic attempt 1" in html and "was declined" in html
    assert "The card was declined by the bank." in html  # the decline code in words
    assert "card_declined" not in html
    assert "Scheduled → Retrying" in html  # status history
    assert "Payment Failed email to" in html  # notices sent
    assert 'data-slot="credit-notes"' in html


def test_INV_2_paid_out_charge_shows_its_payout_in_the_timeline(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        charge = (
            Charge.objects.select_related("invoice")
            .filter(client=scenario.paying, status=ChargeStatus.PAID_OUT)
            .first()
        )
    assert charge is not None
    html = http.get(f"/invoices/{charge.invoice.public_id}/").content.decode()
    assert "Paid out to the agency" in html and "Payment Received email to" in html


def test_TEN_2_ROLE_1_invoice_page_of_someone_elses_client_is_404(scenario, agency_b):
    other = billed_agency(agency_b, months=(date(2027, 1, 1),))
    with schema_context("beta"):
        b_invoice = Invoice.objects.filter(client=other.paying).first()
    with schema_context("alpha"):
        paying_invoice = Invoice.objects.filter(client=scenario.paying).first()
        junior_invoice = Invoice.objects.filter(client=scenario.junior_client).first()
    admin = login_client(scenario.agency, scenario.admin.email)
    assert admin.get(f"/invoices/{b_invoice.public_id}/").status_code == 404
    junior = login_client(scenario.agency, scenario.junior.email)
    assert junior.get(f"/invoices/{paying_invoice.public_id}/").status_code == 404
    own = junior.get(f"/invoices/{junior_invoice.public_id}/").content.decode()
    assert format_minor(junior_invoice.total_minor, "USD") not in own  # statuses only


def test_INV_2_overview_search_sort_and_csv_of_what_is_shown(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    html = http.get("/billing/?month=2027-02&q=declin").content.decode()
    assert scenario.declining.name in html and scenario.paying.name not in html
    with schema_context("alpha"):
        charges = list(Charge.objects.filter(period_start=date(2027, 2, 1)).select_related("client", "invoice"))
    by_amount = sorted(charges, key=lambda c: (-c.amount_minor, -c.pk))
    html = http.get("/billing/?month=2027-02&sort=-amount").content.decode()
    positions = [html.index(f'data-client="{c.client.name}"') for c in by_amount]
    assert positions == sorted(positions)
    rows = _csv(http.get("/billing/charges.csv?month=2027-02&sort=-amount"))
    assert [r["Client"] for r in rows] == [c.client.name for c in by_amount]
    for row, charge in zip(rows, by_amount, strict=True):
        assert row["Invoice"] == charge.invoice.number
        assert row["Amount"] == format_minor(charge.amount_minor, "USD").replace(",", "")
        assert row["Currency"] == "USD" and row["Status"] == charge.get_status_display()
    retrying = _csv(http.get("/billing/charges.csv?month=2027-02&status=RETRYING"))
    assert [r["Client"] for r in retrying] == [scenario.declining.name]
    junior_rows = _csv(login_client(scenario.agency, scenario.junior.email).get("/billing/charges.csv?month=2027-02"))
    assert [r["Client"] for r in junior_rows] == [scenario.junior_client.name] and "Amount" not in junior_rows[0]


def test_INV_2_invoices_and_charges_of_a_date_range_as_csv(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    rows = _csv(http.get("/billing/export/?kind=invoices&start=2027-01-01&end=2027-02-28"))
    with schema_context("alpha"):
        invoices = list(Invoice.objects.order_by("due_on", "number"))
    assert [r["Invoice"] for r in rows] == [i.number for i in invoices]
    assert sum(int(r["Total"].replace(".", "")) for r in rows) == sum(i.total_minor for i in invoices)
    charges = _csv(http.get("/billing/export/?kind=charges&start=2027-02-01&end=2027-02-28"))
    assert len(charges) == 3
    bad = http.get("/billing/export/?kind=invoices&start=2027-03-01&end=2027-01-01")
    assert bad.status_code == 400 and "The last day cannot be before the first." in bad.content.decode()


def test_INV_2_chart_starts_at_the_first_invoice_and_names_the_year(scenario):
    html = login_client(scenario.agency, scenario.admin.email).get("/billing/?month=2027-02").content.decode()
    assert html.index('id="chart-h"') < html.index('id="charges-h"')  # the chart is on top
    assert "Since your first invoice" in html
    assert ">Jan<" in html and ">Feb<" in html and ">Dec<" not in html  # no empty months before January 2027
    assert 'class="year">2027<' in html
