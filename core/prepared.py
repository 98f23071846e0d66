"""The hottest read queries (an API request's token lookup and page) as prepared statements.

Django sends every query as a new statement, so PostgreSQL plans it each time: for the invoice list's page,
planning took more of the server's CPU than running it (docs/performance.md, P5). A statement prepared on the
connection is planned once and reused for the connection's life (Django keeps connections `CONN_MAX_AGE`).

Schemas: a prepared statement is re-parsed by PostgreSQL whenever `search_path` has changed since its last use,
so one statement serves every agency's schema correctly. Poolers: a PgBouncer in transaction mode older than
1.21 loses prepared statements between transactions; such a deployment sets `DATABASE_PREPARED_STATEMENTS=0`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

_NEVER = 2**62


class _PreparingCursor(ServerBindingCursor):  # type: ignore[misc]
    """Django's server-side binding cursor, preparing what it executes."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None):
        return super().execute(query, params, prepare=True, binary=binary)  # type: ignore[misc]


def prepared_fetchall(sql: str, params: list | tuple) -> list[tuple]:
    """The rows of `sql` (with %s placeholders), through Django's cursor wrapper (query logging and
    execute wrappers see it) on the current schema."""
    if not getattr(settings, "DATABASE_PREPARED_STATEMENTS", True):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    # A Django cursor first: it opens or checks the connection and sets the schema's search_path.
    with connection.cursor():
        pass
    database = connection.connection
    if database.prepare_threshold is None:
        # Django turns psycopg's automatic preparation off (for poolers), which also refuses explicit requests;
        # a threshold no query reaches keeps it off for every other query.
        database.prepare_threshold = _NEVER
    raw = _PreparingCursor(database)  # type: ignore[call-arg]
    with connection._prepare_cursor(raw) as cursor:  # type: ignore[attr-defined]
        cursor.execute(sql, params)
        return cursor.fetchall()
