"""Reads for billing: who is due, usage in a cycle, balances. Run inside the agency's schema."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import F, Q, QuerySet, Sum

from billing.drafting import ProductPrice
from billing.models import BillingSettings, LedgerEntry, UsageRecord
from clients.models import Client
from core.calendar import Period, invoice_days
from tenants.models import Agency, PartnerPlan


@dataclass(frozen=True, slots=True)
class DueClient:
    client_id: int
    billing_date: date


def period_bounds(period: Period, time_zone: str) -> tuple[datetime, datetime]:
    """A cycle's start and end as instants: midnight of the agency's own calendar days (CYC-5)."""
    zone = ZoneInfo(time_zone)
    return datetime.combine(period.start, time.min, zone), datetime.combine(period.end, time.min, zone)


def plan_prices(plan: PartnerPlan | None) -> dict[str, ProductPrice]:
    if plan is None:
        return {}
    return {p.code: ProductPrice(p.code, p.name, p.unit_price_minor, p.included_quantity,
                                 p.overage_unit_price_minor) for p in plan.products.all()}


def billing_settings() -> BillingSettings:
    settings, _ = BillingSettings.objects.get_or_create(singleton=True)
    return settings


def billable_clients() -> list[dict]:
    """Clients that get invoices of their own: not members billed through a group's primary (PLAN-4)."""
    return list(
        Client.objects.filter(Q(group__isnull=True) | Q(group__primary_id=F("id")))
        .values("id", "billing_day", "autopay_days", "activated_on", "deactivated_on")
    )


def clients_due(*, agency: Agency, today: date) -> list[DueClient]:
    """Clients whose invoice is built today, with their billing date (CYC-1, CYC-4)."""
    due = []
    for row in billable_clients():
        build_day, bill_day = invoice_days(autopay_days=row["autopay_days"],
                                           billing_day=row["billing_day"] or agency.billing_day)
        if build_day != today.day:
            continue
        billing_date = today.replace(day=bill_day)
        if row["activated_on"] > billing_date:
            continue
        if row["deactivated_on"] is not None and row["deactivated_on"] <= billing_date:
            continue
        due.append(DueClient(row["id"], billing_date))
    return due


def usage_by_account(*, client_ids: list[int] | None, period: Period,
                     time_zone: str) -> dict[int | None, dict[str, int]]:
    """Summed usage per account and product in a cycle. client_ids None: every account, agency included."""
    start, end = period_bounds(period, time_zone)
    records = UsageRecord.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    if client_ids is not None:
        records = records.filter(client_id__in=client_ids)
    result: dict[int | None, dict[str, int]] = defaultdict(dict)
    for row in records.values("client_id", "product_code").annotate(quantity=Sum("quantity")).order_by():
        result[row["client_id"]][row["product_code"]] = row["quantity"]
    return result


def pooled_usage(*, period: Period, time_zone: str) -> dict[str, int]:
    """All usage of the agency and its clients in a cycle, per product (for the agency invoice)."""
    start, end = period_bounds(period, time_zone)
    rows = (UsageRecord.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
            .values("product_code").annotate(quantity=Sum("quantity")).order_by())
    return {row["product_code"]: row["quantity"] for row in rows}


def clients_active_during(period: Period) -> int:
    """Clients active at any time in the cycle (license fees, CYC-2 a)."""
    return Client.objects.filter(activated_on__lt=period.end).filter(
        Q(deactivated_on__isnull=True) | Q(deactivated_on__gt=period.start)).count()


def client_balance(client: Client) -> int:
    """MON-4: the balance is the sum of the ledger, nothing stored."""
    return LedgerEntry.objects.filter(client=client).aggregate(total=Sum("amount_minor"))["total"] or 0


def open_charges(entries: QuerySet) -> list[tuple[Any, int]]:
    """(charge entry, amount still open) for every ledger charge not fully paid, in one query."""
    charges = entries.filter(amount_minor__gt=0).annotate(paid=Sum("allocations_received__amount_minor"))
    items = [(charge, charge.amount_minor - (charge.paid or 0)) for charge in charges]
    return [(charge, amount) for charge, amount in items if amount > 0]


def client_open_by_category(client: Client) -> dict[str, int]:
    """Charges not yet paid, per billing category."""
    totals: dict[str, int] = defaultdict(int)
    for charge, open_amount in open_charges(LedgerEntry.objects.filter(client=client)):
        totals[charge.category] += open_amount
    return dict(totals)
