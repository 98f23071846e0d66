"""The billing clock (CYC-5): local days, catch-up in date order, one runner per agency."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from billing.clock import AgencyBusy, agency_clock_catch_up, agency_days_run, due_days
from billing.models import AgencyDay, Invoice
from core.locks import lock_key
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tenants.models import Agency
from tests.billing_helpers import client_create, with_plan

pytestmark = pytest.mark.django_db


def test_CYC_5_due_days_follow_the_agency_local_calendar(agency_a):
    # 03:00 UTC on 2 Jan is still 1 Jan in New York.
    agency_a.clock_date = date(2026, 12, 29)
    assert due_days(agency_a, datetime(2027, 1, 2, 3, 0, tzinfo=UTC)) == [
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 1),
    ]
    agency_a.time_zone = "Asia/Tokyo"  # already 2 Jan at noon there
    assert due_days(agency_a, datetime(2027, 1, 2, 3, 0, tzinfo=UTC))[-1] == date(2027, 1, 2)
    agency_a.clock_date = None  # a new agency starts today, it does not bill the past
    assert due_days(agency_a, datetime(2027, 1, 2, 3, 0, tzinfo=UTC)) == [date(2027, 1, 2)]


def test_CYC_5_missed_days_are_caught_up_in_date_order(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        client_create(name="Early", email="e@example.com", activated_on=date(2026, 12, 1), license_price_minor=100)
        client_create(
            name="Mid", email="m@example.com", activated_on=date(2026, 12, 1), license_price_minor=100, billing_day=3
        )
    Agency.objects.filter(pk=agency.pk).update(clock_date=date(2026, 12, 31))
    agency.refresh_from_db()
    seen = []
    ran = agency_days_run(agency=agency, until=date(2027, 1, 4), progress=lambda day, _result: seen.append(day))
    assert ran == seen == [date(2027, 1, d) for d in (1, 2, 3, 4)]
    agency.refresh_from_db()
    assert agency.clock_date == date(2027, 1, 4)
    with schema_context(agency.schema_name):
        assert list(AgencyDay.objects.order_by("day").values_list("day", "status")) == [
            (date(2027, 1, d), "DONE") for d in (1, 2, 3, 4)
        ]
        assert list(Invoice.objects.order_by("number").values_list("issued_on", flat=True)) == [
            date(2027, 1, 1),
            date(2027, 1, 3),
        ]
    # Running again finds nothing to do.
    assert agency_days_run(agency=agency, until=date(2027, 1, 4)) == []


def test_CYC_3_a_second_runner_of_the_same_agency_is_refused(agency_a):
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    other = psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [lock_key(f"agency-clock:{agency_a.schema_name}")])
        Agency.objects.filter(pk=agency_a.pk).update(clock_date=date(2026, 12, 31))
        agency_a.refresh_from_db()
        with pytest.raises(AgencyBusy):
            agency_days_run(agency=agency_a, until=date(2027, 1, 1))
        agency_a.refresh_from_db()
        assert agency_a.clock_date == date(2026, 12, 31)
    finally:
        other.close()


def test_tick_enqueues_one_task_per_due_agency(agency_a, agency_b, eager_tasks):
    from datetime import timedelta

    from django.utils import timezone

    from billing.tasks import billing_clock_tick
    from core.calendar import local_date

    today = local_date(timezone.now(), agency_a.time_zone)
    Agency.objects.filter(pk=agency_a.pk).update(clock_date=today - timedelta(days=2))
    Agency.objects.filter(pk=agency_b.pk).update(clock_date=today + timedelta(days=2))  # not due
    sent = billing_clock_tick()
    assert sent == {"alpha": today.isoformat()}
    agency_a.refresh_from_db()
    assert agency_a.clock_date == today
    with schema_context(agency_a.schema_name):
        assert AgencyDay.objects.count() == 2


def test_simulate_walks_every_day_with_a_summary(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        client_create(name="Sim", email="s@example.com", activated_on=date(2026, 12, 1), license_price_minor=4000)
    out = io.StringIO()
    call_command("simulate", "--start", "2027-01-01", "--end", "2027-01-03", "--agency", "alpha", "--quiet", stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) == 3
    # No payment method on file: Uncollectable at once, no attempt (COL-4).
    assert lines[0] == (
        "2027-01-01 alpha: notices: 0 statements, 0 upcoming payments; 1 invoices + agency invoice "
        "P-ALPHA-000001; due: 0 attempts: 0 paid, 0 pending, 0 failed, 1 uncollectable; "
        "0 processor events; notices sent by the day: 1"
    )  # the day's one notice, sent by its last step (no worker sends it here)
    assert lines[1].startswith("2027-01-02 alpha: notices: 0 statements, 0 upcoming payments; 0 invoices; due: 0")


def _announced(agency, billing_date: date) -> dict[str, int]:
    with schema_context(agency.schema_name):
        notices = Notice.objects.filter(period=billing_date.isoformat())
        return {
            kind: notices.filter(kind=kind).count()
            for kind in (NoticeKind.UPCOMING_STATEMENT, NoticeKind.UPCOMING_PAYMENT)
        }


@pytest.mark.parametrize("path", ["clock", "simulate"])
def test_CYC_5_days_replayed_after_an_outage_announce_nothing_already_come(agency_a, path):
    """The clock down from 20 Jan to 5 Feb: its catch-up replays 22 Jan (the 1 Feb statement's notice day) and
    30 Jan (its Upcoming Payment's), but by the agency's real today (5 Feb) the invoice is built and charged, so
    neither is announced; the invoice is built as ever. `simulate`-style runs (each day as if it were today, the
    demo's history) announce both."""
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        client_create(name="Outage", email="o@example.com", activated_on=date(2026, 12, 1), license_price_minor=100)
    Agency.objects.filter(pk=agency.pk).update(clock_date=date(2027, 1, 20))
    agency.refresh_from_db()
    if path == "clock":
        agency_clock_catch_up(schema_name=agency.schema_name, until=date(2027, 2, 5))
    else:
        agency_days_run(agency=agency, until=date(2027, 2, 5))
    expected = 0 if path == "clock" else 1
    assert set(_announced(agency, date(2027, 2, 1)).values()) == {expected}
    with schema_context(agency.schema_name):
        assert Invoice.objects.filter(issued_on=date(2027, 2, 1)).count() == 1
