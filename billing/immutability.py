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


def credit_note_sql() -> str:
    """Credit notes (COR-1) are immutable like invoices (the PDF path may be set once), their lines append-only,
    and the database refuses what the credit-note service refuses under its lock: lines crediting more than an
    invoice line billed, refunds of more than a charge collected (failed refunds do not count)."""
    return """
CREATE OR REPLACE FUNCTION guard_credit_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'a credit note cannot be deleted (MON-3)' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.number IS DISTINCT FROM OLD.number OR NEW.invoice_id IS DISTINCT FROM OLD.invoice_id
       OR NEW.client_id IS DISTINCT FROM OLD.client_id OR NEW.outcome IS DISTINCT FROM OLD.outcome
       OR NEW.amount_minor IS DISTINCT FROM OLD.amount_minor OR NEW.currency IS DISTINCT FROM OLD.currency
       OR NEW.issued_on IS DISTINCT FROM OLD.issued_on OR NEW.reason IS DISTINCT FROM OLD.reason
       OR (OLD.pdf <> '' AND NEW.pdf IS DISTINCT FROM OLD.pdf) THEN
        RAISE EXCEPTION 'a credit note is immutable (MON-3)' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION credit_line_within_billed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    billed bigint;
    credited bigint;
BEGIN
    -- The line's row lock serializes two credit notes of the same line; the sum is read after it.
    SELECT amount_minor INTO billed FROM billing_invoiceline WHERE id = NEW.invoice_line_id FOR SHARE;
    SELECT COALESCE(SUM(amount_minor), 0) INTO credited FROM billing_creditnoteline
        WHERE invoice_line_id = NEW.invoice_line_id;
    IF credited + NEW.amount_minor > billed THEN
        RAISE EXCEPTION 'credit notes would credit % of an invoice line that billed % (COR-1)',
            credited + NEW.amount_minor, billed USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION refund_within_collected() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    collected bigint;
    refunded bigint;
BEGIN
    IF NEW.status = 'FAILED' THEN
        RETURN NEW;
    END IF;
    SELECT amount_minor INTO collected FROM billing_charge
        WHERE id = NEW.charge_id AND status IN ('PAID', 'PAID_OUT') FOR UPDATE;
    IF collected IS NULL THEN
        RAISE EXCEPTION 'only a paid charge can be refunded (COR-1)' USING ERRCODE = 'check_violation';
    END IF;
    SELECT COALESCE(SUM(amount_minor), 0) INTO refunded FROM billing_refund
        WHERE charge_id = NEW.charge_id AND status <> 'FAILED' AND id IS DISTINCT FROM NEW.id;
    IF refunded + NEW.amount_minor > collected THEN
        RAISE EXCEPTION 'refunds would return % of a charge that collected % (COR-1)',
            refunded + NEW.amount_minor, collected USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION guard_invoice_credit_applied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.credit_applied_minor IS DISTINCT FROM OLD.credit_applied_minor THEN
        RAISE EXCEPTION 'a finalized invoice is immutable (MON-3)' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER billing_invoice_credit_applied_immutable BEFORE UPDATE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION guard_invoice_credit_applied();
CREATE TRIGGER billing_creditnote_immutable BEFORE UPDATE OR DELETE ON billing_creditnote
    FOR EACH ROW EXECUTE FUNCTION guard_credit_note();
CREATE TRIGGER billing_creditnoteline_immutable BEFORE UPDATE OR DELETE ON billing_creditnoteline
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER billing_creditnoteline_within_billed BEFORE INSERT ON billing_creditnoteline
    FOR EACH ROW EXECUTE FUNCTION credit_line_within_billed();
CREATE TRIGGER billing_refund_within_collected BEFORE INSERT ON billing_refund
    FOR EACH ROW EXECUTE FUNCTION refund_within_collected();
"""


def credit_note_drop_sql() -> str:
    return "\n".join(
        f"DROP TRIGGER IF EXISTS {name} ON {table};"
        for name, table in [
            ("billing_invoice_credit_applied_immutable", "billing_invoice"),
            ("billing_creditnote_immutable", "billing_creditnote"),
            ("billing_creditnoteline_immutable", "billing_creditnoteline"),
            ("billing_creditnoteline_within_billed", "billing_creditnoteline"),
            ("billing_refund_within_collected", "billing_refund"),
        ]
    )
