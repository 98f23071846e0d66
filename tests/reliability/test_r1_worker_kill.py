"""R1 (issue 9) and issue 5's kill proof: a billing day run by a real Celery worker process that is
SIGKILLed at random moments and restarted each time.

Must hold (CYC-3, NOT-7, RET-4): one invoice per client and period; the processor's record of charges equals
the database's; zero duplicate invoices, charges or e-mails (counted per X-Notice-Key at a real SMTP server);
every client ends in the final status its payment method calls for.
"""

from __future__ import annotations

import os
import random
import time
import uuid

import pytest
from django.utils import timezone

from core.calendar import local_date
from tests.reliability import scenario
from tests.reliability.harness import (
    LOG_DIR,
    CeleryProcess,
    celery_env,
    child_database_url,
    record_figures,
    size,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLIENTS = size(ci=300, full=2000)
KILLS = size(ci=20, full=30)
SETTLE_TIMEOUT = float(os.environ.get("CHAOS_SETTLE_TIMEOUT", size(ci=240, full=900)))


def test_R1_CYC_3_NOT_7_billing_day_survives_sigkill_of_the_worker(agency_a, clean_stripe, counting_smtp):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    today = local_date(timezone.now(), agency_a.time_zone)
    day = scenario.billing_day_for(today)
    started = time.monotonic()
    kinds = scenario.build(agency=agency_a, stripe_url=clean_stripe.url, clients=CLIENTS, day=day, seed=seed)
    setup_seconds = time.monotonic() - started

    run_id = uuid.uuid4().hex[:8]
    env = celery_env(
        DATABASE_URL=child_database_url(),
        CELERY_QUEUE=f"chaos-r1-{run_id}",
        EMAIL_URL=counting_smtp.url,
        STRIPE_SECRET_KEY=scenario.STRIPE_KEY,
        STRIPE_API_BASE=clean_stripe.url,
        BILLING_TICK_SECONDS="1",
        SWEEP_SECONDS="1",
        SWEEP_GRACE_SECONDS="10",
        OUTBOX_SENDING_TIMEOUT_SECONDS="20",
    )
    logs = LOG_DIR / f"r1-{run_id}"
    beat = CeleryProcess("beat", env, logs / "beat.log", ["--schedule", str(logs / "beat-schedule"), "--pidfile", ""])
    worker = CeleryProcess("worker", env, logs / "worker.log", ["--pool", "prefork", "--concurrency", "2"])
    kills: list[dict] = []
    started = time.monotonic()
    try:
        beat.start()
        worker.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 2.5))
            how = worker.kill(child_only=rng.random() < 0.3)
            kills.append({"how": how, **scenario.progress(agency=agency_a)})
            if not worker.running:
                worker.start()
        try:
            wait_until(
                lambda: scenario.settled(agency=agency_a, day=day),
                timeout=SETTLE_TIMEOUT,
                what="the billing day to finish and every notice to be sent",
            )
            timed_out = False
        except AssertionError:
            timed_out = True
        elapsed = time.monotonic() - started
        time.sleep(1)  # let any straggling SMTP delivery land before counting
    finally:
        worker.stop()
        beat.stop()

    figures, problems = scenario.verify(
        agency=agency_a,
        day=day,
        kinds=kinds,
        processor_intents=clean_stripe.payment_intents(),
        smtp_counts=counting_smtp.inbox.counts(),
    )
    if timed_out:
        problems.insert(0, f"the day did not settle; worker log:\n{worker.log_tail(30)}")
    phases = {"billing": 0, "collection": 0, "notices": 0, "after": 0}
    for kill in kills:
        if kill["invoices"] < CLIENTS:
            phases["billing"] += 1
        elif kill["attempts"] < figures["attempts"]:
            phases["collection"] += 1
        elif kill["sent"] < figures["notices"].get("SENT", 0):
            phases["notices"] += 1
        else:
            phases["after"] += 1
    record_figures(
        "R1",
        {
            **figures,
            "seed": seed,
            "kills": len(kills),
            "kills_whole_worker": sum(k["how"] == "worker" for k in kills),
            "kills_pool_child": sum(k["how"] == "child" for k in kills),
            "kills_by_phase": phases,
            "worker_starts": worker.starts,
            "setup_seconds": round(setup_seconds, 1),
            "run_seconds": round(elapsed, 1),
            "violations": len(problems),
        },
    )
    assert len(kills) >= 20
    assert not problems, "\n".join(problems[:40])
