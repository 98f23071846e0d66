"""Bulk writes for the billing run: COPY of plain tuples, ids reserved from the table's own sequence.

The ORM's `bulk_create` spends most of its time building model instances and INSERT parameters; COPY
takes the values as they are. Only the writer changes: constraints, triggers and foreign keys in the
database check every row as they do for an INSERT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection, models


def ids_reserve(model: type[models.Model], count: int) -> list[int]:
    """`count` ids from the model's identity sequence, in ascending order, for rows written with COPY."""
    if count <= 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count])
        return sorted(row[0] for row in cursor.fetchall())


def copy_rows(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """COPY `rows` (tuples in the order of `columns`) into the model's table in the current schema."""
    table = model._meta.db_table
    column_list = ", ".join(f'"{name}"' for name in columns)
    with connection.cursor() as cursor:
        # The Django cursor has put the agency's schema on the search path; COPY uses the raw cursor.
        with cursor.cursor.copy(f'COPY "{table}" ({column_list}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)


def missing_columns(model: type[models.Model], columns: Sequence[str]) -> list[str]:
    """Required columns (NOT NULL, no database default, not an identity) a COPY into `model` would leave out."""
    given = set(columns)
    missing = []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.null or field.column in given:
            continue
        if getattr(field, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED:
            continue
        missing.append(field.column)
    return missing
