"""The worked example of docs/billing-cycle.md, number for number (CYC-1, CYC-2, CYC-5, MON-2, MON-4, COL-6)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django_tenants.utils import schema_context

from billing.invoicing import billing_run
from billing.ledger import payment_apply
from billing.models import Invoice, LedgerEntry
from billing.platform.models import AgencyInvoice
from billing.selectors import client_balance, client_open_by_category
from billing.usage import UsageInput, usage_record_bulk
from clients.services import client_create, service_line_add, tax_rate_create
from tenants.services import partner_plan_create, plan_assign

pytestmark = pytest.mark.django_db

NY = ZoneInfo("America/New_York")


@pytest.fixture
def example(agency_a):
    plan = partner_plan_create(
        name="Partner Standard",
        currency="USD",
        package_minimum_minor=15000,
        license_fee_minor=2500,
        products=[
            {
                "code": "listings",
                "name": "Listings",
                "unit_price_decimal": "10",
                "included_quantity": 100,
                "overage_unit_price_decimal": "7",
            },
            {
                "code": "reviews",
                "name": "Reviews",
                "unit_price_decimal": "0",
                "included_quantity": 50,
                "overage_unit_price_decimal": "25",
            },
        ],
        taxes=[{"name": "Platform tax", "rate_percent": "5"}],
        fees=[{"name": "Processing fee", "amount_minor": 999}],
    )
    agency = plan_assign(agency=agency_a, plan=plan)
    assert agency.time_zone == "America/New_York" and agency.billing_day == 1
    with schema_context(agency.schema_name):
        state = tax_rate_create(name="State sales tax", rate_percent="8.25")
        city = tax_rate_create(name="City tax", rate_percent="1.5")
        since = date(2026, 12, 1)
        acme = client_create(
            name="Acme Dental",
            email="ap@acme.example",
            activated_on=since,
            license_price_minor=19900,
            taxes=[state, city],
        )
        service_line_add(client=acme, description="SEO", amount_minor=5000)
        service_line_add(client=acme, description="Setup", amount_minor=1001, one_time=True, taxable=False)
        birch = client_create(
            name="Birch Bakery", email="ap@birch.example", activated_on=since, license_price_minor=9900, taxes=[state]
        )
        cedar = client_create(name="Cedar Law", email="ap@cedar.example", activated_on=since, license_price_minor=14900)
        service_line_add(client=cedar, description="Ads management", amount_minor=30000)
        usage_record_bulk(
            agency=agency,
            items=[
                UsageInput("listings", 100, datetime(2026, 12, 9, 10, tzinfo=NY), "acme-1", acme),
                # 23:30 on 31 December in New York is 04:30 on 1 January UTC: still December (CYC-5).
                UsageInput("listings", 20, datetime(2026, 12, 31, 23, 30, tzinfo=NY), "acme-2", acme),
                UsageInput("reviews", 60, datetime(2026, 12, 12, 9, tzinfo=NY), "birch-1", birch),
                UsageInput("listings", 30, datetime(2026, 12, 3, 15, tzinfo=NY), "agency-1", None),
            ],
            now=datetime(2027, 1, 1, tzinfo=NY),  # recorded by the end of December
        )
    return agency, acme, birch, cedar


def test_CYC_2_worked_example_agency_invoice(example):
    agency, *_ = example
    result = billing_run(agency=agency, today=date(2027, 1, 1))
    assert result.agency_invoice_number == "P-ALPHA-000001"
    invoice = AgencyInvoice.objects.get(number="P-ALPHA-000001")
    lines = invoice.lines.values_list("description", "quantity", "unit_amount_decimal", "amount_minor")
    assert list(lines) == [
        ("Client licenses 2026-12-01 – 2026-12-31", 3, 2500, 7500),
        ("Listings", 100, 10, 1000),
        ("Listings — overage", 50, 7, 350),
        ("Reviews", 50, 0, 0),
        ("Reviews — overage", 10, 25, 250),
        ("Partner package minimum (150.00)", 1, 5900, 5900),
        ("Platform tax (5 %)", 1, 751, 751),
        ("Processing fee", 1, 999, 999),
    ]
    assert invoice.total_minor == 16750


def test_CYC_2_MON_2_worked_example_client_invoices(example):
    agency, acme, birch, cedar = example
    result = billing_run(agency=agency, today=date(2027, 1, 1))
    assert result.invoices_built == 3 and result.totals == {"USD": 85470}
    with schema_context(agency.schema_name):
        acme_invoice = Invoice.objects.get(client=acme)
        assert acme_invoice.number == "ALPHA-000001"
        assert list(acme_invoice.lines.values_list("description", "amount_minor")) == [
            ("License 2027-01-01 – 2027-01-31", 19900),
            ("SEO", 5000),
            ("Setup", 1001),
            ("Listings", 1000),
            ("Listings — overage", 140),
            ("State sales tax (8.25 %)", 2150),
            ("City tax (1.5 %)", 391),
        ]
        assert acme_invoice.total_minor == 29582
        birch_invoice = Invoice.objects.get(client=birch)
        assert (birch_invoice.number, birch_invoice.total_minor) == ("ALPHA-000002", 10988)
        assert list(birch_invoice.lines.values_list("amount_minor", flat=True)) == [9900, 0, 250, 838]
        cedar_invoice = Invoice.objects.get(client=cedar)
        assert (cedar_invoice.number, cedar_invoice.total_minor) == ("ALPHA-000003", 44900)
    # The one-time Setup line is gone in February.
    billing_run(agency=agency, today=date(2027, 2, 1))
    with schema_context(agency.schema_name):
        february = Invoice.objects.get(client=acme, period_start=date(2027, 2, 1))
        assert not february.lines.filter(description="Setup").exists()


def test_MON_4_COL_6_worked_example_ledger_and_payment(example):
    agency, acme, *_ = example
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        assert dict(LedgerEntry.objects.filter(client=acme).values_list("category", "amount_minor")) == {
            "LICENSE": 19900,
            "AGENCY_SERVICES": 6001,
            "PRODUCTS": 1000,
            "OVERAGE": 140,
            "TAXES_FEES": 2541,
        }
        assert client_balance(acme) == 29582
        payment_apply(
            client=acme, amount_minor=25000, currency="USD", occurred_on=date(2027, 1, 1), reference="acme-payment"
        )
        assert client_balance(acme) == 4582
        assert client_open_by_category(acme) == {
            "AGENCY_SERVICES": 901,
            "PRODUCTS": 1000,
            "OVERAGE": 140,
            "TAXES_FEES": 2541,
        }


def test_CYC_3_worked_example_rerun_says_already_done(example):
    agency, *_ = example
    billing_run(agency=agency, today=date(2027, 1, 1))
    assert billing_run(agency=agency, today=date(2027, 1, 1)).already_done
