"""Beat on two hosts (CYC-3, CYC-5): two beats tick the billing clock, and each agency-day still runs once.

Each beat job claims its slot in Redis before it works (`core.locks.beat_slot_claim`): of two ticks of one slot,
one runs and the other does nothing. Behind that, each agency's days run under its advisory lock and clock, so
even two ticks that both ran would not run a day twice. Against real PostgreSQL, Redis and Celery processes.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django_tenants.utils import schema_context

from agencybilling.seed import Outcome, client
from billing.models import AgencyDay, AgencyDayStep, Charge, Invoice, RunStatus
from billing.tasks import billing_clock_tick
from core.calendar import local_date
from tenants.models import Agency
from tests.billing_helpers import with_plan
from tests.reliability.harness import LOG_DIR, CeleryProcess, celery_env, child_database_url, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _off_the_clock(*keep: Agency) -> None:
    """The tick runs every agency of the installation: any other one left by another test is kept off the clock."""
    Agency.objects.exclude(schema_name__in=["public", *(a.schema_name for a in keep)]).update(
        clock_date=date(2100, 1, 1)
    )


def _days_ran_once(agency: Agency, days: list[date]) -> dict[str, int]:
    """Each day recorded once and done, each of its steps started exactly once."""
    with schema_context(agency.schema_name):
        recorded = dict(AgencyDay.objects.values_list("day", "status"))
        attempts = Counter(AgencyDayStep.objects.values_list("attempts", flat=True))
    assert recorded == dict.fromkeys(days, RunStatus.DONE), recorded
    assert set(attempts) == {1}, f"{agency.schema_name}: day steps started {dict(attempts)} times"
    return {"days": len(recorded), "steps": sum(attempts.values())}


def test_CYC_3_CYC_5_two_real_beats_for_three_ticks_run_each_agency_day_once(agency_a, agency_b):
    """Two `celery beat` processes (as on two hosts) tick every second, one worker runs what they send. The
    agencies' clocks are three days behind: after at least three ticks of each beat, each of those days ran once,
    every tick slot was run by one tick, and the other beat's tick of that slot did nothing."""
    today = local_date(timezone.now(), agency_a.time_zone)
    for agency in (agency_a, agency_b):
        Agency.objects.filter(pk=agency.pk).update(clock_date=today - timedelta(days=3))
    _off_the_clock(agency_a, agency_b)
    run_id = uuid.uuid4().hex[:8]
    env = celery_env(
        DATABASE_URL=child_database_url(), CELERY_QUEUE=f"beats-{run_id}", BILLING_TICK_SECONDS="1", SWEEP_SECONDS="600"
    )
    logs = LOG_DIR / f"beats-{run_id}"
    beats = [
        CeleryProcess("beat", env, logs / f"beat-{n}.log", ["--schedule", str(logs / f"schedule-{n}"), "--pidfile", ""])
        for n in (1, 2)
    ]
    worker = CeleryProcess("worker", env, logs / "worker.log", ["--pool", "prefork", "--concurrency", "2"])

    def sent(beat: CeleryProcess) -> int:
        text = beat.log_path.read_text() if beat.log_path.exists() else ""
        return text.count("Sending due task billing-clock-tick")

    try:
        worker.start()
        for beat in beats:
            beat.start()
        wait_until(lambda: all(sent(b) >= 3 for b in beats), timeout=60, what="three ticks from each beat")
        for beat in beats:
            beat.stop()
        ticks = sum(sent(b) for b in beats)
        pattern = re.compile(r"billing clock tick at (\S+): (this slot was ticked already|\d+ agencies due)")

        def outcomes() -> list[tuple[str, str]]:
            return pattern.findall(worker.log_path.read_text())

        wait_until(lambda: len(outcomes()) == ticks, timeout=60, what="the worker to run every tick it was sent")
        wait_until(
            lambda: (
                set(Agency.objects.filter(pk__in=[agency_a.pk, agency_b.pk]).values_list("clock_date", flat=True))
                == {today}
            ),
            timeout=60,
            what="both clocks to reach today",
        )
    finally:
        for beat in beats:
            beat.stop()
        worker.stop()
    by_slot: dict[int, Counter] = defaultdict(Counter)
    for instant, outcome in outcomes():
        slot = int(datetime.fromisoformat(instant).timestamp())
        by_slot[slot]["ran" if "agencies due" in outcome else "skipped"] += 1
    assert all(counts["ran"] == 1 for counts in by_slot.values()), dict(by_slot)
    days = [today - timedelta(days=2), today - timedelta(days=1), today]
    for agency in (agency_a, agency_b):
        _days_ran_once(agency, days)
    skipped = sum(counts["skipped"] for counts in by_slot.values())
    print(f"\n[figures] two beats: {ticks} ticks sent, {len(by_slot)} slots run once each, {skipped} ticks refused")


