"""CYC-3: two billing runs of the same date at once, on two real database connections."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from billing.invoicing import billing_run
from billing.models import Invoice, LedgerEntry
from billing.platform.models import AgencyInvoice
from tests.billing_helpers import client_create, with_plan

pytestmark = pytest.mark.django_db(transaction=True)


def _race(agency, today, runners=2):
    barrier = threading.Barrier(runners)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=10)
            results.append(billing_run(agency=agency, today=today, batch_size=7))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_CYC_3_two_concurrent_runs_build_each_invoice_once(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        for index in range(40):
            client_create(
                name=f"Client {index}",
                email=f"c{index}@example.com",
                activated_on=date(2026, 12, 1),
                license_price_minor=1000 + index,
            )
    results = _race(agency, date(2027, 1, 1))
    # The runs serialize on the number sequence: between them, each invoice is built exactly once.
    assert sum(r.invoices_built for r in results) == 40
    with schema_context(agency.schema_name):
        assert Invoice.objects.count() == 40
        assert Invoice.objects.values("client_id").distinct().count() == 40
        numbers = sorted(int(n.rsplit("-", 1)[1]) for n in Invoice.objects.values_list("number", flat=True))
        assert numbers == list(range(1, 41)), "numbers must be sequential without gaps (INV-1)"
        assert LedgerEntry.objects.count() == 40
    assert AgencyInvoice.objects.filter(agency=agency).count() == 1


def test_CYC_3_four_concurrent_runs_over_two_dates(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        for index in range(12):
            client_create(
                name=f"Client {index}",
                email=f"c{index}@example.com",
                activated_on=date(2026, 12, 1),
                license_price_minor=500,
                billing_day=1 if index % 2 else 2,
            )
    _race(agency, date(2027, 1, 1), runners=3)
    _race(agency, date(2027, 1, 2), runners=3)
    with schema_context(agency.schema_name):
        assert Invoice.objects.count() == 12
        numbers = sorted(int(n.rsplit("-", 1)[1]) for n in Invoice.objects.values_list("number", flat=True))
        assert numbers == list(range(1, 13))
