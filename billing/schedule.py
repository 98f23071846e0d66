"""A client's dates for one month's invoice: when it is built, its billing date, how many installments, and
when its Upcoming Statement (NOT-1, NOT-2) and Upcoming Payment (NOT-3) notices are due (CYC-4).

Pure date arithmetic from the client's billing days and the agency's notice settings; the reminders and the
notice previews both read it, so what is previewed is what is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from billing.models import BillingSettings
from core.calendar import (
    DuePeriod,
    Period,
    billing_date_in_month,
    follow_up_dates,
    invoice_days,
    periods_due,
    statement_date,
)

UPCOMING_PAYMENT_DAYS_BEFORE = 2  # NOT-3: not configurable


@dataclass(frozen=True)
class MonthDates:
    """One client's dates for one month's invoice."""

    build_date: date  # the invoice is built (the first autopay date, or the billing date)
    billing_date: date  # the last autopay date, or the billing date (CYC-4)
    installments: int  # how many autopay charges the invoice is split into
    statements: tuple[date, ...]  # Upcoming Statement and its configured follow-ups, in order
    upcoming_payment: date


def month_dates(
    *, autopay_days: list[int], billing_day: int, year: int, month: int, settings: BillingSettings
) -> MonthDates:
    build_day, bill_day = invoice_days(autopay_days=autopay_days, billing_day=billing_day)
    build_date, billing_date = date(year, month, build_day), date(year, month, bill_day)
    first = statement_date(
        autopay_days=autopay_days,
        billing_day=billing_day,
        year=year,
        month=month,
        days_before=settings.statement_days_before,
    )
    follow_ups = follow_up_dates(first, settings.statement_second_after_days, settings.statement_third_after_days)
    # A follow-up only makes sense while the statement is still upcoming.
    statements = tuple(day for day in follow_ups if day < build_date)
    installments = len(set(autopay_days)) if len(set(autopay_days)) >= 2 else 1
    return MonthDates(
        build_date, billing_date, installments, statements, billing_date - timedelta(days=UPCOMING_PAYMENT_DAYS_BEFORE)
    )


def bridge_dates(*, billing_date: date, settings: BillingSettings) -> MonthDates:
    """A bridging invoice's dates (CYC-1): built and billed in one charge on the day the old period ends, so NOT-1's
    timing holds whatever the autopay days — its Upcoming Statement `statement_days_before` days before it, with
    its follow-ups (NOT-5) while it is still upcoming, and its Upcoming Payment two days before (NOT-3)."""
    first = billing_date - timedelta(days=settings.statement_days_before)
    follow_ups = follow_up_dates(first, settings.statement_second_after_days, settings.statement_third_after_days)
    return MonthDates(
        billing_date,
        billing_date,
        1,
        tuple(day for day in follow_ups if day < billing_date),
        billing_date - timedelta(days=UPCOMING_PAYMENT_DAYS_BEFORE),
    )


def bridges_ahead(*, today: date, build_day: int, bill_day: int, invoiced: list[Period]) -> list[DuePeriod]:
    """The bridging invoices (CYC-1) an account will be built after `today` with its schedule as it is: on the day
    an invoiced period ends on a day that is not a billing date of the schedule (its billing day moved). What
    `billing.selectors.clients_due` will find on that day."""
    bridges = []
    for end in sorted({period.end for period in invoiced if period.end > today}):
        if end == billing_date_in_month(end.year, end.month, bill_day):
            continue  # the schedule's own billing date: a regular invoice (`month_dates`)
        bridges += [
            due
            for due in periods_due(today=end, build_day=build_day, bill_day=bill_day, invoiced=invoiced)
            if due.billing_date == end
        ]
    return bridges


def never_invoiced(billing_date: date, invoiced: list[Period]) -> bool:
    """A billing date of the schedule that an invoiced period of the old schedule still covers (the billing day
    moved earlier, CYC-1): no invoice is ever built for it, so nothing is announced for it."""
    return any(billing_date in period and period.start != billing_date for period in invoiced)
