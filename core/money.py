"""Money as integer minor units plus an ISO-4217 currency (MON-1), and exact tax arithmetic (MON-2).

No float ever enters: amounts are `int`; rates are integer basis points; rounding is half-up
(half away from zero for negative amounts) and happens once, per line.
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

MAX_RATE_BP = 10_000  # 100 %
# The largest amount accepted as input, in minor units: what every JSON client represents exactly (the API's
# integer bound) and far inside PostgreSQL's bigint, so sums of many such amounts still fit.
MAX_AMOUNT_MINOR = 2**53 - 1


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


def validate_rate_bp(rate_bp: object) -> int:
    if type(rate_bp) is not int or not 0 <= rate_bp <= MAX_RATE_BP:
        raise ApplicationError(
            "A tax rate must be between 0 and 100 % (0–10000 basis points).",
            code="invalid_tax_rate",
            fields={"rate_bp": ["Must be between 0 and 10000."]},
        )
    return rate_bp


def tax_minor(amount_minor: int, rate_bp: int) -> int:
    """Tax on one line, rounded half-up to the minor unit (MON-2); integer arithmetic only."""
    _check_int(amount_minor, "amount_minor")
    validate_rate_bp(rate_bp)
    product = abs(amount_minor) * rate_bp
    quotient, remainder = divmod(product, MAX_RATE_BP)
    if remainder * 2 >= MAX_RATE_BP:
        quotient += 1
    return quotient if amount_minor >= 0 else -quotient


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
    "CurrencyMismatch",
    "Money",
    "UnknownCurrency",
    "currency_exponent",
    "format_minor",
    "money_sum",
    "split_evenly",
    "tax_minor",
    "validate_rate_bp",
]
