"""The dated notices of an agency day: Upcoming Statement with its follow-ups (NOT-1, NOT-2, NOT-5) and
Upcoming Payment (NOT-3).

Each is due on an exact date computed from the client's billing days and the periods already invoiced — the
schedule's billing dates, less those an old schedule's period still covers, plus the bridging invoices of a
billing-day change (CYC-1); the day pipeline runs every day in order (missed days are caught up, CYC-5). A day whose
notices step did not finish (given up after its failures) is caught up by the next days' steps: what it owed goes
late while the date it announces is still ahead — a statement until its invoice is built, an Upcoming Payment until
its billing date — and, of a statement and its follow-ups, only the latest due (`missed_notice_days`, `_Due.late`).
Reruns send nothing twice: the outbox key is (client, kind, billing date, notice number) — NOT-7. Agency Invoiced
clients get none of these (COL-1).
"""

from __future__ import annotations

from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date

from django.db.models import Sum

from billing.drafting import InvoiceDraft, notice_line
from billing.invoicing import invoice_previews
from billing.models import AgencyDayStep, BillingSettings, Charge, DayStep, Invoice, PaymentMethod, StepStatus
from billing.notices import client_context, client_notice
from billing.schedule import MonthDates, bridge_dates, bridges_ahead, month_dates, never_invoiced
from billing.selectors import (
    LOOKBACK_MONTHS,
    balances,
    billable_clients,
    billable_on,
    billing_settings,
    client_schedule,
    invoiced_periods,
)
from billing.statuses import ChargeStatus
from clients.models import Client
from core.calendar import Period, add_months
from core.money import format_minor, split_evenly
from notifications.catalog import NoticeKind
from notifications.selectors import notice_keys_queued
from tenants.models import Agency

MONTHS_AHEAD = 3  # a statement can go out up to this many months before its billing date


# The billing clock catching up after an outage replays each missed day with its own date (CYC-5), but the client
# reads the notice today: an Upcoming Statement whose invoice is built, or an Upcoming Payment whose billing date
# has come, by the agency's real today would announce the past. Set to that real today (the agency's local date at
# the tick) by the clock's catch-up only; `simulate`, `run_day` and the demo's history run days as if they were
# today and leave it unset.
clock_today: ContextVar[date | None] = ContextVar("clock_today", default=None)


@dataclass
class ReminderSummary:
    statements: int = 0
    payments: int = 0
    skipped_zero: int = 0
    skipped_past: int = 0  # replayed after an outage: what they announce has already come (`clock_today`)
    by_number: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Due:
    client_id: int
    dates: MonthDates
    number: int = 1
    # A bridging invoice (CYC-1): its period and the closed cycle whose usage it carries; None for a full cycle.
    bridge: tuple[Period, Period] | None = None
    late: bool = False  # its day's notices step did not finish: sent now, unless it was queued after all


def missed_notice_days(today: date) -> set[date]:
    """Earlier days of this agency whose notices step did not finish (given up after its failures, or never
    finished): the notices they owed are caught up by a later day (`reminders_due`). Days the clock never ran (before
    the agency's first day) are not missed: they owed nothing. One query."""
    return set(
        AgencyDayStep.objects.filter(
            step=DayStep.NOTICES, day__day__lt=today, day__day__gte=add_months(today, -MONTHS_AHEAD)
        )
        .exclude(status=StepStatus.DONE)
        .values_list("day__day", flat=True)
    )


