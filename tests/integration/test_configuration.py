"""Start-up fails with one clear line naming the variable; /healthz reports the services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # A fresh process, as an operator would start it: none of the test run's own switches (the browser
    # tests allow async-unsafe ORM calls in their process, which production must never inherit).
    unset = {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def _one_clear_line(result: subprocess.CompletedProcess, variable: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and variable in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_secret_key_in_production_is_one_line():
    result = _manage("check", env={"DJANGO_SETTINGS_MODULE": "agencybilling.settings.production"})
    _one_clear_line(result, "SECRET_KEY")


@pytest.mark.parametrize("command", ["migrate", "agency_create"])
def test_unreachable_database_is_one_line(command):
    result = _manage(command, env={"DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"})
    _one_clear_line(result, "DATABASE_URL")


def test_every_command_of_the_project_checks_the_database_first():
    """Derived from where a command lives, not a list of names (a list named `create_agency` after the command
    became `agency_create`, which then printed a traceback): every project command but the Redis probe."""
    from django.core.management import get_commands

    from agencybilling.startup import BROKER_COMMANDS, command_needs_database, is_project_app

    ours = {name for name, app in get_commands().items() if isinstance(app, str) and is_project_app(app)}
    assert {"agency_create", "run_day", "simulate", "load_demo", "api_token", "clock_tick"} <= ours
    assert {name for name in ours if not command_needs_database(name)} == set(BROKER_COMMANDS)
    assert command_needs_database("migrate") and not command_needs_database("check")
    assert not {
        name for name, app in get_commands().items() if app == "django.core" and command_needs_database(name)
    } - {
        "runserver",
        "migrate",
        "createsuperuser",
        "dbshell",
    }


def test_unreachable_redis_for_beat_health_is_one_line():
    """beat_health reads only Redis (beat's slot claims): a probe whose Redis cannot be reached says so in one line
    naming REDIS_URL, not a traceback."""
    result = _manage("beat_health", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    _one_clear_line(result, "REDIS_URL")
    assert result.returncode == 2 and "cannot connect to Redis" in result.stderr


def test_missing_database_url_is_one_line():
    result = _manage("check", env={"DATABASE_URL": ""})
    _one_clear_line(result, "DATABASE_URL")


def test_malformed_email_url_is_one_line():
    result = _manage("check", env={"EMAIL_URL": "carrier-pigeon://coop"})
    _one_clear_line(result, "EMAIL_URL")


def test_production_settings_pass_check_deploy():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DJANGO_SETTINGS_MODULE": "agencybilling.settings.production",
            "SECRET_KEY": "k3y-" + "x9Qz" * 16,
            "BASE_DOMAIN": "billing.example.com",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(agency_a):
    from tests.conftest import host_client

    for agency in (agency_a, None):
        response = host_client(agency).get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_healthz_reports_a_down_broker(settings, agency_a):
    from tests.conftest import host_client

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = host_client(agency_a).get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("error") and response.json()["database"] == "ok"
