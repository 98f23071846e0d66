"""Properties of the dates collection and its notices are scheduled on, whatever the day it is computed:

- RET-2/RET-3: after a failure, a Retrying charge always has a next automatic attempt, after the failure's day, on a
  weekday — the schedule's date while it is ahead, else the next weekday (a date computed from a schedule that has
  fully passed was None, and the charge was never retried again).
- NOT-1/NOT-3 with CYC-1: the billing dates the notices announce (`billing.reminders.reminders_due`'s rule: the
  schedule's dates not covered by an old period, plus the bridges ahead) are exactly those the billing run will
  build (`core.calendar.periods_due`, day after day), whatever the old and the new billing day and the day of the
  change.
"""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.attempts import _next_retry
from billing.models import BillingSettings, Charge
from billing.schedule import bridges_ahead, month_dates, never_invoiced
from core.calendar import Period, add_months, full_cycle, periods_due, retry_dates

DAYS = st.integers(min_value=1, max_value=28)


@settings(max_examples=300, deadline=None)
@given(
    due_on=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
    failed=st.integers(min_value=1, max_value=2),
    late=st.integers(min_value=0, max_value=60),
)
def test_RET_2_RET_3_a_failure_on_any_day_leaves_a_next_attempt_after_it_on_a_weekday(due_on, failed, late):
    today = due_on + timedelta(days=late)
    next_on = _next_retry(Charge(due_on=due_on), failed, today)
    assert next_on is not None and next_on > today and next_on.weekday() < 5
    ahead = [d for d in retry_dates(due_on)[failed - 1 :] if d > today]
    if ahead:
        assert next_on == ahead[0]  # the schedule's own date while it is ahead
    else:
        assert (next_on - today).days <= 3  # the next weekday (over a weekend at most)


def _announced(*, today: date, bill_day: int, invoiced: list[Period]) -> set[date]:
    dates = set()
    for offset in range(3):
        month = add_months(today.replace(day=1), offset)
        billing_date = month_dates(
            autopay_days=[],
            billing_day=bill_day,
            year=month.year,
            month=month.month,
            settings=BillingSettings(),  # the defaults, never saved
        ).billing_date
        if not never_invoiced(billing_date, invoiced):
            dates.add(billing_date)
    bridges = bridges_ahead(today=today, build_day=bill_day, bill_day=bill_day, invoiced=invoiced)
    dates |= {bridge.billing_date for bridge in bridges}
    return dates


def _built(*, today: date, bill_day: int, invoiced: list[Period], until: date) -> set[date]:
    periods, built = list(invoiced), set()
    day = today + timedelta(days=1)
    while day <= until:
        for due in periods_due(today=day, build_day=bill_day, bill_day=bill_day, invoiced=periods):
            periods.append(due.period)
            built.add(due.billing_date)
        day += timedelta(days=1)
    return built


@settings(max_examples=300, deadline=None)
@given(
    old_day=DAYS,
    new_day=DAYS,
    month=st.integers(min_value=0, max_value=23),
    into=st.integers(min_value=0, max_value=27),
)
def test_NOT_1_NOT_3_CYC_1_the_dates_announced_are_the_invoices_the_run_builds(old_day, new_day, month, into):
    """A client billed on `old_day` (its current period invoiced), its billing day moved to `new_day` `into` days
    into that period: over the next 40 days, what is announced is what is built."""
    start = add_months(date(2026, 1, old_day), month)
    invoiced = [full_cycle(start)]
    today = start + timedelta(days=into)
    window_end = today + timedelta(days=40)
    announced = {d for d in _announced(today=today, bill_day=new_day, invoiced=invoiced) if today < d <= window_end}
    built = _built(today=today, bill_day=new_day, invoiced=invoiced, until=window_end)
    assert announced == built
