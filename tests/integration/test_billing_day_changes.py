"""CYC-1: changing a client's or the agency's billing day never bills a day twice and never leaves one out.

A quarter and a half simulated through the real day pipeline (`billing.day`, via `agencybilling.seed.run_days`),
with billing days moved in both directions — for clients (5 → 20, 20 → 5, autopay days 3 and 26 → day 12) and for
the agency (1 → 10 after day 10 has passed, then 10 → 3), which moves the clients that follow the agency's day —
then asserted day by day: every day from a client's first period is in exactly one of its invoices' periods, every
day of usage is on exactly one invoice, and the agency's periods, in arrears, cover every day exactly once.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role, User
from agencybilling import seed
from billing.billing_setup import billing_setup_update
from billing.models import Invoice
from billing.platform.models import AgencyInvoice
from billing.usage import UsageInput, usage_record_bulk
from clients.models import Client
from clients.services import client_configure
from core.calendar import add_months, days_between
from tenants.models import Agency
from tests.billing_helpers import with_plan

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FIRST, LAST = date(2026, 11, 1), date(2027, 3, 31)
CHANGES = {
    date(2026, 12, 10): [("client", "Later", {"billing_day": 20})],  # the case: 5 → 20 after the 5th
    date(2027, 1, 2): [("client", "Earlier", {"billing_day": 5})],  # 20 → 5
    date(2027, 1, 15): [("agency", None, {"billing_day": 10})],  # 1 → 10, after the 10th of January
    date(2027, 2, 1): [("client", "Autopay", {"autopay_days": [], "billing_day": 12})],  # 3 + 26 → 12
    date(2027, 2, 20): [("agency", None, {"billing_day": 3})],  # 10 → 3
}
CLIENTS = {
    "Later": {"billing_day": 5},
    "Earlier": {"billing_day": 20},
    "Follower": {},
    "Autopay": {"autopay_days": [3, 26]},
}


def _simulate(agency: Agency) -> Agency:
    with tenant_context(agency):
        admin = User.objects.create_user("admin@alpha.test", "pw-correct-horse-9", role=Role.ADMINISTRATOR)
        for name, fields in CLIENTS.items():
            seed.client(
                name=name,
                email=f"{name.lower()}@example.com",
                activated_on=FIRST,
                license_price_minor=31000,
                services=[("Retainer", 6200)],
                **fields,
            )
    for day in days_between(FIRST, LAST):
        for kind, name, values in CHANGES.get(day, []):
            with tenant_context(agency):
                if kind == "client":
                    client_configure(client=Client.objects.get(name=name), actor=admin, **values)
                else:
                    billing_setup_update(agency=agency, actor=admin, values=values)
        seed.run_days(agency, [day])
        with tenant_context(agency):  # one unit a day each, recorded during the day (noon in New York)
            noon = datetime(day.year, day.month, day.day, 17, tzinfo=UTC)
            usage_record_bulk(
                agency=agency,
                items=[UsageInput("listings", 1, noon, f"{c.name}-{day}", c) for c in Client.objects.all()],
                now=noon,
            )
    agency.refresh_from_db()
    return agency


def _usage_billed(invoice) -> int:
    return sum(line.quantity for line in invoice.lines.all() if line.description.startswith("Listings"))


def test_CYC_1_billing_day_changes_bill_every_day_exactly_once_over_a_quarter(agency_a):
    agency = _simulate(with_plan(agency_a))
    assert agency.billing_day == 3

    with schema_context(agency.schema_name):
        for name in CLIENTS:
            invoices = list(
                Invoice.objects.filter(client__name=name).order_by("period_start").prefetch_related("lines")
            )
            periods = [(i.period_start, i.period_end) for i in invoices]
            # Day by day: each day from the first period's start to the last one's end is in exactly one period.
            covered = Counter(d for start, end in periods for d in days_between(start, end - timedelta(days=1)))
            for day in days_between(periods[0][0], periods[-1][1] - timedelta(days=1)):
                assert covered[day] == 1, (name, day, periods)
            # Usage: invoice k carries the closed cycle [start of k-1, start of k); the first, the month before it.
            windows = [(add_months(periods[0][0], -1), periods[0][0])] + [
                (periods[k - 1][0], periods[k][0]) for k in range(1, len(periods))
            ]
            if name == "Autopay":
                # Built on the 3rd for the 26th, before its cycle's usage is all recorded: the rest is carried by
                # the next invoice under lines naming the cycle (PLAN-3) — still every unit once, checked below.
                assert sum(_usage_billed(i) for i in invoices) == (periods[-1][0] - FIRST).days
                continue
            for invoice, (start, end) in zip(invoices, windows, strict=True):
                used = len([d for d in days_between(start, end - timedelta(days=1)) if FIRST <= d <= LAST])
                assert _usage_billed(invoice) == used, (name, invoice.period_start, start, end)
            # Everything used before the last invoice's start is billed, once.
            assert sum(_usage_billed(i) for i in invoices) == (periods[-1][0] - FIRST).days

        later = [(i.period_start, i.period_end) for i in Invoice.objects.filter(client__name="Later")]
        # 5 → 20 on 10 December: December's period runs to 5 January, then a bridge to the 20th, then the 20th.
        assert (date(2026, 12, 5), date(2027, 1, 5)) in later
        assert (date(2027, 1, 5), date(2027, 1, 20)) in later
        assert (date(2027, 1, 20), date(2027, 2, 20)) in later
        bridge = Invoice.objects.get(client__name="Later", period_start=date(2027, 1, 5))
        license_line = bridge.lines.get(category="LICENSE")
        assert license_line.description == "License 2027-01-05 – 2027-01-19 (15 of 31 days)"
        assert license_line.amount_minor == 15000  # 310.00 × 15 / 31, prorated by days
        earlier = [(i.period_start, i.period_end) for i in Invoice.objects.filter(client__name="Earlier")]
        assert (date(2027, 1, 20), date(2027, 2, 5)) in earlier  # 20 → 5: the bridge after January's period
        assert not Invoice.objects.filter(client__name="Earlier", period_start=date(2027, 1, 5)).exists()

    # The agency, in arrears: its periods are contiguous from the first to the last, each day once.
    agency_periods = sorted(AgencyInvoice.objects.filter(agency=agency).values_list("period_start", "period_end"))
    assert agency_periods[0] == (date(2026, 10, 1), date(2026, 11, 1))  # the month before the first day run
    covered = Counter(d for start, end in agency_periods for d in days_between(start, end - timedelta(days=1)))
    for day in days_between(agency_periods[0][0], agency_periods[-1][1] - timedelta(days=1)):
        assert covered[day] == 1, (day, agency_periods)
    # 1 → 10 after the 10th: January runs to 1 February, then a bridge to the 10th; 10 → 3: a bridge to 3 March.
    assert (date(2027, 1, 1), date(2027, 2, 1)) in agency_periods
    assert (date(2027, 2, 1), date(2027, 2, 10)) in agency_periods
    assert (date(2027, 2, 10), date(2027, 3, 3)) in agency_periods
    assert agency_periods[-1] == (date(2027, 2, 10), date(2027, 3, 3))
    # The pooled usage on each agency invoice is exactly the usage of its period: four clients, one unit a day.
    for invoice in AgencyInvoice.objects.filter(agency=agency).prefetch_related("lines"):
        days = len(
            [d for d in days_between(invoice.period_start, invoice.period_end - timedelta(days=1)) if d >= FIRST]
        )
        assert _usage_billed(invoice) == 4 * days, (invoice.period_start, invoice.period_end)


@pytest.fixture
def billed_on_day_5(agency_a):
    """A client on day 5 billed on 5 December for 5 December – 4 January; the clock has run to 10 December."""
    agency = with_plan(agency_a)
    with tenant_context(agency):
        User.objects.create_user("admin@alpha.test", "pw-correct-horse-9", role=Role.ADMINISTRATOR)
        client = seed.client(
            name="Later", email="later@example.com", activated_on=FIRST, license_price_minor=31000, billing_day=5
        )
    seed.run_days(agency, days_between(date(2026, 12, 1), date(2026, 12, 10)))
    Agency.objects.filter(pk=agency.pk).update(clock_date=date(2026, 12, 10))
    agency.refresh_from_db()
    return agency, client


def test_CYC_1_next_invoice_period_is_shown_in_the_api_before_a_change_is_saved(billed_on_day_5):
    from tests.api.conftest import api, token_for

    agency, client = billed_on_day_5
    http = api(agency, token_for(agency, "admin@alpha.test", Role.ADMINISTRATOR))
    url = f"/api/v1/clients/{client.public_id}/next-invoice/"
    assert http.get(url).json() == {
        "build_date": "2027-01-05",
        "billing_date": "2027-01-05",
        "period_start": "2027-01-05",
        "period_end": "2027-02-05",
        "bridging": False,
        "days": 31,
        "cycle_days": 31,
    }
    later = http.get(url, {"billing_day": "20"}).json()  # the change: 5 → 20, no overlap any more
    assert (later["build_date"], later["period_start"], later["period_end"]) == (
        "2027-01-05",
        "2027-01-05",
        "2027-01-20",
    )
    assert (later["bridging"], later["days"], later["cycle_days"]) == (True, 15, 31)
    earlier = http.get(url, {"billing_day": "3"}).json()
    assert (earlier["period_start"], earlier["period_end"], earlier["days"]) == ("2027-01-05", "2027-02-03", 29)
    autopay = http.get(url, {"billing_day": "agency", "autopay_days": "3,26"}).json()
    # CYC-4: built on the first autopay day for the last; the bridge from 5 to 26 January follows on the 5th.
    assert (autopay["build_date"], autopay["period_start"], autopay["period_end"]) == (
        "2027-01-03",
        "2027-01-26",
        "2027-02-26",
    )
    for bad in ({"billing_day": "29"}, {"billing_day": "0"}, {"autopay_days": "3,3"}, {"autopay_days": "x"}):
        refused = http.get(url, bad)
        assert refused.status_code == 400 and refused.json()["fields"], bad
    with schema_context(agency.schema_name):
        assert Client.objects.get(pk=client.pk).billing_day == 5  # a preview changes nothing

    # The agency: January's day 1 has passed; moving to the 10th now closes December first, on 1 January.
    agency_url = "/api/v1/billing-settings/next-invoice/"
    now = http.get(agency_url).json()
    assert (now["build_date"], now["period_start"], now["period_end"]) == ("2027-01-01", "2026-12-01", "2027-01-01")
    moved = http.get(agency_url, {"billing_day": "10"}).json()
    assert (moved["period_start"], moved["period_end"], moved["bridging"]) == ("2026-12-01", "2027-01-01", False)
    assert http.get(agency_url, {"billing_day": "31"}).status_code == 400
    agency.refresh_from_db()
    assert agency.billing_day == 1


def test_CYC_1_next_invoice_period_is_shown_in_the_ui_before_a_change_is_saved(billed_on_day_5):
    from tests.conftest import login_client

    agency, client = billed_on_day_5
    http = login_client(agency, "admin@alpha.test")
    page = http.get(f"/clients/{client.public_id}/").content.decode()
    assert "Next invoice:</strong>\n    2027-01-05 – 2027-02-04" in page
    form = {"license_price": "310.00", "billing_day": "20", "autopay_days": "", "salesperson": "", "preview": "1"}
    preview = http.post(f"/clients/{client.public_id}/", form)
    assert preview.status_code == 200
    text = preview.content.decode()
    assert "With these days, the next invoice:</strong>\n    2027-01-05 – 2027-01-19" in text
    assert "A bridging period of 15 of 31 days, prorated" in text and "Not saved yet." in text
    with schema_context(agency.schema_name):
        assert Client.objects.get(pk=client.pk).billing_day == 5
    del form["preview"]
    assert http.post(f"/clients/{client.public_id}/", form).status_code == 302  # saved now
    with schema_context(agency.schema_name):
        assert Client.objects.get(pk=client.pk).billing_day == 20

    setup = http.get("/setup/").content.decode()
    assert "Next invoice:</strong>\n    2026-12-01 – 2026-12-31, in arrears" in setup
