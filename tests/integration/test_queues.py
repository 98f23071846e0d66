"""Queues per kind of work (agencybilling/queues.py): every task of the product is routed to its kind's queue,
each queue can be drained by workers of its own, and a full queue of one kind does not hold another up."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings
from django_tenants.utils import schema_context

from agencybilling.celery import app
from agencybilling.queues import KINDS, TASK_KINDS
from billing.tasks import agency_sweep
from notifications.models import Notice, OutboxStatus
from tests.billing_helpers import payment_received_notice
from tests.reliability.harness import LOG_DIR, CeleryProcess, celery_env, child_database_url, wait_until


def test_every_task_of_the_product_has_a_kind_and_each_kind_a_queue_of_this_test_worker():
    """Routing lives in settings: each product task is routed (agency_ping, a diagnostic, stays on the default
    queue), and the queue names carry the test worker's prefix, so parallel test workers never share a queue."""
    app.loader.import_default_modules()
    product = {
        name
        for name in app.tasks
        if name.split(".")[0] in {"billing", "tenants", "notifications", "integrations", "api"}
    }
    assert product - set(TASK_KINDS) == {"tenants.tasks.agency_ping"}
    assert set(TASK_KINDS) - product == set()
    prefix = settings.CELERY_TASK_DEFAULT_QUEUE
    assert settings.CELERY_QUEUE_NAMES == [prefix, *(f"{prefix}.{kind}" for kind in KINDS)]
    if settings.XDIST_WORKER:
        assert prefix.endswith(settings.XDIST_WORKER)
    for task, kind in TASK_KINDS.items():
        assert app.amqp.router.route({}, task)["queue"].name == f"{prefix}.{kind}"


def _notice(agency, number: int) -> Notice:
    with schema_context(agency.schema_name):
        notice = payment_received_notice(number=number)
    assert notice is not None
    return notice


def _sent(agency, pks: list[int]) -> bool:
    with schema_context(agency.schema_name):
        return Notice.objects.filter(pk__in=pks, status=OutboxStatus.SENT).count() == len(pks)


def _purge(broker) -> None:
    broker.delete(*settings.CELERY_QUEUE_NAMES)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_NOT_7_notices_go_out_while_the_clock_queue_is_full_on_workers_of_either_shape(agency_a, smtp_server):
    """200 clock tasks wait on the clock queue. A worker started for the notices queue only (`-Q`) sends the
    notices and leaves the clock queue untouched; then a worker of every queue (no `-Q`, one process) sends the
    next notices long before it has worked through the clock queue: it takes from the queues in turn."""
    env = celery_env(DATABASE_URL=child_database_url(), EMAIL_URL=f"smtp://127.0.0.1:{smtp_server.port}")
    broker = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.CELERY_TASK_DEFAULT_QUEUE
    clock, notices = f"{prefix}.clock", f"{prefix}.notices"
    logs = LOG_DIR / f"queues-{uuid.uuid4().hex[:8]}"
    only_notices = CeleryProcess("worker", env, logs / "notices.log", ["--pool", "solo", "-Q", notices])
    every_queue = CeleryProcess("worker", env, logs / "all.log", ["--pool", "solo"])
    _purge(broker)
    try:
        for _ in range(200):
            agency_sweep.delay(schema_name=agency_a.schema_name)
        first = [_notice(agency_a, n).pk for n in (1, 2)]  # their send task goes to the notices queue
        assert broker.llen(clock) == 200 and broker.llen(notices) == 2
        only_notices.start()
        wait_until(lambda: _sent(agency_a, first), timeout=60, what="the notices-only worker to send")
        assert broker.llen(clock) == 200  # nothing of the clock's was taken
        only_notices.stop()

        every_queue.start()
        wait_until(lambda: broker.llen(clock) < 200, timeout=60, what="the clock queue to start draining")
        later = [_notice(agency_a, n).pk for n in (3, 4)]
        wait_until(lambda: _sent(agency_a, later), timeout=60, interval=0.05, what="the notices to be sent")
        left = broker.llen(clock)
        assert left > 100, f"the notices waited for {200 - left} of 200 clock tasks"
    finally:
        only_notices.stop()
        every_queue.stop()
        _purge(broker)
