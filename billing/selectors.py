"""Reads for billing: who is due, usage in a cycle, balances. Run inside the agency's schema."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import CharField, F, Max, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from accounts.permissions import sees_only_own_clients
from billing.base_models import EntryType
from billing.drafting import ProductPrice, ServiceSpec, TaxSpec
from billing.models import (
    AgencyDayStep,
    BillingSettings,
    Charge,
    Invoice,
    InvoiceHold,
    LedgerEntry,
    StepStatus,
    UsageRecord,
)
from billing.platform.models import AgencyInvoice
from billing.statuses import STATUS_PRECEDENCE, ChargeStatus
from clients.models import AgencyServiceLine, Client, ClientGroup, ServiceRecurrence, TaxRate
from clients.selectors import client_list_for_user, client_visibility
from core.calendar import (
    Period,
    add_months,
    agency_period_due,
    full_cycle,
    invoice_days,
    next_billing_date_after,
    periods_due,
    usage_window,
)
from tenants.models import Agency, PartnerPlan


@dataclass(frozen=True, slots=True)
class DueClient:
    client_id: int
    billing_date: date
    period: Period  # billed in advance; shorter than a cycle when it bridges a billing-day change (CYC-1)
    usage: Period  # the closed cycle whose usage the invoice carries


def period_bounds(period: Period, time_zone: str) -> tuple[datetime, datetime]:
    """A cycle's start and end as instants: midnight of the agency's own calendar days (CYC-5)."""
    zone = ZoneInfo(time_zone)
    return datetime.combine(period.start, time.min, zone), datetime.combine(period.end, time.min, zone)


def plan_prices(plan: PartnerPlan | None) -> dict[str, ProductPrice]:
    if plan is None:
        return {}
    return {
        p.code: ProductPrice(p.code, p.name, p.unit_price_decimal, p.included_quantity, p.overage_unit_price_decimal)
        for p in plan.products.all()
    }


def billing_settings() -> BillingSettings:
    settings, _ = BillingSettings.objects.get_or_create(singleton=True)
    return settings


def billable_clients() -> list[dict]:
    """Clients that get invoices of their own: not members billed through a group's primary (PLAN-4)."""
    return list(
        Client.objects.filter(Q(group__isnull=True) | Q(group__primary_id=F("id"))).values(
            "id", "billing_day", "autopay_days", "activated_on", "deactivated_on", "agency_invoiced", "overdue_since"
        )
    )


