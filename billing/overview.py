"""Reads behind the pages and documents: an invoice's collection status, its lines grouped by billing
category, the agency's Billing Overview and the client's Monthly Service Overview (INV-1..3).

Everything here runs in the current agency's schema and takes the month or day it shows as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from django.db import connection
from django.db.models import (
    CharField,
    Count,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

from billing.models import Charge, ChargeAttempt, Dispute, Invoice
from billing.platform.models import AgencyCharge, AgencyInvoice
from billing.statuses import COLLECTED, OUTSTANDING, SETTLED, STATUS_PRECEDENCE, ChargeStatus
from core.calendar import add_months
from core.categories import DEFAULT_CATEGORY_ORDER, BillingCategory

S = ChargeStatus


def invoice_status(statuses: Iterable[str]) -> str:
    """One status for an invoice from its charges' statuses; Scheduled when it has none yet."""
    present = set(statuses)
    for status in STATUS_PRECEDENCE:
        if status in present:
            return status
    return S.SCHEDULED


def is_settled(statuses: Iterable[str]) -> bool:
    present = set(statuses)
    return bool(present) and present <= SETTLED


@dataclass(frozen=True)
class LineGroup:
    category: str
    label: str
    lines: list
    total_minor: int


def lines_by_category(lines: Iterable, order: Iterable[str] | None = None) -> tuple[list[LineGroup], list]:
    """(groups of non-tax lines in the agency's category order, the Taxes & fees lines)."""
    order = [c for c in (order or DEFAULT_CATEGORY_ORDER) if c != BillingCategory.TAXES_FEES]
    groups: dict[str, list] = {}
    taxes = []
    for line in lines:
        if line.category == BillingCategory.TAXES_FEES:
            taxes.append(line)
        else:
            groups.setdefault(line.category, []).append(line)
    ordered = [c for c in order if c in groups] + [c for c in groups if c not in order]
    return [
        LineGroup(c, BillingCategory(c).label, groups[c], sum(x.amount_minor for x in groups[c])) for c in ordered
    ], taxes


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_invoices(month: date) -> QuerySet[Invoice]:
    """Client invoices billed in a month: their billing date (period start) falls in it."""
    return Invoice.objects.filter(period_start__gte=month, period_start__lt=add_months(month, 1))


def agency_invoice_for_month(*, agency_id: int, month: date) -> AgencyInvoice | None:
    """The agency's own invoice billed in the month (in arrears, for the cycle before)."""
    return (
        AgencyInvoice.objects.filter(agency_id=agency_id, due_on__gte=month, due_on__lt=add_months(month, 1))
        .prefetch_related(
            Prefetch(
                "charges",
                queryset=AgencyCharge.objects.order_by("installment").annotate(attempt_count=Count("attempts")),
            )
        )
        .order_by("due_on")
        .first()
    )


@dataclass
class OverviewSummary:
    count: int = 0
    by_status: dict[str, dict[str, int]] = field(default_factory=dict)
    billed_minor: int = 0
    collected_minor: int = 0
    outstanding_minor: int = 0


def month_charges(*, month: date, clients: QuerySet | None = None) -> QuerySet[Charge]:
    """The Client Charges rows of a month (one per charge: installments are rows of their own), with what
    the table shows, in one query per page."""
    charges = Charge.objects.filter(period_start__gte=month, period_start__lt=add_months(month, 1))
    if clients is not None:
        charges = charges.filter(client__in=clients)
    return (
        charges.select_related("client", "invoice")
        .only(
            "public_id",
            "installment",
            "amount_minor",
            "currency",
            "status",
            "due_on",
            "next_retry_on",
            "paid_on",
            "client__name",
            "client__public_id",
            "invoice__number",
            "invoice__public_id",
        )
        .annotate(attempt_count=attempt_count(), dispute_status=dispute_status())
        .order_by("client__name", "installment", "id")
    )


