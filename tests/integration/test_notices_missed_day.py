"""NOT-1, NOT-3, NOT-5, NOT-7 and a missed day: a day whose notices step is given up (here a fault of the data — a
constraint that refuses every notice of those days — as a corrupted row or a bug would) does not lose its Upcoming
Statement or Upcoming Payment: a later day's step sends it late, once, while the date it announces is still ahead,
and of a statement and its follow-ups only the latest due. Run through the day pipeline."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection
from django_tenants.utils import schema_context, tenant_context

from agencybilling import seed
from billing.models import AgencyDayStep, BillingSettings, DayStep, StepStatus
from billing.reminders import reminders_send
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tests.billing_helpers import with_plan

pytestmark = pytest.mark.django_db(transaction=True)  # a failed step leaves its transaction

FEB1 = date(2027, 2, 1)  # billing date; statement 10 days before (22 Jan), its second 2 days later (24 Jan)
STATEMENT, SECOND, PAYMENT = date(2027, 1, 22), date(2027, 1, 24), date(2027, 1, 30)


@pytest.fixture
def agency(agency_a, settings):
    settings.DAY_STEP_MAX_FAILURES = 1  # given up at its first failure of its own
    agency = with_plan(agency_a)
    with tenant_context(agency):
        BillingSettings.objects.update(statement_second_after_days=2)
        seed.client(
            name="Missed",
            email="missed@example.com",
            activated_on=date(2026, 12, 1),
            license_price_minor=10_000,
            billing_day=1,
        )
    return agency


def _given_up(agency, days: list[date]) -> None:
    """Run those days with every notice dated on them refused: their notices step fails and is given up."""
    table = f'"{agency.schema_name}"."{Notice._meta.db_table}"'
    listed = ", ".join(f"DATE '{day.isoformat()}'" for day in days)
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT missed_fault CHECK (business_date NOT IN ({listed})) NOT VALID"
        )
    try:
        seed.run_days(agency, days)
    finally:  # the schema is shared by later tests
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS missed_fault")
    with schema_context(agency.schema_name):
        steps = AgencyDayStep.objects.filter(day__day__in=days, step=DayStep.NOTICES)
        assert {s.status for s in steps} == {StepStatus.FAILED} and steps.count() == len(days)


def _sent(agency, kind: str) -> list[tuple[int, date]]:
    with schema_context(agency.schema_name):
        return list(
            Notice.objects.filter(kind=kind, period=FEB1.isoformat())
            .order_by("number")
            .values_list("number", "business_date")
        )


def test_NOT_1_a_statement_whose_day_was_given_up_goes_the_next_day_once(agency):
    _given_up(agency, [STATEMENT])
    seed.run_days(agency, [date(2027, 1, 23)])
    assert _sent(agency, NoticeKind.UPCOMING_STATEMENT) == [(1, date(2027, 1, 23))]
    with tenant_context(agency):
        assert reminders_send(agency=agency, today=date(2027, 1, 23)).statements == 0  # a rerun: already queued
    seed.run_days(agency, [SECOND])
    assert _sent(agency, NoticeKind.UPCOMING_STATEMENT) == [(1, date(2027, 1, 23)), (2, SECOND)]


def test_NOT_5_of_a_statement_and_its_follow_up_both_missed_only_the_latest_goes(agency):
    _given_up(agency, [STATEMENT, date(2027, 1, 23), SECOND])
    seed.run_days(agency, [date(2027, 1, 25), date(2027, 1, 26)])
    assert _sent(agency, NoticeKind.UPCOMING_STATEMENT) == [(2, date(2027, 1, 25))]


def test_NOT_3_an_upcoming_payment_whose_day_was_given_up_goes_before_its_billing_date(agency):
    _given_up(agency, [PAYMENT])
    seed.run_days(agency, [date(2027, 1, 31)])
    assert _sent(agency, NoticeKind.UPCOMING_PAYMENT) == [(1, date(2027, 1, 31))]


def test_NOT_1_NOT_3_no_upcoming_notice_once_the_date_it_announces_has_come(agency):
    _given_up(agency, [STATEMENT, SECOND, PAYMENT, date(2027, 1, 31)])
    seed.run_days(agency, [FEB1, date(2027, 2, 2)])  # the invoice is built and charged on the 1st
    assert _sent(agency, NoticeKind.UPCOMING_STATEMENT) == []
    assert _sent(agency, NoticeKind.UPCOMING_PAYMENT) == []