def invoiced_periods(*, since: date, client_ids: list[int] | None = None) -> dict[int, list[Period]]:
    """Each client's invoice periods that start on or after `since` (CYC-1: where its next period starts)."""
    sql = f"SELECT client_id, period_start, period_end FROM {Invoice._meta.db_table} WHERE period_start >= %s"
    params: list[Any] = [since]
    if client_ids is not None:
        sql += " AND client_id = ANY(%s)"
        params.append(list(client_ids))
    periods: dict[int, list[Period]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for client_id, start, end in cursor.fetchall():
            periods[client_id].append(Period(start, end))
    return periods


def client_period_at(*, agency: Agency, client_id: int, billing_date: date) -> tuple[Period, Period]:
    """(period, usage cycle) of a client's invoice with this billing date, built on a later day (an invoice held on
    its day, MON-1): from its billing date to the next billing date of its schedule, never into a period since
    invoiced (CYC-1)."""
    row = Client.objects.values("billing_day", "autopay_days").get(pk=client_id)
    _, bill_day = client_schedule(row, agency)
    invoiced = invoiced_periods(since=add_months(billing_date, -LOOKBACK_MONTHS), client_ids=[client_id])[client_id]
    end = full_cycle(billing_date).end
    if billing_date.day != bill_day:
        end = min(end, next_billing_date_after(billing_date, bill_day))
    later = [p.start for p in invoiced if p.start > billing_date]
    period = Period(billing_date, min([end, *later]))
    return period, usage_window(billing_date, [p for p in invoiced if p.end <= billing_date])


def client_schedule(row: dict, agency: Agency) -> tuple[int, int]:
    """(build day, billing day) of a client (a `billable_clients` row or a Client): its own or the agency's."""
    return invoice_days(autopay_days=row["autopay_days"], billing_day=row["billing_day"] or agency.billing_day)


# Periods are at most a month long: those starting within the last three months are enough to know where an
# account's next period starts and which closed cycle it carries the usage of.
LOOKBACK_MONTHS = 3


def clients_due(*, agency: Agency, today: date) -> list[DueClient]:
    """Clients with an invoice built today: on their build day, or — after a billing-day change — on the day
    their last period ends (a bridging period), each with its billing date and period (CYC-1, CYC-4)."""
    due = []
    periods = invoiced_periods(since=add_months(today, -LOOKBACK_MONTHS))
    for row in billable_clients():
        build_day, bill_day = client_schedule(row, agency)
        invoiced = periods.get(row["id"], [])
        for item in periods_due(today=today, build_day=build_day, bill_day=bill_day, invoiced=invoiced):
            if billable_on(row, item.billing_date):
                due.append(DueClient(row["id"], item.billing_date, item.period, item.usage))
    return due


def billable_on(row: dict, billing_date: date) -> bool:
    """Whether a client (a `billable_clients` row) is invoiced on that billing date: active by then and
    not deactivated on or before it."""
    if row["activated_on"] > billing_date:
        return False
    return row["deactivated_on"] is None or row["deactivated_on"] > billing_date


def usage_by_account(
    *, client_ids: list[int] | None, period: Period, time_zone: str
) -> dict[int | None, dict[str, int]]:
    """Summed usage per account and product in a cycle. client_ids None: every account, agency included."""
    start, end = period_bounds(period, time_zone)
    sql = (
        f"SELECT client_id, product_code, SUM(quantity) FROM {UsageRecord._meta.db_table} "
        "WHERE occurred_at >= %s AND occurred_at < %s"
    )
    params: list[Any] = [start, end]
    if client_ids is not None:
        # One array parameter, not one parameter per id: batches of the billing run pass thousands.
        sql += " AND client_id = ANY(%s)"
        params.append(list(client_ids))
    result: dict[int | None, dict[str, int]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(sql + " GROUP BY client_id, product_code", params)
        for client_id, code, quantity in cursor.fetchall():
            result[client_id][code] = int(quantity)
    return result


def group_members_of(primary_ids: list[int]) -> dict[int, int]:
    """{member id: primary id} for the groups these clients are the primary of (PLAN-4)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.id, g.primary_id FROM {Client._meta.db_table} c "
            f"JOIN {ClientGroup._meta.db_table} g ON g.id = c.group_id "
            "WHERE g.primary_id = ANY(%s) AND c.id <> g.primary_id",
            [list(primary_ids)],
        )
        return dict(cursor.fetchall())


def invoiced_clients(*, client_ids: list[int], period_start: date) -> set[int]:
    """Which of these clients already have their invoice for the period starting on `period_start`."""
    # The ids as a relation joined to the table, not `client_id = ANY(array)`: while a billing run grows the
    # table its statistics still say empty, and the planner's sequential scan then compares every row with
    # every id in the array (14 ms a batch at 10,000 invoices; docs/performance.md, P1).
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT i.client_id FROM unnest(%s::bigint[]) AS ids(id) JOIN {Invoice._meta.db_table} i "
            "ON i.client_id = ids.id AND i.period_start = %s",
            [list(client_ids), period_start],
        )
        return {row[0] for row in cursor.fetchall()}


@dataclass(frozen=True, slots=True)
class ClientTerms:
    """What a client's invoice is drafted from: its configuration as plain values."""

    client_id: int
    license_price_minor: int
    agency_invoiced: bool
    autopay_days: tuple[int, ...]
    services: tuple[ServiceSpec, ...]
    taxes: tuple[TaxSpec, ...]


def client_terms(client_ids: list[int]) -> list[ClientTerms]:
    """The configuration of these clients, in id order: license price, active Agency Services lines (in id
    order) and taxes (in id order). Three queries whatever the number of clients, no model instances."""
    ids = list(client_ids)
    services: dict[int, list[ServiceSpec]] = defaultdict(list)
    taxes: dict[int, list[TaxSpec]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT client_id, id, description, amount_minor, taxable, recurrence "
            f"FROM {AgencyServiceLine._meta.db_table} WHERE client_id = ANY(%s) AND removed_at IS NULL "
            "ORDER BY id",
            [ids],
        )
        for client_id, key, description, amount, taxable, recurrence in cursor.fetchall():
            services[client_id].append(
                ServiceSpec(description, amount, taxable, recurrence == ServiceRecurrence.ONE_TIME, key)
            )
        cursor.execute(
            f"SELECT l.client_id, t.name, t.rate_percent FROM {Client.taxes.through._meta.db_table} l "
            f"JOIN {TaxRate._meta.db_table} t ON t.id = l.taxrate_id WHERE l.client_id = ANY(%s) "
            "ORDER BY t.id",
            [ids],
        )
        for client_id, name, rate_percent in cursor.fetchall():
            taxes[client_id].append(TaxSpec(name, rate_percent))
        cursor.execute(
            f"SELECT id, license_price_minor, agency_invoiced, autopay_days FROM {Client._meta.db_table} "
            "WHERE id = ANY(%s) ORDER BY id",
            [ids],
        )
        rows = cursor.fetchall()
    return [
        ClientTerms(pk, price, invoiced, tuple(autopay or ()), tuple(services[pk]), tuple(taxes[pk]))
        for pk, price, invoiced, autopay in rows
    ]


def pooled_usage(*, period: Period, time_zone: str) -> dict[str, int]:
    """All usage of the agency and its clients in a cycle, per product (for the agency invoice)."""
    start, end = period_bounds(period, time_zone)
    rows = (
        UsageRecord.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
        .values("product_code")
        .annotate(quantity=Sum("quantity"))
        .order_by()
    )
    return {row["product_code"]: row["quantity"] for row in rows}


def clients_active_during(period: Period) -> int:
    """Clients active at any time in the cycle (license fees, CYC-2 a)."""
    return (
        Client.objects.filter(activated_on__lt=period.end)
        .filter(Q(deactivated_on__isnull=True) | Q(deactivated_on__gt=period.start))
        .count()
    )


def client_balance(client: Client) -> int:
    """MON-4: the balance is the sum of the ledger, nothing stored."""
    return LedgerEntry.objects.filter(client=client).aggregate(total=Sum("amount_minor"))["total"] or 0


def open_charges(entries: QuerySet) -> list[tuple[Any, int]]:
    """(charge entry, amount still open) for every ledger charge not fully paid, in one query."""
    charges = entries.filter(amount_minor__gt=0).annotate(paid=Sum("allocations_received__amount_minor"))
    items = [(charge, charge.amount_minor - (charge.paid or 0)) for charge in charges]
    return [(charge, amount) for charge, amount in items if amount > 0]


def balances(client_ids: list[int]) -> dict[int, int]:
    """Ledger balance per client (MON-4), one query."""
    rows = (
        LedgerEntry.objects.filter(client_id__in=client_ids)
        .values("client_id")
        .annotate(total=Sum("amount_minor"))
        .order_by()
    )
    return {row["client_id"]: row["total"] for row in rows}


@dataclass(frozen=True, slots=True)
class PastDue:
    amount_minor: int
    oldest: date  # the date of the oldest amount still open: a charge's billing date, a chargeback's day lost


# What a client owes (DUN-1): its charges, and what a lost dispute reopened (a chargeback, COR-2) — owed again from the
# day the dispute was lost, which is that entry's date. Every positive entry the allocator pays (`open_charges`).
OWED_ENTRY_TYPES = (EntryType.CHARGE, EntryType.CHARGEBACK)


def past_due_by_client(*, due_before: date, client_ids: list[int] | None = None) -> dict[int, PastDue]:
    """What is still open of charges and chargebacks dated before `due_before`, per client with something open
    (DUN-1). Agency Invoiced clients pay the agency directly and are never past due here (COL-1)."""
    charges = LedgerEntry.objects.filter(
        entry_type__in=OWED_ENTRY_TYPES, occurred_on__lt=due_before, client__agency_invoiced=False
    )
    if client_ids is not None:
        charges = charges.filter(client_id__in=client_ids)
    rows = (
        charges.annotate(paid=Coalesce(Sum("allocations_received__amount_minor"), 0))
        .filter(amount_minor__gt=F("paid"))
        .values_list("client_id", "amount_minor", "paid", "occurred_on")
    )
    result: dict[int, PastDue] = {}
    for client_id, amount, paid, occurred_on in rows:
        previous = result.get(client_id)
        result[client_id] = PastDue(
            amount - paid + (previous.amount_minor if previous else 0),
            min(occurred_on, previous.oldest) if previous else occurred_on,
        )
    return result


def overdue_due_before(settings: BillingSettings, today: date) -> date:
    """Charges dated before this day are past their grace period today (DUN-1)."""
    return today - timedelta(days=settings.grace_period_days)


def overdue_reached(past_due: PastDue | None, settings: BillingSettings) -> bool:
    """DUN-1: what is past due reaches the agency's threshold (and is something: a zero threshold means any amount)."""
    return past_due is not None and past_due.amount_minor >= max(settings.overdue_threshold_minor, 1)


def client_open_by_category(client: Client) -> dict[str, int]:
    """Charges not yet paid, per billing category."""
    totals: dict[str, int] = defaultdict(int)
    for charge, open_amount in open_charges(LedgerEntry.objects.filter(client=client)):
        totals[charge.category] += open_amount
    return dict(totals)


# --- what the API and the dashboard read, scoped to what the user may see (ROLE-1, TEN-2) --------------------


@functools.cache
def collection_status():
    """An invoice's collection status from its charges, in SQL: the first status present in the order of
    `billing.overview.STATUS_PRECEDENCE` (the pages' rule), Scheduled when it has no charge yet.

    A correlated subquery (one index lookup on the invoice's charges per row) rather than a join with a
    GROUP BY: PostgreSQL evaluates it only for the rows a page returns, after the sort and limit, so a page
    of 50 costs the same for 500 or 50,000 invoices. Written as SQL because building the equivalent
    Case/When subquery expression cost more Python time per request than the query itself
    (docs/performance.md, P5). Annotates querysets whose base table is the client invoice table.

    One instance per process (expressions are copied when a query resolves them, never changed): its identity,
    which Django computes through `inspect` whenever the query compares expressions, is then computed once."""
    sql = (
        f'COALESCE((SELECT c.status FROM "{Charge._meta.db_table}" c '
        f'WHERE c.invoice_id = "{Invoice._meta.db_table}".id '
        "ORDER BY array_position(%s::text[], c.status::text) LIMIT 1), %s)"
    )
    # Constant SQL (table names from the models); the statuses are parameters.
    return RawSQL(sql, (list(STATUS_PRECEDENCE), str(ChargeStatus.SCHEDULED)), output_field=CharField())  # noqa: S611


def invoice_list_for_user(
    *, user, month: date | None = None, status: str | None = None, client_public_id=None
) -> QuerySet:
    """Client invoices the user may see, each annotated with `collection_status`."""
    invoices = (
        Invoice.objects.filter(client_visibility(user=user, path="client__"))
        .select_related("client")
        .annotate(collection_status=collection_status())
    )
    if month is not None:
        invoices = invoices.filter(period_start__year=month.year, period_start__month=month.month)
    if client_public_id is not None:
        invoices = invoices.filter(client__public_id=client_public_id)
    if status:
        invoices = invoices.filter(collection_status=status)
    return invoices


def charge_list_for_user(
    *, user, month: date | None = None, status: str | None = None, client_public_id=None, invoice_public_id=None
) -> QuerySet:
    charges = (
        Charge.objects.filter(client_visibility(user=user, path="client__"))
        .select_related("client", "invoice")
        .prefetch_related("attempts", "disputes")
    )
    if month is not None:
        charges = charges.filter(billing_date__year=month.year, billing_date__month=month.month)
    if status:
        charges = charges.filter(status=status)
    if client_public_id is not None:
        charges = charges.filter(client__public_id=client_public_id)
    if invoice_public_id is not None:
        charges = charges.filter(invoice__public_id=invoice_public_id)
    return charges


def usage_list_for_user(
    *,
    user,
    agency: Agency,
    month: date | None = None,
    client_public_id=None,
    agency_only: bool = False,
    product_code: str | None = None,
) -> QuerySet:
    """Usage records the user may see: the agency's own (no client) only for those who see every client."""
    records = UsageRecord.objects.select_related("client")
    visible = client_list_for_user(user=user)
    if sees_only_own_clients(user):
        records = records.filter(client__in=visible)
    else:
        records = records.filter(Q(client__isnull=True) | Q(client__in=visible))
    if agency_only:
        records = records.filter(client__isnull=True)
    if client_public_id is not None:
        records = records.filter(client__public_id=client_public_id)
    if product_code:
        records = records.filter(product_code=product_code)
    if month is not None:
        start = month.replace(day=1)
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        records = records.filter(
            occurred_at__gte=period_bounds(Period(start, end), agency.time_zone)[0],
            occurred_at__lt=period_bounds(Period(start, end), agency.time_zone)[1],
        )
    return records


def needs_attention(limit: int = 50) -> list[dict]:
    """What billing support must look at in the current agency (MON-1, the day pipeline): invoices held because
    their amounts are out of bounds, and day steps that failed (the latest first)."""
    items: list[dict] = []
    for hold in (
        InvoiceHold.objects.filter(released_on__isnull=True).select_related("client").order_by("-billing_date")[:limit]
    ):
        items.append(
            {
                "kind": "Invoice held",
                "when": hold.billing_date,
                "client": hold.client,
                "what": "the agency's own invoice" if hold.client_id is None else "",
                "detail": hold.reason,
            }
        )
    for step in (
        AgencyDayStep.objects.filter(status=StepStatus.FAILED).select_related("day").order_by("-day__day")[:limit]
    ):
        items.append(
            {
                "kind": "Day step failed",
                "when": step.day.day,
                "client": None,
                "what": f"{step.get_step_display()} (failed {step.failures} time{'s' if step.failures != 1 else ''})",
                "detail": step.error,
            }
        )
    return items


@dataclass(frozen=True, slots=True)
class NextInvoice:
    """What an account's next invoice will be with a given schedule: shown before a billing-day change is saved
    (CYC-1). `period` is billed in advance for a client, in arrears for the agency."""

    build_date: date
    billing_date: date
    period: Period

    @property
    def bridging(self) -> bool:
        return self.period.end != full_cycle(self.period.start).end

    @property
    def days(self) -> int:
        return (self.period.end - self.period.start).days

    @property
    def cycle_days(self) -> int:
        cycle = full_cycle(self.period.start)
        return (cycle.end - cycle.start).days


def client_next_invoice(
    *, agency: Agency, client: Client, today: date, billing_day: int | None, autopay_days: list[int]
) -> NextInvoice | None:
    """The client's next invoice from `today` on if its billing day and autopay days were these; None when there
    is none within two months (a deactivated client)."""
    build_day, bill_day = invoice_days(autopay_days=autopay_days, billing_day=billing_day or agency.billing_day)
    invoiced = invoiced_periods(since=add_months(today, -LOOKBACK_MONTHS), client_ids=[client.pk]).get(client.pk, [])
    row = {"activated_on": client.activated_on, "deactivated_on": client.deactivated_on}
    first = _first_open_day(agency, today)
    for offset in range(NEXT_HORIZON_DAYS):
        day = first + timedelta(days=offset)
        for item in periods_due(today=day, build_day=build_day, bill_day=bill_day, invoiced=invoiced):
            if billable_on(row, item.billing_date):
                return NextInvoice(day, item.billing_date, item.period)
    return None


def agency_next_invoice(*, agency: Agency, today: date, billing_day: int) -> NextInvoice | None:
    """The agency's next invoice (in arrears) from `today` on if its billing day were `billing_day`."""
    last_end = AgencyInvoice.objects.filter(agency=agency).aggregate(end=Max("period_end"))["end"]
    first = _first_open_day(agency, today)
    for offset in range(NEXT_HORIZON_DAYS):
        day = first + timedelta(days=offset)
        period = agency_period_due(today=day, billing_day=billing_day, last_end=last_end)
        if period is not None:
            return NextInvoice(day, day, period)
    return None


NEXT_HORIZON_DAYS = 62


def _first_open_day(agency: Agency, today: date) -> date:
    """The first day a change saved now applies to: today, or the day after the billing clock's last finished
    day when it has already run today (or ahead of the wall clock)."""
    if agency.clock_date is not None and agency.clock_date >= today:
        return agency.clock_date + timedelta(days=1)
    return today


# --- usage billed once (PLAN-3): whatever is recorded is carried by the next invoice ---------------------------


@dataclass(frozen=True, slots=True)
class UsageItem:
    record_id: int
    account_id: int | None  # the billed account (a group's primary for its members); None: the agency's own
    product_code: str
    quantity: int
    day: date  # the agency's calendar day it occurred on (CYC-5)


def _usage_items(sql: str, params: list[Any], members: dict[int, int] | None = None) -> list[UsageItem]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            UsageItem(rid, (members or {}).get(cid, cid) if cid is not None else None, code, int(quantity), day)
            for rid, cid, code, quantity, day in cursor.fetchall()
        ]


def unbilled_client_usage(*, client_ids: list[int], before: date, time_zone: str) -> dict[int, list[UsageItem]]:
    """Each account's usage not yet on one of its invoices that occurred before `before` (agency days), its group
    members' included (PLAN-4)."""
    members = group_members_of(client_ids)
    end = datetime.combine(before, time.min, ZoneInfo(time_zone))
    items = _usage_items(
        f"SELECT id, client_id, product_code, quantity, (occurred_at AT TIME ZONE %s)::date "
        f"FROM {UsageRecord._meta.db_table} WHERE client_invoice_id IS NULL AND client_id = ANY(%s) "
        "AND occurred_at < %s ORDER BY id",
        [time_zone, [*client_ids, *members], end],
        members,
    )
    by_account: dict[int, list[UsageItem]] = defaultdict(list)
    for item in items:
        by_account[item.account_id].append(item)  # type: ignore[index]
    return by_account


def billed_client_usage(*, account_id: int, period: Period, time_zone: str) -> dict[str, int]:
    """Usage of an account (and its group's members) in a cycle that its invoices have already carried."""
    ids = [account_id, *group_members_of([account_id])]
    start, end = period_bounds(period, time_zone)
    rows = (
        UsageRecord.objects.filter(client_id__in=ids, client_invoice__isnull=False)
        .filter(occurred_at__gte=start, occurred_at__lt=end)
        .values("product_code")
        .annotate(quantity=Sum("quantity"))
        .order_by()
    )
    return {row["product_code"]: row["quantity"] for row in rows}


def unbilled_agency_usage(*, before: date, time_zone: str) -> list[UsageItem]:
    """Usage of the agency and all its clients not yet on an agency invoice, before `before` (agency days)."""
    end = datetime.combine(before, time.min, ZoneInfo(time_zone))
    return _usage_items(
        f"SELECT id, client_id, product_code, quantity, (occurred_at AT TIME ZONE %s)::date "
        f"FROM {UsageRecord._meta.db_table} WHERE agency_invoice_id IS NULL AND occurred_at < %s ORDER BY id",
        [time_zone, end],
    )


def billed_agency_usage(*, period: Period, time_zone: str) -> dict[str, int]:
    """Pooled usage in an agency cycle that its agency invoices have already carried."""
    start, end = period_bounds(period, time_zone)
    rows = (
        UsageRecord.objects.filter(agency_invoice_id__isnull=False, occurred_at__gte=start, occurred_at__lt=end)
        .values("product_code")
        .annotate(quantity=Sum("quantity"))
        .order_by()
    )
    return {row["product_code"]: row["quantity"] for row in rows}
