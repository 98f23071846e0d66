"""R4 (issue 9): PostgreSQL restarted, then Redis restarted, in the middle of a billing day run by a real
worker and beat — on private servers this test starts itself (never the machine's own).

Redis runs without persistence, so its restart loses every queued task. Must hold (CYC-5, NOT-7): the day
finishes once they are back; no task is lost (the clock tick re-enqueues the day, the sweeper re-enqueues
notices committed but not sent); and all of R1's exactly-once checks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from datetime import date

import pytest
from django.utils import timezone

from core.calendar import local_date
from tests.reliability import scenario
from tests.reliability.harness import (
    LOG_DIR,
    ROOT,
    CeleryProcess,
    PrivatePostgres,
    PrivateRedis,
    celery_env,
    record_figures,
    size,
    wait_until,
)

pytestmark = pytest.mark.slow

CLIENTS = size(ci=300, full=1500)
SLUG = "restarts"


def _run(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def _json(output: str):
    """The last line: creating an agency's schema prints its migrations first."""
    return json.loads(output.strip().splitlines()[-1])


def _count(pg: PrivatePostgres, table: str, where: str = "TRUE") -> int:
    return pg.query(f'SELECT count(*) FROM "{SLUG}"."{table}" WHERE {where}')[0][0]


def _settled(pg: PrivatePostgres, day: date) -> bool:
    try:
        clock = pg.query("SELECT clock_date FROM public.tenants_agency WHERE schema_name = %s", [SLUG])[0][0]
        return bool(
            clock
            and clock >= day
            and not _count(pg, "billing_chargeattempt", "outcome IN ('STARTED', 'UNKNOWN')")
            and not _count(pg, "billing_charge", f"status = 'SCHEDULED' AND due_on <= '{day}'")
            and not _count(pg, "notifications_notice", "status NOT IN ('SENT', 'UNCERTAIN')")
        )
    except Exception:  # noqa: BLE001 - the server may be restarting
        return False


def test_R4_CYC_5_NOT_7_billing_day_survives_postgres_then_redis_restart(clean_stripe, counting_smtp):
    run_id = uuid.uuid4().hex[:8]
    directory = LOG_DIR.parent / f"r4-{run_id}"
    pg = PrivatePostgres(directory / "pg")
    redis = PrivateRedis(directory / "redis")
    beat = worker = None
    try:
        pg.init()
        redis.start()
        env = celery_env(
            DATABASE_URL=pg.url,
            REDIS_URL=redis.url,
            CELERY_QUEUE=f"chaos-r4-{run_id}",
            EMAIL_URL=counting_smtp.url,
            STRIPE_SECRET_KEY=scenario.STRIPE_KEY,
            STRIPE_API_BASE=clean_stripe.url,
            BILLING_TICK_SECONDS="1",
            SWEEP_SECONDS="2",
            SWEEP_GRACE_SECONDS="10",
            OUTBOX_SENDING_TIMEOUT_SECONDS="30",
        )
        _run(env, "manage.py", "migrate_schemas", "-v", "0")
        day = scenario.billing_day_for(local_date(timezone.now(), "America/New_York"))
        kinds = _json(
            _run(
                env,
                "-m",
                "tests.reliability.scenario",
                "build",
                "--agency",
                SLUG,
                "--day",
                day.isoformat(),
                "--clients",
                str(CLIENTS),
                "--stripe",
                clean_stripe.url,
            )
        )
        beat = CeleryProcess(
            "beat", env, directory / "beat.log", ["--schedule", str(directory / "beat-schedule"), "--pidfile", ""]
        ).start()
        worker = CeleryProcess(
            "worker", env, directory / "worker.log", ["--pool", "prefork", "--concurrency", "2"]
        ).start()
        started = time.monotonic()

        # PostgreSQL goes away in the middle of collection, for a few seconds.
        wait_until(
            lambda: _count(pg, "billing_chargeattempt") >= 20, timeout=120, interval=0.1, what="collection to start"
        )
        attempts_at_pg_restart = _count(pg, "billing_chargeattempt")
        pg.restart(down_seconds=3)
        # Then Redis, once work has resumed: every queued task (notice sends, clock runs) is lost with it.
        wait_until(
            lambda: _count(pg, "billing_chargeattempt") > attempts_at_pg_restart + 10 or _settled(pg, day),
            timeout=180,
            what="work to resume after the PostgreSQL restart",
        )
        attempts_at_redis_restart = _count(pg, "billing_chargeattempt")
        pending_at_redis_restart = _count(pg, "notifications_notice", "status = 'PENDING'")
        redis.restart(down_seconds=3)
        wait_until(
            lambda: _settled(pg, day),
            timeout=size(ci=300, full=900),
            interval=0.5,
            what="the day to finish and every notice to be sent",
        )
        elapsed = time.monotonic() - started
        time.sleep(1)
        requeued = _count(pg, "notifications_notice", "requeued_at IS NOT NULL")
        day_attempts = pg.query(f'SELECT coalesce(max(attempts), 0) FROM "{SLUG}"."billing_agencydaystep"')[0][0]
        failed_steps = pg.query(f"""SELECT count(*) FROM "{SLUG}"."billing_agencydaystep" WHERE error <> ''""")[0][0]
        worker.stop()
        beat.stop()
        files = {"kinds": kinds, "intents": clean_stripe.payment_intents(), "smtp": dict(counting_smtp.inbox.counts())}
        for name, content in files.items():
            (directory / f"{name}.json").write_text(json.dumps(content))
        report = _json(
            _run(
                env,
                "-m",
                "tests.reliability.scenario",
                "verify",
                "--agency",
                SLUG,
                "--day",
                day.isoformat(),
                *(x for name in files for x in (f"--{name}", str(directory / f"{name}.json"))),
            )
        )
    finally:
        for process in (worker, beat):
            if process is not None:
                process.stop()
        redis.stop()
        pg.stop(immediate=False)
        shutil.rmtree(pg.data, ignore_errors=True)  # logs stay; the cluster's files go
    log = (directory / "worker.log").read_text(errors="replace")
    figures, problems = report["figures"], report["problems"]
    record_figures(
        "R4",
        {
            **figures,
            "postgres_restarts": pg.restarts,
            "redis_restarts": redis.restarts,
            "attempts_at_postgres_restart": attempts_at_pg_restart,
            "attempts_at_redis_restart": attempts_at_redis_restart,
            "notices_pending_at_redis_restart": pending_at_redis_restart,
            "notices_requeued_by_sweeper": requeued,
            "max_runs_of_a_day_step": day_attempts,
            "day_steps_with_recorded_error": failed_steps,
            "worker_database_errors": log.count("OperationalError"),
            "broker_reconnects": log.count("Connected to redis"),
            "run_seconds": round(elapsed, 1),
            "violations": len(problems),
        },
    )
    assert pg.restarts == 1 and redis.restarts == 1
    assert not problems, "\n".join(problems[:40])