def attempt_count():
    """Attempts per charge as a correlated subquery: an index lookup per row shown, no GROUP BY over the
    joined tables (which a planner without statistics can turn into a very slow join)."""
    attempts = (
        ChargeAttempt.objects.filter(charge=OuterRef("pk"))
        .order_by()
        .values("charge")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(attempts, output_field=IntegerField()), Value(0))


def dispute_status():
    """The state of a charge's latest dispute (COR-2), or null: a correlated subquery like `attempt_count`, so the
    Billing Overview shows it without one more query per page (docs/performance.md, P3)."""
    latest = Dispute.objects.filter(charge=OuterRef("pk")).order_by("-opened_on", "-id").values("status")[:1]
    return Subquery(latest, output_field=CharField())


def month_summary(charges: QuerySet[Charge]) -> OverviewSummary:
    """Counts and amounts per status of a month's charges: one aggregate query."""
    summary = OverviewSummary()
    rows = charges.order_by().values("status").annotate(n=Count("id"), amount=Sum("amount_minor"))
    for row in rows:
        summary.by_status[row["status"]] = {"count": row["n"], "amount": row["amount"] or 0}
        summary.count += row["n"]
        summary.billed_minor += row["amount"] or 0
        if row["status"] in COLLECTED:
            summary.collected_minor += row["amount"] or 0
        elif row["status"] in OUTSTANDING:
            summary.outstanding_minor += row["amount"] or 0
    return summary


@dataclass(frozen=True)
class MonthTotals:
    month: date
    billed_minor: int
    collected_minor: int
    outstanding_minor: int


def twelve_months(*, last_month: date, clients: QuerySet | None = None) -> list[MonthTotals]:
    """Billed, collected and outstanding per billing month for the 12 months ending with `last_month`, in
    one grouped query. Agency Invoiced amounts are billed but neither collected nor outstanding here.

    It reads the charges alone, grouped by their own copy of the invoice's period start (a few distinct
    dates a month) and status, and adds them up by month here: joining a year of charges to their invoices
    cost 70-110 ms at 5,000 clients. The (period_start, status) index covers the amount, so the year is read
    from the index alone (docs/performance.md, P3).
    """
    first = add_months(last_month, -11)
    charges = Charge.objects.filter(period_start__gte=first, period_start__lt=add_months(last_month, 1))
    if clients is not None:
        charges = charges.filter(client__in=clients)
    grouped = charges.values_list("period_start", "status").order_by().annotate(amount=Sum("amount_minor"))
    with connection.cursor() as cursor:
        # Planned as for data in memory, for this query only: with PostgreSQL's default random-page cost (a
        # spinning disk) the planner reads the year from the table, at 2-3x the time of the covering index.
        # Not a connection-wide setting: catalog-heavy statements (schema cloning over 1,000 schemas) took
        # minutes with it (docs/performance.md, P3).
        cursor.execute("SET random_page_cost = 1.1")
        try:
            rows = list(grouped)
        except Exception:
            if not connection.in_atomic_block:  # in a failed transaction, its rollback undoes the SET
                cursor.execute("RESET random_page_cost")
            raise
        cursor.execute("RESET random_page_cost")
    found: dict[tuple[int, int], list[int]] = {}
    for period_start, status, amount in rows:
        totals = found.setdefault((period_start.year, period_start.month), [0, 0, 0])
        totals[0] += amount
        if status in COLLECTED:
            totals[1] += amount
        elif status in OUTSTANDING:
            totals[2] += amount
    result = []
    for i in range(12):
        month = add_months(first, i)
        billed, collected, outstanding = found.get((month.year, month.month), (0, 0, 0))
        result.append(MonthTotals(month, billed, collected, outstanding))
    return result


def months_with_invoices(clients: QuerySet | None = None) -> tuple[date | None, date | None]:
    """(first, last) billing month that has client invoices, for paging limits."""
    invoices = Invoice.objects.all()
    if clients is not None:
        invoices = invoices.filter(client__in=clients)
    bounds = invoices.order_by().aggregate(first=Min("period_start"), last=Max("period_start"))
    return (
        month_start(bounds["first"]) if bounds["first"] else None,
        month_start(bounds["last"]) if bounds["last"] else None,
    )
