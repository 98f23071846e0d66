"""Unit tests of billing/drafting.py: pure invoice arithmetic (PLAN-3, MON-2, CYC-2, COL-6). No database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.drafting import (
    DraftLine,
    InvoiceDraft,
    ProductPrice,
    ServiceSpec,
    TaxSpec,
    allocate,
    draft_agency_invoice,
    draft_client_invoice,
    tax_lines,
    usage_lines,
)
from core.calendar import Period
from core.categories import BillingCategory

PERIOD = Period(date(2027, 3, 1), date(2027, 4, 1))
PRICES = {
    "sms": ProductPrice("sms", "SMS", unit_price=Decimal(5), included_quantity=100, overage_unit_price=Decimal(8)),
    "seat": ProductPrice(
        "seat", "Seat", unit_price=Decimal(1000), included_quantity=0, overage_unit_price=Decimal(1500)
    ),
    "call": ProductPrice(
        "call", "Call minutes", unit_price=Decimal(2), included_quantity=50, overage_unit_price=Decimal(3)
    ),
}


def _pct(rate_bp: int) -> Decimal:
    """Whole basis points as a percentage (825 → 8.25)."""
    return Decimal(rate_bp).scaleb(-2)


def _half_up(value: Fraction) -> int:
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    floor = magnitude.numerator // magnitude.denominator
    return sign * (floor + 1 if magnitude - floor >= Fraction(1, 2) else floor)


def _expected_tax(lines, rate: Decimal) -> int:
    """Per-line half-up tax, summed, computed independently of core.money (MON-2)."""
    return sum(_half_up(Fraction(line.amount_minor) * Fraction(rate) / 100) for line in lines if line.taxable)


def _check_invariants(draft: InvoiceDraft) -> None:
    amounts = [line.amount_minor for line in draft.lines]
    assert draft.total_minor == sum(amounts)
    assert draft.subtotal_minor + draft.tax_minor == draft.total_minor
    assert sum(draft.by_category().values()) == draft.total_minor
    for value in (draft.total_minor, draft.subtotal_minor, draft.tax_minor):
        assert type(value) is int
    for line in draft.lines:
        assert type(line.amount_minor) is int
        assert isinstance(line.unit_amount, Decimal | int)
        assert type(line.quantity) is int
        assert line.amount_minor == _half_up(line.quantity * Fraction(line.unit_amount))
        assert line.category in BillingCategory.values


# --------------------------------------------------------------------------------------------- PLAN-3


def test_PLAN_3_usage_within_included_quantity_billed_at_unit_price():
    lines = usage_lines(PRICES, {"sms": 40})
    assert lines == [DraftLine(BillingCategory.PRODUCTS, "SMS", 40, 5, 200, taxable=True)]


def test_PLAN_3_usage_beyond_included_quantity_is_overage():
    lines = usage_lines(PRICES, {"sms": 130})
    assert lines == [
        DraftLine(BillingCategory.PRODUCTS, "SMS", 100, 5, 500, taxable=True),
        DraftLine(BillingCategory.OVERAGE, "SMS — overage", 30, 8, 240, taxable=True),
    ]


def test_PLAN_3_usage_exactly_included_quantity_has_no_overage_line():
    lines = usage_lines(PRICES, {"sms": 100})
    assert [line.category for line in lines] == [BillingCategory.PRODUCTS]
    assert lines[0].amount_minor == 500


def test_PLAN_3_no_included_quantity_all_overage():
    lines = usage_lines(PRICES, {"seat": 3})
    assert lines == [DraftLine(BillingCategory.OVERAGE, "Seat — overage", 3, 1500, 4500, taxable=True)]


def test_PLAN_3_zero_usage_skipped_and_products_in_code_order():
    lines = usage_lines(PRICES, {"sms": 0, "seat": 1, "call": 60})
    assert [(line.description, line.quantity) for line in lines] == [
        ("Call minutes", 50),
        ("Call minutes — overage", 10),
        ("Seat — overage", 1),
    ]
    assert usage_lines(PRICES, {"sms": 0}) == []
    assert usage_lines(PRICES, {}) == []


def test_PLAN_3_usage_of_unknown_product_refused():
    with pytest.raises(KeyError):
        usage_lines(PRICES, {"fax": 1})


# --------------------------------------------------------------------------------------------- MON-2


def test_MON_2_tax_rounded_per_line_then_summed():
    lines = [
        DraftLine(BillingCategory.PRODUCTS, "A", 1, 5, 5, taxable=True),
        DraftLine(BillingCategory.PRODUCTS, "B", 1, 5, 5, taxable=True),
    ]
    # Each line's 0.5 cent rounds up to 1: 1 + 1 = 2, not round(0.5 + 0.5) = 1.
    result = tax_lines(lines, [TaxSpec("VAT", _pct(1000))])
    assert result == [DraftLine(BillingCategory.TAXES_FEES, "VAT (10 %)", 1, 2, 2, taxable=False)]


def test_MON_2_tax_lines_skip_untaxable_lines_one_line_per_tax():
    lines = [
        DraftLine(BillingCategory.LICENSE, "License", 1, 10000, 10000, taxable=True),
        DraftLine(BillingCategory.AGENCY_SERVICES, "Setup", 1, 5000, 5000, taxable=False),
        DraftLine(BillingCategory.PRODUCTS, "SMS", 3, 5, 15, taxable=True),
    ]
    result = tax_lines(lines, [TaxSpec("State tax", _pct(825)), TaxSpec("City tax", _pct(50))])
    # 8.25 %: 825 + round(1.2375)=1 → 826; 0.5 %: 50 + round(0.075)=0 → 50.
    assert [(line.description, line.amount_minor) for line in result] == [
        ("State tax (8.25 %)", 826),
        ("City tax (0.5 %)", 50),
    ]
    assert all(line.category == BillingCategory.TAXES_FEES and not line.taxable for line in result)


def test_MON_2_no_tax_lines_without_taxable_lines_or_taxes():
    untaxable = [DraftLine(BillingCategory.AGENCY_SERVICES, "Setup", 1, 5000, 5000, taxable=False)]
    assert tax_lines(untaxable, [TaxSpec("VAT", _pct(2000))]) == []
    assert tax_lines([], [TaxSpec("VAT", _pct(2000))]) == []
    taxable = [DraftLine(BillingCategory.LICENSE, "License", 1, 5000, 5000, taxable=True)]
    assert tax_lines(taxable, []) == []


@pytest.mark.parametrize(
    ("rate_bp", "label"),
    [(1000, "10 %"), (825, "8.25 %"), (50, "0.5 %"), (0, "0 %"), (10000, "100 %"), (1, "0.01 %"), (2010, "20.1 %")],
)
def test_MON_2_tax_line_label_shows_rate(rate_bp, label):
    taxable = [DraftLine(BillingCategory.LICENSE, "License", 1, Decimal(100), 100, taxable=True)]
    assert tax_lines(taxable, [TaxSpec("Tax", _pct(rate_bp))])[0].description == f"Tax ({label})"


@pytest.mark.parametrize(("rate", "label"), [("8.875", "8.875 %"), ("4.7125", "4.7125 %"), ("0.0001", "0.0001 %")])
def test_MON_2_tax_line_label_shows_four_decimal_rate_exactly(rate, label):
    taxable = [DraftLine(BillingCategory.LICENSE, "License", 1, Decimal(100), 100, taxable=True)]
    assert tax_lines(taxable, [TaxSpec("Tax", Decimal(rate))])[0].description == f"Tax ({label})"


def test_MON_2_sub_minor_unit_price_rounds_once_per_line():
    prices = {"api": ProductPrice("api", "API calls", Decimal("0.0875"), 0, Decimal("0.0875"))}
    lines = usage_lines(prices, {"api": 98_765})
    assert lines == [DraftLine(BillingCategory.OVERAGE, "API calls — overage", 98_765, Decimal("0.0875"), 8642, True)]


def test_MON_2_negative_taxable_line_reduces_tax_mirrored():
    lines = [
        DraftLine(BillingCategory.LICENSE, "License", 1, 1000, 1000, taxable=True),
        DraftLine(BillingCategory.AGENCY_SERVICES, "Discount", 1, -25, -25, taxable=True),
    ]
    # 10 %: 100 + (-2.5 → -3) = 97
    assert tax_lines(lines, [TaxSpec("VAT", _pct(1000))])[0].amount_minor == 97


# --------------------------------------------------------------------------------------------- CYC-2 (b)


def test_CYC_2_client_invoice_license_services_usage_then_taxes():
    usage = usage_lines(PRICES, {"sms": 130})
    draft = draft_client_invoice(
        currency="USD",
        period=PERIOD,
        license_price_minor=9900,
        services=[
            ServiceSpec("SEO retainer", 20000, key="seo"),
            ServiceSpec("Onboarding", 5000, taxable=False, one_time=True, key="onb"),
            ServiceSpec("Audit", 1500, one_time=True, key=7),
        ],
        usage=usage,
        taxes=[TaxSpec("Sales tax", _pct(825))],
    )
    categories = [line.category for line in draft.lines]
    assert categories == [
        BillingCategory.LICENSE,
        BillingCategory.AGENCY_SERVICES,
        BillingCategory.AGENCY_SERVICES,
        BillingCategory.AGENCY_SERVICES,
        BillingCategory.PRODUCTS,
        BillingCategory.OVERAGE,
        BillingCategory.TAXES_FEES,
    ]
    assert draft.lines[0].description == "License 2027-03-01 – 2027-03-31"
    # Taxable: 9900 + 20000 + 1500 + 500 + 240 = 32140; 8.25 % per line:
    # 816.75→817, 1650→1650, 123.75→124, 41.25→41, 19.8→20 = 2652.
    assert draft.tax_minor == 2652
    assert draft.subtotal_minor == 9900 + 20000 + 5000 + 1500 + 500 + 240
    assert draft.total_minor == draft.subtotal_minor + 2652
    assert draft.one_time_service_keys == ("onb", 7)
    assert draft.currency == "USD" and draft.period == PERIOD
    assert draft.by_category()[BillingCategory.AGENCY_SERVICES] == 26500
    _check_invariants(draft)


def test_CYC_2_client_invoice_without_license_price_has_no_license_line():
    draft = draft_client_invoice(
        currency="USD", period=PERIOD, license_price_minor=0, services=[], usage=[], taxes=[TaxSpec("VAT", _pct(2000))]
    )
    assert draft.lines == ()
    assert draft.total_minor == 0
    assert draft.one_time_service_keys == ()


# --------------------------------------------------------------------------------------------- CYC-2 (a)


def test_CYC_2_agency_invoice_top_up_to_package_minimum_when_short():
    usage = usage_lines(PRICES, {"seat": 2})  # 3000
    draft = draft_agency_invoice(
        currency="USD",
        period=PERIOD,
        active_clients=3,
        license_fee_minor=1000,
        package_minimum_minor=10000,
        usage=usage,
        taxes=[TaxSpec("VAT", _pct(1000))],
        fees=[("Card processing", 250)],
    )
    lines = draft.lines
    assert lines[0] == DraftLine(
        BillingCategory.LICENSE, "Client licenses 2027-03-01 – 2027-03-31", 3, 1000, 3000, taxable=True
    )
    top_up = [line for line in lines if line.category == BillingCategory.OTHER]
    assert len(top_up) == 1
    assert top_up[0].amount_minor == 10000 - 3000 - 3000
    assert top_up[0].description == "Partner package minimum (100.00)"
    assert top_up[0].taxable
    # Tax on license 300 + seats 300 + top-up 400 = 1000; the fee is added after taxes, untaxed.
    assert [(line.description, line.amount_minor) for line in lines[-2:]] == [
        ("VAT (10 %)", 1000),
        ("Card processing", 250),
    ]
    assert draft.subtotal_minor == 10000
    assert draft.tax_minor == 1000 + 250
    assert draft.total_minor == 11250
    _check_invariants(draft)


def test_CYC_2_agency_invoice_no_top_up_when_charges_reach_minimum():
    for active, minimum in ((10, 10000), (11, 10000)):
        draft = draft_agency_invoice(
            currency="USD",
            period=PERIOD,
            active_clients=active,
            license_fee_minor=1000,
            package_minimum_minor=minimum,
            usage=[],
            taxes=[],
            fees=[],
        )
        assert all(line.category != BillingCategory.OTHER for line in draft.lines)
        assert draft.total_minor == active * 1000


def test_CYC_2_agency_invoice_nothing_charged_is_all_minimum():
    draft = draft_agency_invoice(
        currency="JPY",
        period=PERIOD,
        active_clients=0,
        license_fee_minor=500,
        package_minimum_minor=5000,
        usage=[],
        taxes=[TaxSpec("JCT", _pct(1000))],
        fees=[],
    )
    assert [(line.category, line.amount_minor) for line in draft.lines] == [
        (BillingCategory.OTHER, 5000),
        (BillingCategory.TAXES_FEES, 500),
    ]
    assert draft.lines[0].description == "Partner package minimum (5,000)"


def test_CYC_2_agency_invoice_fees_are_not_taxed():
    draft = draft_agency_invoice(
        currency="USD",
        period=PERIOD,
        active_clients=1,
        license_fee_minor=1000,
        package_minimum_minor=0,
        usage=[],
        taxes=[TaxSpec("VAT", _pct(1000))],
        fees=[("Platform fee", 10000)],
    )
    assert draft.tax_minor == 100 + 10000
    assert [line.amount_minor for line in draft.lines] == [1000, 100, 10000]


# --------------------------------------------------------------------------------------------- properties

_codes = st.sampled_from(["a", "b", "c", "d", "e"])
# MON-2: whole minor units and fractions of one, down to 12 decimals.
_unit_prices = st.one_of(
    st.integers(0, 100_000).map(Decimal), st.integers(0, 10**17).map(lambda n: Decimal(n).scaleb(-12))
)
_prices = st.dictionaries(
    _codes,
    st.builds(
        lambda unit, included, over: (unit, included, over),
        _unit_prices,
        st.integers(0, 1_000),
        _unit_prices,
    ),
    min_size=1,
).map(lambda raw: {code: ProductPrice(code, code.upper(), u, i, o) for code, (u, i, o) in raw.items()})
_taxes = st.lists(
    st.builds(TaxSpec, st.text(min_size=1, max_size=8), st.integers(0, 1_000_000).map(lambda n: Decimal(n).scaleb(-4))),
    max_size=3,
)
_services = st.lists(
    st.builds(
        ServiceSpec, st.text(max_size=8), st.integers(-100_000, 1_000_000), st.booleans(), st.booleans(), st.integers()
    ),
    max_size=4,
)


@st.composite
def _price_list_and_usage(draw):
    prices = draw(_prices)
    usage = draw(st.dictionaries(st.sampled_from(sorted(prices)), st.integers(-5, 3_000)))
    return prices, usage


@settings(max_examples=200, deadline=None)
@given(_price_list_and_usage())
def test_PLAN_3_usage_lines_property(price_list_and_usage):
    prices, usage = price_list_and_usage
    lines = usage_lines(prices, usage)
    billed = {}
    for line in lines:
        assert line.quantity > 0 and line.taxable
        assert line.amount_minor == _half_up(line.quantity * Fraction(line.unit_amount))
        assert type(line.amount_minor) is int
        billed.setdefault(line.description.removesuffix(" — overage"), []).append(line)
    for code, quantity in usage.items():
        price = prices[code]
        if quantity <= 0:
            assert price.name not in billed
            continue
        by_category = {line.category: line.quantity for line in billed[price.name]}
        assert by_category.get(BillingCategory.PRODUCTS, 0) == min(quantity, price.included_quantity)
        assert by_category.get(BillingCategory.OVERAGE, 0) == max(0, quantity - price.included_quantity)


@settings(max_examples=200, deadline=None)
@given(
    license_price=st.integers(0, 1_000_000),
    services=_services,
    price_list_and_usage=_price_list_and_usage(),
    taxes=_taxes,
)
def test_MON_2_client_draft_total_is_sum_of_lines_property(license_price, services, price_list_and_usage, taxes):
    prices, usage = price_list_and_usage
    draft = draft_client_invoice(
        currency="USD",
        period=PERIOD,
        license_price_minor=license_price,
        services=services,
        usage=usage_lines(prices, usage),
        taxes=taxes,
    )
    _check_invariants(draft)
    charge_lines = [line for line in draft.lines if line.category != BillingCategory.TAXES_FEES]
    tax_only = [line for line in draft.lines if line.category == BillingCategory.TAXES_FEES]
    if any(line.taxable for line in charge_lines):
        assert [line.amount_minor for line in tax_only] == [_expected_tax(charge_lines, t.rate_percent) for t in taxes]
    else:
        assert tax_only == []
    assert draft.one_time_service_keys == tuple(s.key for s in services if s.one_time)


@settings(max_examples=200, deadline=None)
@given(
    active=st.integers(0, 50),
    license_fee=st.integers(0, 100_000),
    minimum=st.integers(0, 5_000_000),
    price_list_and_usage=_price_list_and_usage(),
    taxes=_taxes,
    fees=st.lists(st.tuples(st.text(max_size=8), st.integers(0, 100_000)), max_size=3),
)
def test_MON_2_agency_draft_total_is_sum_of_lines_property(
    active, license_fee, minimum, price_list_and_usage, taxes, fees
):
    prices, usage = price_list_and_usage
    draft = draft_agency_invoice(
        currency="USD",
        period=PERIOD,
        active_clients=active,
        license_fee_minor=license_fee,
        package_minimum_minor=minimum,
        usage=usage_lines(prices, usage),
        taxes=taxes,
        fees=fees,
    )
    _check_invariants(draft)
    charges = [line for line in draft.lines if line.category != BillingCategory.TAXES_FEES]
    charged = sum(line.amount_minor for line in charges if line.category != BillingCategory.OTHER)
    top_ups = [line for line in charges if line.category == BillingCategory.OTHER]
    # Package minimum: a top-up only when charges fall short, bringing the subtotal to exactly the minimum.
    assert len(top_ups) == (1 if charged < minimum else 0)
    assert draft.subtotal_minor == max(charged, minimum)
    # Taxes on the taxable charges, then the fees as they are, untaxed.
    expected_taxes = [_expected_tax(charges, t.rate_percent) for t in taxes] if any(c.taxable for c in charges) else []
    expected_tail = expected_taxes + [amount for _, amount in fees]
    tail = draft.lines[len(charges) :]
    assert [line.amount_minor for line in tail] == expected_tail
    assert draft.tax_minor == sum(expected_tail)


# --------------------------------------------------------------------------------------------- COL-6


def test_COL_6_allocate_examples():
    items = [("license", 1000), ("services", 500), ("products", 300)]
    assert allocate(1200, items) == [("license", 1000), ("services", 200)]
    assert allocate(5000, items) == [("license", 1000), ("services", 500), ("products", 300)]
    assert allocate(0, items) == []
    assert allocate(1000, items) == [("license", 1000)]
    assert allocate(100, [("paid", 0), ("credit", -50), ("open", 300)]) == [("open", 100)]
    assert allocate(100, []) == []


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 10_000), st.lists(st.integers(-500, 3_000), max_size=8).map(lambda amounts: list(enumerate(amounts)))
)
def test_COL_6_allocate_in_order_never_over_applied_property(payment, items):
    applied = allocate(payment, items)
    open_by_key = dict(items)
    keys = [key for key, _ in applied]
    assert keys == sorted(keys)  # the given order
    assert len(set(keys)) == len(keys)
    for key, amount in applied:
        assert type(amount) is int
        assert 0 < amount <= open_by_key[key]
    applied_by_key = dict(applied)
    for key, amount in applied:
        # Every earlier open item is fully covered before this one gets anything.
        for earlier_key, open_amount in items[:key]:
            if open_amount > 0:
                assert applied_by_key.get(earlier_key) == open_amount
    total_applied = sum(amount for _, amount in applied)
    assert total_applied <= payment
    assert total_applied == min(payment, sum(amount for _, amount in items if amount > 0))