def reminders_due(
    *, agency: Agency, today: date, settings: BillingSettings, missed: set[date] | frozenset[date] = frozenset()
) -> tuple[list[_Due], list[_Due]]:
    """(Upcoming Statements, Upcoming Payments) due today: pure date arithmetic over every billable,
    non-Agency-Invoiced client and its invoiced periods (one query), no per-client query. The invoices announced are
    those the billing run will build: the schedule's billing dates, except those an invoiced period of an old
    schedule still covers, and the bridging invoices of a billing-day change (CYC-1).

    `missed`: earlier days whose notices were not sent (`missed_notice_days`). A notice of such a day is due today,
    marked late, while the date it announces is still ahead: a statement before its invoice's build date (NOT-5: its
    follow-ups stop once the invoice is built), an Upcoming Payment before its billing date (on that day the charge
    itself comes; after it, "upcoming" would be false). Of a statement and its follow-ups only the latest whose day
    has come is due: an earlier one is stale."""
    statements: list[_Due] = []
    payments: list[_Due] = []

    def due(client_id: int, dates: MonthDates, bridge: tuple[Period, Period] | None = None) -> None:
        came = [(number, day) for number, day in enumerate(dates.statements, start=1) if day <= today]
        if came:
            number, day = came[-1]
            if day == today:
                statements.append(_Due(client_id, dates, number, bridge))
            elif day in missed and today < dates.build_date:
                statements.append(_Due(client_id, dates, number, bridge, late=True))
        if dates.upcoming_payment == today:
            payments.append(_Due(client_id, dates, 1, bridge))
        elif dates.upcoming_payment in missed and today < dates.billing_date:
            payments.append(_Due(client_id, dates, 1, bridge, late=True))

    periods = invoiced_periods(since=add_months(today, -LOOKBACK_MONTHS))
    for row in billable_clients():
        if row["agency_invoiced"]:
            continue
        invoiced = periods.get(row["id"], [])
        for offset in range(MONTHS_AHEAD):
            month = add_months(today.replace(day=1), offset)
            dates = month_dates(
                autopay_days=row["autopay_days"],
                billing_day=row["billing_day"] or agency.billing_day,
                year=month.year,
                month=month.month,
                settings=settings,
            )
            if billable_on(row, dates.billing_date) and not never_invoiced(dates.billing_date, invoiced):
                due(row["id"], dates)
        build_day, bill_day = client_schedule(row, agency)
        for bridge in bridges_ahead(today=today, build_day=build_day, bill_day=bill_day, invoiced=invoiced):
            if billable_on(row, bridge.billing_date):
                due(
                    row["id"],
                    bridge_dates(billing_date=bridge.billing_date, settings=settings),
                    (bridge.period, bridge.usage),
                )
    return statements, payments


def _late_not_queued(items: list[_Due], clients: dict[int, Client], kind: str) -> list[_Due]:
    """Drop the late notices already queued (their day's step queued them before it failed, or an earlier catch-up
    did), so they are not previewed and rendered for nothing; the outbox key would refuse them anyway (NOT-7)."""
    late = [item for item in items if item.late]
    if not late:
        return items
    queued = notice_keys_queued(kind=kind, accounts=sorted({str(clients[item.client_id].public_id) for item in late}))
    return [
        item
        for item in items
        if not (
            item.late
            and (str(clients[item.client_id].public_id), item.dates.billing_date.isoformat(), item.number) in queued
        )
    ]


def _line_items(draft: InvoiceDraft) -> list[dict[str, str]]:
    return [notice_line(line, draft.currency) for line in draft.lines]


def _previews(agency: Agency, items: list[_Due]) -> dict[tuple[int, date], InvoiceDraft]:
    by_date: dict[date, list[int]] = defaultdict(list)
    previews = {}
    for item in items:
        if item.bridge is None:
            by_date[item.dates.billing_date].append(item.client_id)
            continue
        period, usage = item.bridge  # a bridging invoice: its own period, prorated (rare: one at a time)
        previews[(item.client_id, item.dates.billing_date)] = invoice_previews(
            agency=agency,
            client_ids=[item.client_id],
            billing_date=item.dates.billing_date,
            period=period,
            usage_window=usage,
        )[item.client_id]
    for billing_date, ids in by_date.items():
        for client_id, draft in invoice_previews(agency=agency, client_ids=ids, billing_date=billing_date).items():
            previews[(client_id, billing_date)] = draft
    return previews


