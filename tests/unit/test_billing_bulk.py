"""The billing run writes invoices, lines, ledger charges and charges with COPY (billing/bulk.py): every
column the database requires must be in the column lists, or a new model field would break the run."""

from __future__ import annotations

import pytest

from billing.bulk import missing_columns
from billing.invoicing import CHARGE_COLUMNS, INVOICE_COLUMNS, LEDGER_COLUMNS, LINE_COLUMNS
from billing.models import Charge, Invoice, InvoiceLine, LedgerEntry


@pytest.mark.parametrize(
    ("model", "columns"),
    [
        (Invoice, INVOICE_COLUMNS),
        (InvoiceLine, LINE_COLUMNS),
        (LedgerEntry, LEDGER_COLUMNS),
        (Charge, CHARGE_COLUMNS),
    ],
)
def test_CYC_2_copy_columns_cover_every_required_column(model, columns):
    assert missing_columns(model, columns) == []
    known = {field.column for field in model._meta.concrete_fields}
    assert set(columns) <= known, f"unknown columns {set(columns) - known}"


def test_missing_columns_names_a_required_column_left_out():
    assert "number" in missing_columns(Invoice, [c for c in INVOICE_COLUMNS if c != "number"])
