"""Property-based tests over real PostgreSQL (MON-2, MON-4, COL-6): random plans, prices, taxes, usage
and payments; every example runs in a savepoint that is rolled back."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from django.test import override_settings
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.invoicing import billing_run
from billing.ledger import open_charges_in_order, payment_apply
from billing.models import Allocation, BillingSettings, Invoice, LedgerEntry
from billing.platform.models import AgencyInvoice
from billing.selectors import client_balance, client_open_by_category
from billing.usage import UsageInput, usage_record_bulk
from clients.services import client_create, service_line_add, tax_rate_create
from core.categories import DEFAULT_CATEGORY_ORDER
from core.money import MAX_AMOUNT_MINOR
from tenants.services import partner_plan_create, plan_assign

pytestmark = pytest.mark.django_db

amounts = st.integers(min_value=0, max_value=5_000_000)
# MON-2: unit prices with up to 12 decimals of the minor unit, rates with up to 4 decimals of a percent.
unit_prices = st.one_of(amounts.map(Decimal), st.integers(0, 5 * 10**18).map(lambda n: Decimal(n).scaleb(-12)))
rates = st.integers(0, 1_000_000).map(lambda n: Decimal(n).scaleb(-4))
products = st.lists(st.tuples(unit_prices, st.integers(0, 500), unit_prices), min_size=1, max_size=3)
client_specs = st.lists(
    st.fixed_dictionaries(
        {
            "price": amounts,
            "services": st.lists(st.tuples(amounts, st.booleans(), st.booleans()), max_size=3),
            "usage": st.lists(st.tuples(st.integers(0, 2), st.integers(1, 2000)), max_size=4),
            "taxes": st.lists(st.integers(0, 3), max_size=3, unique=True),
            "payments": st.lists(st.integers(1, 3_000_000), max_size=3),
        }
    ),
    min_size=1,
    max_size=4,
)


class _Rollback(Exception):
    pass


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    plan_products=products,
    minimum=amounts,
    license_fee=amounts,
    tax_rates=st.lists(rates, min_size=4, max_size=4),
    plan_taxes=st.lists(rates, max_size=2),
    clients=client_specs,
    order=st.permutations(DEFAULT_CATEGORY_ORDER),
)
def test_MON_2_MON_4_COL_6_random_billing_is_exact(
    agency_a, plan_products, minimum, license_fee, tax_rates, plan_taxes, clients, order
):
    # The exactness of the arithmetic is what this test is about, with amounts up to 5,000,000 and usage up to
    # 2,000 units: their invoices may pass the processor's per-charge ceiling, whose holds R8 proves
    # (tests/reliability/test_r8_amount_bounds.py). Here the ceiling is the input bound, so every invoice is built.
    try:
        with override_settings(CHARGE_CEILING_MINOR=MAX_AMOUNT_MINOR), transaction.atomic():
            _one_example(agency_a, plan_products, minimum, license_fee, tax_rates, plan_taxes, clients, order)
            raise _Rollback
    except _Rollback:
        pass


def _one_example(agency, plan_products, minimum, license_fee, tax_rates, plan_taxes, clients, order):
    plan = partner_plan_create(
        name="Random",
        currency="USD",
        package_minimum_minor=minimum,
        license_fee_minor=license_fee,
        products=[
            {
                "code": f"p{i}",
                "name": f"P{i}",
                "unit_price_decimal": unit,
                "included_quantity": included,
                "overage_unit_price_decimal": over,
            }
            for i, (unit, included, over) in enumerate(plan_products)
        ],
        taxes=[{"name": f"T{i}", "rate_percent": rate} for i, rate in enumerate(plan_taxes)],
    )
    agency = plan_assign(agency=agency, plan=plan)
    with schema_context(agency.schema_name):
        BillingSettings.objects.update(category_order=list(order))
        taxes = [tax_rate_create(name=f"Tax {i}", rate_percent=rate) for i, rate in enumerate(tax_rates)]
        created = []
        items = []
        for index, spec in enumerate(clients):
            client = client_create(
                name=f"C{index}",
                email=f"c{index}@example.com",
                activated_on=date(2026, 12, 1),
                license_price_minor=spec["price"],
                taxes=[taxes[i] for i in spec["taxes"]],
            )
            for amount, one_time, taxable in spec["services"]:
                service_line_add(
                    client=client, description="Svc", amount_minor=amount, one_time=one_time, taxable=taxable
                )
            for n, (product, quantity) in enumerate(spec["usage"]):
                code = f"p{product % len(plan_products)}"
                items.append(UsageInput(code, quantity, datetime(2026, 12, 15, tzinfo=UTC), f"{index}-{n}", client))
            created.append((client, spec))
        if items:
            usage_record_bulk(agency=agency, items=items, now=datetime(2026, 12, 15, tzinfo=UTC))

    billing_run(agency=agency, today=date(2027, 1, 1))
    billing_run(agency=agency, today=date(2027, 2, 1))

    agency_invoices = AgencyInvoice.objects.filter(agency=agency)
    assert agency_invoices.count() == 2
    for invoice in agency_invoices:
        assert invoice.total_minor == sum(invoice.lines.values_list("amount_minor", flat=True))
        assert invoice.total_minor >= minimum

    with schema_context(agency.schema_name):
        for invoice in Invoice.objects.all():
            lines = list(invoice.lines.values_list("amount_minor", flat=True))
            assert invoice.total_minor == sum(lines)
            assert invoice.subtotal_minor + invoice.tax_minor == invoice.total_minor
            assert all(type(amount) is int for amount in lines)
        for client, spec in created:
            charges = LedgerEntry.objects.filter(client=client, amount_minor__gt=0)
            charged = charges.aggregate(s=Sum("amount_minor"))["s"] or 0
            assert charged == sum(Invoice.objects.filter(client=client).values_list("total_minor", flat=True))
            paid_total = 0
            for n, amount in enumerate(spec["payments"]):
                expected_order = [c.pk for c, _ in open_charges_in_order(client, list(order))]
                open_before = {c.pk: open_amount for c, open_amount in open_charges_in_order(client, list(order))}
                payment = payment_apply(
                    client=client,
                    amount_minor=amount,
                    currency="USD",
                    occurred_on=date(2027, 2, 2),
                    reference=f"pay-{n}",
                )
                touched = list(
                    Allocation.objects.filter(payment=payment).order_by("id").values_list("charge_id", "amount_minor")
                )
                # COL-6: a prefix of the ordered open charges, every one but the last paid in full.
                assert [pk for pk, _ in touched] == expected_order[: len(touched)]
                for pk, applied in touched[:-1]:
                    assert applied == open_before[pk]
                assert sum(a for _, a in touched) == min(amount, sum(open_before.values()))
                paid_total += amount
            allocated = Allocation.objects.filter(charge__client=client).aggregate(s=Sum("amount_minor"))["s"] or 0
            # MON-4: the balance is charges minus payments; what is still open is charges minus allocations.
            assert client_balance(client) == charged - paid_total
            assert sum(client_open_by_category(client).values()) == charged - allocated
            assert allocated == min(paid_total, charged)
