"""Margin per client: what each client was billed in a month, beside what the platform billed the agency for that
client (its license fee and its share of the usage), and the difference.

Months are billing months, as on the Billing Overview: the client invoices billed in the month (period start in
it) beside the agency invoice billed in the same month (in arrears for the cycle before). Both carry the usage of
the same closed cycle, so usage is compared like for like; licenses are the client's month in advance beside the
agency's fee for the cycle just closed.

The platform's invoice is split by client exactly, to the cent:
- its license line over the clients active in its cycle (the clients it counted, CYC-2 a), the remainder of the
  division going one minor unit each to the first clients by id;
- each usage line (Products, Overage) over the accounts that used that product in the cycle, in proportion to
  their quantity (largest remainder, ties to the lower id), the agency's own use staying with the agency;
- the package-minimum top-up, the plan's taxes and fees and anything not matched stay "not per client".
So the clients' platform costs plus "not per client" are the agency invoice's total, and each client's billed
amounts are its invoice's total: a test adds them up.

Margin = billed without taxes (taxes are collected for the tax authority, not revenue) − platform cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db.models import Q

from billing.models import InvoiceLine
from billing.overview import agency_invoice_for_month, month_invoices
from billing.selectors import usage_by_account
from clients.models import Client
from core.calendar import Period, add_months
from core.categories import BillingCategory
from tenants.models import Agency

USAGE_CATEGORIES = (BillingCategory.PRODUCTS, BillingCategory.OVERAGE)


def split_exactly(amount_minor: int, weights: list[tuple[int | None, int]]) -> dict[int | None, int]:
    """`amount_minor` over keys in proportion to their weights, summing exactly to it (largest remainder; ties
    to the lower key, None last)."""
    total = sum(w for _, w in weights if w > 0)
    if total <= 0 or amount_minor == 0:
        return {}
    shares, remainders = {}, []
    for key, weight in weights:
        if weight <= 0:
            continue
        share, remainder = divmod(amount_minor * weight, total)
        shares[key] = share
        remainders.append((-remainder, key is None, key or 0, key))
    left = amount_minor - sum(shares.values())
    for *_, key in sorted(remainders)[:left]:
        shares[key] += 1
    return shares


@dataclass
class ClientMargin:
    client_id: int
    public_id: str
    name: str
    month: date
    billed_by_category: dict[str, int] = field(default_factory=dict)  # without taxes & fees
    billed_taxes_minor: int = 0
    invoice_number: str = ""
    license_fee_minor: int = 0
    usage_minor: int = 0

    @property
    def billed_minor(self) -> int:
        return sum(self.billed_by_category.values())

    @property
    def billed_total_minor(self) -> int:
        return self.billed_minor + self.billed_taxes_minor

    @property
    def platform_minor(self) -> int:
        return self.license_fee_minor + self.usage_minor

    @property
    def margin_minor(self) -> int:
        return self.billed_minor - self.platform_minor


@dataclass
class MonthMargins:
    month: date
    currency: str
    platform_currency: str
    clients: dict[int, ClientMargin]
    agency_invoice_number: str = ""
    agency_invoice_total_minor: int = 0
    not_per_client_minor: int = 0  # package minimum, the agency's own usage, platform taxes and fees

    @property
    def comparable(self) -> bool:
        """Margins mean something only when both invoices are in the same currency."""
        return not self.agency_invoice_number or self.currency == self.platform_currency


def _active_during(period: Period) -> list[int]:
    return list(
        Client.objects.filter(activated_on__lt=period.end)
        .filter(Q(deactivated_on__isnull=True) | Q(deactivated_on__gt=period.start))
        .order_by("id")
        .values_list("id", flat=True)
    )


def _usage_line_products(agency: Agency) -> dict[tuple[str, str], str]:
    """(category, line description) → product code, as `billing.drafting.usage_lines` names the lines."""
    names = {}
    if agency.plan is not None:
        for product in agency.plan.products.all():
            names[(BillingCategory.PRODUCTS, product.name)] = product.code
            names[(BillingCategory.OVERAGE, f"{product.name} — overage")] = product.code
    return names


def month_margins(*, agency: Agency, month: date, client_ids: list[int] | None = None) -> MonthMargins:
    """Every client's margin in a billing month (or only `client_ids`' — the split is the same: it is always
    computed over all accounts). Runs in the agency's schema; a handful of queries whatever the size."""
    clients: dict[int, ClientMargin] = {}

    def margin_of(client_id: int) -> ClientMargin:
        if client_id not in clients:
            clients[client_id] = ClientMargin(client_id, "", "", month)
        return clients[client_id]

    invoices = month_invoices(month)
    if client_ids is not None:
        invoices = invoices.filter(client_id__in=client_ids)
    numbers = dict(invoices.values_list("id", "number"))
    owners = dict(invoices.values_list("id", "client_id"))
    for invoice_id, category, amount in InvoiceLine.objects.filter(invoice_id__in=list(numbers)).values_list(
        "invoice_id", "category", "amount_minor"
    ):
        margin = margin_of(owners[invoice_id])
        margin.invoice_number = numbers[invoice_id]
        if category == BillingCategory.TAXES_FEES:
            margin.billed_taxes_minor += amount
        else:
            margin.billed_by_category[category] = margin.billed_by_category.get(category, 0) + amount
    result = MonthMargins(
        month=month,
        currency=agency.currency,
        platform_currency=agency.plan.currency if agency.plan else agency.currency,
        clients=clients,
    )
    agency_invoice = agency_invoice_for_month(agency_id=agency.pk, month=month)
    if agency_invoice is not None:
        result.agency_invoice_number = agency_invoice.number
        result.agency_invoice_total_minor = agency_invoice.total_minor
        period = Period(agency_invoice.period_start, agency_invoice.period_end)
        lines = list(agency_invoice.lines.all())
        products = _usage_line_products(agency)
        usage = (
            usage_by_account(client_ids=None, period=period, time_zone=agency.time_zone)
            if any(line.category in USAGE_CATEGORIES for line in lines)
            else {}
        )
        active = _active_during(period) if any(line.category == BillingCategory.LICENSE for line in lines) else []
        attributed = 0
        wanted = set(client_ids) if client_ids is not None else None
        for line in lines:
            if line.category == BillingCategory.LICENSE:
                shares = split_exactly(line.amount_minor, [(cid, 1) for cid in active])
                target = "license_fee_minor"
            elif line.category in USAGE_CATEGORIES and (line.category, line.description) in products:
                code = products[(line.category, line.description)]
                weights = sorted(
                    ((account, quantities.get(code, 0)) for account, quantities in usage.items()),
                    key=lambda item: (item[0] is None, item[0] or 0),
                )
                shares = split_exactly(line.amount_minor, weights)
                target = "usage_minor"
            else:
                continue
            for account, share in shares.items():
                if account is None:
                    continue  # the agency's own use
                attributed += share
                if wanted is None or account in wanted:
                    margin = margin_of(account)
                    setattr(margin, target, getattr(margin, target) + share)
        result.not_per_client_minor = agency_invoice.total_minor - attributed
    for client in Client.objects.filter(pk__in=list(clients)).only("id", "public_id", "name"):
        clients[client.pk].public_id, clients[client.pk].name = str(client.public_id), client.name
    result.clients = dict(sorted(clients.items(), key=lambda item: (item[1].name, item[0])))
    return result


def client_margins(*, agency: Agency, client: Client, last_month: date, months: int = 12) -> list[ClientMargin]:
    """One client's margin for `months` billing months ending with `last_month`, oldest first (its trend)."""
    result = []
    for offset in range(months - 1, -1, -1):
        month = add_months(last_month, -offset)
        margins = month_margins(agency=agency, month=month, client_ids=[client.pk])
        result.append(
            margins.clients.get(client.pk) or ClientMargin(client.pk, str(client.public_id), client.name, month)
        )
    return result
