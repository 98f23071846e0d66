"""`manage.py run_billing`: progress, summary, reruns and bad arguments (CYC-2, CYC-3)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from django.core.management import call_command
from django_tenants.utils import schema_context

from billing.models import Invoice
from tests.billing_helpers import client_create, with_plan

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_CYC_3_run_billing_summarises_then_says_already_done(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        for index in range(3):
            client_create(
                name=f"C{index}",
                email=f"c{index}@example.com",
                activated_on=date(2026, 12, 1),
                license_price_minor=12345,
            )
    out, err = io.StringIO(), io.StringIO()
    call_command("run_billing", "--date", "2027-01-01", "--agency", "alpha", stdout=out, stderr=err)
    text = out.getvalue()
    assert "alpha: 3 client invoices built, 0 already built, agency invoice P-ALPHA-000001" in text
    assert "2027-01-01: 3 invoices built (370.35 USD)" in text
    assert "client" in err.getvalue()  # the progress bar
    out = io.StringIO()
    call_command("run_billing", "--date", "2027-01-01", "--agency", "alpha", "--no-progress", stdout=out)
    assert "alpha: 2027-01-01 already done — nothing to do" in out.getvalue()
    with schema_context(agency.schema_name):
        assert Invoice.objects.count() == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2027-02-30"], "--date must be a date as YYYY-MM-DD"),
        (["--date", "2027-01-01", "--agency", "nobody"], "--agency: no agency with the slug 'nobody'"),
    ],
)
def test_run_billing_bad_arguments_one_line_non_zero(args, message):
    from django.db import connection

    db = connection.settings_dict  # the migrated test database
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    result = subprocess.run(
        [sys.executable, "manage.py", "run_billing", *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "agencybilling.settings.test", "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
