"""docs/api.md's walkthrough, run as written against a live server: every shell block of its Walkthrough section,
in order, with bash, curl and jq, and manage.py on the test database. If the page stops being true, this fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django_tenants.utils import schema_context

from accounts.models import Role
from agencybilling import seed
from tests.billing_helpers import ONBOARDED_ON, with_plan
from tests.conftest import make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="the walkthrough needs curl and jq"),
]


def walkthrough_script() -> str:
    text = (settings.BASE_DIR / "docs" / "api.md").read_text()
    section = text.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 5
    return "set -euo pipefail\n" + "\n".join(blocks)


def far_zone(now: datetime) -> str:
    """A zone whose calendar date differs from UTC's at `now` (UTC+14 from 10:00 UTC, UTC−11 before 11:00), so
    that a walkthrough taking "today" in UTC instead of the agency's zone fails whatever the hour of the run."""
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        if now.astimezone(ZoneInfo(zone)).date() != now.date():
            return zone
    raise AssertionError(f"no zone's date differs from UTC's at {now}")


def test_the_api_walkthrough_works_as_written(live_server, agency_a, tmp_path):
    agency = with_plan(agency_a)
    agency.time_zone = far_zone(datetime.now(UTC))
    agency.save(update_fields=["time_zone"])
    seed.payouts_ready(agency, today=ONBOARDED_ON)
    make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    db = connection.settings_dict
    env = {
        **os.environ,
        "API": live_server.url.replace("://localhost", "://alpha.localhost") + "/api/v1",
        "AGENCY": "alpha",
        "ADMIN_EMAIL": "admin@alpha.test",
        "MANAGE": f"{sys.executable} {settings.BASE_DIR / 'manage.py'}",
        "DJANGO_SETTINGS_MODULE": "agencybilling.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "EMAIL_URL": "locmem://",
    }
    run = subprocess.run(
        ["bash", "-c", walkthrough_script()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    output = run.stdout
    assert run.returncode == 0, f"{output}\n{run.stderr}"
    assert '{"email":"admin@alpha.test","role":"ADMINISTRATOR"}' in output
    assert '{"created":2,"already_present":0}' in output and '{"created":0,"already_present":2}' in output
    assert '"status":"PAID"' in output and "again: 304" in output
    assert '"balance_minor":0,' in output and '"overdue":false' in output
    assert re.search(r'\["PAYMENT","LICENSE",-\d+,\[19900,25000,', output), output
    assert (tmp_path / "invoice.pdf").read_bytes()[:5] == b"%PDF-"
    with schema_context("alpha"):
        from billing.models import Invoice

        invoice = Invoice.objects.get(client__name="Walkthrough Bakery")
        assert invoice.total_minor > 19900 + 25000 and invoice.number in output
    print(output)
