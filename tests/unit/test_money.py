"""Unit tests of core/money.py: integer minor units (MON-1), half-up tax (MON-2), even splits (CYC-4)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ApplicationError
from core.money import (
    RATE_SCALE,
    UNIT_PRICE_SCALE,
    CurrencyMismatch,
    Money,
    UnknownCurrency,
    currency_exponent,
    decimal_text,
    format_minor,
    format_rate,
    format_unit_price,
    line_amount_minor,
    money_sum,
    parse_rate_percent,
    parse_unit_price,
    rate_bp_or_none,
    rate_from_bp,
    rate_millionths,
    split_evenly,
    tax_minor,
    unit_minor_or_none,
)


def _pct(rate_bp: int) -> Decimal:
    """Whole basis points as the percentage rates are written in (825 → 8.25)."""
    return Decimal(rate_bp).scaleb(-2)


# --------------------------------------------------------------------------------------------- MON-1


def test_MON_1_money_holds_int_minor_units_and_iso_code():
    money = Money(1234, "USD")
    assert money.amount_minor == 1234
    assert type(money.amount_minor) is int
    assert money.currency == "USD"
    assert Money.zero("EUR") == Money(0, "EUR")
    assert Money(-5, "USD").amount_minor == -5


@pytest.mark.parametrize("amount", [1.0, 0.5, True, False, Decimal("1"), Decimal("1.5"), "100", None])
def test_MON_1_non_int_amount_refused_with_type_error(amount):
    with pytest.raises(TypeError):
        Money(amount, "USD")


@pytest.mark.parametrize("currency", ["XXX", "usd", "US", "", "DOLLARS", None, 840])
def test_MON_1_unknown_currency_refused_with_fields(currency):
    with pytest.raises(UnknownCurrency) as excinfo:
        Money(100, currency)
    assert excinfo.value.code == "unknown_currency"
    assert "currency" in excinfo.value.fields
    assert isinstance(excinfo.value, ApplicationError)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
    ],
)
def test_MON_1_currency_exponent(currency, exponent):
    assert currency_exponent(currency) == exponent


def test_MON_1_currency_exponent_unknown_refused():
    with pytest.raises(UnknownCurrency):
        currency_exponent("ABC")


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("12", "USD", 1200),
        ("12.340", "USD", 1234),  # trailing zeros are not extra precision
        ("-0.05", "USD", -5),
        (Decimal("0.01"), "EUR", 1),
        (7, "USD", 700),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("0.001", "KWD", 1),
    ],
)
def test_MON_1_from_decimal_parses_major_units(value, currency, minor):
    money = Money.from_decimal(value, currency)
    assert money == Money(minor, currency)
    assert type(money.amount_minor) is int


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("12.345", "USD"),
        ("0.001", "EUR"),
        ("1.5", "JPY"),
        ("0.0001", "KWD"),
        (Decimal("-0.005"), "USD"),
    ],
)
def test_MON_1_from_decimal_refuses_more_decimals_than_the_currency_has(value, currency):
    with pytest.raises(ApplicationError) as excinfo:
        Money.from_decimal(value, currency)
    assert excinfo.value.code == "invalid_amount"


@pytest.mark.parametrize("value", ["abc", "", "NaN", "Infinity", "-inf", "1,00", True])
def test_MON_1_from_decimal_refuses_non_amounts(value):
    with pytest.raises(ApplicationError) as excinfo:
        Money.from_decimal(value, "USD")
    assert excinfo.value.code == "invalid_amount"


def test_MON_1_from_decimal_unknown_currency_refused():
    with pytest.raises(UnknownCurrency):
        Money.from_decimal("1.00", "ZZZ")


def test_MON_1_from_decimal_refuses_float():
    with pytest.raises((TypeError, ApplicationError)):
        Money.from_decimal(0.1, "USD")


def test_MON_1_from_decimal_never_silently_rounds_large_amounts():
    text = "123456789012345678901234567.89"  # 29 significant digits
    try:
        money = Money.from_decimal(text, "USD")
    except ApplicationError:
        return  # refusing is acceptable
    assert money.amount_minor == 12345678901234567890123456789  # currently ...790


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        ("12.34", "USD", "12.34"),
        ("-0.05", "USD", "-0.05"),
        ("1500", "JPY", "1500"),
        ("1.234", "KWD", "1.234"),
    ],
)
def test_MON_1_to_decimal_round_trips(minor, currency, text):
    money = Money.from_decimal(minor, currency)
    assert money.to_decimal() == Decimal(text)
    assert Money.from_decimal(money.to_decimal(), currency) == money


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["USD", "JPY", "KWD", "CLF"]))
def test_MON_1_decimal_round_trip_property(amount, currency):
    money = Money(amount, currency)
    assert Money.from_decimal(money.to_decimal(), currency) == money
    assert Money.from_decimal(str(money.to_decimal()), currency) == money


def test_MON_1_arithmetic_same_currency():
    a, b = Money(150, "USD"), Money(75, "USD")
    assert a + b == Money(225, "USD")
    assert a - b == Money(75, "USD")
    assert -a == Money(-150, "USD")
    assert a * 3 == Money(450, "USD")
    assert 3 * a == Money(450, "USD")
    assert b < a and b <= a and a > b and a >= b and a >= Money(150, "USD")
    assert not Money.zero("USD")
    assert Money(1, "USD")
    assert money_sum([a, b, Money(-25, "USD")], "USD") == Money(200, "USD")
    assert money_sum([], "JPY") == Money(0, "JPY")


@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_MON_1_arithmetic_refuses_mixing_currencies(op):
    with pytest.raises(CurrencyMismatch) as excinfo:
        op(Money(100, "USD"), Money(100, "EUR"))
    assert excinfo.value.code == "currency_mismatch"


def test_MON_1_money_sum_refuses_other_currency():
    with pytest.raises(CurrencyMismatch):
        money_sum([Money(1, "USD"), Money(1, "EUR")], "USD")


def test_MON_1_equal_amounts_of_different_currencies_are_not_equal():
    assert Money(100, "USD") != Money(100, "EUR")


@pytest.mark.parametrize("other", [1, 1.0, Decimal("1")])
def test_MON_1_arithmetic_refuses_non_money(other):
    with pytest.raises(TypeError):
        Money(100, "USD") + other
    with pytest.raises(TypeError):
        Money(100, "USD") - other


@pytest.mark.parametrize("quantity", [1.5, 2.0, True, Decimal("2")])
def test_MON_1_multiplication_by_non_int_refused(quantity):
    with pytest.raises(TypeError):
        Money(100, "USD") * quantity


def test_MON_1_money_is_immutable():
    money = Money(1, "USD")
    with pytest.raises(AttributeError):
        money.amount_minor = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (0, "USD", "0.00"),
        (5, "USD", "0.05"),
        (100, "USD", "1.00"),
        (1234567, "USD", "12,345.67"),
        (-1234567, "USD", "-12,345.67"),
        (-5, "USD", "-0.05"),
        (-99, "USD", "-0.99"),
        (123456789, "EUR", "1,234,567.89"),
        (0, "JPY", "0"),
        (1234567, "JPY", "1,234,567"),
        (-1500, "JPY", "-1,500"),
        (1234, "KWD", "1.234"),
        (5, "KWD", "0.005"),
        (-1001, "KWD", "-1.001"),
    ],
)
def test_MON_1_format_minor(minor, currency, text):
    assert format_minor(minor, currency) == text


def test_MON_1_str_shows_amount_and_code():
    assert str(Money(1234567, "USD")) == "12,345.67 USD"
    assert str(Money(-1500, "JPY")) == "-1,500 JPY"


# --------------------------------------------------------------------------------------------- MON-2


@pytest.mark.parametrize(
    ("amount", "rate_bp", "tax"),
    [
        (1000, 1000, 100),  # 10 % of 10.00 = 1.00 exactly
        (5, 1000, 1),  # 0.5 → 1 (half-up)
        (15, 1000, 2),  # 1.5 → 2
        (25, 1000, 3),  # 2.5 → 3 (not banker's 2)
        (4, 1000, 0),  # 0.4 → 0
        (14, 1000, 1),  # 1.4 → 1
        (200, 825, 17),  # 16.5 → 17
        (199, 825, 16),  # 16.4175 → 16
        (100, 50, 1),  # 0.5 → 1
        (99, 50, 0),  # 0.495 → 0
        (1, 5000, 1),  # 0.5 → 1
        (1, 4999, 0),  # 0.4999 → 0
        (3, 5000, 2),  # 1.5 → 2
        (12345, 10000, 12345),
        (12345, 0, 0),
        (0, 1000, 0),
    ],
)
def test_MON_2_tax_rounds_half_up_per_line(amount, rate_bp, tax):
    assert tax_minor(amount, _pct(rate_bp)) == tax
    assert type(tax_minor(amount, _pct(rate_bp))) is int


@pytest.mark.parametrize(
    ("amount", "rate", "tax"),
    [
        (24995, "4.7125", 1178),  # 1,177.889375 → 1,178 (the worked example's license)
        (8642, "4.7125", 407),  # 407.25425 → 407
        (24995, "0.35", 87),  # 87.4825 → 87
        (10000, "8.875", 888),  # 887.5 → 888 (half-up)
        (20000, "8.875", 1775),  # exactly 1,775
        (1, "50.0001", 1),  # 0.500001 → 1
        (1, "49.9999", 0),  # 0.499999 → 0
        (2, "0.0001", 0),
        (5000, "0.0001", 0),  # 0.5 → ... 5000 × 0.000001 = 0.005 → 0
        (500000, "0.0001", 1),  # 0.5 → 1
    ],
)
def test_MON_2_rates_with_four_decimals_round_half_up_per_line(amount, rate, tax):
    assert tax_minor(amount, parse_rate_percent(rate)) == tax
    assert tax_minor(-amount, parse_rate_percent(rate)) == -tax


@pytest.mark.parametrize(
    ("amount", "rate_bp"), [(5, 1000), (15, 1000), (25, 1000), (4, 1000), (200, 825), (99, 50), (1, 5000), (3, 5000)]
)
def test_MON_2_negative_amounts_mirror(amount, rate_bp):
    assert tax_minor(-amount, _pct(rate_bp)) == -tax_minor(amount, _pct(rate_bp))


def test_MON_2_negative_half_rounds_away_from_zero():
    assert tax_minor(-5, _pct(1000)) == -1
    assert tax_minor(-25, _pct(1000)) == -3
    assert tax_minor(-4, _pct(1000)) == 0


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("8.875", "8.8750"),
        ("4.7125", "4.7125"),
        ("0", "0.0000"),
        ("100", "100.0000"),
        ("8.25", "8.2500"),
        ("7", "7.0000"),
    ],
)
def test_MON_2_rates_with_up_to_four_decimals_parse_exactly(text, rate):
    parsed = parse_rate_percent(text)
    assert parsed == Decimal(rate) and str(parsed) == rate
    assert parse_rate_percent(Decimal(text)) == parsed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("8.87501", "at most 4 decimal places"),  # five decimals
        ("4.71251", "at most 4 decimal places"),
        ("0.00001", "at most 4 decimal places"),
        ("100.0001", "between 0 and 100"),
        ("-1", "between 0 and 100"),
        ("1e400", "between 0 and 100"),
        (8.875, "percentage in a string"),  # a float is never a rate (MON-1)
        (True, "percentage in a string"),
        (None, "percentage in a string"),
        ("NaN", "percentage in a string"),
        ("Infinity", "percentage in a string"),
        ("8,875", "percentage in a string"),
        ("", "percentage in a string"),
    ],
)
def test_MON_2_rates_refused_with_a_clear_message(value, message):
    with pytest.raises(ApplicationError) as excinfo:
        parse_rate_percent(value)
    assert excinfo.value.code == "invalid_tax_rate"
    assert message in excinfo.value.fields["rate_percent"][0]


def test_MON_2_tax_refuses_a_rate_that_is_not_an_exact_percentage():
    with pytest.raises(TypeError):
        tax_minor(1000, 825)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError):
        tax_minor(1000, Decimal("8.87501"))
    with pytest.raises(ApplicationError):
        tax_minor(1000, Decimal("101"))


def test_MON_2_basis_points_convert_both_ways_exactly():
    assert rate_from_bp(825) == Decimal("8.25")
    assert rate_bp_or_none(Decimal("8.25")) == 825
    assert rate_bp_or_none(Decimal("8.875")) is None
    assert rate_millionths(Decimal("8.875")) == 88_750
    assert rate_millionths(Decimal("100")) == RATE_SCALE
    for bad in (10001, -1, 8.25, "825", True):
        with pytest.raises(ApplicationError):
            rate_from_bp(bad)


@pytest.mark.parametrize(
    ("rate", "text"), [("8.8750", "8.875"), ("100.0000", "100"), ("0.0000", "0"), ("4.7125", "4.7125"), ("5", "5")]
)
def test_MON_2_rates_print_exactly(rate, text):
    assert format_rate(Decimal(rate)) == text


@pytest.mark.parametrize("amount", [10.0, True, Decimal("10")])
def test_MON_2_tax_refuses_non_int_amount(amount):
    with pytest.raises(TypeError):
        tax_minor(amount, _pct(1000))


def _half_up(value: Fraction) -> int:
    """Round half away from zero, exactly."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    floor = magnitude.numerator // magnitude.denominator
    return sign * (floor + 1 if magnitude - floor >= Fraction(1, 2) else floor)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=0, max_value=RATE_SCALE))
