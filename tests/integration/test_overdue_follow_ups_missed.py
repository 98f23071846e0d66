"""NOT-5 with DUN-1: an Account Overdue follow-up whose day was missed (that day's overdue step given up, or not run)
goes with the next evaluation while the account is still overdue — only the latest one due, once (NOT-7)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import tenant_context

from billing.dunning import overdue_evaluate
from billing.models import BillingSettings
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tests.billing_helpers import ready_to_collect
from tests.integration.test_overdue_cleared_by_payment import FLAGGED, _overdue_client

pytestmark = pytest.mark.django_db

SECOND = date(2027, 1, 5)  # flagged on the 2nd; second notice 3 days later, third 4 days after that (the 9th)
THIRD = date(2027, 1, 9)


@pytest.fixture
def agency(agency_a):
    agency = ready_to_collect(agency_a)
    with tenant_context(agency):
        BillingSettings.objects.update(overdue_second_after_days=3, overdue_third_after_days=4)
    return agency


def _sent(agency) -> list[tuple[int, str]]:
    with tenant_context(agency):
        return list(
            Notice.objects.filter(kind=NoticeKind.ACCOUNT_OVERDUE)
            .order_by("number")
            .values_list("number", "business_date")
            .order_by("number")
        )


def _evaluate(agency, day: date) -> int:
    with tenant_context(agency):
        return overdue_evaluate(agency=agency, today=day).notices


def test_NOT_5_a_follow_up_whose_day_was_missed_goes_the_next_evaluation_once(agency):
    _overdue_client(agency, declining="pm_card_visa_chargeDeclined")  # flagged, first notice, on the 2nd
    assert [n for n, _ in _sent(agency)] == [1]
    # The 5th's overdue step was given up: the second notice goes on the 6th, once.
    assert _evaluate(agency, date(2027, 1, 6)) == 1
    assert _evaluate(agency, date(2027, 1, 6)) == 0  # a rerun of the day
    assert _evaluate(agency, date(2027, 1, 7)) == 0
    assert _sent(agency) == [(1, FLAGGED), (2, date(2027, 1, 6))]
    assert _evaluate(agency, THIRD) == 1
    assert _evaluate(agency, date(2027, 1, 10)) == 0
    assert [n for n, _ in _sent(agency)] == [1, 2, 3]


def test_NOT_5_when_a_later_follow_up_is_due_only_that_one_goes(agency):
    _overdue_client(agency, declining="pm_card_visa_chargeDeclined")
    # Nothing evaluated from the 3rd to the 9th: the second notice is stale, the third is the one due.
    assert _evaluate(agency, date(2027, 1, 10)) == 1
    assert _sent(agency) == [(1, FLAGGED), (3, date(2027, 1, 10))]
    assert _evaluate(agency, date(2027, 1, 11)) == 0
    assert [n for n, _ in _sent(agency)] == [1, 3]


def test_NOT_5_no_follow_up_once_the_account_is_no_longer_overdue(agency):
    client = _overdue_client(agency, declining="pm_card_visa_chargeDeclined")
    with tenant_context(agency):
        # The threshold raised above what is past due: not overdue any more by the next evaluation.
        BillingSettings.objects.update(overdue_threshold_minor=client.license_price_minor + 1)
    assert _evaluate(agency, date(2027, 1, 6)) == 0
    assert [n for n, _ in _sent(agency)] == [1]
