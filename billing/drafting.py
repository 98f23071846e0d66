"""Pure invoice arithmetic: lines, taxes and totals from plain inputs (no ORM, no clock).

Both the billing run and the preview (Upcoming Statement) draft invoices here, so what is
previewed is exactly what gets built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from core.calendar import Period, add_months, full_cycle, prorated_minor
from core.categories import BillingCategory
from core.money import format_minor, format_rate, format_unit_price, line_amount_minor, tax_minor


@dataclass(frozen=True, slots=True)
class DraftLine:
    category: str
    description: str
    quantity: int
    unit_amount: Decimal  # minor units, possibly a fraction of one (MON-2); amount_minor is rounded once
    amount_minor: int
    taxable: bool = False


@dataclass(frozen=True, slots=True)
class ProductPrice:
    code: str
    name: str
    unit_price: Decimal  # minor units, up to 12 decimals (MON-2)
    included_quantity: int
    overage_unit_price: Decimal


@dataclass(frozen=True, slots=True)
class TaxSpec:
    name: str
    rate_percent: Decimal  # up to 4 decimals (MON-2)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    description: str
    amount_minor: int
    taxable: bool = True
    one_time: bool = False
    key: object = None


@dataclass(frozen=True)
class InvoiceDraft:
    currency: str
    period: Period
    lines: tuple[DraftLine, ...]
    one_time_service_keys: tuple[object, ...] = field(default=())

    @property
    def subtotal_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if line.category != BillingCategory.TAXES_FEES)

    @property
    def tax_minor(self) -> int:
        """Taxes & fees."""
        return sum(line.amount_minor for line in self.lines if line.category == BillingCategory.TAXES_FEES)

    @property
    def total_minor(self) -> int:
        # MON-2: the total is exactly the sum of the lines.
        return sum(line.amount_minor for line in self.lines)

    def by_category(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for line in self.lines:
            totals[line.category] = totals.get(line.category, 0) + line.amount_minor
        return totals


def _proration_note(period: Period) -> str:
    """The note " (15 of 31 days)" for a period shorter than its cycle (CYC-1 bridging), else nothing."""
    full = full_cycle(period.start)
    if period.end >= full.end:
        return ""
    return f" ({(period.end - period.start).days} of {(full.end - full.start).days} days)"


def usage_lines(
    prices: Mapping[str, ProductPrice],
    usage: Mapping[str, int],
    *,
    already: Mapping[str, int] | None = None,
    cycle: Period | None = None,
) -> list[DraftLine]:
    """Products and overage for one account's usage in a cycle (PLAN-3).

    The first `included_quantity` units are billed at the unit price (Products); each unit beyond at the
    overage price (Overage). Usage of a product missing from the price list is refused at recording time.
    Usage of an earlier `cycle`, recorded after that cycle was invoiced, continues its tiers from the quantity
    `already` billed for it, and its lines name the cycle.
    """
    lines: list[DraftLine] = []
    suffix = f" — {cycle.label()}" if cycle is not None else ""
    for code in sorted(usage):
        quantity = usage[code]
        if quantity <= 0:
            continue
        price = prices[code]
        included = min(quantity, max(0, price.included_quantity - (already or {}).get(code, 0)))
        over = quantity - included
        if included:
            lines.append(
                DraftLine(
                    BillingCategory.PRODUCTS,
                    f"{price.name}{suffix}",
                    included,
                    price.unit_price,
                    line_amount_minor(included, price.unit_price),
                    taxable=True,
                )
            )
        if over:
            lines.append(
                DraftLine(
                    BillingCategory.OVERAGE,
                    f"{price.name} — overage{suffix}",
                    over,
                    price.overage_unit_price,
                    line_amount_minor(over, price.overage_unit_price),
                    taxable=True,
                )
            )
    return lines


def usage_by_cycle(
    items: Iterable[tuple[str, int, date]], *, window: Period, cycles: Sequence[Period]
) -> tuple[dict[str, int], dict[Period, dict[str, int]]]:
    """(usage of the invoice's own closed cycle `window`, usage of earlier cycles by cycle) from (product, quantity,
    day) items. An earlier day belongs to the invoiced period that contains it, else to the month before the first
    of them, else to itself (a day before any cycle)."""
    current: dict[str, int] = {}
    late: dict[Period, dict[str, int]] = {}
    ordered = sorted(cycles, key=lambda p: p.start)
    for code, quantity, day in items:
        if day >= window.start:
            current[code] = current.get(code, 0) + quantity
            continue
        cycle = next((p for p in ordered if day in p), None)
        if cycle is None and ordered and add_months(ordered[0].start, -1) <= day < ordered[0].start:
            cycle = Period(add_months(ordered[0].start, -1), ordered[0].start)
        if cycle is None:
            cycle = Period(day, day + timedelta(days=1))
        bucket = late.setdefault(cycle, {})
        bucket[code] = bucket.get(code, 0) + quantity
    return current, late


def tax_lines(lines: Sequence[DraftLine], taxes: Iterable[TaxSpec]) -> list[DraftLine]:
    """One line per tax: the sum of the tax on each taxable line, each rounded half-up (MON-2)."""
    taxable = [line for line in lines if line.taxable]
    result = []
    for tax in taxes:
        if not taxable:
            break
        amount = sum(tax_minor(line.amount_minor, tax.rate_percent) for line in taxable)
        result.append(
            DraftLine(
                BillingCategory.TAXES_FEES,
                f"{tax.name} ({format_rate(tax.rate_percent)} %)",
                1,
                Decimal(amount),
                amount,
                taxable=False,
            )
        )
    return result


def draft_client_invoice(
    *,
    currency: str,
    period: Period,
    license_price_minor: int,
    services: Sequence[ServiceSpec],
    usage: Sequence[DraftLine],
    taxes: Sequence[TaxSpec],
) -> InvoiceDraft:
    """The client invoice of CYC-2 (b): license and agency services for `period` in advance, the closed
    cycle's usage, then the client's taxes. A period shorter than a cycle (bridging a billing-day change, CYC-1)
    bills the license and recurring services prorated by days; one-time services in full."""
    lines: list[DraftLine] = []
    share = _proration_note(period)
    if license_price_minor:
        amount = prorated_minor(license_price_minor, period)
        lines.append(
            DraftLine(
                BillingCategory.LICENSE,
                f"License {period.label()}{share}",
                1,
                Decimal(amount),
                amount,
                taxable=True,
            )
        )
    for service in services:
        amount = service.amount_minor if service.one_time else prorated_minor(service.amount_minor, period)
        lines.append(
            DraftLine(
                BillingCategory.AGENCY_SERVICES,
                service.description if service.one_time else f"{service.description}{share}",
                1,
                Decimal(amount),
                amount,
                taxable=service.taxable,
            )
        )
    lines.extend(usage)
    lines.extend(tax_lines(lines, taxes))
    one_time = tuple(s.key for s in services if s.one_time)
    return InvoiceDraft(currency, period, tuple(lines), one_time)


def draft_agency_invoice(
    *,
    currency: str,
    period: Period,
    active_clients: int,
    license_fee_minor: int,
    package_minimum_minor: int,
    usage: Sequence[DraftLine],
    taxes: Sequence[TaxSpec],
    fees: Sequence[tuple[str, int]],
) -> InvoiceDraft:
    """The agency invoice of CYC-2 (a), in arrears: license fees of the clients active in the cycle, the
    cycle's usage, a top-up to the package minimum when they fall short, the plan's taxes, then fees. A period
    shorter than a cycle (bridging a billing-day change, CYC-1) has its monthly amounts prorated by days."""
    lines: list[DraftLine] = []
    share = _proration_note(period)
    license_fee_minor = prorated_minor(license_fee_minor, period)
    package_minimum_minor = prorated_minor(package_minimum_minor, period)
    fees = [(f"{name}{share}", prorated_minor(amount, period)) for name, amount in fees]
    if active_clients and license_fee_minor:
        lines.append(
            DraftLine(
                BillingCategory.LICENSE,
                f"Client licenses {period.label()}{share}",
                active_clients,
                Decimal(license_fee_minor),
                active_clients * license_fee_minor,
                taxable=True,
            )
        )
    lines.extend(usage)
    charged = sum(line.amount_minor for line in lines)
    if charged < package_minimum_minor:
        top_up = package_minimum_minor - charged
        lines.append(
            DraftLine(
                BillingCategory.OTHER,
                f"Partner package minimum ({format_minor(package_minimum_minor, currency)})",
                1,
                Decimal(top_up),
                top_up,
                taxable=True,
            )
        )
    lines.extend(tax_lines(lines, taxes))
    for name, amount in fees:
        lines.append(DraftLine(BillingCategory.TAXES_FEES, name, 1, Decimal(amount), amount, taxable=False))
    return InvoiceDraft(currency, period, tuple(lines))


def allocate[K](amount_minor: int, open_items: Sequence[tuple[K, int]]) -> list[tuple[K, int]]:
    """Spread a payment over open items already in priority order (COL-6). Items: (key, open amount).
    Returns (key, amount applied) for each item touched; what is left over stays unapplied."""
    remaining = amount_minor
    applied: list[tuple[K, int]] = []
    for key, open_amount in open_items:
        if remaining <= 0:
            break
        if open_amount <= 0:
            continue
        take = min(open_amount, remaining)
        applied.append((key, take))
        remaining -= take
    return applied


def notice_line(line: DraftLine, currency: str) -> dict[str, str]:
    """A line as notices print it: description, amount and, for a priced quantity, "98,765 × 0.000875" (MON-2:
    the exact unit price, however many decimals it has)."""
    detail = ""
    if line.category in (BillingCategory.PRODUCTS, BillingCategory.OVERAGE):
        detail = f"{line.quantity:,} × {format_unit_price(line.unit_amount, currency)}"
    return {
        "description": line.description,
        "quantity": str(line.quantity),
        "unit_price": format_unit_price(line.unit_amount, currency),
        "detail": detail,
        "amount": format_minor(line.amount_minor, currency),
    }