def test_MON_2_tax_equals_exact_rational_rounded_half_up(amount, millionths):
    rate = Decimal(millionths).scaleb(-4)  # a percentage with up to 4 decimals
    exact = Fraction(amount) * Fraction(rate) / 100
    tax = tax_minor(amount, rate)
    assert type(tax) is int
    assert tax == _half_up(exact)
    assert abs(Fraction(tax) - exact) <= Fraction(1, 2)
    assert tax_minor(-amount, rate) == -tax


# MON-2: unit prices with up to 12 decimals of the minor unit


@pytest.mark.parametrize(
    ("quantity", "unit", "amount"),
    [
        (98_765, "0.0875", 8642),  # 8,641.9375 → 8,642 cents: the worked example
        (1, "1.23", 1),  # 0.0123 USD a unit
        (100, "1.23", 123),
        (50, "1.23", 62),  # 61.5 → 62 (half-up)
        (3, "0.000000000001", 0),
        (500_000_000_000, "0.000000000001", 1),  # 0.5 → 1
        (7, "25", 175),
        (0, "0.0875", 0),
    ],
)
def test_MON_2_line_amount_is_quantity_times_unit_price_rounded_once(quantity, unit, amount):
    assert line_amount_minor(quantity, parse_unit_price(unit)) == amount


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**16))
def test_MON_2_line_amount_equals_exact_rational_rounded_half_up(quantity, pico):
    unit = Decimal(pico).scaleb(-12)
    exact = Fraction(quantity) * Fraction(unit)
    assert line_amount_minor(quantity, unit) == _half_up(exact)
    assert Fraction(pico, UNIT_PRICE_SCALE) == Fraction(unit)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.0000000000001", "at most 12 decimal places"),
        ("-0.5", "cannot be negative"),
        ("1e30", "too large"),
        (0.0875, "decimal string"),
        ("abc", "decimal string"),
        (None, "decimal string"),
    ],
)
def test_MON_2_unit_prices_refused_with_a_clear_message(value, message):
    with pytest.raises(ApplicationError) as excinfo:
        parse_unit_price(value)
    assert excinfo.value.code == "invalid_unit_price"
    assert message in excinfo.value.fields["unit_price_decimal"][0]


