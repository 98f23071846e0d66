"""Unit tests of core/calendar.py: cycles (CYC-1), autopay days (CYC-4), local days (CYC-5), retries (RET-2)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.calendar import (
    Period,
    add_months,
    add_weekdays,
    autopay_dates,
    billing_date_in_month,
    cycle_closed_by,
    cycle_starting,
    days_between,
    follow_up_dates,
    invoice_days,
    local_date,
    next_billing_date,
    previous_billing_date,
    retry_dates,
    statement_date,
    validate_billing_day,
)
from core.errors import ApplicationError

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)

# --------------------------------------------------------------------------------------------- CYC-1


@pytest.mark.parametrize("day", [1, 15, 28])
def test_CYC_1_billing_day_1_to_28_accepted(day):
    assert validate_billing_day(day) == day


@pytest.mark.parametrize("day", [0, 29, 30, 31, -1, "1", True, False, 1.0, None])
def test_CYC_1_billing_day_outside_1_28_or_not_int_refused(day):
    with pytest.raises(ApplicationError) as excinfo:
        validate_billing_day(day)
    assert excinfo.value.code == "invalid_billing_day"
    assert "billing_day" in excinfo.value.fields


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
        (date(2027, 3, 31), 1, date(2027, 4, 30)),
        (date(2027, 3, 31), -1, date(2027, 2, 28)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),  # year end
        (date(2027, 1, 15), -1, date(2026, 12, 15)),
        (date(2027, 1, 31), 13, date(2028, 2, 29)),
        (date(2027, 5, 10), 0, date(2027, 5, 10)),
        (date(2027, 5, 10), -24, date(2025, 5, 10)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
    ],
)
def test_CYC_1_add_months_clamps_to_month_end(start, months, expected):
    assert add_months(start, months) == expected


def test_CYC_1_cycle_starting_is_one_month_in_advance():
    period = cycle_starting(date(2027, 3, 1))
    assert period == Period(date(2027, 3, 1), date(2027, 4, 1))
    assert period.last_day == date(2027, 3, 31)
    assert date(2027, 3, 1) in period
    assert date(2027, 3, 31) in period
    assert date(2027, 4, 1) not in period
    assert date(2027, 2, 28) not in period


def test_CYC_1_billing_date_is_the_day_after_the_cycle_closes():
    billing_date = date(2027, 3, 15)
    closed = cycle_closed_by(billing_date)
    assert closed == Period(date(2027, 2, 15), date(2027, 3, 15))
    assert closed.last_day == date(2027, 3, 14)
    assert closed.last_day + timedelta(days=1) == billing_date
    assert billing_date not in closed
    # The cycle that closes is the one that started on the previous billing date.
    assert cycle_starting(date(2027, 2, 15)) == closed


def test_CYC_1_cycle_closed_by_across_year_end():
    closed = cycle_closed_by(date(2027, 1, 1))
    assert closed == Period(date(2026, 12, 1), date(2027, 1, 1))
    assert closed.last_day == date(2026, 12, 31)
    assert closed.label() == "2026-12-01 – 2026-12-31"


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=2000, max_value=2100),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=28),
)
def test_CYC_1_consecutive_cycles_tile_without_gap_or_overlap(year, month, day):
    billing_date = billing_date_in_month(year, month, day)
    closed, starting = cycle_closed_by(billing_date), cycle_starting(billing_date)
    assert closed.end == starting.start == billing_date
    assert cycle_closed_by(starting.end) == starting
    assert starting.end.day == day and closed.start.day == day


@pytest.mark.parametrize(
    ("today", "billing_day", "expected"),
    [
        (date(2027, 3, 1), 1, date(2027, 3, 1)),  # on the day
        (date(2027, 3, 2), 1, date(2027, 4, 1)),
        (date(2027, 3, 14), 15, date(2027, 3, 15)),
        (date(2027, 3, 16), 15, date(2027, 4, 15)),
        (date(2027, 12, 29), 28, date(2028, 1, 28)),  # year end
        (date(2027, 1, 31), 28, date(2027, 2, 28)),
    ],
)
def test_CYC_1_next_billing_date(today, billing_day, expected):
    assert next_billing_date(today, billing_day) == expected


@pytest.mark.parametrize(
    ("today", "billing_day", "expected"),
    [
        (date(2027, 3, 1), 1, date(2027, 3, 1)),  # on the day
        (date(2027, 3, 31), 1, date(2027, 3, 1)),
        (date(2027, 3, 14), 15, date(2027, 2, 15)),
        (date(2027, 3, 15), 15, date(2027, 3, 15)),
        (date(2027, 1, 10), 28, date(2026, 12, 28)),  # year end
    ],
)
def test_CYC_1_previous_billing_date(today, billing_day, expected):
    assert previous_billing_date(today, billing_day) == expected


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)), st.integers(min_value=1, max_value=28))
def test_CYC_1_next_and_previous_billing_dates_bracket_today(today, billing_day):
    nxt, prev = next_billing_date(today, billing_day), previous_billing_date(today, billing_day)
    assert nxt.day == prev.day == billing_day
    assert prev <= today <= nxt
    assert (nxt - today).days < 31 and (today - prev).days < 31
    if today.day == billing_day:
        assert nxt == prev == today
    else:
        assert add_months(prev, 1) == nxt


@pytest.mark.parametrize("billing_day", [0, 29, "1", True])
def test_CYC_1_next_billing_date_refuses_invalid_billing_day(billing_day):
    with pytest.raises(ApplicationError):
        next_billing_date(date(2027, 1, 1), billing_day)
    with pytest.raises(ApplicationError):
        previous_billing_date(date(2027, 1, 1), billing_day)


def test_CYC_1_invoice_days_single_billing_day():
    assert invoice_days(autopay_days=[], billing_day=15) == (15, 15)
    assert invoice_days(autopay_days=(), billing_day=1) == (1, 1)


def test_CYC_1_days_between_is_inclusive():
    assert days_between(date(2026, 12, 30), date(2027, 1, 2)) == [
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 1),
        date(2027, 1, 2),
    ]
    assert days_between(date(2027, 1, 1), date(2027, 1, 1)) == [date(2027, 1, 1)]
    assert days_between(date(2027, 1, 2), date(2027, 1, 1)) == []


# --------------------------------------------------------------------------------------------- CYC-4


def test_CYC_4_invoice_days_several_autopay_days_built_on_first_billed_on_last():
    assert invoice_days(autopay_days=[28, 5], billing_day=1) == (5, 28)
    assert invoice_days(autopay_days=[10, 20, 15], billing_day=1) == (10, 20)
    assert invoice_days(autopay_days=[5, 5, 28, 28], billing_day=1) == (5, 28)


def test_CYC_4_invoice_days_one_autopay_day_is_the_billing_day():
    assert invoice_days(autopay_days=[12], billing_day=1) == (12, 12)
    assert invoice_days(autopay_days=[12, 12], billing_day=1) == (12, 12)


def test_CYC_4_autopay_dates_sorted_deduplicated_last_is_billing_date():
    dates = autopay_dates(2027, 2, [28, 5, 15, 5])
    assert dates == [date(2027, 2, 5), date(2027, 2, 15), date(2027, 2, 28)]
    built_on, billed_on = invoice_days(autopay_days=[28, 5, 15, 5], billing_day=1)
    assert dates[0].day == built_on and dates[-1].day == billed_on


@pytest.mark.parametrize("days", [[5, 29], [0, 10], ["5", "10"]])
def test_CYC_4_autopay_dates_refuse_invalid_days(days):
    with pytest.raises(ApplicationError):
        autopay_dates(2027, 2, days)


# --------------------------------------------------------------------------------------------- RET-2


@pytest.mark.parametrize(
    ("billing_date", "weekday", "first", "second"),
    [
        (date(2027, 1, 1), FRI, date(2027, 1, 8), date(2027, 1, 15)),  # the SPEC example
        (date(2026, 12, 28), MON, date(2027, 1, 4), date(2027, 1, 11)),  # across the year end
        (date(2026, 12, 30), WED, date(2027, 1, 6), date(2027, 1, 13)),
        (date(2027, 12, 31), FRI, date(2028, 1, 7), date(2028, 1, 14)),  # Friday at year end
        (date(2026, 8, 1), SAT, date(2026, 8, 7), date(2026, 8, 14)),  # Saturday: Mon–Fri of next week
        (date(2026, 8, 2), SUN, date(2026, 8, 7), date(2026, 8, 14)),  # Sunday: same
        (date(2028, 1, 1), SAT, date(2028, 1, 7), date(2028, 1, 14)),  # Saturday on Jan 1
        (date(2026, 5, 31), SUN, date(2026, 6, 5), date(2026, 6, 12)),  # Sunday at month end
        (date(2026, 4, 30), THU, date(2026, 5, 7), date(2026, 5, 14)),  # Thursday, month end
        (date(2027, 2, 25), THU, date(2027, 3, 4), date(2027, 3, 11)),  # Thursday before Feb ends
        (date(2028, 2, 28), MON, date(2028, 3, 6), date(2028, 3, 13)),  # leap February
    ],
)
def test_RET_2_retries_on_5th_and_10th_weekday(billing_date, weekday, first, second):
    assert billing_date.weekday() == weekday  # guard on the hand-computed example
    assert retry_dates(billing_date) == (first, second)


def test_RET_2_add_weekdays_refuses_count_below_one():
    with pytest.raises(ValueError):
        add_weekdays(date(2027, 1, 1), 0)


def test_RET_2_add_weekdays_one_from_friday_is_monday():
    assert add_weekdays(date(2027, 1, 1), 1) == date(2027, 1, 4)
    assert add_weekdays(date(2027, 1, 2), 1) == date(2027, 1, 4)
    assert add_weekdays(date(2027, 1, 4), 1) == date(2027, 1, 5)


def _weekdays_in(start: date, end: date) -> int:
    """Weekdays in (start, end], counted by brute force."""
    return sum(1 for offset in range(1, (end - start).days + 1) if (start + timedelta(days=offset)).weekday() < 5)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_RET_2_retry_dates_are_the_5th_and_10th_weekday_property(billing_date):
    first, second = retry_dates(billing_date)
    for retry, count in ((first, 5), (second, 10)):
        assert retry.weekday() < 5
        assert retry > billing_date
        assert _weekdays_in(billing_date, retry) == count
    assert first < second
    # Five weekdays are exactly one calendar week from a weekday.
    if billing_date.weekday() < 5:
        assert first == billing_date + timedelta(days=7)
        assert second == billing_date + timedelta(days=14)


# --------------------------------------------------------------------------------------------- CYC-5


@pytest.mark.parametrize(
    ("instant", "time_zone", "expected"),
    [
        # 03:30 UTC on Mar 10 2026 is still Mar 9 in New York (EDT, UTC-4) but midday in Tokyo.
        (datetime(2026, 3, 10, 3, 30, tzinfo=UTC), "America/New_York", date(2026, 3, 9)),
        (datetime(2026, 3, 10, 3, 30, tzinfo=UTC), "Asia/Tokyo", date(2026, 3, 10)),
        # EST (UTC-5) around New Year.
        (datetime(2026, 1, 1, 4, 59, tzinfo=UTC), "America/New_York", date(2025, 12, 31)),
        (datetime(2026, 1, 1, 5, 0, tzinfo=UTC), "America/New_York", date(2026, 1, 1)),
        # Tokyo (UTC+9) is already the next day before UTC midnight.
        (datetime(2026, 1, 31, 14, 59, tzinfo=UTC), "Asia/Tokyo", date(2026, 1, 31)),
        (datetime(2026, 1, 31, 15, 0, tzinfo=UTC), "Asia/Tokyo", date(2026, 2, 1)),
        (datetime(2026, 1, 31, 23, 30, tzinfo=UTC), "Asia/Tokyo", date(2026, 2, 1)),
        (datetime(2026, 1, 31, 23, 30, tzinfo=UTC), "America/New_York", date(2026, 1, 31)),
        (datetime(2026, 1, 31, 23, 30, tzinfo=UTC), "UTC", date(2026, 1, 31)),
    ],
)
def test_CYC_5_local_date_in_agency_time_zone(instant, time_zone, expected):
    assert local_date(instant, time_zone) == expected


# --- notice dates (NOT-1, NOT-2, NOT-5) -----------------------------------------------------------------


def test_NOT_1_statement_goes_n_days_before_the_billing_date():
    assert statement_date(autopay_days=[], billing_day=1, year=2027, month=2, days_before=10) == date(2027, 1, 22)
    assert statement_date(autopay_days=[15], billing_day=1, year=2027, month=2, days_before=10) == date(2027, 2, 5)
    assert statement_date(autopay_days=[], billing_day=1, year=2027, month=3, days_before=3) == date(2027, 2, 26)


def test_NOT_2_statement_goes_before_the_first_autopay_date():
    # Autopay 10 and 25, N = 5: five days before the 10th; the previous 25th is 16+ days earlier.
    assert statement_date(autopay_days=[25, 10], billing_day=1, year=2027, month=3, days_before=5) == date(2027, 3, 5)


def test_NOT_2_spec_example_5_and_28_with_10_days_goes_the_day_after_the_previous_28th():
    # The 5th is only 7-8 days after the previous month's 28th: the statement goes on the 29th.
    assert statement_date(autopay_days=[5, 28], billing_day=1, year=2027, month=3, days_before=10) == date(2027, 3, 1)
    assert statement_date(autopay_days=[5, 28], billing_day=1, year=2027, month=2, days_before=10) == date(2027, 1, 29)
    assert statement_date(autopay_days=[5, 28], billing_day=1, year=2027, month=1, days_before=10) == date(2026, 12, 29)


def test_NOT_2_exactly_n_days_apart_keeps_n_days_before():
    # Previous last autopay 2027-01-25, first 2027-02-04: 10 days apart, not fewer: 10 days before.
    assert statement_date(autopay_days=[4, 25], billing_day=1, year=2027, month=2, days_before=10) == date(2027, 1, 25)


def test_NOT_5_follow_ups_are_counted_from_the_previous_notice():
    assert follow_up_dates(date(2027, 1, 12), 3, 4) == [date(2027, 1, 12), date(2027, 1, 15), date(2027, 1, 19)]
    assert follow_up_dates(date(2027, 1, 12), 3, None) == [date(2027, 1, 12), date(2027, 1, 15)]
    # No third without a second.
    assert follow_up_dates(date(2027, 1, 12), None, 4) == [date(2027, 1, 12)]


# --- CYC-1: billing-day changes ----------------------------------------------------------------------------------


def _p(a: str, b: str):
    from core.calendar import Period

    return Period(date.fromisoformat(a), date.fromisoformat(b))


def test_CYC_1_moving_a_client_later_bridges_from_the_billed_period_end():
    from core.calendar import periods_due

    billed = [_p("2026-12-05", "2027-01-05")]
    assert periods_due(today=date(2026, 12, 20), build_day=20, bill_day=20, invoiced=billed) == []  # covered
    (bridge,) = periods_due(today=date(2027, 1, 5), build_day=20, bill_day=20, invoiced=billed)
    assert (bridge.period, bridge.usage, bridge.bridging) == (
        _p("2027-01-05", "2027-01-20"),
        _p("2026-12-05", "2027-01-05"),
        True,
    )
    billed.append(bridge.period)
    (full,) = periods_due(today=date(2027, 1, 20), build_day=20, bill_day=20, invoiced=billed)
    assert (full.period, full.usage, full.bridging) == (_p("2027-01-20", "2027-02-20"), bridge.period, False)


def test_CYC_1_moving_a_client_earlier_skips_the_covered_day_then_bridges():
    from core.calendar import periods_due

    billed = [_p("2026-12-20", "2027-01-20")]
    assert periods_due(today=date(2027, 1, 5), build_day=5, bill_day=5, invoiced=billed) == []
    (bridge,) = periods_due(today=date(2027, 1, 20), build_day=5, bill_day=5, invoiced=billed)
    assert bridge.period == _p("2027-01-20", "2027-02-05")


def test_CYC_1_agency_periods_are_contiguous_in_both_directions():
    from core.calendar import agency_period_due

    # 1 → 10 after the 10th has passed: the current period closes a full cycle on, then a bridge to the 10th.
    assert agency_period_due(today=date(2027, 1, 20), billing_day=10, last_end=date(2027, 1, 1)) is None
    assert agency_period_due(today=date(2027, 2, 1), billing_day=10, last_end=date(2027, 1, 1)) == _p(
        "2027-01-01", "2027-02-01"
    )
    assert agency_period_due(today=date(2027, 2, 10), billing_day=10, last_end=date(2027, 2, 1)) == _p(
        "2027-02-01", "2027-02-10"
    )
    # 10 → 3: the 3rd comes before the current period's full cycle ends, so it closes there.
    assert agency_period_due(today=date(2027, 3, 3), billing_day=3, last_end=date(2027, 2, 10)) == _p(
        "2027-02-10", "2027-03-03"
    )
    assert agency_period_due(today=date(2027, 1, 1), billing_day=1, last_end=None) == _p("2026-12-01", "2027-01-01")


@pytest.mark.parametrize(
    ("amount", "period", "expected"),
    [
        (31000, ("2027-01-05", "2027-01-20"), 15000),  # 15 of 31 days
        (10000, ("2027-02-01", "2027-02-10"), 3214),  # 9 of 28 days: 3,214.28… → 3,214
        (100, ("2027-01-01", "2027-01-02"), 3),  # 1 of 31: 3.2258 → 3
        (99, ("2027-04-01", "2027-04-16"), 50),  # 15 of 30: 49.5 → 50 (half-up)
        (31000, ("2027-01-05", "2027-02-05"), 31000),  # a full cycle is the amount itself
    ],
)
def test_CYC_1_bridging_amounts_are_prorated_by_days_rounded_half_up_once(amount, period, expected):
    from core.calendar import prorated_minor

    assert prorated_minor(amount, _p(*period)) == expected
