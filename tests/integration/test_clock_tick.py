"""`manage.py clock_tick --at <instant>`: beat's tick of the billing clock at a chosen UTC instant (CYC-5).

Three agencies far apart — New York (which moves its clocks forward on 2027-03-14), Kiritimati (UTC+14, the
first to start a day) and Pago Pago (UTC−11, among the last) — ticked at the same instants, hour by hour across
the change, with instants repeated and one from the past: each agency-local day runs exactly once, in date order,
at the first tick on or after its local midnight and never before.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context

from billing.models import AgencyDay, AgencyDayStep, DayStep
from core.calendar import local_date
from tenants.models import Agency
from tests.conftest import ensure_agency

pytestmark = pytest.mark.django_db

ZONES = {"alpha": "America/New_York", "beta": "Pacific/Kiritimati", "gamma": "Pacific/Pago_Pago"}
LAST_RUN = date(2027, 3, 11)  # each agency's clock: the last local day it ran


@pytest.fixture
def agencies(agency_a, agency_b):
    agencies = {"alpha": agency_a, "beta": agency_b, "gamma": ensure_agency("gamma")}
    for slug, agency in agencies.items():
        Agency.objects.filter(pk=agency.pk).update(time_zone=ZONES[slug], clock_date=LAST_RUN)
    # The tick runs every agency of the installation: any other one left by another test is kept off the clock.
    Agency.objects.exclude(schema_name__in=["public", *agencies]).update(clock_date=date(2100, 1, 1))
    return agencies


def tick(at: str) -> str:
    out = io.StringIO()
    call_command("clock_tick", "--at", at, stdout=out)
    return out.getvalue()


def clocks() -> dict[str, date]:
    return dict(Agency.objects.filter(schema_name__in=ZONES).values_list("schema_name", "clock_date"))


def utc(text: str) -> str:
    return text.replace("+00:00", "Z")


def test_CYC_5_clock_tick_runs_each_local_day_once_in_order_across_dst_and_the_date_line(agencies):
    start = datetime(2027, 3, 12, 0, 0, tzinfo=UTC)
    instants = [start + timedelta(hours=n) for n in range(24 * 4 + 1)]  # to 2027-03-16T00:00Z
    # Ticks come again (a replay of one already run) and late (an instant before the previous one).
    schedule = []
    for n, instant in enumerate(instants):
        schedule.append(instant)
        if n % 7 == 3:
            schedule.append(instant)
        if n % 11 == 5:
            schedule.append(instant - timedelta(hours=9))
    first_run: dict[tuple[str, date], datetime] = {}
    latest = start
    for instant in schedule:
        before = clocks()
        tick(utc(instant.isoformat()))
        after = clocks()
        latest = max(latest, instant)
        for slug, zone in ZONES.items():
            # Never ahead of the latest instant's local day, never behind it.
            assert after[slug] == local_date(latest, zone), (instant, slug, after[slug])
            day = before[slug] + timedelta(days=1)
            while day <= after[slug]:
                assert (slug, day) not in first_run
                first_run[(slug, day)] = instant
                day += timedelta(days=1)

    # Each day started at the first tick at or after its local midnight (all ticks are on the hour; days that
    # began before the first tick ran at it).
    for (slug, day), instant in first_run.items():
        midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(ZONES[slug])).astimezone(UTC)
        assert instant == max(midnight, start), (slug, day, instant, midnight)
    # The changes of day the three zones make at these instants, written out.
    assert first_run[("alpha", date(2027, 3, 14))] == datetime(2027, 3, 14, 5, tzinfo=UTC)  # EST: UTC−5
    assert first_run[("alpha", date(2027, 3, 15))] == datetime(2027, 3, 15, 4, tzinfo=UTC)  # EDT: UTC−4
    assert first_run[("beta", date(2027, 3, 15))] == datetime(2027, 3, 14, 10, tzinfo=UTC)  # UTC+14
    assert first_run[("gamma", date(2027, 3, 14))] == datetime(2027, 3, 14, 11, tzinfo=UTC)  # UTC−11
    # At one instant, three different local days.
    at = datetime(2027, 3, 14, 10, 30, tzinfo=UTC)
    assert [local_date(at, ZONES[s]) for s in ("gamma", "alpha", "beta")] == [
        date(2027, 3, 13),
        date(2027, 3, 14),
        date(2027, 3, 15),
    ]

    # The days each agency ran, as its own records show them: consecutive, in order, every step once.
    for slug, agency in agencies.items():
        with schema_context(agency.schema_name):
            ran = list(AgencyDay.objects.order_by("id").values_list("day", "status"))
            expected = [LAST_RUN + timedelta(days=n) for n in range(1, (clocks()[slug] - LAST_RUN).days + 1)]
            assert ran == [(day, "DONE") for day in expected], slug
            steps = AgencyDayStep.objects.filter(day__day__in=expected)
            assert steps.count() == len(expected) * len(DayStep.values)
            assert set(steps.values_list("attempts", "status")) == {(1, "DONE")}
    assert clocks() == {"alpha": date(2027, 3, 15), "beta": date(2027, 3, 16), "gamma": date(2027, 3, 15)}


def test_CYC_5_clock_tick_catches_up_missed_days_in_order_and_says_what_it_ran(agencies):
    # An outage: nothing ran since LAST_RUN. One tick at 2027-03-14T07:00Z catches every agency up to its local day.
    out = tick("2027-03-14T07:00Z")
    assert out.splitlines() == [
        "alpha (America/New_York, local day 2027-03-14): ran 2027-03-12, 2027-03-13, 2027-03-14",
        "beta (Pacific/Kiritimati, local day 2027-03-14): ran 2027-03-12, 2027-03-13, 2027-03-14",
        "gamma (Pacific/Pago_Pago, local day 2027-03-13): ran 2027-03-12, 2027-03-13",
        "tick at 2027-03-14T07:00:00Z: 3 agencies due",
    ]
    # Another offset names the same instant; a replay of it finds nothing due.
    assert tick("2027-03-14T03:00-04:00").splitlines() == ["tick at 2027-03-14T07:00:00Z: 0 agencies due"]
    with schema_context("gamma"):
        assert list(AgencyDay.objects.order_by("id").values_list("day", flat=True)) == [
            date(2027, 3, 12),
            date(2027, 3, 13),
        ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2027-03-14T07:00", "--at needs a UTC offset (Z or +HH:MM), got '2027-03-14T07:00'"),
        ("yesterday", "--at must be an instant as YYYY-MM-DDTHH:MMZ, got 'yesterday'"),
        ("2027-02-30T07:00Z", "--at must be an instant as YYYY-MM-DDTHH:MMZ, got '2027-02-30T07:00Z'"),
    ],
)
def test_clock_tick_refuses_an_instant_it_cannot_place(agency_a, value, message):
    Agency.objects.filter(pk=agency_a.pk).update(clock_date=LAST_RUN)
    with pytest.raises(CommandError) as refused:
        tick(value)
    assert str(refused.value) == message
    assert clocks()["alpha"] == LAST_RUN  # nothing ran


def test_clock_tick_is_beats_tick(agency_a):
    """One function: the beat task and the command both call `billing.clock.clock_tick` (no second copy)."""
    import inspect

    from billing import clock, tasks
    from billing.management.commands import clock_tick

    assert "clock_tick(" in inspect.getsource(tasks.billing_clock_tick)
    assert "clock_tick(" in inspect.getsource(clock_tick.Command.handle)
    assert tasks.clock_tick is clock.clock_tick is clock_tick.clock_tick
