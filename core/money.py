"""Money as integer minor units plus an ISO-4217 currency (MON-1), and exact tax arithmetic (MON-2).

No float ever enters: amounts are `int`. Tax rates are percentages with up to 4 decimals and unit prices are
minor units with up to 12 decimals, both `Decimal` parsed exactly from text and computed on as integers
(millionths of the whole, 10**-12 minor units). Rounding is half-up (half away from zero for negative amounts)
and happens once, per line (MON-2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import MIN_EMIN, Decimal, InvalidOperation, localcontext

from core.errors import ApplicationError

# ISO 4217 active codes and their minor-unit exponent (digits after the decimal point).
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP "
    "GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL "
    "MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN "
    "QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD "
    "TWD TZS UAH USD USN UYU UZS VES VED WST XCD YER ZAR ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}

# The largest amount accepted as input, in minor units: what every JSON client represents exactly (the API's
# integer bound) and far inside PostgreSQL's bigint, so sums of many such amounts still fit.
MAX_AMOUNT_MINOR = 2**53 - 1
# The processor's per-charge limit when the setting `CHARGE_CEILING_MINOR` is not given: Stripe takes at most eight
# digits of minor units (99,999,999: $999,999.99 in USD).
DEFAULT_CHARGE_CEILING_MINOR = 99_999_999


class UnknownCurrency(ApplicationError):
    code = "unknown_currency"


class CurrencyMismatch(ApplicationError):
    code = "currency_mismatch"


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(
            f"Unknown currency {currency!r}: use an ISO-4217 code such as USD or EUR.",
            fields={"currency": [f"Unknown currency {currency!r}."]},
        ) from None


def _check_int(value: object, what: str) -> int:
    # bool is an int subclass and float/Decimal are not amounts: refuse them all.
    if type(value) is not int:
        raise TypeError(f"{what} must be an int of minor units, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True, order=False)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        _check_int(self.amount_minor, "amount_minor")
        currency_exponent(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_decimal(cls, value: Decimal | str | int, currency: str) -> Money:
        """Parse a major-unit amount ("12.34"); more decimals than the currency has is an error."""
        exponent = currency_exponent(currency)
        if isinstance(value, bool):
            raise ApplicationError(f"{value!r} is not an amount.", code="invalid_amount")
        if isinstance(value, float):
            raise TypeError("amounts are parsed from text, Decimal or int, never from float (MON-1)")
        try:
            decimal = Decimal(str(value)) if not isinstance(value, Decimal) else value
        except InvalidOperation:
            raise ApplicationError(f"{value!r} is not an amount.", code="invalid_amount") from None
        if not decimal.is_finite():
            raise ApplicationError(f"{value!r} is not an amount.", code="invalid_amount")
        # Bounded before scaling: "1e999999999" or 5,000 nines would otherwise overflow the decimal context or
        # build an integer no column can hold.
        if decimal.is_zero():
            return cls(0, currency)
        if decimal.adjusted() + exponent > len(str(MAX_AMOUNT_MINOR)):
            raise ApplicationError("The amount is too large.", code="amount_too_large")
        with localcontext() as context:
            # Enough precision that scaling never rounds: the amount is parsed exactly or refused.
            context.prec = max(28, len(decimal.as_tuple().digits) + exponent + 2)
            context.Emin = MIN_EMIN  # "1e-999999999" must stay a fraction, not underflow to 0
            scaled = decimal.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise ApplicationError(
                f"{value} has more than {exponent} decimal places for {currency}.", code="invalid_amount"
            )
        if abs(scaled) > MAX_AMOUNT_MINOR:
            raise ApplicationError("The amount is too large.", code="amount_too_large")
        return cls(int(scaled), currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-currency_exponent(self.currency))

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"Cannot combine {self.currency} with {other.currency}.")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __mul__(self, quantity: int) -> Money:
        return Money(self.amount_minor * _check_int(quantity, "quantity"), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor >= other.amount_minor

    def __bool__(self) -> bool:
        return self.amount_minor != 0

    def __str__(self) -> str:
        return f"{format_minor(self.amount_minor, self.currency)} {self.currency}"


def money_sum(items: Iterable[Money], currency: str) -> Money:
    total = Money.zero(currency)
    for item in items:
        total = total + item
    return total


def format_minor(amount_minor: int, currency: str) -> str:
    """1234567, "USD" → "12,345.67"; JPY has no decimals."""
    _check_int(amount_minor, "amount_minor")
    exponent = currency_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    text = f"{whole:,}"
    if exponent:
        text += "." + str(frac).rjust(exponent, "0")
    return sign + text


# MON-2: a tax rate is a percentage with up to 4 decimals (8.875, 4.7125), so an integer count of millionths of
# the whole; a unit price is minor units with up to 12 decimals (0.0875 cents), like Stripe's unit_amount_decimal.
RATE_DECIMALS = 4
RATE_SCALE = 10**6  # millionths: 1 % = 10,000
MAX_RATE_PERCENT = Decimal(100)
UNIT_PRICE_DECIMALS = 12
UNIT_PRICE_SCALE = 10**12


def _exact_decimal(value: object) -> Decimal | None:
    """Text, Decimal or int as an exact Decimal; None for anything else (floats, bools, junk, NaN, huge)."""
    if isinstance(value, bool) or isinstance(value, float):
        return None
    if isinstance(value, Decimal):
        decimal = value
    elif isinstance(value, int):
        decimal = Decimal(value)
    elif isinstance(value, str) and 0 < len(value.strip()) <= 60:
        try:
            decimal = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return decimal if decimal.is_finite() else None


def _decimals(decimal: Decimal) -> int:
    exponent = decimal.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def parse_rate_percent(value: object, *, field: str = "rate_percent") -> Decimal:
    """A tax rate as a percentage: "8.875" → Decimal("8.8750"). 0–100, at most 4 decimals (MON-2); text,
    Decimal or int only, never a float."""
    decimal = _exact_decimal(value)
    if decimal is None:
        message = 'Give the rate as a percentage in a string, such as "8.875".'
    elif not 0 <= decimal <= MAX_RATE_PERCENT:
        message = "A tax rate must be between 0 and 100 %."
    elif _decimals(decimal) > RATE_DECIMALS:
        message = f"A tax rate has at most {RATE_DECIMALS} decimal places, such as 8.875 or 4.7125."
    else:
        return decimal.quantize(Decimal(1).scaleb(-RATE_DECIMALS))
    raise ApplicationError(message, code="invalid_tax_rate", fields={field: [message]})


def rate_millionths(rate_percent: Decimal) -> int:
    """8.875 % → 88,750 millionths; exact (a rate is at most 4 decimals of a percent)."""
    if not isinstance(rate_percent, Decimal):
        raise TypeError(f"a tax rate is a Decimal percentage, got {type(rate_percent).__name__}")
    scaled = rate_percent.scaleb(RATE_DECIMALS)
    if scaled != scaled.to_integral_value() or not 0 <= scaled <= RATE_SCALE:
        parse_rate_percent(rate_percent)  # raises the rule's error
    return int(scaled)


def rate_from_bp(rate_bp: object, *, field: str = "rate_bp") -> Decimal:
    """Whole basis points (825) → the percentage (8.25): the API's older integer field."""
    if type(rate_bp) is not int or not 0 <= rate_bp <= 10_000:
        raise ApplicationError(
            "A tax rate must be between 0 and 100 % (0–10000 basis points).",
            code="invalid_tax_rate",
            fields={field: ["Must be a whole number between 0 and 10000."]},
        )
    return parse_rate_percent(Decimal(rate_bp).scaleb(-2))


