"""NOT-1/NOT-3 with CYC-1: a bridging invoice (a client's billing day moved) is announced like every other — its
Upcoming Statement N days before it with its own prorated amount, its Upcoming Payment two days before — once; and a
billing date of the new schedule that the old period still covers (the day moved earlier), for which no invoice is
ever built, is not announced. Run through the day pipeline, day after day, as the billing clock runs it."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role, User
from agencybilling import seed
from billing.models import Invoice
from clients.models import Client
from clients.services import client_configure
from core.calendar import days_between
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tests.billing_helpers import with_plan

pytestmark = pytest.mark.django_db

PRICE = 31_000  # 310.00 a month: 10.00 a day in a 31-day cycle
ANNOUNCEMENTS = (NoticeKind.UPCOMING_STATEMENT, NoticeKind.UPCOMING_PAYMENT)


def _client(agency, billing_day: int) -> Client:
    with tenant_context(agency):
        User.objects.create_user("admin@alpha.test", "pw-correct-horse-9", role=Role.ADMINISTRATOR)
        return seed.client(
            name="Mover",
            email="mover@example.com",
            activated_on=date(2026, 11, 1),
            license_price_minor=PRICE,
            billing_day=billing_day,
        )


def _move(agency, client, billing_day: int) -> None:
    with tenant_context(agency):
        client_configure(
            client=Client.objects.get(pk=client.pk),
            billing_day=billing_day,
            actor=User.objects.get(email="admin@alpha.test"),
        )


def _announced(agency) -> list[tuple[str, str, int, date]]:
    with schema_context(agency.schema_name):
        return list(
            Notice.objects.filter(kind__in=ANNOUNCEMENTS)
            .order_by("business_date", "kind")
            .values_list("kind", "period", "number", "business_date")
        )


def _invoices(agency, client) -> list[tuple[date, date, int]]:
    with schema_context(agency.schema_name):
        return list(
            Invoice.objects.filter(client=client)
            .order_by("period_start")
            .values_list("period_start", "period_end", "total_minor")
        )


def test_NOT_1_NOT_3_CYC_1_a_bridging_invoice_after_a_move_to_a_later_day_is_announced_once(agency_a):
    """Billing day 5 → 20 on 10 Dec (December invoiced 5 Dec – 5 Jan): the bridge 5 – 20 Jan (15 of 31 days, 150.00)
    is announced on 26 Dec (10 days before) and 3 Jan (2 days before); the full cycle from 20 Jan on 10 and 18 Jan."""
    agency = with_plan(agency_a)
    client = _client(agency, billing_day=5)
    seed.run_days(agency, days_between(date(2026, 12, 5), date(2026, 12, 9)))
    _move(agency, client, billing_day=20)
    seed.run_days(agency, days_between(date(2026, 12, 10), date(2027, 1, 20)))
    seed.run_days(agency, [date(2026, 12, 26), date(2027, 1, 3)])  # a rerun of those days sends nothing again
    assert _invoices(agency, client) == [
        (date(2026, 12, 5), date(2027, 1, 5), PRICE),
        (date(2027, 1, 5), date(2027, 1, 20), 15_000),
        (date(2027, 1, 20), date(2027, 2, 20), PRICE),
    ]
    assert _announced(agency) == [
        (NoticeKind.UPCOMING_STATEMENT, "2027-01-05", 1, date(2026, 12, 26)),
        (NoticeKind.UPCOMING_PAYMENT, "2027-01-05", 1, date(2027, 1, 3)),
        (NoticeKind.UPCOMING_STATEMENT, "2027-01-20", 1, date(2027, 1, 10)),
        (NoticeKind.UPCOMING_PAYMENT, "2027-01-20", 1, date(2027, 1, 18)),
    ]
    with schema_context(agency.schema_name):
        statement = Notice.objects.get(kind=NoticeKind.UPCOMING_STATEMENT, period="2027-01-05")
        payment = Notice.objects.get(kind=NoticeKind.UPCOMING_PAYMENT, period="2027-01-05")
    assert "License 2027-01-05 – 2027-01-19 (15 of 31 days): 150.00 USD" in statement.body  # the bridge's own
    assert "150.00" in payment.body


def test_NOT_1_NOT_3_CYC_1_a_move_to_an_earlier_day_announces_the_bridge_not_a_date_the_old_period_covers(agency_a):
    """Billing day 20 → 5 on 2 Jan (December invoiced 20 Dec – 20 Jan): 5 Jan is inside that period and is never
    invoiced, so nothing announces it (before, an Upcoming Payment did on 3 Jan); the bridge 20 Jan – 5 Feb is
    announced on 10 and 18 Jan, the full cycle from 5 Feb on 26 Jan and 3 Feb."""
    agency = with_plan(agency_a)
    client = _client(agency, billing_day=20)
    seed.run_days(agency, days_between(date(2026, 12, 20), date(2027, 1, 1)))
    _move(agency, client, billing_day=5)
    seed.run_days(agency, days_between(date(2027, 1, 2), date(2027, 2, 5)))
    periods = [(start, end) for start, end, _ in _invoices(agency, client)]
    assert periods == [
        (date(2026, 12, 20), date(2027, 1, 20)),
        (date(2027, 1, 20), date(2027, 2, 5)),
        (date(2027, 2, 5), date(2027, 3, 5)),
    ]
    assert [notice for notice in _announced(agency) if notice[3] >= date(2027, 1, 2)] == [
        (NoticeKind.UPCOMING_STATEMENT, "2027-01-20", 1, date(2027, 1, 10)),
        (NoticeKind.UPCOMING_PAYMENT, "2027-01-20", 1, date(2027, 1, 18)),
        (NoticeKind.UPCOMING_STATEMENT, "2027-02-05", 1, date(2027, 1, 26)),
        (NoticeKind.UPCOMING_PAYMENT, "2027-02-05", 1, date(2027, 2, 3)),
    ]


def test_NOT_1_NOT_7_CYC_1_a_move_after_the_statement_went_sends_no_second_one_for_the_same_date(agency_a):
    """Too late for the bridge's own statement: billing day 5 → 20 on 30 Dec, after the Upcoming Statement for 5 Jan
    went on 26 Dec under the old schedule. The bridge (billed 5 Jan) gets no second statement (NOT-7: one per
    billing date), but its Upcoming Payment on 3 Jan carries the bridge's own amount (docs/decisions.md, "Bridging
    invoices are announced")."""
    agency = with_plan(agency_a)
    client = _client(agency, billing_day=5)
    seed.run_days(agency, days_between(date(2026, 12, 5), date(2026, 12, 29)))
    _move(agency, client, billing_day=20)
    seed.run_days(agency, days_between(date(2026, 12, 30), date(2027, 1, 5)))
    assert _announced(agency) == [
        (NoticeKind.UPCOMING_STATEMENT, "2027-01-05", 1, date(2026, 12, 26)),
        (NoticeKind.UPCOMING_PAYMENT, "2027-01-05", 1, date(2027, 1, 3)),
    ]
    with schema_context(agency.schema_name):
        payment = Notice.objects.get(kind=NoticeKind.UPCOMING_PAYMENT, period="2027-01-05")
    assert "150.00" in payment.body