def test_CYC_3_NOT_7_two_tick_loops_at_the_same_instants_bill_and_charge_once(agency_a, agency_b):
    """Two beat-like loops tick the same three instants, a day apart across a billing date, at the same moment
    (as two beats would); a real worker runs the days they send. Each instant is ticked by one loop, each
    agency-day runs once, each client is invoiced and charged once."""
    billing_date = date(2027, 3, 1)
    for agency in (agency_a, agency_b):
        with_plan(agency)
        with schema_context(agency.schema_name):
            for n in range(3):
                client(
                    name=f"{agency.schema_name} client {n}",
                    email=f"c{n}@{agency.schema_name}.example",
                    activated_on=date(2027, 1, 1),
                    license_price_minor=5000,
                    outcome=Outcome.PAYING,
                    method_tag=f"{agency.schema_name}-{n}",
                )
        Agency.objects.filter(pk=agency.pk).update(clock_date=billing_date - timedelta(days=2))
    _off_the_clock(agency_a, agency_b)
    connection.close()
    instants = [datetime(2027, 2, 28, 17, tzinfo=UTC) + timedelta(days=n) for n in range(3)]
    # The loops send to this test worker's queues (settings), the Celery worker drains the same ones.
    env = celery_env(DATABASE_URL=child_database_url())
    worker = CeleryProcess(
        "worker",
        env,
        LOG_DIR / f"ticks-{uuid.uuid4().hex[:8]}" / "worker.log",
        ["--pool", "prefork", "--concurrency", "2"],
    )
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete(*settings.CELERY_QUEUE_NAMES)
    results: dict[str, list] = {"loop-1": [], "loop-2": []}
    barrier = threading.Barrier(2)

    def loop(name: str) -> None:
        try:
            for instant in instants:
                barrier.wait(timeout=120)
                results[name].append(billing_clock_tick(at=instant.isoformat()))
                barrier.wait(timeout=120)
                if name == "loop-1":  # the day passes: its work is done before the next instant
                    wait_until(
                        lambda instant=instant: (
                            Agency.objects.filter(pk__in=[agency_a.pk, agency_b.pk], clock_date=instant.date()).count()
                            == 2
                        ),
                        timeout=90,
                        what=f"the days up to {instant.date()}",
                    )
        finally:
            connection.close()

    try:
        worker.start()
        threads = [threading.Thread(target=loop, args=(name,)) for name in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    finally:
        worker.stop()
        broker.delete(*settings.CELERY_QUEUE_NAMES)
    ran_by_instant = [sum(r[i] is not None for r in results.values()) for i in range(len(instants))]
    assert ran_by_instant == [1, 1, 1], results
    days = [billing_date - timedelta(days=1), billing_date, billing_date + timedelta(days=1)]
    for agency in (agency_a, agency_b):
        _days_ran_once(agency, days)
        with schema_context(agency.schema_name):
            assert Invoice.objects.count() == 3
            attempts = Counter(Charge.objects.annotate(n=Count("attempts")).values_list("n", flat=True))
            assert attempts == {1: 3}, attempts
