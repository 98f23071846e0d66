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
