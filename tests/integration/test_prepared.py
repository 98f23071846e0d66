"""core.prepared: the API's hottest reads as statements prepared on the connection, across agency schemas."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection
from django.test import override_settings
from django_tenants.utils import tenant_context

from clients.services import client_create
from core.prepared import prepared_fetchall

pytestmark = pytest.mark.django_db

NAMES = 'SELECT "name" FROM "clients_client" WHERE "license_price_minor" >= %s ORDER BY "id"'


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def _client(agency, name: str) -> None:
    with tenant_context(agency):
        client_create(
            name=name,
            email=f"{name.lower().replace(' ', '-')}@example.test",
            activated_on=date(2026, 12, 1),
            license_price_minor=1000,
        )


def test_TEN_2_one_prepared_statement_reads_each_agencys_own_schema(agency_a, agency_b):
    """PostgreSQL re-parses a prepared statement when `search_path` has changed since its last use: the one
    statement, prepared in one agency's schema, reads the other's rows in the other's schema."""
    _client(agency_a, "Alpha Only")
    _client(agency_b, "Beta Only")
    for agency, expected in ((agency_a, "Alpha Only"), (agency_b, "Beta Only"), (agency_a, "Alpha Only")):
        with tenant_context(agency):
            assert prepared_fetchall(NAMES, [1]) == [(expected,)]
    assert _prepared_statements().count(NAMES.replace("%s", "$1")) == 1


def test_only_what_is_asked_for_is_prepared(agency_a):
    _client(agency_a, "Alpha Only")
    with tenant_context(agency_a):
        for _ in range(10):
            with connection.cursor() as cursor:  # Django's own queries stay unprepared (poolers)
                cursor.execute(NAMES, [2])
        assert not any("license_price_minor" in statement for statement in _prepared_statements())
        with override_settings(DATABASE_PREPARED_STATEMENTS=False):
            assert prepared_fetchall(NAMES, [3]) == [("Alpha Only",)]
        assert not any("license_price_minor" in statement for statement in _prepared_statements())
        assert prepared_fetchall(NAMES, [4]) == [("Alpha Only",)]
        assert any("license_price_minor" in statement for statement in _prepared_statements())


def test_a_prepared_read_is_counted_by_djangos_query_log(agency_a):
    """Query counts (assertNumQueries, the benchmarks' query budgets) see prepared reads like any other."""
    from django.test.utils import CaptureQueriesContext

    with tenant_context(agency_a):
        prepared_fetchall(NAMES, [5])
        with CaptureQueriesContext(connection) as queries:
            prepared_fetchall(NAMES, [5])
            prepared_fetchall(NAMES, [6])
    assert len(queries.captured_queries) == 2
