"""Calendar helpers for billing: periods, billing dates, weekdays. Pure: the clock is passed in."""

from __future__ import annotations

import calendar as _cal
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from core.errors import ApplicationError

MIN_BILLING_DAY = 1
MAX_BILLING_DAY = 28


def validate_billing_day(day: object) -> int:
    if type(day) is not int or not MIN_BILLING_DAY <= day <= MAX_BILLING_DAY:
        raise ApplicationError(
            "The billing day must be a whole number from 1 to 28.",
            code="invalid_billing_day",
            fields={"billing_day": ["Must be between 1 and 28."]},
        )
    return day


def add_months(day: date, months: int) -> date:
    """Same day-of-month `months` later, clamped to the month's last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = _cal.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


@dataclass(frozen=True, slots=True)
class Period:
    """A billing cycle: `start` inclusive, `end` exclusive (the next cycle's start)."""

    start: date
    end: date

    def __contains__(self, day: date) -> bool:
        return self.start <= day < self.end

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def label(self) -> str:
        return f"{self.start.isoformat()} – {self.last_day.isoformat()}"


def cycle_starting(billing_date: date) -> Period:
    """The cycle billed in advance on `billing_date` (CYC-2 b)."""
    return Period(billing_date, add_months(billing_date, 1))


def cycle_closed_by(billing_date: date) -> Period:
    """The cycle that closed the day before `billing_date`, billed in arrears (CYC-1, CYC-2 a)."""
    return Period(add_months(billing_date, -1), billing_date)


def billing_date_in_month(year: int, month: int, billing_day: int) -> date:
    return date(year, month, validate_billing_day(billing_day))


def next_billing_date(today: date, billing_day: int) -> date:
    """The first billing date on or after `today`."""
    candidate = billing_date_in_month(today.year, today.month, billing_day)
    return candidate if candidate >= today else add_months(candidate, 1)


def previous_billing_date(today: date, billing_day: int) -> date:
    """The last billing date on or before `today`."""
    candidate = billing_date_in_month(today.year, today.month, billing_day)
    return candidate if candidate <= today else add_months(candidate, -1)


def autopay_dates(year: int, month: int, autopay_days: list[int] | tuple[int, ...]) -> list[date]:
    """The month's autopay dates in order; the last one is the billing date (CYC-4)."""
    return [billing_date_in_month(year, month, d) for d in sorted(set(autopay_days))]


def add_weekdays(day: date, count: int) -> date:
    """The `count`-th weekday (Mon–Fri) after `day` (RET-2)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    current = day
    remaining = count
    while remaining:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current


def retry_dates(billing_date: date) -> tuple[date, date]:
    """Automatic retries: the 5th and the 10th weekday after the billing date (RET-2)."""
    return add_weekdays(billing_date, 5), add_weekdays(billing_date, 10)


def local_date(now: datetime, time_zone: str) -> date:
    """The agency's calendar day at `now` (CYC-5). A naive datetime is refused: its day is ambiguous."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("local_date needs an aware datetime")
    return now.astimezone(ZoneInfo(time_zone)).date()


def days_between(start: date, end: date) -> list[date]:
    """Every day from `start` to `end`, both inclusive."""
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def invoice_days(*, autopay_days: list[int] | tuple[int, ...], billing_day: int) -> tuple[int, int]:
    """(day the invoice is built, billing day) of an account in a month.

    One billing day: both are that day. Several autopay days (CYC-4): the billing date is the last
    autopay date, and the invoice is built on the first, so its balance can be split across them.
    """
    days = sorted(set(autopay_days))
    if len(days) >= 2:
        return days[0], days[-1]
    if len(days) == 1:
        return days[0], days[0]
    return billing_day, billing_day


def statement_date(
    *, autopay_days: list[int] | tuple[int, ...], billing_day: int, year: int, month: int, days_before: int
) -> date:
    """The day the Upcoming Statement for the month's invoice goes out.

    NOT-1: `days_before` days before the billing date. NOT-2, several autopay days: that many days before
    the month's *first* autopay date, unless that would fall on or before the previous month's last
    autopay date — then the day after it (autopay days 5 and 28, 10 days: the 29th of the month before).
    """
    days = sorted(set(autopay_days))
    if len(days) < 2:
        _, bill_day = invoice_days(autopay_days=days, billing_day=billing_day)
        return date(year, month, bill_day) - timedelta(days=days_before)
    first = date(year, month, days[0])
    previous_month = add_months(date(year, month, 1), -1)
    previous_last = date(previous_month.year, previous_month.month, days[-1])
    if (first - previous_last).days < days_before:
        return previous_last + timedelta(days=1)
    return first - timedelta(days=days_before)


def follow_up_dates(first: date, *gaps: int | None) -> list[date]:
    """A notice and its follow-ups (NOT-5): each further notice `gap` days after the previous one. A gap
    that is not configured ends the chain (no third notice without a second)."""
    dates = [first]
    for gap in gaps:
        if not gap:
            break
        dates.append(dates[-1] + timedelta(days=gap))
    return dates


# --- billing-day changes (CYC-1): every day billed once -------------------------------------------------------
#
# A client's invoices cover contiguous periods. When its billing day (or autopay days, or the agency's day it
# follows) changes, nothing already invoiced changes (MON-3): the period already billed runs to its end, and the
# days from that end to the first billing date of the new schedule are billed once, in advance, as a bridging
# period on the day the old period ends — prorated by days, as Stripe prorates when a subscription's billing
# cycle anchor moves. docs/decisions.md, "Billing-day changes".


def full_cycle(start: date) -> Period:
    """The month-long cycle that starts on `start`."""
    return Period(start, add_months(start, 1))


def next_billing_date_after(day: date, bill_day: int) -> date:
    """The first date strictly after `day` that falls on `bill_day`."""
    candidate = billing_date_in_month(day.year, day.month, bill_day)
    return candidate if candidate > day else add_months(candidate, 1)


@dataclass(frozen=True, slots=True)
class DuePeriod:
    """An invoice an account is due: its billing date (the period's first day), the period it bills in advance,
    and the closed cycle whose usage it carries."""

    billing_date: date
    period: Period
    usage: Period

    @property
    def bridging(self) -> bool:
        """Shorter than a full cycle: the days between an old schedule and a new one (prorated)."""
        return self.period.end != full_cycle(self.period.start).end


def usage_window(start: date, invoiced: list[Period] | tuple[Period, ...]) -> Period:
    """The closed cycle an invoice starting on `start` carries the usage of: the account's previous period (the
    one that ends on `start`), else the month before `start`, never reaching back into a period already past."""
    previous = [p for p in invoiced if p.end == start]
    if previous:
        return Period(max(p.start for p in previous), start)
    begin = add_months(start, -1)
    ended = [p.end for p in invoiced if p.end <= start]
    if ended:
        begin = max(begin, max(ended))
    return Period(begin, start)


def periods_due(
    *, today: date, build_day: int, bill_day: int, invoiced: list[Period] | tuple[Period, ...]
) -> list[DuePeriod]:
    """The invoices an account is due today, given its schedule (`invoice_days`) and its invoiced periods
    (those ending on or after a month or so ago are enough).

    - On its build day: the full cycle from its billing date, unless that date is already invoiced (the billing
      day moved earlier: the old period still runs, and the bridge below follows it).
    - On the day an invoiced period ends with no invoice covering that day (the billing day moved): a bridging
      period from that day to the next billing date of the schedule.
    A period never runs into one already invoiced: it ends where the next one starts.
    """
    due: list[DuePeriod] = []
    starts = [p.start for p in invoiced]

    def clipped(start: date, end: date) -> Period:
        later = [s for s in [*starts, *(d.period.start for d in due)] if s > start]
        return Period(start, min([end, *later]))

    if today.day == build_day:
        billing_date = billing_date_in_month(today.year, today.month, bill_day)
        if not any(billing_date in p for p in invoiced):
            period = clipped(billing_date, full_cycle(billing_date).end)
            due.append(DuePeriod(billing_date, period, usage_window(billing_date, invoiced)))
    ends_today = any(p.end == today for p in invoiced)
    covered = any(today in p for p in invoiced) or any(today in d.period for d in due)
    if ends_today and not covered:
        period = clipped(today, next_billing_date_after(today, bill_day))
        due.append(DuePeriod(today, period, usage_window(today, invoiced)))
    return due


def next_period(
    *, today: date, build_day: int, bill_day: int, invoiced: list[Period] | tuple[Period, ...], horizon: int = 62
) -> tuple[date, DuePeriod] | None:
    """(the day it is built, the invoice) the account's next invoice from `today` on, with this schedule: what
    a billing-day change would lead to, shown before it is saved."""
    for offset in range(horizon):
        day = today + timedelta(days=offset)
        due = periods_due(today=day, build_day=build_day, bill_day=bill_day, invoiced=invoiced)
        if due:
            return day, min(due, key=lambda d: d.period.start)
    return None


def prorated_minor(amount_minor: int, period: Period) -> int:
    """A monthly amount for a period shorter than a full cycle: amount × days / days of the full cycle from the
    period's start, rounded half-up once (MON-2). A full cycle is the amount itself."""
    full = full_cycle(period.start)
    if period.end >= full.end:
        return amount_minor
    days, cycle_days = (period.end - period.start).days, (full.end - full.start).days
    quotient, remainder = divmod(abs(amount_minor) * days, cycle_days)
    if remainder * 2 >= cycle_days:
        quotient += 1
    return quotient if amount_minor >= 0 else -quotient


def agency_period_due(*, today: date, billing_day: int, last_end: date | None) -> Period | None:
    """The agency invoice's period closing today, in arrears (CYC-2 a), or None. Periods are contiguous: the
    current one starts where the last invoiced one ended and closes a full cycle later, or earlier on a billing
    day of a changed schedule (the bridge to the new day). A change made after the new day has passed this month
    takes effect at the current period's end."""
    if last_end is None or last_end < add_months(today, -2):  # first invoice, or after a gap (no plan for a while)
        return cycle_closed_by(today) if today.day == billing_day else None
    if today <= last_end:
        return None
    full_end = add_months(last_end, 1)
    if today == full_end or (today.day == billing_day and today < full_end):
        return Period(last_end, today)
    if today > full_end and today.day == billing_day:
        return Period(max(last_end, add_months(today, -1)), today)
    return None
