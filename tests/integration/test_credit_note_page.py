"""Credit notes on the invoice page, their PDF, and disputes on the Billing Overview (COR-1, COR-2, ROLE-1, MON-3)."""

from __future__ import annotations

import io
from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context
from pypdf import PdfReader

from accounts.models import Role
from billing.disputes import dispute_event_apply
from billing.models import Charge, CreditNote, Invoice, LedgerEntry
from billing.providers.base import ProviderEvent
from billing.statuses import CreditOutcome
from tests.conftest import login_client, make_user
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db

JAN1 = date(2027, 1, 1)


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a, months=(JAN1,))


def _invoice(scenario):
    with schema_context("alpha"):
        return Invoice.objects.get(client=scenario.paying, period_start=JAN1)


def test_COR_1_whole_line_credit_from_the_invoice_page_with_its_share_of_tax_and_a_pdf(scenario):
    invoice = _invoice(scenario)
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.get(f"/invoices/{invoice.public_id}/").content.decode()
    assert "Issue a credit note" in page and 'id="credit-note-submit"' in page
    response = http.post(
        f"/invoices/{invoice.public_id}/credit-notes/",
        {"lines": ["1"], "outcome": CreditOutcome.REFUND, "reason": "License started on the 15th", "amount": ""},
    )
    assert response.status_code == 302
    with tenant_context(scenario.agency):
        note = CreditNote.objects.get()
        lines = list(note.lines.values_list("category", "amount_minor"))
        license_line = invoice.lines.get(position=1)
        tax = invoice.lines.get(category="TAXES_FEES")
        taxable = sum(x.amount_minor for x in invoice.lines.filter(taxable=True))
    # The license line, and the tax line's share of it: tax × line / taxable base, half-up.
    share = (tax.amount_minor * license_line.amount_minor * 2 + taxable) // (2 * taxable)
    assert lines == [("LICENSE", license_line.amount_minor), ("TAXES_FEES", share)]
    assert note.amount_minor == license_line.amount_minor + share
    page = http.get(f"/invoices/{invoice.public_id}/").content.decode()
    assert f"Credit note {note.number} issued: refunded." in page
    assert note.number in page and "License started on the 15th" in page and "Refunded" in page
    pdf = http.get(f"/credit-notes/{note.public_id}/pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Credit note" in text and note.number in text and invoice.number in text
    assert scenario.agency.name in text and "License started on the 15th" in text
    with tenant_context(scenario.agency):
        assert CreditNote.objects.get().pdf.name  # stored once: it never changes (MON-3)


def test_COR_1_a_credit_above_what_remains_shows_the_error_next_to_the_amount_and_changes_nothing(scenario):
    invoice = _invoice(scenario)
    http = login_client(scenario.agency, scenario.admin.email)
    with tenant_context(scenario.agency):
        entries = LedgerEntry.objects.count()
    too_much = f"{(invoice.total_minor + 1) / 100:.2f}"
    response = http.post(
        f"/invoices/{invoice.public_id}/credit-notes/",
        {"amount": too_much, "outcome": CreditOutcome.CREDIT, "reason": "too much"},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_amount_error"' in html and "More than remains to credit: at most" in html
    with tenant_context(scenario.agency):
        assert not CreditNote.objects.exists() and LedgerEntry.objects.count() == entries
    unpaid = _declining_invoice(scenario)
    declining = http.post(
        f"/invoices/{unpaid.public_id}/credit-notes/",
        {"amount": "10.00", "outcome": CreditOutcome.REFUND, "reason": "refund it"},
    )
    assert (
        declining.status_code == 400 and "Nothing paid on this invoice is left to refund" in declining.content.decode()
    )


def _declining_invoice(scenario):
    with schema_context("alpha"):
        return Invoice.objects.get(client=scenario.declining, period_start=JAN1)


def test_COR_1_ROLE_1_roles_that_cannot_edit_client_configuration_see_no_form_and_are_refused(scenario):
    invoice = _invoice(scenario)
    make_user(scenario.agency, "marketing@alpha.test", Role.MARKETING_MANAGER)
    http = login_client(scenario.agency, "marketing@alpha.test")
    page = http.get(f"/invoices/{invoice.public_id}/").content.decode()
    assert "Credit notes" in page and "Issue a credit note" not in page
    refused = http.post(
        f"/invoices/{invoice.public_id}/credit-notes/", {"amount": "1.00", "outcome": "CREDIT", "reason": "x"}
    )
    assert refused.status_code == 403
    with tenant_context(scenario.agency):
        assert not CreditNote.objects.exists()


def test_COR_2_a_dispute_shows_beside_the_status_on_the_overview_and_the_invoice(scenario):
    invoice = _invoice(scenario)
    with tenant_context(scenario.agency):
        charge = Charge.objects.get(invoice=invoice)
        dispute_event_apply(
            ProviderEvent(
                "dispute",
                "dp_page_1",
                date(2027, 1, 3),
                charge_references=(charge.paid_reference,),
                status="NEEDS_RESPONSE",
                amount_minor=charge.amount_minor,
                currency="USD",
                reason="fraudulent",
                due_on=date(2027, 1, 10),
            )
        )
    http = login_client(scenario.agency, scenario.admin.email)
    overview = http.get("/billing/?month=2027-01").content.decode()
    assert 'data-dispute="NEEDS_RESPONSE"' in overview and "Disputed: needs response" in overview
    page = http.get(f"/invoices/{invoice.public_id}/").content.decode()
    assert "Disputed: needs response" in page
    assert "Disputed by the card holder (fraudulent), response due by 2027-01-10" in page


def test_COR_1_TEN_2_the_client_reads_its_credit_note_in_the_portal_and_no_one_elses(scenario):
    from billing.corrections import credit_note_issue
    from clients.models import ClientUser

    with tenant_context(scenario.agency):
        mine, theirs = (
            credit_note_issue(
                invoice=Invoice.objects.get(client=client, period_start=JAN1),
                user=scenario.admin,
                reason=f"Goodwill for {client.name}",
                outcome=CreditOutcome.CREDIT,
                amount_minor=500,
                today=date(2027, 1, 5),
            )
            for client in (scenario.paying, scenario.declining)
        )
    owner = make_user(scenario.agency, "owner@paying.example", Role.CLIENT)
    with schema_context("alpha"):
        ClientUser.objects.create(user=owner, client=scenario.paying)
    http = login_client(scenario.agency, owner.email)
    page = http.get("/portal/?month=2027-01").content.decode()
    assert mine.number in page and f"/portal/credit-notes/{mine.public_id}/pdf" in page
    assert theirs.number not in page
    pdf = http.get(f"/portal/credit-notes/{mine.public_id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert http.get(f"/portal/credit-notes/{theirs.public_id}/pdf").status_code == 404
