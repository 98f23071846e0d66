"""Credit notes, refunds and disputes through the API: issue, read back, PDF, errors in the API's shape, roles
(COR-1, COR-2, ROLE-1, TEN-2)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import tenant_context

from accounts.models import Role
from agencybilling import seed
from billing.disputes import dispute_event_apply
from billing.models import Charge, CreditNote, Invoice, LedgerEntry
from billing.providers.base import ProviderEvent
from tests.api.conftest import api, token_for
from tests.billing_helpers import with_plan

pytestmark = pytest.mark.django_db

JAN1 = date(2027, 1, 1)


@pytest.fixture
def billed(agency_a):
    agency = with_plan(agency_a)
    agency.connected_account_id = "acct_sbx_api_corrections"
    agency.save(update_fields=["connected_account_id"])
    with tenant_context(agency):
        paying = seed.client(
            name="Paying Co",
            email="pay@corr.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=10_000,
            services=[("Reporting", 2_000)],
            outcome=seed.Outcome.PAYING,
            method_tag="corr-api",
        )
        declining = seed.client(
            name="Declining Co",
            email="decline@corr.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=5_000,
            outcome=seed.Outcome.DECLINING,
            method_tag="corr-api",
        )
    seed.run_days(agency, [JAN1])
    with tenant_context(agency):
        return agency, Invoice.objects.get(client=paying), Invoice.objects.get(client=declining)


def test_COR_1_issue_a_refund_through_the_api_and_read_it_back(billed):
    agency, invoice, _ = billed
    http = api(agency, token_for(agency, "admin@corr.test", Role.ADMINISTRATOR))
    created = http.post(
        f"/api/v1/invoices/{invoice.public_id}/credit-notes/",
        {"reason": "Reporting was not delivered", "outcome": "REFUND", "lines": [2]},
        format="json",
    )
    assert created.status_code == 201, created.content
    note = created.json()
    assert note["number"] == "CN-ALPHA-000001" and note["amount_minor"] == 2_000
    assert note["invoice_number"] == invoice.number and note["outcome"] == "REFUND"
    assert [(x["invoice_line"], x["category"], x["amount_minor"]) for x in note["lines"]] == [
        (2, "AGENCY_SERVICES", 2_000)
    ]
    assert [(r["amount_minor"], r["status"]) for r in note["refunds"]] == [(2_000, "SUCCEEDED")]
    assert http.get(f"/api/v1/credit-notes/{note['id']}/").json() == note
    assert http.get(f"/api/v1/invoices/{invoice.public_id}/credit-notes/").json() == [note]
    listed = http.get(f"/api/v1/credit-notes/?invoice={invoice.public_id}").json()["results"]
    assert [row["number"] for row in listed] == ["CN-ALPHA-000001"]
    pdf = http.get(note["pdf_url"])
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_COR_1_bad_input_is_refused_in_the_api_shape_and_changes_nothing(billed):
    agency, invoice, unpaid = billed
    http = api(agency, token_for(agency, "admin@corr.test", Role.ADMINISTRATOR))
    with tenant_context(agency):
        entries = LedgerEntry.objects.count()
    url = f"/api/v1/invoices/{invoice.public_id}/credit-notes/"
    too_much = http.post(url, {"reason": "x", "outcome": "CREDIT", "amount_minor": 12_001}, format="json")
    assert too_much.status_code == 400
    assert too_much.json() == {
        "code": "credit_above_remaining",
        "message": "The credit is more than remains to credit on this invoice (120.00 USD).",
        "fields": {"amount_minor": ["More than remains to credit: at most 120.00 USD."]},
    }
    both = http.post(url, {"reason": "x", "outcome": "CREDIT", "amount_minor": 1, "lines": [1]}, format="json")
    assert both.status_code == 400 and "lines" in both.json()["fields"]
    no_reason = http.post(url, {"reason": " ", "outcome": "CREDIT", "amount_minor": 1}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["fields"]
    unknown_line = http.post(url, {"reason": "x", "outcome": "CREDIT", "lines": [9]}, format="json")
    assert unknown_line.status_code == 400 and unknown_line.json()["fields"] == {
        "lines": ["The invoice has no line 9."]
    }
    refund_unpaid = http.post(
        f"/api/v1/invoices/{unpaid.public_id}/credit-notes/",
        {"reason": "refund", "outcome": "REFUND", "amount_minor": 100},
        format="json",
    )
    assert refund_unpaid.status_code == 409 and refund_unpaid.json()["code"] == "nothing_to_refund"
    with tenant_context(agency):
        assert not CreditNote.objects.exists() and LedgerEntry.objects.count() == entries


def test_COR_1_ROLE_1_who_may_issue_and_what_status_only_roles_see(billed):
    agency, invoice, _ = billed
    url = f"/api/v1/invoices/{invoice.public_id}/credit-notes/"
    body = {"reason": "goodwill", "outcome": "CREDIT", "amount_minor": 500}
    marketing = api(agency, token_for(agency, "mm@corr.test", Role.MARKETING_MANAGER))
    assert marketing.post(url, body, format="json").status_code == 403
    manager = api(agency, token_for(agency, "sm@corr.test", Role.SALES_MANAGER))
    created = manager.post(url, body, format="json")
    assert created.status_code == 201
    # A salesperson sees only their own clients' invoices: this one is nobody's, so it is not found (TEN-2).
    seller = api(agency, token_for(agency, "sp@corr.test", Role.SALESPERSON))
    assert seller.get(url).status_code == 404
    assert seller.get(f"/api/v1/credit-notes/{created.json()['id']}/").status_code == 404
    assert seller.get("/api/v1/credit-notes/").json()["results"] == []


def test_COR_2_disputes_in_the_api_beside_the_charge_status(billed):
    agency, invoice, _ = billed
    with tenant_context(agency):
        charge = Charge.objects.get(invoice=invoice)
        dispute_event_apply(
            ProviderEvent(
                "dispute",
                "dp_api_1",
                date(2027, 1, 3),
                charge_references=(charge.paid_reference,),
                status="NEEDS_RESPONSE",
                amount_minor=charge.amount_minor,
                currency="USD",
                reason="product_not_received",
                due_on=date(2027, 1, 10),
            )
        )
    http = api(agency, token_for(agency, "admin@corr.test", Role.ADMINISTRATOR))
    [dispute] = http.get("/api/v1/disputes/").json()["results"]
    assert (dispute["reference"], dispute["status"], dispute["due_by"]) == ("dp_api_1", "NEEDS_RESPONSE", "2027-01-10")
    assert dispute["invoice_number"] == invoice.number and dispute["recovered_from_agency"] is False
    detail = http.get(f"/api/v1/charges/{charge.public_id}/").json()
    assert (detail["status"], detail["dispute"]) == ("PAID", "NEEDS_RESPONSE")
    assert http.get("/api/v1/disputes/?status=WON").json()["results"] == []
    refused = http.post(
        f"/api/v1/invoices/{invoice.public_id}/credit-notes/",
        {"reason": "refund it", "outcome": "REFUND", "amount_minor": 100},
        format="json",
    )
    assert refused.status_code == 409  # a disputed charge cannot be refunded
