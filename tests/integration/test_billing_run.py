"""The billing step of a day over real PostgreSQL: CYC-1..5, PLAN-1..4, MON-3/4, INV-1, COL-6."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, connection, transaction
from django_tenants.utils import schema_context

from billing.base_models import EntryType
from billing.invoicing import billing_run, invoice_preview
from billing.ledger import payment_apply
from billing.models import Allocation, BillingSettings, Invoice, InvoiceLine, LedgerEntry
from billing.platform.models import AgencyInvoice
from billing.selectors import client_balance, client_open_by_category
from clients.models import AgencyServiceLine, Client
from clients.services import client_group_create
from tests.billing_helpers import at, client_create, service_line_add, tax_rate_create, usage, with_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def agency(agency_a):
    return with_plan(agency_a)


def _client(agency, name="Acme", price=10000, **kwargs):
    with schema_context(agency.schema_name):
        return client_create(
            name=name,
            email=f"{name.lower()}@example.com",
            activated_on=date(2026, 12, 10),
            license_price_minor=price,
            **kwargs,
        )


def test_PLAN_1_agency_invoice_in_arrears_has_minimum_licenses_usage_taxes_fees(agency):
    a = _client(agency, "A")
    _client(agency, "B")
    with schema_context(agency.schema_name):
        usage(agency, a, "listings", 130, at(date(2026, 12, 20)), "u1")
        usage(agency, None, "reviews", 60, at(date(2026, 12, 21)), "u2")  # the agency's own usage
        usage(agency, a, "listings", 5, at(date(2027, 1, 1)), "u3")  # next cycle: not on this invoice
    result = billing_run(agency=agency, today=date(2027, 1, 1))
    invoice = AgencyInvoice.objects.get(number=result.agency_invoice_number)
    assert (invoice.period_start, invoice.period_end) == (date(2026, 12, 1), date(2027, 1, 1))
    lines = [
        (line.category, line.quantity, line.unit_amount_decimal, line.amount_minor) for line in invoice.lines.all()
    ]
    assert lines == [
        ("LICENSE", 2, 2500, 5000),
        ("PRODUCTS", 100, 10, 1000),
        ("OVERAGE", 30, 7, 210),
        ("PRODUCTS", 50, 0, 0),  # reviews: 50 included at a unit price of 0
        ("OVERAGE", 10, 25, 250),
        ("OTHER", 1, 13540, 13540),  # top-up to the 200.00 package minimum: 20000 - 6460
        # 5 % per taxable line, half-up: 250 + 50 + 10.5→11 + 0 + 12.5→13 + 677 = 1001
        ("TAXES_FEES", 1, 1001, 1001),
        ("TAXES_FEES", 1, 999, 999),
    ]
    assert invoice.total_minor == sum(line.amount_minor for line in invoice.lines.all()) == 22000


def test_CYC_2_client_invoice_in_advance_plus_closed_cycle_usage(agency):
    with schema_context(agency.schema_name):
        tax = tax_rate_create(name="Sales tax", rate_percent="8.25")
    client = _client(agency, "Acme", price=19900, taxes=[tax])
    with schema_context(agency.schema_name):
        service_line_add(client=client, description="SEO", amount_minor=5000)
        service_line_add(client=client, description="Setup", amount_minor=1001, one_time=True, taxable=False)
        usage(agency, client, "listings", 120, at(date(2026, 12, 15)), "k1")
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        invoice = Invoice.objects.get(client=client)
        assert (invoice.period_start, invoice.period_end, invoice.due_on) == (
            date(2027, 1, 1),
            date(2027, 2, 1),
            date(2027, 1, 1),
        )
        lines = [(line.category, line.description, line.amount_minor) for line in invoice.lines.all()]
        assert lines == [
            ("LICENSE", "License 2027-01-01 – 2027-01-31", 19900),
            ("AGENCY_SERVICES", "SEO", 5000),
            ("AGENCY_SERVICES", "Setup", 1001),
            ("PRODUCTS", "Listings", 1000),
            ("OVERAGE", "Listings — overage", 140),
            # 8.25 % per taxable line, half-up: 1641.75→1642, 412.5→413, 82.5→83, 11.55→12
            ("TAXES_FEES", "Sales tax (8.25 %)", 1642 + 413 + 83 + 12),
        ]
        assert invoice.total_minor == sum(amount for *_, amount in lines) == 29191
        assert invoice.subtotal_minor + invoice.tax_minor == invoice.total_minor


def test_PLAN_2_one_time_service_is_billed_once_then_removed(agency):
    client = _client(agency)
    with schema_context(agency.schema_name):
        line = service_line_add(client=client, description="Launch", amount_minor=7000, one_time=True)
    billing_run(agency=agency, today=date(2027, 1, 1))
    billing_run(agency=agency, today=date(2027, 2, 1))
    with schema_context(agency.schema_name):
        jan, feb = Invoice.objects.filter(client=client).order_by("period_start")
        assert jan.lines.filter(description="Launch").count() == 1
        assert not feb.lines.filter(description="Launch").exists()
        line = AgencyServiceLine.objects.get(pk=line.pk)
        assert line.removed_at is not None and line.billed_on_invoice == jan.number


def test_CYC_3_rerun_of_a_finished_day_does_nothing_and_says_so(agency):
    _client(agency)
    first = billing_run(agency=agency, today=date(2027, 1, 1))
    again = billing_run(agency=agency, today=date(2027, 1, 1))
    assert first.invoices_built == 1 and again.already_done
    with schema_context(agency.schema_name):
        assert Invoice.objects.count() == 1


def test_CYC_3_unique_constraint_refuses_a_second_invoice_for_the_period(agency):
    client = _client(agency)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name), pytest.raises(IntegrityError), transaction.atomic():
        original = Invoice.objects.get(client=client)
        Invoice.objects.create(
            client=client,
            number="X-1",
            period_start=original.period_start,
            period_end=original.period_end,
            issued_on=original.issued_on,
            due_on=original.due_on,
            currency="USD",
            subtotal_minor=0,
            tax_minor=0,
            total_minor=0,
        )


def test_INV_1_numbers_are_sequential_without_gaps_across_days(agency):
    for index in range(7):
        _client(agency, f"C{index}", billing_day=[1, 1, 5, 5, 9, 1, 9][index])
    for day in (1, 5, 9):
        billing_run(agency=agency, today=date(2027, 1, day))
    billing_run(agency=agency, today=date(2027, 2, 1))
    with schema_context(agency.schema_name):
        numbers = sorted(int(n.split("-")[1]) for n in Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 11))


def test_MON_3_finalized_invoice_and_lines_are_immutable_in_the_database(agency):
    client = _client(agency)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        invoice = Invoice.objects.get(client=client)
        for attempt in (
            lambda: Invoice.objects.filter(pk=invoice.pk).update(total_minor=1),
            lambda: Invoice.objects.filter(pk=invoice.pk).update(number="OTHER-1"),
            lambda: InvoiceLine.objects.filter(invoice=invoice).update(amount_minor=1),
            lambda: InvoiceLine.objects.filter(invoice=invoice).delete(),
            lambda: LedgerEntry.objects.filter(invoice=invoice).update(amount_minor=0),
            lambda: Invoice.objects.filter(pk=invoice.pk).delete(),
        ):
            with pytest.raises(IntegrityError), transaction.atomic():
                attempt()
        # What is not money may change: the PDF is stored once.
        Invoice.objects.filter(pk=invoice.pk).update(pdf="invoices/x.pdf")
        with pytest.raises(IntegrityError), transaction.atomic():
            Invoice.objects.filter(pk=invoice.pk).update(pdf="invoices/other.pdf")
        assert Invoice.objects.get(pk=invoice.pk).total_minor == invoice.total_minor


def test_MON_4_ledger_charges_per_category_and_balance_is_their_sum(agency):
    with schema_context(agency.schema_name):
        tax = tax_rate_create(name="Tax", rate_percent="10")
    client = _client(agency, price=10000, taxes=[tax])
    with schema_context(agency.schema_name):
        service_line_add(client=client, description="Ads", amount_minor=3000)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        entries = {e.category: e.amount_minor for e in LedgerEntry.objects.filter(client=client)}
        assert entries == {"LICENSE": 10000, "AGENCY_SERVICES": 3000, "TAXES_FEES": 1300}
        assert client_balance(client) == Invoice.objects.get(client=client).total_minor == 14300


def test_COL_6_payments_follow_the_agency_category_order_oldest_first(agency):
    with schema_context(agency.schema_name):
        tax = tax_rate_create(name="Tax", rate_percent="10")
    client = _client(agency, price=10000, taxes=[tax])
    with schema_context(agency.schema_name):
        service_line_add(client=client, description="Ads", amount_minor=3000)
        BillingSettings.objects.update(
            category_order=["TAXES_FEES", "AGENCY_SERVICES", "LICENSE", "PRODUCTS", "OVERAGE", "OTHER"]
        )
    billing_run(agency=agency, today=date(2027, 1, 1))
    billing_run(agency=agency, today=date(2027, 2, 1))
    with schema_context(agency.schema_name):
        # 1300 + 1300 taxes (Jan then Feb), then 3000 of January's services, then 400 of February's.
        payment_apply(client=client, amount_minor=6000, currency="USD", occurred_on=date(2027, 2, 2), reference="pay-1")
        applied = [
            (a.charge.category, a.charge.occurred_on.month, a.amount_minor)
            for a in Allocation.objects.select_related("charge").order_by("id")
        ]
        assert applied == [
            ("TAXES_FEES", 1, 1300),
            ("TAXES_FEES", 2, 1300),
            ("AGENCY_SERVICES", 1, 3000),
            ("AGENCY_SERVICES", 2, 400),
        ]
        assert client_balance(client) == 2 * 14300 - 6000
        assert client_open_by_category(client) == {"AGENCY_SERVICES": 2600, "LICENSE": 20000}
        assert LedgerEntry.objects.get(reference="pay-1").entry_type == EntryType.PAYMENT


def test_CYC_1_custom_billing_day_overrides_the_agency_day(agency):
    regular = _client(agency, "Regular")
    custom = _client(agency, "Custom", billing_day=15)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        assert list(Invoice.objects.values_list("client_id", flat=True)) == [regular.pk]
    billing_run(agency=agency, today=date(2027, 1, 15))
    with schema_context(agency.schema_name):
        invoice = Invoice.objects.get(client=custom)
        assert (invoice.period_start, invoice.period_end) == (date(2027, 1, 15), date(2027, 2, 15))


def test_CYC_4_multiple_autopay_builds_on_first_date_billing_date_is_last(agency):
    client = _client(agency, autopay_days=[5, 28])
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        assert not Invoice.objects.filter(client=client).exists()
    billing_run(agency=agency, today=date(2027, 1, 5))
    with schema_context(agency.schema_name):
        invoice = Invoice.objects.get(client=client)
        assert invoice.issued_on == date(2027, 1, 5)
        assert invoice.due_on == invoice.period_start == date(2027, 1, 28)


def test_CYC_5_usage_belongs_to_the_agency_local_day(agency):
    # Agency in New York: 04:30 UTC on 1 Jan is still 31 Dec locally → the closed December cycle.
    client = _client(agency)
    ny = ZoneInfo("America/New_York")
    with schema_context(agency.schema_name):
        usage(agency, client, "listings", 3, datetime(2027, 1, 1, 4, 30, tzinfo=ZoneInfo("UTC")), "late-dec")
        usage(agency, client, "listings", 4, datetime(2027, 1, 1, 0, 0, tzinfo=ny), "jan")
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        invoice = Invoice.objects.get(client=client)
        assert invoice.lines.get(category="PRODUCTS").quantity == 3


def test_PLAN_4_group_billed_through_primary_members_agency_invoiced(agency):
    primary = _client(agency, "Primary", price=20000)
    member = _client(agency, "Member", price=5000)
    with schema_context(agency.schema_name):
        client_group_create(name="Family", primary=primary, members=[primary, member])
        usage(agency, member, "listings", 30, at(date(2026, 12, 20)), "m1")
        usage(agency, primary, "listings", 10, at(date(2026, 12, 20)), "p1")
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        assert list(Invoice.objects.values_list("client__name", flat=True)) == ["Primary"]
        invoice = Invoice.objects.get(client=primary)
        assert invoice.lines.get(category="LICENSE").amount_minor == 20000
        assert invoice.lines.get(category="PRODUCTS").quantity == 40
        assert Client.objects.get(pk=member.pk).agency_invoiced


def test_preview_equals_what_the_run_builds(agency):
    with schema_context(agency.schema_name):
        tax = tax_rate_create(name="Tax", rate_percent="7.25")
    client = _client(agency, price=12345, taxes=[tax])
    with schema_context(agency.schema_name):
        service_line_add(client=client, description="Ads", amount_minor=999)
        usage(agency, client, "reviews", 77, at(date(2026, 12, 30)), "r")
        draft = invoice_preview(agency=agency, client=client, billing_date=date(2027, 1, 1))
    billing_run(agency=agency, today=date(2027, 1, 1))
    with schema_context(agency.schema_name):
        invoice = Invoice.objects.get(client=client)
        assert draft.total_minor == invoice.total_minor
        assert [(line.category, line.amount_minor) for line in draft.lines] == list(
            invoice.lines.values_list("category", "amount_minor")
        )


def test_inactive_and_future_clients_get_no_invoice(agency):
    _client(agency, "Later")
    with schema_context(agency.schema_name):
        Client.objects.filter(name="Later").update(activated_on=date(2027, 1, 2))
        gone = _client(agency, "Gone")
        Client.objects.filter(pk=gone.pk).update(deactivated_on=date(2026, 12, 31))
    result = billing_run(agency=agency, today=date(2027, 1, 1))
    assert result.invoices_built == 0


def test_client_invoices_never_land_in_public_schema(agency):
    _client(agency)
    billing_run(agency=agency, today=date(2027, 1, 1))
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.billing_invoice')")
        assert cursor.fetchone()[0] is None
