"""INV-1: invoice PDFs rendered in-process, read back with pypdf, stored once when settled (MON-3)."""

from __future__ import annotations

import os
from datetime import date

import pytest
from django.db import IntegrityError, transaction
from django_tenants.utils import schema_context

from billing.models import Invoice
from billing.pdf import agency_invoice_pdf, invoice_pdf
from billing.platform.models import AgencyInvoice
from billing.statuses import ChargeStatus
from core.money import format_minor
from tests.ui_helpers import billed_agency, pdf_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(agency_a):
    agency_a.address = "12 Harbour Street\nPortland, ME 04101"
    agency_a.brand_color = "#aa3366"
    agency_a.save(update_fields=["address", "brand_color"])
    return billed_agency(agency_a, months=(date(2027, 1, 1),))


def test_INV_1_client_invoice_pdf_shows_number_period_lines_by_category_taxes_totals_status(scenario):
    with schema_context(scenario.agency.schema_name):
        invoice = Invoice.objects.get(client=scenario.paying)
        data = invoice_pdf(invoice=invoice)
        lines = list(invoice.lines.all())
        status = invoice.charges.get().status
    text = pdf_text(data)
    assert status == ChargeStatus.PAID
    assert invoice.number in text
    assert "2027-01-01 – 2027-01-31" in text  # period
    assert scenario.agency.name in text and "12 Harbour Street" in text  # branding
    assert scenario.paying.name in text
    # Lines by category, each under its category heading, in the agency's category order.
    assert text.index("License") < text.index("Agency services") < text.index("Social media management")
    for line in lines:
        assert format_minor(line.amount_minor, "USD") in text
    assert "State sales tax (8.25 %)" in text
    # 199.00 + 250.00 = 449.00; tax 8.25 % of 199.00 (the service line is taxable too: 8.25 % of 250.00).
    assert format_minor(invoice.subtotal_minor, "USD") + " USD" in text
    assert format_minor(invoice.tax_minor, "USD") + " USD" in text
    assert format_minor(invoice.total_minor, "USD") + " USD" in text
    assert invoice.total_minor == sum(line.amount_minor for line in lines)
    assert "Paid" in text  # (how long a render takes is P4's measure: docs/performance.md)


def test_INV_1_settled_invoice_pdf_is_stored_once_and_served_from_storage(scenario):
    with schema_context(scenario.agency.schema_name):
        invoice = Invoice.objects.get(client=scenario.paying)
        assert not invoice.pdf
        first = invoice_pdf(invoice=invoice)
        invoice.refresh_from_db()
        # (earlier test runs may have left a file of the same name: storage then adds a suffix)
        assert invoice.pdf.name.startswith(f"invoices/alpha/{invoice.number}") and invoice.pdf.name.endswith(".pdf")
        stored = invoice.pdf.storage.path(invoice.pdf.name)
        with open(stored, "rb") as handle:
            assert handle.read() == first
        mtime = os.stat(stored).st_mtime_ns
        again = invoice_pdf(invoice=Invoice.objects.get(pk=invoice.pk))
        assert again == first, "served from storage, byte for byte"
        assert os.stat(stored).st_mtime_ns == mtime, "not rewritten"
        # MON-3: the stored path can never be changed afterwards.
        with pytest.raises(IntegrityError), transaction.atomic():
            Invoice.objects.filter(pk=invoice.pk).update(pdf="invoices/other.pdf")


def test_INV_1_unsettled_invoice_pdf_is_not_stored_so_its_status_stays_current(scenario):
    with schema_context(scenario.agency.schema_name):
        invoice = Invoice.objects.get(client=scenario.declining)
        assert invoice.charges.get().status == ChargeStatus.RETRYING
        text = pdf_text(invoice_pdf(invoice=invoice))
        assert "Status Unpaid" in text and invoice.number in text  # the client's word for Retrying (POR-1)
        invoice.refresh_from_db()
        assert not invoice.pdf


def test_INV_1_agency_invoice_pdf_has_platform_lines_and_totals(scenario):
    invoice = AgencyInvoice.objects.get(agency=scenario.agency)
    text = pdf_text(agency_invoice_pdf(invoice=invoice))
    assert invoice.number in text and invoice.number.startswith("P-ALPHA-")
    assert "2026-12-01 – 2026-12-31" in text  # in arrears: the cycle that closed
    assert scenario.agency.name in text
    for line in invoice.lines.all():
        assert line.description.split(" (")[0] in text
        assert format_minor(line.amount_minor, invoice.currency) in text
    assert format_minor(invoice.total_minor, invoice.currency) + " USD" in text
