"""PLAN-3: usage that cannot be billed is refused; usage recorded after its cycle was invoiced is carried by the
next invoice under a line naming its cycle (its tiers continued from what was billed); nothing accepted is
silently dropped — on the client's invoices nor on the agency's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django_tenants.utils import schema_context

from agencybilling import seed
from billing.models import Invoice, UsageRecord
from billing.platform.models import AgencyInvoice
from billing.usage import UsageInput, usage_record_bulk
from clients.services import client_create, client_deactivate
from core.errors import ApplicationError
from tests.billing_helpers import with_plan

pytestmark = pytest.mark.django_db


def _at(day: date, hour: int = 15) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _lines(invoice) -> list[tuple[str, int, int]]:
    return [(line.description, line.quantity, line.amount_minor) for line in invoice.lines.all()]


def test_PLAN_3_late_usage_is_billed_on_the_next_invoice_under_a_line_naming_its_cycle(agency_a):
    agency = with_plan(agency_a)  # listings: 100 included at 0.10, then 0.07 each
    with schema_context(agency.schema_name):
        client = client_create(name="Late Co", email="late@example.com", activated_on=date(2026, 12, 1))
        usage_record_bulk(
            agency=agency,
            items=[UsageInput("listings", 90, _at(date(2026, 12, 10)), "dec", client)],
            now=_at(date(2026, 12, 10)),
        )
    seed.run_days(agency, [date(2027, 1, 1)])
    with schema_context(agency.schema_name):
        january = Invoice.objects.get(client=client, period_start=date(2027, 1, 1))
        assert ("Listings", 90, 900) in _lines(january)
        # Recorded on 5 January, dated 20 December: December's usage is already on the January invoice.
        usage_record_bulk(
            agency=agency,
            items=[
                UsageInput("listings", 30, _at(date(2026, 12, 20)), "dec-late", client),
                UsageInput("listings", 5, _at(date(2027, 1, 10)), "jan", client),
            ],
            now=_at(date(2027, 1, 10)),
        )
    seed.run_days(agency, [date(2027, 2, 1)])
    with schema_context(agency.schema_name):
        february = Invoice.objects.get(client=client, period_start=date(2027, 2, 1))
        lines = _lines(february)
        assert ("Listings", 5, 50) in lines  # January's own
        # December's tier goes on from the 90 already billed: 10 more included at 0.10, then 20 at 0.07.
        assert ("Listings — 2026-12-01 – 2026-12-31", 10, 100) in lines
        assert ("Listings — overage — 2026-12-01 – 2026-12-31", 20, 140) in lines
        # Every record is on exactly one client invoice, and on one agency invoice.
        carried = dict(UsageRecord.objects.values_list("idempotency_key", "client_invoice__number"))
        assert carried == {"dec": january.number, "dec-late": february.number, "jan": february.number}
        assert UsageRecord.objects.filter(agency_invoice_id__isnull=True).count() == 0
    # The agency's invoice in arrears: December's late usage on February's, naming December's cycle.
    feb_agency = AgencyInvoice.objects.get(agency=agency, period_end=date(2027, 2, 1))
    assert ("Listings — 2026-12-01 – 2026-12-31", 10, 100) in _lines(feb_agency)
    assert ("Listings — overage — 2026-12-01 – 2026-12-31", 20, 140) in _lines(feb_agency)
    assert ("Listings", 5, 50) in _lines(feb_agency)
    # A rerun of the day bills nothing again.
    seed.run_days(agency, [date(2027, 2, 1)])
    with schema_context(agency.schema_name):
        assert Invoice.objects.filter(client=client).count() == 2


def test_PLAN_3_usage_no_invoice_could_carry_is_refused_and_nothing_changes(agency_a):
    agency = with_plan(agency_a)
    now = datetime(2027, 1, 10, 12, tzinfo=UTC)
    with schema_context(agency.schema_name):
        client = client_create(name="Strict Co", email="strict@example.com", activated_on=date(2026, 12, 1))
        gone = client_create(name="Gone Co", email="gone@example.com", activated_on=date(2026, 12, 1))
        client_deactivate(client=gone, on=date(2027, 1, 1), actor="test")
        gone.refresh_from_db()
        cases = [
            (
                UsageInput("listings", 1, datetime(1970, 1, 1, tzinfo=UTC), "k", client),
                "before Strict Co was activated",
            ),
            (UsageInput("listings", 1, datetime(2099, 1, 1, tzinfo=UTC), "k", client), "in the future"),
            (UsageInput("listings", 1, now + timedelta(minutes=6), "k", client), "in the future"),
            (UsageInput("listings", 1, datetime(2026, 11, 30, 12, tzinfo=UTC), "k", client), "before Strict Co"),
            (UsageInput("listings", 1, datetime(2027, 1, 2, 12, tzinfo=UTC), "k", gone), "deactivated"),
            (UsageInput("listings", 1, datetime(1970, 1, 1, tzinfo=UTC), "k", None), "agency's first billing cycle"),
        ]
        for item, message in cases:
            with pytest.raises(ApplicationError) as excinfo:
                usage_record_bulk(agency=agency, items=[item], now=now)
            assert message in excinfo.value.fields["occurred_at"][0], item
        # In a batch, the bad one is named and nothing is stored.
        with pytest.raises(ApplicationError) as excinfo:
            usage_record_bulk(
                agency=agency,
                items=[UsageInput("listings", 1, now, "ok", client), cases[1][0]],
                now=now,
            )
        assert "records[1].occurred_at" in excinfo.value.fields
        assert not UsageRecord.objects.exists()
        # Within the clock-skew allowance, on the activation day, the last day before deactivation: accepted.
        usage_record_bulk(
            agency=agency,
            items=[
                UsageInput("listings", 1, now + timedelta(minutes=4), "skew", client),
                UsageInput("listings", 1, datetime(2026, 12, 1, 12, tzinfo=UTC), "first-day", client),
                UsageInput("listings", 1, datetime(2026, 12, 31, 12, tzinfo=UTC), "last-day", gone),
            ],
            now=now,
        )
        assert UsageRecord.objects.count() == 3
