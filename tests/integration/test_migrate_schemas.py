"""migrate_schemas skips agency schemas that already hold every migration (tenants/migration.py), and still
migrates a schema that lacks one (TEN-1: every agency schema carries the whole tenant model)."""

from __future__ import annotations

import pytest
from django.db import connection

from tenants.migration import get_executor, pending_schemas

LAST = "app = 'billing' AND name = '0006_support_request_open_once'"


@pytest.mark.django_db
def test_TEN_1_up_to_date_schemas_are_not_pending_and_a_missing_migration_is(agency_a, agency_b):
    assert pending_schemas(["alpha", "beta"]) == []
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM alpha.django_migrations WHERE {LAST}")
    assert pending_schemas(["alpha", "beta"]) == ["alpha"]


@pytest.mark.django_db
def test_TEN_1_a_schema_without_migrations_table_is_pending():
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA empty_for_migrate_test")
    assert pending_schemas(["empty_for_migrate_test"]) == ["empty_for_migrate_test"]


@pytest.mark.django_db
def test_TEN_1_the_executor_runs_migrate_only_for_pending_schemas(agency_a, agency_b, monkeypatch):
    ran: list[str] = []
    executor_class = get_executor("standard")
    monkeypatch.setattr(
        "django_tenants.migration_executors.standard.run_migrations",
        lambda args, options, codename, schema_name, **kw: ran.append(schema_name),
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM beta.django_migrations WHERE {LAST}")
    executor_class([], {"verbosity": 0}).run_migrations(tenants=["public", "alpha", "beta"])
    assert ran == ["public", "beta"]
    ran.clear()
    # A run that asks for something specific (here --fake) is django-tenants' own, for every schema.
    executor_class([], {"verbosity": 0, "fake": True}).run_migrations(tenants=["alpha", "beta"])
    assert ran == ["alpha", "beta"]
