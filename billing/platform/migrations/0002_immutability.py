"""Database triggers that make finalized invoices and the ledger immutable (MON-3, MON-4): enforced by
PostgreSQL, not by model code, so an UPDATE or DELETE from anywhere (ORM, raw SQL, a bug) is refused. An
invoice may still change what is not money — its PDF may be stored once.

Frozen SQL: a migration must replay the same way forever, so it carries its own text instead of importing
live code (a later change to the triggers is a new migration)."""

from django.db import migrations

IMMUTABILITY_SQL = r"""
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are append-only (MON-3/MON-4)', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE OR REPLACE FUNCTION guard_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'a finalized invoice cannot be deleted (MON-3)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.number IS DISTINCT FROM OLD.number OR NEW.period_start IS DISTINCT FROM OLD.period_start
       OR NEW.period_end IS DISTINCT FROM OLD.period_end OR NEW.currency IS DISTINCT FROM OLD.currency
       OR NEW.subtotal_minor IS DISTINCT FROM OLD.subtotal_minor OR NEW.tax_minor IS DISTINCT FROM OLD.tax_minor
       OR NEW.total_minor IS DISTINCT FROM OLD.total_minor OR NEW.issued_on IS DISTINCT FROM OLD.issued_on
       OR NEW.due_on IS DISTINCT FROM OLD.due_on
       OR (OLD.pdf <> '' AND NEW.pdf IS DISTINCT FROM OLD.pdf) THEN
        RAISE EXCEPTION 'a finalized invoice is immutable (MON-3)' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER platform_billing_agencyinvoice_immutable BEFORE UPDATE OR DELETE ON platform_billing_agencyinvoice
    FOR EACH ROW EXECUTE FUNCTION guard_invoice();
CREATE TRIGGER platform_billing_agencyinvoiceline_immutable BEFORE UPDATE OR DELETE ON platform_billing_agencyinvoiceline
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER platform_billing_agencyledgerentry_append_only BEFORE UPDATE OR DELETE ON platform_billing_agencyledgerentry
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER platform_billing_agencyallocation_append_only BEFORE UPDATE OR DELETE ON platform_billing_agencyallocation
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS platform_billing_agencyinvoice_immutable ON platform_billing_agencyinvoice;
DROP TRIGGER IF EXISTS platform_billing_agencyinvoiceline_immutable ON platform_billing_agencyinvoiceline;
DROP TRIGGER IF EXISTS platform_billing_agencyledgerentry_append_only ON platform_billing_agencyledgerentry;
DROP TRIGGER IF EXISTS platform_billing_agencyallocation_append_only ON platform_billing_agencyallocation;
"""


class Migration(migrations.Migration):
    dependencies = [("platform_billing", "0001_initial")]

    operations = [migrations.RunSQL(IMMUTABILITY_SQL, DROP_SQL)]
