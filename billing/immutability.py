"""Database triggers that make finalized invoices and the ledger immutable (MON-3, MON-4).

Enforced by PostgreSQL, not by model code: an UPDATE or DELETE from anywhere (ORM, raw SQL, a bug)
is refused. An invoice may still change what is not money — its PDF may be stored once.
"""

from __future__ import annotations


def immutability_sql(*, invoice_table: str, line_table: str, ledger_table: str, allocation_table: str) -> str:
    return f"""
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

CREATE TRIGGER {invoice_table}_immutable BEFORE UPDATE OR DELETE ON {invoice_table}
    FOR EACH ROW EXECUTE FUNCTION guard_invoice();
CREATE TRIGGER {line_table}_immutable BEFORE UPDATE OR DELETE ON {line_table}
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER {ledger_table}_append_only BEFORE UPDATE OR DELETE ON {ledger_table}
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER {allocation_table}_append_only BEFORE UPDATE OR DELETE ON {allocation_table}
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""


def drop_sql(*, invoice_table: str, line_table: str, ledger_table: str, allocation_table: str) -> str:
    return "\n".join(
        f"DROP TRIGGER IF EXISTS {name} ON {table};"
        for name, table in [
            (f"{invoice_table}_immutable", invoice_table),
            (f"{line_table}_immutable", line_table),
            (f"{ledger_table}_append_only", ledger_table),
            (f"{allocation_table}_append_only", allocation_table),
        ]
    )
