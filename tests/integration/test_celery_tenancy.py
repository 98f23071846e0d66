"""Tasks run in the schema they were sent for, through a real Redis broker and a real worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone
from django_tenants.utils import schema_context

from agencybilling.celery import app
from clients.models import Client
from core.calendar import local_date
from core.tasks import MissingTenantError
from tenants.models import Agency
from tenants.tasks import agency_ping

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker():
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10) as running:
        yield running


def test_TEN_2_task_runs_in_the_schema_it_names(agency_a, agency_b, worker):
    with schema_context(agency_a.schema_name):
        Client.objects.create(name="A1", email="a1@example.com")
        Client.objects.create(name="A2", email="a2@example.com")
    with schema_context(agency_b.schema_name):
        Client.objects.create(name="B1", email="b1@example.com")
        # Sent from inside B's schema: the task still runs in the schema it names.
        result_b = agency_ping.delay(schema_name=agency_b.schema_name)
    result_a = agency_ping.delay(schema_name=agency_a.schema_name)
    assert result_a.get(timeout=20) == {"schema": "alpha", "clients": 2}
    assert result_b.get(timeout=20) == {"schema": "beta", "clients": 1}


@pytest.mark.parametrize("kwargs", [{}, {"schema_name": "public"}, {"schema_name": ""}])
def test_TEN_2_tenant_task_without_schema_fails_loudly(agency_a, worker, kwargs):
    # Sent by name, bypassing the signature check, so the worker itself must refuse it.
    result = app.send_task("tenants.tasks.agency_ping", kwargs=kwargs)
    with pytest.raises(Exception, match="needs schema_name") as excinfo:
        result.get(timeout=20)
    assert excinfo.type.__name__ == MissingTenantError.__name__


def test_TEN_2_tenant_task_without_schema_is_refused_at_send_time():
    with pytest.raises(TypeError, match="schema_name"):
        agency_ping.delay()


def test_TEN_2_task_sent_from_another_agency_for_a_schema_is_refused(agency_a, agency_b):
    # Run eagerly: from inside A's schema, asking to act on B is a bug, never a silent switch.
    with schema_context(agency_a.schema_name), pytest.raises(MissingTenantError):
        agency_ping.apply(kwargs={"schema_name": agency_b.schema_name}).get()


def test_clock_and_sweep_tasks_still_answer_to_their_names_before_the_move(agency_a, agency_b, worker):
    """Messages queued before billing's clock and sweep tasks moved from tenants/tasks.py to billing/tasks.py
    carry the old names; a worker of this release still runs them."""

    def run(name: str, **kwargs):
        return app.send_task(name, kwargs=kwargs, ignore_result=False).get(timeout=60)

    today = local_date(timezone.now(), agency_a.time_zone)
    Agency.objects.filter(pk=agency_a.pk).update(clock_date=today - timedelta(days=1))
    Agency.objects.filter(pk=agency_b.pk).update(clock_date=today + timedelta(days=1))
    ran = run("tenants.tasks.agency_clock_run", schema_name=agency_a.schema_name, until=today.isoformat())
    assert ran == [today.isoformat()]
    assert run("tenants.tasks.billing_clock_tick") == {}  # both agencies' clocks are up to date
    assert run("tenants.tasks.agency_sweep", schema_name=agency_a.schema_name) == {"requeued": 0, "uncertain": 0}
    # The sweep hands resolving unknown attempts to the collection queue.
    resolved = run("billing.tasks.agency_attempts_resolve", schema_name=agency_a.schema_name)
    assert resolved == {"unresolved": 0, "resolved": 0}
    assert run("tenants.tasks.reliability_sweep") == {"webhooks": 0, "agencies": 2}