def _scheduled_on(items: list[_Due]) -> dict[tuple[int, date], int]:
    """Amounts already scheduled for collection on each billing date (invoices built on an earlier
    autopay date), per (client, billing date)."""
    if not items:
        return {}
    rows = (
        Charge.objects.filter(
            client_id__in=[i.client_id for i in items],
            status=ChargeStatus.SCHEDULED,
            due_on__in={i.dates.billing_date for i in items},
        )
        .values("client_id", "due_on")
        .annotate(total=Sum("amount_minor"))
        .order_by()
    )
    return {(row["client_id"], row["due_on"]): row["total"] for row in rows}


def _built(items: list[_Due]) -> set[tuple[int, date]]:
    if not items:
        return set()
    return set(
        Invoice.objects.filter(
            client_id__in=[i.client_id for i in items], period_start__in={i.dates.billing_date for i in items}
        ).values_list("client_id", "period_start")
    )


def reminders_send(*, agency: Agency, today: date) -> ReminderSummary:
    """Queue every Upcoming Statement and Upcoming Payment due today for the current agency schema."""
    settings = billing_settings()
    statements, payments = reminders_due(
        agency=agency, today=today, settings=settings, missed=missed_notice_days(today)
    )
    summary = ReminderSummary()
    if (real_today := clock_today.get()) is not None and real_today > today:
        current = [s for s in statements if s.dates.build_date > real_today]
        current_payments = [p for p in payments if p.dates.billing_date > real_today]
        summary.skipped_past = len(statements) - len(current) + len(payments) - len(current_payments)
        statements, payments = current, current_payments
    if not statements and not payments:
        return summary
    everyone = statements + payments
    ids = sorted({item.client_id for item in everyone})
    clients = Client.objects.in_bulk(ids)
    statements = _late_not_queued(statements, clients, NoticeKind.UPCOMING_STATEMENT)
    payments = _late_not_queued(payments, clients, NoticeKind.UPCOMING_PAYMENT)
    open_balance = balances(ids)
    built = _built(payments)
    previews = _previews(agency, statements + [p for p in payments if (p.client_id, p.dates.billing_date) not in built])
    currency = agency.currency

    for item in statements:
        client, draft = clients[item.client_id], previews[(item.client_id, item.dates.billing_date)]
        balance = open_balance.get(item.client_id, 0)
        amount_due = draft.total_minor + balance
        if amount_due <= 0:  # NOT-1: only when the upcoming statement is above zero
            summary.skipped_zero += 1
            continue
        client_notice(
            client=client,
            kind=NoticeKind.UPCOMING_STATEMENT,
            period=item.dates.billing_date.isoformat(),
            number=item.number,
            today=today,
            context={
                **client_context(agency, client),
                "billing_date": item.dates.build_date.isoformat(),
                "statement_total": format_minor(draft.total_minor, currency),
                "open_balance": format_minor(balance, currency),
                "amount_due": format_minor(amount_due, currency),
                "lines": _line_items(draft),
                "notice_number": str(item.number),
            },
        )
        summary.statements += 1
        summary.by_number[item.number] = summary.by_number.get(item.number, 0) + 1

    scheduled = _scheduled_on(payments)
    methods = {pm.client_id: str(pm) for pm in PaymentMethod.objects.filter(client_id__in=ids, removed_at__isnull=True)}
    for item in payments:
        key = (item.client_id, item.dates.billing_date)
        if key in built:
            amount = scheduled.get(key, 0)
        elif item.dates.build_date < today:
            continue  # its build date has passed without an invoice (not billable then): nothing will be charged
        else:  # not built yet: the last installment of the invoice to be built
            amount = split_evenly(previews[key].total_minor, item.dates.installments)[-1]
        if amount <= 0:  # NOT-3: only if there is something to charge
            summary.skipped_zero += 1
            continue
        client = clients[item.client_id]
        client_notice(
            client=client,
            kind=NoticeKind.UPCOMING_PAYMENT,
            period=item.dates.billing_date.isoformat(),
            number=1,
            today=today,
            context={
                **client_context(agency, client),
                "billing_date": item.dates.billing_date.isoformat(),
                "amount_due": format_minor(amount, currency),
                "payment_method": methods.get(item.client_id, "no payment method on file"),
            },
        )
        summary.payments += 1
    return summary