def rate_bp_or_none(rate_percent: Decimal) -> int | None:
    """The rate in whole basis points, or None when it has a finer part (8.875 %)."""
    scaled = rate_percent.scaleb(2)
    return int(scaled) if scaled == scaled.to_integral_value() else None


def decimal_text(value: Decimal) -> str:
    """Decimal("8.8750") → "8.875", Decimal("100.0000") → "100": exact, no trailing zeros, no exponent."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def format_rate(rate_percent: Decimal) -> str:
    """A tax rate as people read it, without the % sign: "8.875"."""
    return decimal_text(rate_percent)


def parse_unit_price(value: object, *, field: str = "unit_price_decimal") -> Decimal:
    """A unit price in minor units with up to 12 decimals: "0.0875" (cents) is 0.000875 USD (MON-2)."""
    decimal = _exact_decimal(value)
    if decimal is None:
        message = 'Give the unit price in minor units as a decimal string, such as "0.0875".'
    elif decimal < 0:
        message = "A unit price cannot be negative."
    elif decimal > MAX_AMOUNT_MINOR:
        message = "The unit price is too large."
    elif _decimals(decimal) > UNIT_PRICE_DECIMALS:
        message = f"A unit price has at most {UNIT_PRICE_DECIMALS} decimal places of the minor unit."
    else:
        return decimal.quantize(Decimal(1).scaleb(-UNIT_PRICE_DECIMALS))
    raise ApplicationError(message, code="invalid_unit_price", fields={field: [message]})


def unit_price_from_minor(value: object, *, field: str = "unit_price_minor") -> Decimal:
    """A whole number of minor units (the API's integer field) as a unit price."""
    if type(value) is not int or not 0 <= value <= MAX_AMOUNT_MINOR:
        raise ApplicationError(
            "Enter a whole, non-negative number of minor units (e.g. cents).",
            code="invalid_unit_price",
            fields={field: ["Enter a whole, non-negative number of minor units (e.g. cents)."]},
        )
    return parse_unit_price(value, field=field)


def unit_minor_or_none(unit_price: Decimal) -> int | None:
    """The unit price as whole minor units, or None when it has a fraction of the minor unit."""
    return int(unit_price) if unit_price == unit_price.to_integral_value() else None


def format_unit_price(unit_price: Decimal, currency: str) -> str:
    """A unit price in major units with as many decimals as it needs, at least the currency's:
    Decimal("0.0875") cents → "0.000875"; Decimal("10") → "0.10"; 123456 → "1,234.56"."""
    exponent = currency_exponent(currency)
    major = unit_price.scaleb(-exponent)
    places = max(exponent, _decimals(major))
    text = f"{major:,.{places}f}"
    return text


def _half_up(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder * 2 >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def tax_minor(amount_minor: int, rate_percent: Decimal) -> int:
    """Tax on one line, rounded half-up to the minor unit (MON-2); integer arithmetic only."""
    _check_int(amount_minor, "amount_minor")
    return _half_up(amount_minor * rate_millionths(rate_percent), RATE_SCALE)


def line_amount_minor(quantity: int, unit_price: Decimal) -> int:
    """quantity × unit price, rounded half-up to the minor unit once (MON-2): 98,765 × 0.0875 = 8,641.9375 → 8,642."""
    _check_int(quantity, "quantity")
    if not isinstance(unit_price, Decimal):
        raise TypeError(f"a unit price is a Decimal of minor units, got {type(unit_price).__name__}")
    scaled = unit_price.scaleb(UNIT_PRICE_DECIMALS)
    if scaled != scaled.to_integral_value():
        parse_unit_price(unit_price)  # raises the rule's error
    return _half_up(quantity * int(scaled), UNIT_PRICE_SCALE)


def charge_ceiling_minor() -> int:
    """The most one charge may carry, in minor units (setting `CHARGE_CEILING_MINOR`, the processor's limit). Every
    computed amount — a line, a tax, an invoice's total, a charge — is bounded by it (MON-1): an invoice no processor
    would collect is never built, and no sum of amounts leaves PostgreSQL's bigint."""
    from django.conf import settings

    return int(getattr(settings, "CHARGE_CEILING_MINOR", DEFAULT_CHARGE_CEILING_MINOR))


class AmountOverLimit(ApplicationError):
    code = "amount_over_limit"


def over_ceiling_message(what: str, amount_minor: int, currency: str, ceiling_minor: int | None = None) -> str:
    """The one wording of an amount over the ceiling, e.g. `The invoice total would be 1,234,567.00 USD, above the
    999,999.99 USD one charge may carry.`"""
    ceiling = charge_ceiling_minor() if ceiling_minor is None else ceiling_minor
    return (
        f"{what} would be {format_minor(amount_minor, currency)} {currency}, above the "
        f"{format_minor(ceiling, currency)} {currency} one charge may carry."
    )


def split_evenly(amount_minor: int, parts: int) -> list[int]:
    """Split into `parts` equal installments; the last takes the remainder (CYC-4)."""
    _check_int(amount_minor, "amount_minor")
    if parts < 1:
        raise ValueError("parts must be at least 1")
    # Truncate toward zero so a credit splits like a charge, mirrored.
    share = abs(amount_minor) // parts * (1 if amount_minor >= 0 else -1)
    installments = [share] * (parts - 1)
    installments.append(amount_minor - share * (parts - 1))
    return installments


__all__ = [
    "CURRENCY_EXPONENTS",
    "AmountOverLimit",
    "charge_ceiling_minor",
    "over_ceiling_message",
    "CurrencyMismatch",
    "Money",
    "UnknownCurrency",
    "currency_exponent",
    "decimal_text",
    "format_minor",
    "format_rate",
    "format_unit_price",
    "line_amount_minor",
    "money_sum",
    "parse_rate_percent",
    "parse_unit_price",
    "rate_bp_or_none",
    "rate_from_bp",
    "rate_millionths",
    "split_evenly",
    "tax_minor",
    "unit_minor_or_none",
    "unit_price_from_minor",
]