@pytest.mark.parametrize(
    ("unit", "currency", "text"),
    [
        ("0.0875", "USD", "0.000875"),
        ("1.23", "USD", "0.0123"),
        ("10", "USD", "0.10"),
        ("123456", "USD", "1,234.56"),
        ("5", "JPY", "5"),
        ("0.5", "JPY", "0.5"),
        ("0.000000000001", "USD", "0.00000000000001"),
    ],
)
def test_MON_2_unit_prices_print_with_the_decimals_they_have(unit, currency, text):
    assert format_unit_price(Decimal(unit), currency) == text
    assert unit_minor_or_none(Decimal(unit)) == (int(Decimal(unit)) if Decimal(unit) % 1 == 0 else None)
    assert decimal_text(parse_unit_price(unit)) == unit


# --------------------------------------------------------------------------------------------- CYC-4


@pytest.mark.parametrize(
    ("amount", "parts", "expected"),
    [
        (1000, 3, [333, 333, 334]),
        (1000, 1, [1000]),
        (1000, 2, [500, 500]),
        (1001, 2, [500, 501]),
        (2, 3, [0, 0, 2]),
        (0, 4, [0, 0, 0, 0]),
        (-1000, 3, [-333, -333, -334]),
    ],
)
def test_CYC_4_split_evenly_examples(amount, parts, expected):
    assert split_evenly(amount, parts) == expected


@pytest.mark.parametrize("parts", [0, -1])
def test_CYC_4_split_evenly_refuses_fewer_than_one_part(parts):
    with pytest.raises(ValueError):
        split_evenly(1000, parts)


def test_CYC_4_split_evenly_refuses_non_int_amount():
    with pytest.raises(TypeError):
        split_evenly(10.0, 2)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=1, max_value=10))
def test_CYC_4_split_evenly_parts_sum_exactly_and_last_takes_remainder(amount, parts):
    installments = split_evenly(amount, parts)
    assert len(installments) == parts
    assert sum(installments) == amount
    assert all(type(part) is int for part in installments)
    assert len(set(installments[:-1])) <= 1  # all but the last are equal
    share = installments[0]
    assert installments[-1] == amount - share * (parts - 1)
    # The remainder is less than one share per extra part, and on the same side as the amount.
    extra = installments[-1] - share
    assert 0 <= abs(extra) < parts
    if amount >= 0:
        assert all(part >= 0 for part in installments) and installments[-1] >= share
    else:
        assert all(part <= 0 for part in installments) and installments[-1] <= share
