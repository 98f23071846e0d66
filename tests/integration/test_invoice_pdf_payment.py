"""The client's invoice PDF for its reader (INV-1, INV-3, POR-1): amount paid, paid-on date, method, amount due and
due date; never Paid Out; the sentence about how it was paid matches the attempt that paid it — autopay, an
automatic retry, a retry run by billing support, or the client's own Pay now."""

from __future__ import annotations

import re
from datetime import date

import pytest
from django_tenants.utils import schema_context

from billing.attempts import charge_retry_manual
from billing.models import Charge, Invoice
from billing.pay_now import charge_pay_now
from billing.payment_methods import payment_method_attach
from billing.pdf import client_invoice_context, invoice_pdf
from billing.statuses import ChargeStatus
from tests.ui_helpers import billed_agency, pdf_text

pytestmark = pytest.mark.django_db
FEB = date(2027, 2, 1)


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a)


def _text(invoice, agency) -> str:
    return re.sub(r"\s+", " ", pdf_text(invoice_pdf(invoice=invoice, agency=agency)))


def test_INV_1_POR_1_autopay_invoice_says_paid_amount_date_and_card(scenario):
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.paying, period_start=FEB)
        text = _text(invoice, scenario.agency)
    assert "Status Paid" in text and "Paid Out" not in text
    assert "Amount due 0.00 USD" in text and "Amount paid 486.05 USD" in text
    assert "Paid on 2027-02-01" in text and "Paid with Visa ···· 4242" in text
    assert "Charged automatically to Visa ···· 4242 on 2027-02-01 (autopay)." in text
    assert "on the billing date" not in text


def test_INV_1_POR_1_paid_out_is_printed_paid(scenario):
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.paying, period_start=FEB)
        Charge.objects.filter(invoice=invoice).update(status=ChargeStatus.PAID_OUT)
        context = client_invoice_context(invoice, scenario.agency)
        text = _text(invoice, scenario.agency)
    assert context["status_label"] == "Paid" and "Paid Out" not in text and "Status Paid" in text


def test_INV_1_POR_1_unpaid_invoice_shows_amount_due_and_due_date(scenario):
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.declining, period_start=FEB)
        text = _text(invoice, scenario.agency)
    assert "Status Unpaid" in text and "Amount due 99.00 USD" in text and "Due date 2027-02-01" in text
    assert "Amount paid 0.00 USD" in text
    assert "Not paid yet: the payment failed; the next attempt is on 2027-02-08. Pay it in the portal." in text


def test_INV_1_POR_1_paid_by_a_manual_retry_or_by_pay_now_says_so(scenario):
    with schema_context("alpha"):
        payment_method_attach(client=scenario.declining, token="pm_card_mastercard:pdf")
        jan = Charge.objects.get(client=scenario.declining, due_on=date(2027, 1, 1))
        charge_retry_manual(jan, today=date(2027, 2, 3), actor="support@platform.test")
        feb = Charge.objects.get(client=scenario.declining, due_on=FEB)
        charge_pay_now(charge=feb, user=scenario.admin, request_key="d" * 32, today=date(2027, 2, 4))
        jan_text = _text(jan.invoice, scenario.agency)
        feb_text = _text(feb.invoice, scenario.agency)
    assert "Paid on 2027-02-03 with Mastercard ···· 4444 by a retry (attempt 3)." in jan_text
    assert "Amount paid 99.00 USD" in jan_text and "Paid on 2027-02-03" in jan_text
    assert "Paid with Mastercard ···· 4444" in jan_text
    assert "Paid online by you (Pay now) on 2027-02-04 with Mastercard ···· 4444." in feb_text
    for text in (jan_text, feb_text):
        assert "Amount due 0.00 USD" in text and "autopay" not in text and "on the billing date" not in text
