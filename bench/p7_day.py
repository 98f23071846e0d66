"""P7 — one simulated billing day for 100 agencies x 100 clients, sandbox processor, real Celery workers.

Method: 100 agencies (quick: 6) of 100 clients each, with saved sandbox cards and usage, their clocks on the
day before a billing date. A real Celery worker (prefork, concurrency 2: the machine's cores) is started on a
queue of its own; the benchmark enqueues the billing clock's task (`agency_clock_run`) for every agency, as
the beat tick does, and waits until every agency's clock has reached the billing date (billing, collection,
provider events, day recorded). Wall time from the first enqueue to the last clock; the RSS of every worker
process sampled every 0.2 s (peak of the largest). Every day is then checked: recorded DONE, one invoice per
client, every card charge paid. Notices go to a local SMTP server (bench/smtp_sink.py) from their own queue and
worker (2 processes), as a deployment with a notices worker sends them; the day's last step sends what is still
waiting and waits for what is being sent (billing/day.py). `P7-notices`: notices of the day sent after the day's
last step (of the last agency) finished — target 0.

Ceiling baseline, same run: the same day for 10 more agencies (quick: 2) run in this process, one after the other
(no broker, no worker; the day's notices sent to the same SMTP server by the day's last step), scaled to the agency
count and divided by the worker count: what two perfectly parallel workers with no queueing would take.
Ratio = Celery wall / that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, timedelta

from bench.common import (
    ROOT,
    Row,
    Timer,
    bench_args,
    children_of,
    django_setup,
    queues_purge,
    rss_bytes,
    stop_children_on_sigterm,
    stop_process,
    write_result,
)

BILLING_DATE = date(2027, 3, 1)
WORKERS = 2
NOTICE_WORKERS = 2  # notices wait on the mail server more than they compute


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


MB = 1024 * 1024


def _agencies(prefix: str, count: int, clients: int) -> list:
    from django.db import connection

    from agencybilling import seed
    from bench.population import bench_plan, clients_populate
    from bench.schemas import agencies_fast_create
    from tenants.models import Agency

    slugs = [f"{prefix}{n:03d}" for n in range(count)]
    agencies_fast_create(slugs, billing_day=1, plan=bench_plan(), clock_date=BILLING_DATE - timedelta(days=1))
    agencies = list(Agency.objects.filter(schema_name__in=slugs).order_by("schema_name"))
    for agency in agencies:
        seed.payouts_ready(agency, today=BILLING_DATE - timedelta(days=40))
        clients_populate(
            agency=agency,
            count=clients,
            activated_on=date(2027, 1, 1),
            usage_period_start=date(2027, 2, 1),
            sandbox_cards=True,
        )
    connection.set_schema_to_public()
    return agencies


def _check(agencies: list, clients: int) -> list[str]:
    from django_tenants.utils import tenant_context

    from billing.models import AgencyDay, Charge, Invoice, RunStatus
    from billing.statuses import ChargeStatus

    problems = []
    for agency in agencies:
        agency.refresh_from_db(fields=["clock_date"])
        with tenant_context(agency):
            day = AgencyDay.objects.filter(day=BILLING_DATE, status=RunStatus.DONE).exists()
            invoices = Invoice.objects.count()
            scheduled_today = Charge.objects.filter(status=ChargeStatus.SCHEDULED, due_on__lte=BILLING_DATE).count()
        if agency.clock_date != BILLING_DATE or not day:
            problems.append(f"{agency.schema_name}: day not done")
        elif invoices != clients:
            problems.append(f"{agency.schema_name}: {invoices} invoices for {clients} clients")
        elif scheduled_today:
            problems.append(f"{agency.schema_name}: {scheduled_today} charges due today not collected")
    return problems


def _baseline(agencies: list) -> float:
    """Seconds per agency-day, in this process, one after the other."""
    from billing.clock import agency_day_record

    with Timer() as timer:
        for agency in agencies:
            agency_day_record(agency=agency, day=BILLING_DATE)
    return timer.seconds / len(agencies)


def _start_worker(env: dict[str, str], name: str, queues: list[str], concurrency: int) -> subprocess.Popen:
    """A prefork worker on the given queues of this run (agencybilling/queues.py)."""
    log = open(ROOT / "bench" / "results" / f"P7-{name}.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "agencybilling",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "-Q",
            ",".join(queues),
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--hostname",
            f"bench-{name}-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(worker: subprocess.Popen, timeout: float = 60.0) -> None:
    from tenants.models import Agency
    from tenants.tasks import agency_ping

    slug = Agency.objects.exclude(schema_name="public").values_list("schema_name", flat=True).first()
    result = agency_ping.delay(schema_name=slug)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError("the Celery worker exited during start-up (see bench/results/P7-worker.log)")
        if result.ready():
            return
        time.sleep(0.2)
    raise RuntimeError("the Celery worker did not answer within a minute")


def main(argv: list[str] | None = None) -> int:
    args = bench_args(__doc__.splitlines()[0], argv)
    stop_children_on_sigterm()
    django_setup()
    from django.conf import settings
    from django.db import connection
    from django.db.models import Max

    from bench.schemas import template_ensure
    from billing.models import AgencyDayStep, DayStep
    from billing.tasks import agency_clock_run
    from notifications.models import Notice
    from tenants.models import Agency

    count, clients = (6, 100) if args.quick else (100, 100)
    template_ensure()
    with Timer() as setup:
        agencies = _agencies("p7a", count, clients)
        sample = _agencies("p7b", 2 if args.quick else 10, clients)
    print(f"P7 set-up: {count + len(sample)} agencies x {clients} clients in {setup.seconds:.0f}s", file=sys.stderr)
    # Notices go to a local SMTP server in a process of its own (bench/smtp_sink.py), as in production: the workers'
    # and, for the baseline, this process's.
    smtp_port = _free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.smtp_sink", "--port", str(smtp_port), "--out", os.devnull],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert sink.stdout is not None
    if sink.stdout.readline().strip() != b"ready":
        raise RuntimeError("the SMTP sink did not start")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        per_agency = _baseline(sample)
    except BaseException:
        stop_process(sink)
        raise
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    queues_purge()  # the baseline's send tasks: its notices were sent by its days
    env = {**os.environ, "CELERY_QUEUE": queue, "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}"}
    # The clock's worker (2 processes: the machine's cores) takes every queue but the notices'; a worker of its
    # own (2 processes) sends notices while the days run, as a deployment with a notices worker does.
    notices_queue = f"{queue}.notices"
    worker = _start_worker(env, "worker", [q for q in settings.CELERY_QUEUE_NAMES if q != notices_queue], WORKERS)
    notices_worker = _start_worker(env, "notices", [notices_queue], NOTICE_WORKERS)
    peak_process, peak_total, samples = 0, 0, 0
    try:
        _wait_ready(worker)
        slugs = [a.schema_name for a in agencies]
        started = time.monotonic()
        for slug in slugs:
            agency_clock_run.delay(schema_name=slug, until=BILLING_DATE.isoformat())
        done_at = outbox_at = None
        deadline = started + (120 if args.quick else 300)
        outbox_wait = 5 if args.quick else 20
        while time.monotonic() < deadline and (done_at is None or time.monotonic() < done_at + outbox_wait):
            pids = [worker.pid, *children_of(worker.pid), notices_worker.pid, *children_of(notices_worker.pid)]
            sizes = [rss_bytes(pid) for pid in pids]
            peak_process, peak_total, samples = max(peak_process, *sizes), max(peak_total, sum(sizes)), samples + 1
            if done_at is None and Agency.objects.filter(schema_name__in=slugs, clock_date=BILLING_DATE).count() == len(
                slugs
            ):
                done_at = time.monotonic()
            if done_at is not None:
                unsent = 0
                for slug in slugs:
                    connection.set_schema(slug)
                    unsent += Notice.objects.exclude(status="SENT").count()
                connection.set_schema_to_public()
                if unsent == 0:
                    outbox_at = time.monotonic()
                    break
            time.sleep(0.2)
    finally:
        stop_process(worker)
        stop_process(notices_worker)
        stop_process(sink)
        connection.set_schema_to_public()
    wall = (done_at - started) if done_at else None
    problems = _check(agencies, clients)
    sent = total = 0
    last_step = None
    sent_times = []
    by_last_step, waited = 0, []  # sent by the day's last step itself rather than by the notices worker; its waits
    for agency in agencies:
        connection.set_schema(agency.schema_name)
        total += Notice.objects.count()
        sent += Notice.objects.filter(status="SENT").count()
        sent_times += list(Notice.objects.values_list("sent_at", flat=True))
        finished = AgencyDayStep.objects.filter(day__day=BILLING_DATE).aggregate(last=Max("finished_at"))["last"]
        last_step = max(filter(None, [last_step, finished]), default=None)
        for counts in AgencyDayStep.objects.filter(day__day=BILLING_DATE, step=DayStep.NOTICES_SENT).values_list(
            "counts", flat=True
        ):
            by_last_step += counts.get("sent", 0)
            waited.append(counts.get("waited_seconds", 0.0))
    connection.set_schema_to_public()
    # Every notice of the day sent before the day's last step (of the last agency) finished.
    late = sum(1 for at in sent_times if at is None or last_step is None or at > last_step)
    ideal = per_agency * count / WORKERS
    print(
        f"P7: {count} agency-days in {wall or float('nan'):.1f}s with {WORKERS} workers (outbox empty after "
        f"{(outbox_at - started) if outbox_at else float('nan'):.1f}s), peak RSS {peak_process / MB:.0f} MB per "
        f"process, {peak_total / MB:.0f} MB all; in-process {per_agency:.2f}s per agency-day",
        file=sys.stderr,
    )
    # Quick (CI): a regression floor against the same run's in-process baseline, not the 60 s target. With 6
    # agencies each worker process runs 3 agency-days, so its start-up (imports, first connections: ~1-2 s)
    # weighs far more than in the full run; 3.35x was measured on a loaded machine, hence 4x.
    limit, ratio_limit = (None, 4.0) if args.quick else (60.0, None)
    ok = bool(wall) and not problems and (wall <= limit if limit else wall <= ratio_limit * ideal)
    outbox = (
        f"outbox empty after {outbox_at - started:.1f}s"
        if outbox_at
        else f"{sent}/{total} notices sent {time.monotonic() - started:.0f}s after the start"
    )
    rows = [
        Row(
            "P7",
            f"billing day, {count} agencies x {clients} clients, Celery ({WORKERS} workers): wall",
            f"<= {limit:.0f} s" if limit else f"<= {ratio_limit}x baseline",
            round(wall, 2) if wall else None,
            "s",
            passed=ok,
            baseline=round(ideal, 2),
            baseline_what=f"in-process {per_agency:.2f}s/agency-day / {WORKERS}",
            ratio=round(wall / ideal, 2) if wall else None,
            note="; ".join(problems[:3]) or outbox,
            details={
                "per_agency_in_process": per_agency,
                "outbox_empty_seconds": (outbox_at - started) if outbox_at else None,
                "notices": total,
                "notices_sent": sent,
                "problems": problems,
            },
        ),
        Row(
            "P7-notices",
            f"notices of the day on their own queue and worker: sent after the day's last step ({total} in all)",
            "0 (every notice sent before the last step finishes)",
            late,
            "notices",
            passed=bool(wall) and total > 0 and late == 0,
            baseline=total,
            baseline_what="notices of the day",
            ratio=None,
            note=(
                f"{by_last_step} sent by the day's last step, the rest by the notices worker; the step took "
                f"{max(waited, default=0):.2f}s at most ({sum(waited) / max(len(waited), 1):.2f}s mean); {outbox}"
            ),
            details={
                "last_step_finished": last_step,
                "late": late,
                "sent_by_last_step": by_last_step,
                "last_step_seconds": waited,
            },
        ),
        Row(
            "P7-memory",
            "peak worker RSS (largest process)",
            "<= 300 MB",
            round(peak_process / MB, 1),
            "MB",
            passed=samples > 0 and peak_process <= 300 * MB,
            baseline=round(peak_total / MB, 1),
            baseline_what="all worker processes",
            ratio=None,
            details={"samples": samples},
        ),
    ]
    write_result("P7", rows, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
