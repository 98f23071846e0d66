"""The billing clock (CYC-5): which agency days are due, and running them in date order, one at a time.

Beat's tick (every few minutes) is `clock_tick` at the current instant: it finds agencies whose local date has
moved past their clock and hands each one, with its local today, to a dispatcher — beat's enqueues one task per
agency, `manage.py clock_tick --at` runs them in its own process. Either way the agency's days run through
`agency_clock_catch_up`: every missed day in order under a per-agency advisory lock, so two workers never run
the same agency at once, each day recorded as it finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta

from django.db.models import Q

from billing.day import DayResult, agency_day_run
from billing.reminders import clock_today
from core.calendar import local_date
from core.locks import advisory_lock
from tenants.models import Agency

logger = logging.getLogger(__name__)


def due_days(agency: Agency, now: datetime) -> list[date]:
    """Agency-local days not yet run, oldest first. A new agency starts at its current local day."""
    today = local_date(now, agency.time_zone)
    last = agency.clock_date if agency.clock_date is not None else today - timedelta(days=1)
    return [last + timedelta(days=n) for n in range(1, (today - last).days + 1)]


def agencies_due(now: datetime) -> list[Agency]:
    return [a for a in Agency.objects.only("id", "schema_name", "time_zone", "clock_date") if due_days(a, now)]


def clock_tick(*, now: datetime, dispatch: Callable[[str, date], object]) -> dict[str, date]:
    """The billing clock's tick at the instant `now` (CYC-5): every agency whose local calendar day at `now` is past
    its clock is handed to `dispatch(schema_name, local today)`, which runs (or enqueues) its missed days up to that
    day. Returns what was dispatched. Beat's task and `manage.py clock_tick --at` both call this, nothing else."""
    sent: dict[str, date] = {}
    for agency in agencies_due(now):
        until = local_date(now, agency.time_zone)
        dispatch(agency.schema_name, until)
        sent[agency.schema_name] = until
    return sent


def agency_clock_catch_up(*, schema_name: str, until: date) -> list[date] | None:
    """Run the agency's missed days up to `until` (its local today at the tick), in order. None when another worker
    holds the agency's clock (it is running those days already)."""
    agency = Agency.objects.get(schema_name=schema_name)
    token = clock_today.set(until)  # days replayed after an outage do not announce what has already come
    try:
        return agency_days_run(agency=agency, until=until)
    except AgencyBusy:
        logger.info("agency %s is already running its days", schema_name)
        return None
    finally:
        clock_today.reset(token)


def agency_clock_lock(schema_name: str) -> AbstractContextManager[bool]:
    """The agency's clock lock, taken without waiting (yields whether it was): held while its days run, and by
    the sweeper while it resolves the agency's attempts, so the two never work on the agency at once."""
    return advisory_lock(f"agency-clock:{schema_name}")


class AgencyBusy(Exception):
    """Another worker holds this agency's clock."""


def agency_days_run(
    *,
    agency: Agency,
    until: date,
    progress: Callable[[date, DayResult], None] | None = None,
    run: Callable[..., DayResult] = agency_day_run,
) -> list[date]:
    """Run every day after the agency's clock up to `until`, in order. Returns the days run."""
    with agency_clock_lock(agency.schema_name) as taken:
        if not taken:
            raise AgencyBusy(agency.schema_name)
        agency.refresh_from_db(fields=["clock_date"])
        ran = []
        day = agency.clock_date + timedelta(days=1) if agency.clock_date else until
        while day <= until:
            result = agency_day_record(agency=agency, day=day, run=run)
            if progress:
                progress(day, result)
            ran.append(day)
            day += timedelta(days=1)
    return ran


def agency_day_record(*, agency: Agency, day: date, run: Callable[..., DayResult] = agency_day_run) -> DayResult:
    """Run one day's pipeline for an agency (its steps are recorded as they go), then move the clock."""
    result = run(agency=agency, today=day)
    # Never backwards: rerunning an old day by hand leaves the clock where it is.
    Agency.objects.filter(pk=agency.pk).filter(Q(clock_date__isnull=True) | Q(clock_date__lt=day)).update(
        clock_date=day
    )
    if agency.clock_date is None or agency.clock_date < day:
        agency.clock_date = day
    return result
