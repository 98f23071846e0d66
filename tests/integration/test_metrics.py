"""Observability: `/metrics` scraped after a simulated billing day reports what the database holds; JSON logs carry
the agency, request and task ids; beat's health."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from datetime import date

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django_tenants.utils import schema_context
from prometheus_client.parser import text_string_to_metric_families

from agencybilling.seed import Outcome, client, run_days
from billing.models import AgencyDayStep, Charge, ChargeAttempt
from billing.platform.models import AgencyCharge, AgencyChargeAttempt
from billing.statuses import ChargeStatus
from core.logs import ContextFilter, json_formatter
from notifications.models import Notice, OutboxStatus
from tests.billing_helpers import with_plan
from tests.conftest import host_client

pytestmark = pytest.mark.django_db


def scrape(**headers) -> dict[tuple[str, tuple], float]:
    response = host_client(None).get("/metrics", **headers)
    assert response.status_code == 200, response.status_code
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def delta(after: dict, before: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_after_a_simulated_day_match_the_database(
    agency_a, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    """COL-2, RET-1, COL-4, NOT-4: a billing day of clients that pay, decline and have no payment method; the
    counters' increase over the day equals the attempts by outcome, the notices sent and the day steps run."""
    with_plan(agency_a)
    with schema_context(agency_a.schema_name):
        for n, outcome in enumerate([Outcome.PAYING] * 3 + [Outcome.DECLINING] * 2 + [Outcome.NO_METHOD]):
            client(
                name=f"Client {n}",
                email=f"c{n}@example.com",
                activated_on=date(2026, 12, 1),
                license_price_minor=5000,
                outcome=outcome,
                method_tag=f"m{n}",
            )
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        run_days(agency_a, [date(2027, 1, 1)])
    after = scrape()
    # The day charges the clients (agency schema) and the agency's own platform invoice (PAY-3, public schema).
    agency_charges = AgencyCharge.objects.filter(invoice__agency=agency_a)
    attempts = Counter(AgencyChargeAttempt.objects.filter(charge__in=agency_charges).values_list("outcome", flat=True))
    no_method = agency_charges.filter(status=ChargeStatus.UNCOLLECTABLE, attempts__isnull=True).count()
    with schema_context(agency_a.schema_name):
        attempts += Counter(ChargeAttempt.objects.values_list("outcome", flat=True))
        no_method += Charge.objects.filter(status=ChargeStatus.UNCOLLECTABLE, attempts__isnull=True).count()
        sent = Notice.objects.filter(status=OutboxStatus.SENT).count()
        steps = dict(AgencyDayStep.objects.values_list("step").annotate(n=Count("id")))
    assert attempts["SUCCEEDED"] >= 3 and attempts["DECLINED"] == 2 and no_method >= 1
    for outcome, count in attempts.items():
        assert delta(after, before, "agencybilling_charge_attempts_total", outcome=outcome.lower()) == count
    assert delta(after, before, "agencybilling_charge_attempts_total", outcome="no_payment_method") == no_method
    assert sent > 0 and delta(after, before, "agencybilling_notices_total", result="sent") == sent
    assert len(smtp_server.messages) == sent
    for step, count in steps.items():
        assert delta(after, before, "agencybilling_day_step_seconds_count", step=step) == count
    # Platform gauges: every queue's depth, provider events waiting, agencies behind their clock.
    names = {name for name, _ in after}
    assert {"agencybilling_queue_depth", "agencybilling_webhook_events_waiting"} <= names
    assert {"agencybilling_agencies_with_days_due"} <= names


def test_metrics_need_the_token_when_one_is_set_and_a_local_caller_otherwise(settings):
    assert host_client(None).get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
    settings.METRICS_TOKEN = "s3cret-token"
    assert host_client(None).get("/metrics").status_code == 404
    assert host_client(None).get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")


def test_json_logs_carry_agency_request_and_task_ids(agency_a):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("agencybilling.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        response = host_client(agency_a).get("/healthz", HTTP_X_REQUEST_ID="req-123")
        assert response["X-Request-ID"] == "req-123"
        with schema_context(agency_a.schema_name):
            logger.info("inside the agency")
    finally:
        logger.removeHandler(handler)
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["message"] == "inside the agency" and record["level"] == "INFO"
    assert record["agency"] == agency_a.schema_name and {"request_id", "task_id", "time"} <= set(record)


def test_beat_health_fails_without_a_recent_tick_and_passes_after_one():
    from django.utils import timezone

    from billing.tasks import billing_clock_tick

    with pytest.raises(CommandError, match="no billing clock tick"):
        call_command("beat_health")
    billing_clock_tick(at=timezone.now().isoformat())
    out = io.StringIO()
    call_command("beat_health", stdout=out)
    assert "ok" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_serves_its_task_counts_by_queue_on_its_metrics_port(agency_a, tmp_path):
    """Worker metrics: tasks by queue and outcome, added up over the pool's processes (multiprocess mode)."""
    import urllib.request
    import uuid

    from django.conf import settings

    from billing.tasks import agency_attempts_resolve
    from tests.reliability.harness import LOG_DIR, CeleryProcess, celery_env, child_database_url, free_port, wait_until

    port = free_port()
    (tmp_path / "prom").mkdir()
    # Queues of its own: what earlier tests left on this test process's queues (a whole suite run leaves some)
    # would be counted too, or keep the pool busy past the wait.
    namespace = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-metrics-{uuid.uuid4().hex[:8]}"
    env = celery_env(
        DATABASE_URL=child_database_url(),
        WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"),
        CELERY_QUEUE=namespace,
    )
    worker = CeleryProcess(
        "worker", env, LOG_DIR / f"metrics-{namespace}.log", ["--pool", "prefork", "--concurrency", "2"]
    )
    queue = f"{namespace}.collection"
    key = (
        "agencybilling_tasks_total",
        (("outcome", "SUCCESS"), ("queue", queue), ("task", agency_attempts_resolve.name)),
    )

    def counts() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    try:
        worker.start()
        for _ in range(6):
            agency_attempts_resolve.apply_async(kwargs={"schema_name": agency_a.schema_name}, queue=queue)
        try:
            wait_until(lambda: counts().get(key) == 6, timeout=180, what="six tasks counted on the collection queue")
        except AssertionError as timed_out:
            seen = {k: v for k, v in counts().items() if k[0] == "agencybilling_tasks_total"}
            raise AssertionError(f"{timed_out}; tasks counted: {seen}\n{worker.log_tail()}") from None
    finally:
        worker.stop()
