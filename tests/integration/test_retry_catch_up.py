"""RET-2/RET-3 when a failure comes after the retry schedule's dates have passed: the charge gets its next attempt on
the next weekday, and the three-failure limit still ends it — never Retrying with no next attempt (which no day's
retries ever pick up). docs/decisions.md, "A retry date that has passed"."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from billing.attempts import charge_retry_manual
from billing.collection import agency_charges_collect, collect_due
from billing.invoicing import billing_run
from billing.models import Charge, ChargeAttempt
from billing.payment_methods import agency_payment_method_attach, payment_method_attach
from billing.platform.models import AgencyCharge, AgencyChargeAttempt
from billing.statuses import AttemptOutcome, ChargeStatus
from tests.billing_helpers import client_create, ready_to_collect

pytestmark = pytest.mark.django_db

BILLED = date(2027, 1, 1)  # Friday: retries Fri 8 and Fri 15 (RET-2's own example)


@pytest.fixture
def agency(agency_a):
    return ready_to_collect(agency_a)


def _declining_client(agency):
    with schema_context(agency.schema_name):
        client = client_create(
            name="Late", email="late@example.com", activated_on=date(2026, 12, 1), license_price_minor=10000
        )
        payment_method_attach(client=client, token="pm_card_visa_chargeDeclined")
    billing_run(agency=agency, today=BILLED)
    return client


def _charge(agency, client) -> Charge:
    with schema_context(agency.schema_name):
        return Charge.objects.get(client=client)


def _attempt_days(agency, client) -> list[tuple[date, str]]:
    with schema_context(agency.schema_name):
        return list(
            ChargeAttempt.objects.filter(charge__client=client)
            .order_by("number")
            .values_list("attempted_on", "outcome")
        )


def test_RET_2_RET_4_a_manual_retry_failing_after_the_last_retry_date_keeps_a_next_attempt(agency):
    """Billing support runs a manual retry on Mon 18 (the wall clock's day) while the agency's billing clock is still
    down: its failure comes after both retry dates (8th and 15th). The charge is retried on Tue 19, the next
    weekday, and that third failure makes it Uncollectable (RET-3)."""
    client = _declining_client(agency)
    with tenant_context(agency):
        collect_due(today=BILLED)
        assert _charge(agency, client).next_retry_on == date(2027, 1, 8)
        charge_retry_manual(_charge(agency, client), today=date(2027, 1, 18), actor="support@example.com")
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.RETRYING
    assert charge.next_retry_on == date(2027, 1, 19)
    with tenant_context(agency):
        # The clock catches its days up in order: nothing is due before the 19th any more.
        for day in range(2, 19):
            assert collect_due(today=date(2027, 1, day), first_attempts=False).attempted == 0
        assert collect_due(today=date(2027, 1, 19), first_attempts=False).attempted == 1
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    assert _attempt_days(agency, client) == [
        (BILLED, AttemptOutcome.DECLINED),
        (date(2027, 1, 18), AttemptOutcome.DECLINED),
        (date(2027, 1, 19), AttemptOutcome.DECLINED),
    ]


def test_RET_2_a_first_attempt_made_after_both_retry_dates_retries_on_the_next_weekdays(agency):
    """A first attempt made late (the day's collection step given up and run again on Fri 22): its retries follow on
    the next weekdays (Mon 25, Tue 26), then Uncollectable after the third failure."""
    client = _declining_client(agency)
    with tenant_context(agency):
        collect_due(today=date(2027, 1, 22), retries=False)
        assert _charge(agency, client).next_retry_on == date(2027, 1, 25)
        collect_due(today=date(2027, 1, 25), first_attempts=False)
        assert _charge(agency, client).next_retry_on == date(2027, 1, 26)
        collect_due(today=date(2027, 1, 26), first_attempts=False)
    days = [day for day, _ in _attempt_days(agency, client)]
    assert days == [date(2027, 1, 22), date(2027, 1, 25), date(2027, 1, 26)]
    assert _charge(agency, client).status == ChargeStatus.UNCOLLECTABLE


def test_RET_2_a_failure_between_the_two_dates_keeps_the_schedules_second_date(agency):
    """Only dates that have passed are replaced: a first attempt on Mon 11 is retried on the 10th weekday (Fri 15)."""
    client = _declining_client(agency)
    with tenant_context(agency):
        collect_due(today=date(2027, 1, 11), retries=False)
    assert _charge(agency, client).next_retry_on == date(2027, 1, 15)


def test_RET_2_a_charge_left_retrying_without_a_date_is_retried_on_the_next_day(agency):
    """A charge the earlier code left Retrying with no next attempt is picked up by the next day's retries."""
    client = _declining_client(agency)
    with tenant_context(agency):
        collect_due(today=BILLED)
        Charge.objects.filter(client=client).update(next_retry_on=None)
        assert collect_due(today=date(2027, 1, 20), first_attempts=False).attempted == 1
    charge = _charge(agency, client)
    assert len(_attempt_days(agency, client)) == 2
    assert charge.status == ChargeStatus.RETRYING and charge.next_retry_on == date(2027, 1, 21)


def test_PAY_3_RET_2_the_agencys_own_charge_failing_late_keeps_a_next_attempt(agency):
    """The agency's own invoice (PAY-3) follows the same rule: its first attempt made after both retry dates."""
    agency_payment_method_attach(agency=agency, token="pm_card_visa_chargeDeclined:agency")
    _declining_client(agency)  # builds the invoices of the 1st
    charge = AgencyCharge.objects.get(agency=agency)
    late = date(2027, 1, 20)  # Wednesday, after the 15th
    agency_charges_collect(agency=agency, today=late)
    charge.refresh_from_db()
    assert AgencyChargeAttempt.objects.filter(charge=charge).count() == 1
    assert charge.status == ChargeStatus.RETRYING and charge.next_retry_on == date(2027, 1, 21)
