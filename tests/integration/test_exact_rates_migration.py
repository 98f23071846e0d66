"""MON-2: the migrations to exact rates convert existing data exactly — whole basis points to percentages, whole
minor units to 12-decimal unit prices — and change invoice lines in place although their immutability trigger
refuses every row update (a type change updates no row). Run on tables shaped as before, in a scratch schema."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.db import connection, migrations

pytestmark = pytest.mark.django_db

BEFORE = """
CREATE SCHEMA exact_rates_migration;
SET search_path TO exact_rates_migration;
CREATE TABLE clients_taxrate (id serial PRIMARY KEY, rate_bp integer NOT NULL);
CREATE TABLE tenants_plantax (id serial PRIMARY KEY, rate_bp integer NOT NULL);
CREATE TABLE tenants_planproduct (
    id serial PRIMARY KEY, unit_price_minor bigint NOT NULL, overage_unit_price_minor bigint NOT NULL);
CREATE TABLE billing_invoiceline (id serial PRIMARY KEY, unit_amount_minor bigint NOT NULL);
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'append-only'; END $$;
CREATE TRIGGER billing_invoiceline_immutable BEFORE UPDATE OR DELETE ON billing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
INSERT INTO clients_taxrate (rate_bp) VALUES (825), (1), (10000), (0);
INSERT INTO tenants_plantax (rate_bp) VALUES (500), (9999);
INSERT INTO tenants_planproduct (unit_price_minor, overage_unit_price_minor) VALUES (10, 7), (0, 9007199254740991);
INSERT INTO billing_invoiceline (unit_amount_minor) VALUES (1999), (9007199254740991), (-250);
"""


def _forward_sql(module: str) -> list[str]:
    """The forward SQL of a migration's RunSQL operations (also inside SeparateDatabaseAndState)."""
    operations = importlib.import_module(module).Migration.operations
    found = []
    for operation in operations:
        inner = operation.database_operations if isinstance(operation, migrations.SeparateDatabaseAndState) else []
        for candidate in [operation, *inner]:
            if isinstance(candidate, migrations.RunSQL):
                found.append(candidate.sql)
    return found


def test_MON_2_migrations_convert_existing_rates_and_prices_exactly():
    with connection.cursor() as cursor:
        cursor.execute(BEFORE)
        try:
            for module in (
                "clients.migrations.0007_tax_rate_percent",
                "tenants.migrations.0005_exact_rates",
                "billing.migrations.0010_line_unit_amount_decimal",
            ):
                for sql in _forward_sql(module):
                    cursor.execute(sql)
            cursor.execute("SELECT rate_percent FROM clients_taxrate ORDER BY id")
            assert [row[0] for row in cursor.fetchall()] == [
                Decimal("8.2500"),
                Decimal("0.0100"),
                Decimal("100.0000"),
                Decimal("0.0000"),
            ]
            cursor.execute("SELECT rate_percent FROM tenants_plantax ORDER BY id")
            assert [row[0] for row in cursor.fetchall()] == [Decimal("5.0000"), Decimal("99.9900")]
            cursor.execute("SELECT unit_price_decimal, overage_unit_price_decimal FROM tenants_planproduct ORDER BY id")
            assert cursor.fetchall() == [(Decimal(10), Decimal(7)), (Decimal(0), Decimal(9007199254740991))]
            cursor.execute("SELECT unit_amount_decimal FROM billing_invoiceline ORDER BY id")
            assert [row[0] for row in cursor.fetchall()] == [Decimal(1999), Decimal(9007199254740991), Decimal(-250)]
            cursor.execute(
                "SELECT numeric_precision, numeric_scale FROM information_schema.columns "
                "WHERE table_schema = 'exact_rates_migration' "
                "AND column_name IN ('rate_percent', 'unit_amount_decimal') "
                "ORDER BY table_name"
            )
            assert cursor.fetchall() == [(31, 12), (7, 4), (7, 4)]
            # The lines are still append-only: the migration changed their type, never a row.
            with pytest.raises(Exception, match="append-only"):
                cursor.execute("SAVEPOINT s; UPDATE billing_invoiceline SET unit_amount_decimal = 1")
            cursor.execute("ROLLBACK TO SAVEPOINT s")
        finally:
            cursor.execute("SET search_path TO public")
