"""Prepared statements through Django's documented options (`DATABASE_PREPARE_THRESHOLD`: `server_side_binding` and
psycopg's `prepare_threshold`), off by default: when a deployment turns them on, one prepared statement still reads
each agency's own schema (TEN-2)."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection
from django.db.utils import ConnectionHandler
from django_tenants.utils import tenant_context

from clients.services import client_create

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = 'SELECT "name" FROM "clients_client" WHERE "license_price_minor" >= %s ORDER BY "id"'


def _client(agency, name: str) -> None:
    with tenant_context(agency):
        client_create(
            name=name,
            email=f"{name.lower().replace(' ', '-')}@example.test",
            activated_on=date(2026, 12, 1),
            license_price_minor=1000,
        )


def test_the_default_prepares_nothing(agency_a):
    _client(agency_a, "Alpha Only")
    with tenant_context(agency_a), connection.cursor() as cursor:
        for _ in range(10):
            cursor.execute(NAMES, [1])
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone() == (0,)


def test_TEN_2_with_prepare_threshold_one_statement_reads_each_agencys_own_schema(agency_a, agency_b):
    """PostgreSQL re-parses a prepared statement when `search_path` has changed since its last use: the one
    statement, prepared in one agency's schema, reads the other's rows in the other's schema."""
    _client(agency_a, "Alpha Only")
    _client(agency_b, "Beta Only")
    # A second connection to the test database, configured as DATABASE_PREPARE_THRESHOLD=0 configures one.
    options = {**connection.settings_dict["OPTIONS"], "server_side_binding": True, "prepare_threshold": 0}
    handler = ConnectionHandler({"default": {**connection.settings_dict, "OPTIONS": options}})
    prepared = handler["default"]
    try:
        for agency, expected in ((agency_a, "Alpha Only"), (agency_b, "Beta Only"), (agency_a, "Alpha Only")):
            prepared.set_tenant(agency)
            with prepared.cursor() as cursor:
                cursor.execute(NAMES, [1])
                assert cursor.fetchall() == [(expected,)]
        with prepared.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            statements = [row[0] for row in cursor.fetchall()]
        assert statements.count(NAMES.replace("%s", "$1")) == 1
    finally:
        prepared.close()
