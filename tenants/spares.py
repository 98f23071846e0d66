"""Spare agency schemas: migrated ahead of time, so creating an agency renames one instead of migrating.

Migrating a new agency schema runs every tenant migration (~1.5-2.5 s here, most of it Django rendering
migration state, more with many schemas in the catalog). `agency_create` instead takes a spare schema that
already holds every migration and renames it to the agency's slug (`ALTER SCHEMA ... RENAME`, milliseconds:
tables, sequences, triggers and their functions follow the schema by OID, and nothing in an agency schema
stores its own name). The pool is topped up after each creation and hourly by beat
(`tenants.tasks.spare_schemas_refill`), `TENANT_SPARE_SCHEMAS` deep (0 turns it off). When no up-to-date
spare is at hand (pool empty, or a deploy added migrations since a spare was made), `agency_create`
migrates a new schema as before. docs/performance.md, P6.
"""

from __future__ import annotations

import logging
import secrets

from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction

from tenants.migration import pending_schemas

logger = logging.getLogger(__name__)

PREFIX = "spare_"  # agency slugs are letters and digits only, so no agency can be named like a spare


def spare_schemas() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY nspname", [PREFIX])
        return [row[0] for row in cursor.fetchall()]


def spare_schema_create() -> str:
    """A new spare schema with every tenant migration applied (the same command that migrates agencies)."""
    name = f"{PREFIX}{secrets.token_hex(6)}"
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {connection.ops.quote_name(name)}")
    try:
        call_command("migrate_schemas", tenant=True, schema_name=name, interactive=False, verbosity=0)
    except BaseException:
        spare_schema_drop(name)
        raise
    connection.set_schema_to_public()
    return name


def spare_schema_drop(name: str) -> None:
    if not name.startswith(PREFIX):
        raise ValueError(f"{name!r} is not a spare schema")
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(name)} CASCADE")


def spare_schema_claim(*, slug: str) -> bool:
    """Rename an up-to-date spare schema to `slug`, in the caller's transaction; False when there is none.

    Two creations at once never take the same spare: each holds a transaction-scoped advisory lock on the
    spare it renames (and a rename of a spare already renamed by a committed transaction finds it gone)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("spare_schema_claim must run inside the agency's creation transaction")
    for name in spare_schemas():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [name])
            if not cursor.fetchone()[0]:
                continue
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])
            if cursor.fetchone() is None or pending_schemas([name]):
                continue  # taken meanwhile, or older than the latest migrations (the refill replaces it)
            cursor.execute(
                f"ALTER SCHEMA {connection.ops.quote_name(name)} RENAME TO {connection.ops.quote_name(slug)}"
            )
        return True
    return False


def spare_schemas_refill(*, depth: int | None = None) -> dict:
    """Drop spares missing a migration, then create spares until there are `depth` up-to-date ones."""
    depth = settings.TENANT_SPARE_SCHEMAS if depth is None else depth
    spares = spare_schemas()
    stale = pending_schemas(spares)
    for name in stale:
        spare_schema_drop(name)
    ready = len(spares) - len(stale)
    created = []
    while ready + len(created) < depth:
        created.append(spare_schema_create())
    return {"ready": ready + len(created), "created": len(created), "dropped": len(stale)}
